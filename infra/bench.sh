#!/usr/bin/env bash
# `make bench`: run the benchmarks against a fresh broker of their own and rewrite
# docs/benchmarks.md with the figures, the machine and the command.
#
#   BENCH_EVENTS=100000 BENCH_RUNS=3 infra/bench.sh
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/target/release/netwatch
events=${BENCH_EVENTS:-100000}
runs=${BENCH_RUNS:-3}
port=${BENCH_BROKER_PORT:-19692}
data=$(mktemp -d /tmp/netwatch-bench.XXXXXX)
trap 'BROKER_DATA=$data BROKER_PORT=$port "$top/infra/broker.sh" stop >/dev/null; rm -rf "$data"' EXIT

BROKER_DATA=$data BROKER_PORT=$port NETWATCH_BIN=$bin "$top/infra/broker.sh" start >/dev/null
export NETWATCH_BROKERS=127.0.0.1:$port

command="$bin bench capture --events $events --runs $runs"
echo "running: $command" >&2
table=$($command)
echo "$table"

tservers=${BENCH_TSERVERS:-1000}
dns=${BENCH_DNS:-100}
config_command="$bin bench config --tservers $tservers --dns $dns --runs $runs"
echo "running: $config_command" >&2
config_table=$($config_command)
echo "$config_table"

cores=$(nproc)
memory=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
{
  cat <<DOC
# Benchmarks

Written by \`make bench\` (infra/bench.sh) on $(date -u +%Y-%m-%d): release build, a fresh
tansu 0.6.0 broker with SQLite storage on the same machine, every figure the median of
$runs runs with min and max.

Machine: $cores cores ($cpu), $memory.

## Capture

Command: \`make bench\`, which runs \`netwatch bench capture --events $events --runs $runs\`
against its own broker.

$table

- *raw produce*: the records the monitor appends for simulated calls (same size,
  pre-encoded), sent by a plain idempotent rdkafka producer (acks=all, linger 5 ms) with
  every send in flight: the broker's ceiling for this partition.
- *capture*: a simulated T-Server streams the events as fast as it can write them to one
  CTI link; the monitor's link reads, parses and encodes each and appends it through the
  pipelined emitter (at most 20,000 in flight); timed from the moment every DN is registered
  to the broker's acknowledgement of the last event.

## Configuration

Command: \`make bench\`, which runs \`netwatch bench config --tservers $tservers --dns $dns --runs $runs\`
against its own broker.

$config_table

- *config import*: \`netwatch config import\` of a file creating every T-Server and DN,
  timed from the process's start to its exit (validation in memory, then every change handed
  to the idempotent producer at once and the acknowledgements awaited).
- *one command*: \`netwatch config dn create\` as a new process, with the site configured and
  the snapshot the previous command left (\`data/config-snapshots/\`): it reads only the
  \`config\` records appended since, checks that the record the snapshot saw last is still
  at its offset, validates, appends one record. Without a snapshot it reads the whole topic.
DOC
  if [ -f "$top/docs/benchmarks.notes.md" ]; then echo; cat "$top/docs/benchmarks.notes.md"; fi
} > "$top/docs/benchmarks.md"
echo "wrote docs/benchmarks.md" >&2
