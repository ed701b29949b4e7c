#!/usr/bin/env bash
# Install, start and stop the local Kafka-compatible broker (tansu 0.6.0, SQLite storage).
#
#   infra/broker.sh install   cargo install tansu 0.6.0 unless that version is already installed
#   infra/broker.sh start     start it on 127.0.0.1:$BROKER_PORT with data under $BROKER_DATA; wait until ready
#   infra/broker.sh stop      stop it by its pid
#   infra/broker.sh status    say whether it runs
#   infra/broker.sh watch     until killed: one line whenever the broker stops answering, answers
#                             again, exits or panics; restarts it after an exit or a panic
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
      # Only the SQLite storage engine (feature libsql) is used: docs/benchmarks.md says
      # what the install costs and why no other feature or profile override is set.
      started=$(date +%s)
      cargo install tansu --version "$TANSU_VERSION" --locked --features libsql
      echo "tansu installed in $(( $(date +%s) - started )) s"
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
      # Nothing of it holds this script's output open (a caller reading it would never end).
      rm -f "$pidfile"  # a pid left by a crash must not be taken for the new one
      (cd "$BROKER_DATA" && exec setsid sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$(tansu_bin)" broker \
          --storage-engine sqlite://tansu.db --listener-url "$url" --advertised-listener-url "$url" \
          >>tansu.log 2>&1 </dev/null) >/dev/null 2>&1 &
      for _ in $(seq 1 50); do [ -s "$pidfile" ] && break; sleep 0.1; done
      echo "broker starting (pid $(cat "$pidfile")) on 127.0.0.1:$BROKER_PORT, data in $BROKER_DATA"
    fi
    NETWATCH_BROKERS=127.0.0.1:$BROKER_PORT "$NETWATCH_BIN" topics wait --timeout 30s
    # tansu 0.6.0's `header` table has no index on the record a header belongs to, so a
    # fetch scans every header for each record: reading back 10,000 records with headers
    # (`netwatch cdc postgres` events) took minutes. The index makes it a lookup
    # (docs/broker-notes.md); the e2e harness creates the same.
    if command -v python3 >/dev/null 2>&1; then
      python3 - "$BROKER_DATA/tansu.db" <<'PY' || echo "could not index tansu's headers; reading records with headers stays slow" >&2
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=10)
c.execute("CREATE INDEX IF NOT EXISTS netwatch_header_record ON header (topition, offset_id)")
c.commit()
PY
    fi
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
  watch)
    # Restarting is safe: tansu commits every append to SQLite before acknowledging it, and
    # Netwatch's producers never give a send up, so what was not acknowledged is sent again
    # with the same producer id and sequence and appended once. It only helps after an exit
    # or a panic: a paused or overloaded broker is left alone. A panic that comes back right
    # after restarts means a client whose idempotent send timed out is still connected
    # (docs/broker-notes.md); restarting again would not help.
    interval=${BROKER_WATCH_INTERVAL:-5}
    log=$BROKER_DATA/tansu.log
    export NETWATCH_BROKERS=127.0.0.1:$BROKER_PORT
    panics() { grep -c 'panicked at' "$log" 2>/dev/null || true; }
    seen=$(panics); seen=${seen:-0}
    silent_since=
    exited_since=
    restarts=()
    # Stopped by a signal: leave at once when sleeping, after a restart under way otherwise.
    trap 'exit 0' TERM INT
    while true; do
      sleep "$interval" &
      wait $! || true
      now=$(date +%s)
      count=$(panics); count=${count:-0}
      if [ "$count" -gt "$seen" ]; then
        seen=$count
        where=$(grep 'panicked at' "$log" | tail -1 | sed 's/.*panicked at //; s/:$//')
        recent=()
        for t in "${restarts[@]}"; do [ $((now - t)) -lt 600 ] && recent+=("$t"); done
        restarts=("${recent[@]}")
        if [ "${#restarts[@]}" -lt 3 ]; then
          echo "broker: tansu panicked at $where and fails every request until restarted; restarting it (its data is on disk, Netwatch resends what was not acknowledged)"
          restarts+=("$now")
          "$0" stop >/dev/null
          if "$0" start >/dev/null 2>&1; then
            echo "broker: running again after $(($(date +%s) - now)) s"
          fi
        else
          echo "broker: tansu panicked again at $where after 3 restarts in 10 minutes: a client whose idempotent send timed out is still connected (docs/broker-notes.md); stop it, then run make broker-up"
        fi
        silent_since=
        continue
      fi
      if ! running; then
        if [ -z "$exited_since" ]; then
          exited_since=$now
          echo "broker: tansu exited (see $log); restarting it"
        fi
        "$0" start >/dev/null 2>&1 || true
        continue
      fi
      if [ -n "$exited_since" ]; then
        echo "broker: running again after $((now - exited_since)) s"
        exited_since=
      fi
      if "$NETWATCH_BIN" topics wait --timeout 3s >/dev/null 2>&1; then
        if [ -n "$silent_since" ]; then
          echo "broker: answering again after $((now - silent_since)) s"
          silent_since=
        fi
      elif [ -z "$silent_since" ]; then
        silent_since=$now
        echo "broker: not answering on 127.0.0.1:$BROKER_PORT (paused or overloaded?); Netwatch keeps what it read and retries; not restarting it"
      fi
    done
    ;;
  *)
    echo "usage: $0 install|start|stop|status|watch" >&2
    exit 2
    ;;
esac
