#!/usr/bin/env bash
# Install, start and stop the local Kafka-compatible broker (tansu 0.6.0, SQLite storage).
#
#   infra/broker.sh install   cargo install tansu 0.6.0 unless that version is already installed
#   infra/broker.sh start     start it on 127.0.0.1:$BROKER_PORT with data under $BROKER_DATA; wait until ready
#   infra/broker.sh stop      stop it by its pid
#   infra/broker.sh status    say whether it runs
set -euo pipefail

TANSU_VERSION=0.6.0
BROKER_PORT=${BROKER_PORT:-9092}
top=$(cd "$(dirname "$0")/.." && pwd)
BROKER_DATA=${BROKER_DATA:-$top/data/broker}
NETWATCH_BIN=${NETWATCH_BIN:-$top/target/debug/netwatch}
pidfile=$BROKER_DATA/tansu.pid

tansu_bin() {
  if command -v tansu >/dev/null 2>&1; then command -v tansu; else echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu"; fi
}

installed_version() {
  local bin; bin=$(tansu_bin)
  [ -x "$bin" ] && "$bin" --version 2>/dev/null | awk '{print $2}'
}

running() {
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

case "${1:-}" in
  install)
    if [ "$(installed_version || true)" = "$TANSU_VERSION" ]; then
      echo "tansu $TANSU_VERSION is installed at $(tansu_bin)"
    else
      echo "installing tansu $TANSU_VERSION with cargo (about 10-15 minutes on 2 cores, once per machine)"
      cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
    fi
    ;;
  start)
    mkdir -p "$BROKER_DATA"
    if running; then
      echo "broker already running (pid $(cat "$pidfile")) on 127.0.0.1:$BROKER_PORT"
    else
      url="tcp://127.0.0.1:$BROKER_PORT"
      # tansu 0.6.0 resolves even an absolute sqlite path against its working directory
      # (docs/broker-notes.md), so it runs in the data folder with a relative path.
      # setsid keeps it out of the terminal's process group (Ctrl-C in `make run` stops
      # Netwatch first, then the broker); the shell records its own pid, then becomes tansu.
      (cd "$BROKER_DATA" && setsid sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$(tansu_bin)" broker \
          --storage-engine sqlite://tansu.db --listener-url "$url" --advertised-listener-url "$url" \
          >tansu.log 2>&1 </dev/null &)
      for _ in $(seq 1 50); do [ -s "$pidfile" ] && break; sleep 0.1; done
      echo "broker starting (pid $(cat "$pidfile")) on 127.0.0.1:$BROKER_PORT, data in $BROKER_DATA"
    fi
    NETWATCH_BROKERS=127.0.0.1:$BROKER_PORT "$NETWATCH_BIN" topics wait --timeout 30s
    ;;
  stop)
    if running; then
      pid=$(cat "$pidfile")
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      echo "broker stopped"
    fi
    rm -f "$pidfile"
    ;;
  status)
    if running; then echo "broker running (pid $(cat "$pidfile"))"; else echo "broker not running"; exit 1; fi
    ;;
  *)
    echo "usage: $0 install|start|stop|status" >&2
    exit 2
    ;;
esac
