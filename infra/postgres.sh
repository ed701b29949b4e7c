#!/usr/bin/env bash
# PostgreSQL for Netwatch's configuration-database source (`netwatch cdc postgres`,
# docs/cdc.md): a throw-away cluster with logical decoding, on loopback.
#
#   infra/postgres.sh install   install Debian's postgresql-15 and postgresql-15-wal2json
#                               unless both are there
#   infra/postgres.sh start     initdb under $PG_DATA if it is empty (wal_level=logical), start
#                               it on 127.0.0.1:$PG_PORT, create database $PG_DB with
#                               infra/postgres/schema.sql; wait until it answers
#   infra/postgres.sh stop      stop it by the pid in $PG_DATA/postmaster.pid
#   infra/postgres.sh status    say whether it runs (exit 1 when not)
#   infra/postgres.sh dsn       print the DSN netwatch connects with
#
# Environment:
#   PG_DATA   the cluster's folder (default: <repo>/data/postgres); its parent folders must
#             be readable by the postgres user when this runs as root
#   PG_PORT   TCP port on 127.0.0.1 (default 5433)
#   PG_DB     database (default netwatch)
#   PG_WAL_KEEP  max_slot_wal_keep_size (default 1GB): WAL a stalled slot may hold before
#             PostgreSQL invalidates it (docs/cdc.md)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
PG_DATA=${PG_DATA:-$top/data/postgres}
PG_PORT=${PG_PORT:-5433}
PG_DB=${PG_DB:-netwatch}
PG_WAL_KEEP=${PG_WAL_KEEP:-1GB}
packages=(postgresql-15 postgresql-15-wal2json)
bin=/usr/lib/postgresql/15/bin

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Run a PostgreSQL server program as the postgres user when we are root (initdb and the
# server refuse to run as root), as ourselves otherwise.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

installed() {
  [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ] && command -v psql >/dev/null 2>&1 &&
    [ -f /usr/lib/postgresql/15/lib/wal2json.so ]
}

psql_() {
  psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"
}

pid() {
  [ -f "$PG_DATA/postmaster.pid" ] && head -n1 "$PG_DATA/postmaster.pid"
}

running() {
  local p
  p=$(pid) || return 1
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null
}

cmd_install() {
  if installed; then
    echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') with wal2json is installed"
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "PostgreSQL 15 is missing and this machine has no apt-get: install ${packages[*]} by hand" >&2
    return 1
  fi
  echo "installing ${packages[*]} (Debian packages)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  installed || { echo "install finished but PostgreSQL 15 or wal2json is still missing" >&2; return 1; }
  # Debian's package starts its own cluster on 5432; Netwatch runs its own clusters.
  as_root pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
  echo "installed PostgreSQL $("$bin/postgres" --version | awk '{print $3}') with wal2json"
}

cmd_start() {
  installed || { echo "PostgreSQL 15 with wal2json is not installed (infra/postgres.sh install)" >&2; return 1; }
  if running; then
    echo "PostgreSQL already runs (pid $(pid)) on 127.0.0.1:$PG_PORT"
    return 0
  fi
  mkdir -p "$PG_DATA"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$PG_DATA" && chmod 700 "$PG_DATA"
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 --no-locale >"$PG_DATA.initdb.log" 2>&1 ||
      { cat "$PG_DATA.initdb.log" >&2; return 1; }
    cat >>"$PG_DATA/postgresql.conf" <<CONF
# Netwatch: logical decoding for netwatch cdc postgres (docs/cdc.md)
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = ''
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
max_slot_wal_keep_size = '$PG_WAL_KEEP'
fsync = off
CONF
    # PostgreSQL 15.20 and later name the libraries allowed as output plugins; older
    # releases do not know the setting (and allow any).
    # (Read whole, not piped into grep -q: its early exit would fail the pipeline at random.)
    settings=$(as_pg "$bin/postgres" --describe-config 2>/dev/null || true)
    if grep -q '^output_plugin_libraries' <<<"$settings"; then
      echo "output_plugin_libraries = 'pgoutput, test_decoding, wal2json'" >>"$PG_DATA/postgresql.conf"
    fi
  fi
  as_pg "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 60 start >/dev/null ||
    { tail -20 "$PG_DATA/server.log" >&2; return 1; }
  if [ "$(psql_ -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
    psql_ -d postgres -c "CREATE DATABASE $PG_DB"
    psql_ -d "$PG_DB" -f "$top/infra/postgres/schema.sql"
  fi
  echo "PostgreSQL runs (pid $(pid)) on 127.0.0.1:$PG_PORT, database $PG_DB: $(cmd_dsn)"
}

cmd_stop() {
  if ! running; then
    echo "PostgreSQL is not running"
    return 0
  fi
  local p
  p=$(pid)
  kill -INT "$p"
  for _ in $(seq 1 100); do
    kill -0 "$p" 2>/dev/null || { echo "PostgreSQL stopped"; return 0; }
    sleep 0.1
  done
  kill -KILL "$p" 2>/dev/null || true
  echo "PostgreSQL killed after 10 s"
}

cmd_dsn() {
  echo "host=127.0.0.1 port=$PG_PORT user=postgres dbname=$PG_DB"
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) if running; then echo "PostgreSQL runs (pid $(pid)) on 127.0.0.1:$PG_PORT"; else echo "PostgreSQL is not running"; exit 1; fi ;;
  dsn) cmd_dsn ;;
  *) echo "usage: $0 install|start|stop|status|dsn" >&2; exit 2 ;;
esac
