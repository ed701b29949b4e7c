#!/usr/bin/env bash
# Call a Kamailio JSON-RPC method over HTTP and print the JSON reply.
#   infra/kamailio/rpc.sh dlg.list
#   infra/kamailio/rpc.sh ul.dump
#   infra/kamailio/rpc.sh ul.lookup '"location"' '"5002"'     (params as JSON values)
# KAMAILIO_RPC_PORT (default 8449) selects the port.
set -euo pipefail
method=${1:?usage: rpc.sh METHOD [JSON-PARAM...]}
shift
params=$(IFS=,; echo "$*")
body="{\"jsonrpc\":\"2.0\",\"method\":\"$method\",\"params\":[$params],\"id\":1}"
curl -sS --max-time 5 -H 'Content-Type: application/json' \
  --data "$body" "http://127.0.0.1:${KAMAILIO_RPC_PORT:-8449}/RPC"
echo
