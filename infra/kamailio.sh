#!/usr/bin/env bash
# Install, start and stop the local Kamailio 5.6 SIP server used by Netwatch's SIP tests.
#
#   infra/kamailio.sh install   install the Debian packages unless kamailio and its modules are present
#   infra/kamailio.sh start     start it with infra/kamailio/kamailio.cfg on 127.0.0.1; wait until
#                               the SIP and evapi ports accept connections
#   infra/kamailio.sh stop      stop it by its pid file
#   infra/kamailio.sh status    say whether it runs (exit 1 when not)
#   infra/kamailio.sh check     check the configuration only (kamailio -c)
#   infra/kamailio.sh crash     SIGKILL the main process and all its workers (failure tests)
#
# Environment:
#   KAMAILIO_DATA        run dir: pid file, log, runtime files (default: <repo>/data/kamailio)
#   KAMAILIO_SIP_PORT    SIP over UDP and TCP (default 5070)
#   KAMAILIO_EVAPI_PORT  evapi event stream, TCP, netstring framing (default 8448)
#   KAMAILIO_RPC_PORT    JSON-RPC over HTTP, POST /RPC (default 8449)
#   KAMAILIO_UL_TIMER    seconds between usrloc expiry scans (default 5)
#   KAMAILIO_LOG_EVENTS  1: also write every event to the log (default 0)
#   KAMAILIO_SHM_MB      shared memory in MB (default 128)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cfg=$top/infra/kamailio/kamailio.cfg
KAMAILIO_DATA=${KAMAILIO_DATA:-$top/data/kamailio}
KAMAILIO_SIP_PORT=${KAMAILIO_SIP_PORT:-5070}
KAMAILIO_EVAPI_PORT=${KAMAILIO_EVAPI_PORT:-8448}
KAMAILIO_RPC_PORT=${KAMAILIO_RPC_PORT:-8449}
KAMAILIO_UL_TIMER=${KAMAILIO_UL_TIMER:-5}
KAMAILIO_LOG_EVENTS=${KAMAILIO_LOG_EVENTS:-0}
KAMAILIO_SHM_MB=${KAMAILIO_SHM_MB:-128}
pidfile=$KAMAILIO_DATA/kamailio.pid
logfile=$KAMAILIO_DATA/kamailio.log

# Debian bookworm: evapi and jansson are in kamailio-extra-modules, jsonrpcs and xhttp in
# kamailio itself; the json module (not used by the config) is in kamailio-json-modules.
packages=(kamailio kamailio-extra-modules kamailio-json-modules sip-tester)
needed_modules=(evapi jansson jsonrpcs xhttp dialog usrloc registrar tm tmx cfgutils)

kamailio_bin() {
  command -v kamailio 2>/dev/null || { [ -x /usr/sbin/kamailio ] && echo /usr/sbin/kamailio; } || true
}

module_dir() {
  local d
  for d in /usr/lib/x86_64-linux-gnu/kamailio/modules /usr/lib/aarch64-linux-gnu/kamailio/modules \
           /usr/lib64/kamailio/modules /usr/lib/kamailio/modules; do
    if [ -d "$d" ]; then echo "$d"; return 0; fi
  done
  return 1
}

