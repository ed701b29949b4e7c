#!/usr/bin/env bash
# `make run`: the broker, then every Netwatch role in one process with a simulated site.
# Ctrl-C stops Netwatch and the broker.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export BROKER_PORT=${BROKER_PORT:-9092}
export NETWATCH_BROKERS=127.0.0.1:$BROKER_PORT
export NETWATCH_STORE=${NETWATCH_STORE:-sqlite://data/netwatch.db}
HTTP_ADDR=${HTTP_ADDR:-127.0.0.1:8080}
BIN=${NETWATCH_BIN:-target/debug/netwatch}

up_pid=
watch_pid=
cleanup() {
  if [ -n "$up_pid" ] && kill -0 "$up_pid" 2>/dev/null; then
    kill -INT "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  # The watch first (and wait for it), so a restart it has under way cannot bring the
  # broker back after the stop below.
  if [ -n "$watch_pid" ]; then kill "$watch_pid" 2>/dev/null || true; wait "$watch_pid" 2>/dev/null || true; fi
  infra/broker.sh stop
}
trap cleanup EXIT
trap 'exit 130' INT TERM

infra/broker.sh start
# One line here whenever the broker stops answering, exits or panics (restarted if that helps).
NETWATCH_BIN=$BIN infra/broker.sh watch &
watch_pid=$!
mkdir -p data
# Netwatch's log goes to a file, so the message below stays on screen; warnings and
# errors are repeated here as they come.
: > data/netwatch-up.log
"$BIN" up --simulate --listen "$HTTP_ADDR" >> data/netwatch-up.log 2>&1 &
up_pid=$!
tail -n +1 -F --pid="$up_pid" data/netwatch-up.log 2>/dev/null | grep --line-buffered -E ' (WARN|ERROR) ' &
for _ in $(seq 1 120); do
  if curl -fsS "http://$HTTP_ADDR/healthz" >/dev/null 2>&1; then break; fi
  kill -0 "$up_pid" 2>/dev/null || { tail -20 data/netwatch-up.log >&2; echo "netwatch up exited; its log is above (data/netwatch-up.log)" >&2; exit 1; }
  sleep 0.5
done
cat <<MSG

Netwatch is running: 2 simulated T-Servers x 25 DNs with steady traffic.
  Wallboard  http://$HTTP_ADDR/wallboard?tserver=1   (a team: ?tserver=1&group=101 or 102; T-Server 2: ?tserver=2,
             groups 201, 202; docs/statistics.md)
  HTTP API   http://$HTTP_ADDR/v1/tservers/1/dns   (also /healthz, /metrics: docs/operations.md)
  Try, in another terminal (same folder):
    $BIN query dns 1
    $BIN query calls --tserver 1 --dn 5001 --since 1h
    curl -s http://$HTTP_ADDR/v1/tservers/2/dns/6001
  Raw events:  $BIN cat calls --follow
  Logs: data/netwatch-up.log (warnings and errors also here); broker: data/broker/tansu.log
Ctrl-C stops everything.

MSG
wait "$up_pid"
