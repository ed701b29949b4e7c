#!/usr/bin/env bash
# `make run-sip`: the broker, a local Kamailio (infra/kamailio.sh), every Netwatch role in
# one process watching that Kamailio (docs/sip.md), and a steady SIPp load of real SIP
# calls between 100 caller and 100 callee users. Ctrl-C stops all of it.
#
#   SIP_RATE=5   calls per second (default 5)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export BROKER_PORT=${BROKER_PORT:-9092}
export NETWATCH_BROKERS=127.0.0.1:$BROKER_PORT
export NETWATCH_STORE=${NETWATCH_STORE:-sqlite://data/netwatch.db}
export KAMAILIO_SIP_PORT=${KAMAILIO_SIP_PORT:-5070} KAMAILIO_EVAPI_PORT=${KAMAILIO_EVAPI_PORT:-8448}
export KAMAILIO_RPC_PORT=${KAMAILIO_RPC_PORT:-8449}
HTTP_ADDR=${HTTP_ADDR:-127.0.0.1:8080}
BIN=${NETWATCH_BIN:-target/debug/netwatch}
SIP_RATE=${SIP_RATE:-5}
# UAC and UAS ports of the load (tests/sip/README.md)
UAC_PORT=5093 UAS_PORT=5094
sipdir=$top/data/sipp
mkdir -p "$sipdir"

up_pid=
sipp_pids=()
cleanup() {
  # SIPp waits for its calls on SIGINT: stop the load generators outright.
  for p in "${sipp_pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [ -n "$up_pid" ]; then kill -INT "$up_pid" 2>/dev/null || true; wait "$up_pid" 2>/dev/null || true; fi
  infra/kamailio.sh stop || true
  infra/broker.sh stop
}
trap cleanup EXIT
trap 'exit 130' INT TERM

infra/broker.sh start
infra/kamailio.sh start
"$BIN" up --listen "$HTTP_ADDR" > data/netwatch-up.log 2>&1 &
up_pid=$!
for _ in $(seq 1 120); do
  if curl -fsS "http://$HTTP_ADDR/healthz" >/dev/null 2>&1; then break; fi
  kill -0 "$up_pid" 2>/dev/null || { tail -20 data/netwatch-up.log >&2; echo "netwatch up exited" >&2; exit 1; }
  sleep 0.5
done

# The Kamailio server and its users as Netwatch configuration (skipped when present).
if ! "$BIN" query dns 1 2>/dev/null | grep -q 7001; then
  site=$sipdir/site.jsonl
  {
    echo "{\"op\":\"create_tserver\",\"id\":1,\"name\":\"Kamailio\",\"host\":\"127.0.0.1\",\"port\":$KAMAILIO_EVAPI_PORT,\"kind\":\"kamailio\",\"rpc\":\"http://127.0.0.1:$KAMAILIO_RPC_PORT/RPC\"}"
    for i in $(seq 1 100); do
      echo "{\"op\":\"create_dn\",\"tserver\":1,\"dbid\":$((7000 + i)),\"number\":\"$((7000 + i))\"}"
      echo "{\"op\":\"create_dn\",\"tserver\":1,\"dbid\":$((8000 + i)),\"number\":\"$((8000 + i))\"}"
    done
  } > "$site"
  "$BIN" config import "$site" >/dev/null 2>&1 || "$BIN" config import "$site"
fi

# Calls are recorded once a monitor watches the server's DNs.
for _ in $(seq 1 120); do
  up=$(curl -fsS "http://$HTTP_ADDR/v1/tservers/1/dns" 2>/dev/null | grep -o '"link":"up"' | wc -l || true)
  [ "${up:-0}" -ge 200 ] && break
  sleep 0.5
done
# Callees register, then answer every call; callers call them in turn.
(cd tests/sip && sipp "127.0.0.1:$KAMAILIO_SIP_PORT" -sf register.xml -inf load_callees.csv -i 127.0.0.1 -bind_local \
  -p "$UAS_PORT" -m 100 -r 100 -nostdin -timeout 20s -timeout_error >/dev/null 2>&1)
(cd "$sipdir" && exec sipp -sf "$top/tests/sip/uas_load.xml" -i 127.0.0.1 -bind_local -p "$UAS_PORT" -nostdin \
  -trace_err -error_file uas.err >/dev/null 2>&1) &
sipp_pids+=($!)
sleep 1 # the UAS binds its port before the first INVITE
(cd "$sipdir" && exec sipp "127.0.0.1:$KAMAILIO_SIP_PORT" -sf "$top/tests/sip/uac_load.xml" -inf "$top/tests/sip/load_pairs.csv" \
  -i 127.0.0.1 -bind_local -p "$UAC_PORT" -r "$SIP_RATE" -nostdin -trace_stat -stf uac.stat.csv -fd 5 \
  -trace_err -error_file uac.err > /dev/null 2>&1) &
sipp_pids+=($!)

cat <<MSG

Netwatch is running, watching a local Kamailio with SIPp placing $SIP_RATE calls/s
(users 7001-7100 call 8001-8100; docs/sip.md).
  HTTP API   http://$HTTP_ADDR/v1/tservers/1/dns   (also /healthz, /metrics)
  Try, in another terminal (same folder):
    $BIN query dns 1
    $BIN query calls --tserver 1 --dn 7001 --since 1h
    curl -s http://$HTTP_ADDR/v1/tservers/1/dns/8001
  Raw events:  $BIN cat calls --follow
  Logs: data/netwatch-up.log, data/kamailio/kamailio.log; SIPp statistics: data/sipp/uac.stat.csv
Ctrl-C stops everything.

MSG
wait "$up_pid"