installed() {
  local bin dir m
  bin=$(kamailio_bin)
  [ -n "$bin" ] || return 1
  command -v sipp >/dev/null 2>&1 || return 1
  dir=$(module_dir) || return 1
  for m in "${needed_modules[@]}"; do
    [ -f "$dir/$m.so" ] || return 1
  done
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# alive PID: the process exists and is not a zombie (a reparented kamailio killed with -9
# may stay a zombie where nothing reaps it, and kill -0 would still succeed)
alive() {
  [ -r "/proc/$1/stat" ] && awk '{ exit ($3 == "Z") }' "/proc/$1/stat" 2>/dev/null
}

running() {
  [ -s "$pidfile" ] && alive "$(cat "$pidfile")"
}

# true while any process of the group started by `start` is alive: after a kill -9 of the
# main process alone its workers go on serving SIP, evapi and JSON-RPC
# (cat, not awk, opens the files: a process that exits between the glob and the read
# makes mawk stop with an error, which read as "no process left" and left Kamailio running)
group_alive() {
  [ -s "$pidfile" ] || return 1
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v g="$(cat "$pidfile")" '$5 == g && $3 != "Z" { found = 1 } END { exit !found }'
}

# port_open PORT: true when 127.0.0.1:PORT accepts a TCP connection
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

defines() {
  printf '%s\n' -A "SIP_PORT=$KAMAILIO_SIP_PORT" -A "RPC_PORT=$KAMAILIO_RPC_PORT" \
    -A "EVAPI_BIND=\"127.0.0.1:$KAMAILIO_EVAPI_PORT\"" -A "UL_TIMER=$KAMAILIO_UL_TIMER"
  if [ "$KAMAILIO_LOG_EVENTS" = 1 ]; then printf '%s\n' -A LOG_EVENTS; fi
}

cmd_install() {
  if installed; then
    echo "kamailio $("$(kamailio_bin)" -v 2>/dev/null | awk 'NR==1{print $3}') and sipp are installed"
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "kamailio is missing and this machine has no apt-get: install ${packages[*]} by hand" >&2
    return 1
  fi
  echo "installing ${packages[*]} (Debian packages)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  # the Debian package may start and enable a system-wide kamailio on 5060; Netwatch does not use it
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    as_root systemctl disable --now kamailio >/dev/null 2>&1 || true
  fi
  installed || { echo "install finished but kamailio, its modules or sipp are still missing" >&2; return 1; }
  echo "installed kamailio $("$(kamailio_bin)" -v 2>/dev/null | awk 'NR==1{print $3}') and sipp"
}

cmd_check() {
  local bin
  bin=$(kamailio_bin)
  [ -n "$bin" ] || { echo "kamailio is not installed (infra/kamailio.sh install)" >&2; return 1; }
  mkdir -p "$KAMAILIO_DATA"
  mapfile -t defs < <(defines)
  "$bin" -c -f "$cfg" "${defs[@]}" -Y "$KAMAILIO_DATA"
}

where() {
  echo "kamailio (pid $(cat "$pidfile")): SIP udp+tcp 127.0.0.1:$KAMAILIO_SIP_PORT," \
    "evapi tcp 127.0.0.1:$KAMAILIO_EVAPI_PORT (netstring)," \
    "JSON-RPC http://127.0.0.1:$KAMAILIO_RPC_PORT/RPC, log $logfile"
}

cmd_start() {
  local bin pid p
  bin=$(kamailio_bin)
  [ -n "$bin" ] || { echo "kamailio is not installed (infra/kamailio.sh install)" >&2; return 1; }
  mkdir -p "$KAMAILIO_DATA"
  if running; then
    echo "already running"; where
    return 0
  fi
  if group_alive; then
    echo "workers of a kamailio whose main process died are still running: stopping them"
    cmd_stop
  fi
  for p in "$KAMAILIO_SIP_PORT" "$KAMAILIO_EVAPI_PORT" "$KAMAILIO_RPC_PORT"; do
    if port_open "$p"; then
      echo "port 127.0.0.1:$p is already in use by another process" >&2
      return 1
    fi
  done
  rm -f "$pidfile"  # a pid left by a crash must not be taken for the new one
  mapfile -t defs < <(defines)
  # -DD: the main process stays in the foreground of this background job (no daemonizing),
  # so its stderr goes to the log; -E: log to stderr; -P: pid file of the main process.
  # setsid keeps it out of the caller's process group (Ctrl-C of a `make` target).
  setsid "$bin" -DD -E -f "$cfg" "${defs[@]}" -P "$pidfile" -Y "$KAMAILIO_DATA" \
    -m "$KAMAILIO_SHM_MB" -M 16 </dev/null >>"$logfile" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "kamailio exited during start; last lines of $logfile:" >&2
      tail -n 20 "$logfile" >&2
      rm -f "$pidfile"
      return 1
    fi
    if port_open "$KAMAILIO_SIP_PORT" && port_open "$KAMAILIO_EVAPI_PORT" && [ -s "$pidfile" ]; then
      where
      return 0
    fi
    sleep 0.1
  done
  echo "kamailio did not open 127.0.0.1:$KAMAILIO_SIP_PORT and :$KAMAILIO_EVAPI_PORT within 10 s" >&2
  kill "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  return 1
}

cmd_stop() {
  local pid
  if group_alive; then
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do group_alive || break; sleep 0.1; done
    # still there after 5 s (or the main process was gone and left its workers): kill the
    # whole process group (started with setsid: this kamailio and its workers only)
    if group_alive; then kill -9 -- "-$pid" 2>/dev/null || true; fi
    echo "kamailio stopped"
  fi
  rm -f "$pidfile"
}

# simulate a crash: SIGKILL to every process of the group, pid file left in place
cmd_crash() {
  if group_alive; then
    kill -9 -- "-$(cat "$pidfile")" 2>/dev/null || true
    echo "kamailio killed (SIGKILL to its process group)"
  else
    echo "kamailio not running"
  fi
}

cmd_status() {
  if running; then
    where
  elif group_alive; then
    echo "kamailio main process is gone but its workers still run (infra/kamailio.sh stop)"
    return 1
  else
    echo "kamailio not running"
    return 1
  fi
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  check) cmd_check ;;
  crash) cmd_crash ;;
  *) echo "usage: $0 install|start|stop|status|check|crash" >&2; exit 2 ;;
esac
