#!/usr/bin/env bash
# `make bench`: run the benchmarks against a fresh broker of their own and rewrite
# docs/benchmarks.md with the figures, the machine and the command.
#
#   BENCH_EVENTS=100000 BENCH_RUNS=3 BENCH_REPLAY_EVENTS=1000000 infra/bench.sh
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

# Criterion first: it needs the machine to itself, before the broker has work.
codec_command="cargo bench -p netwatch-schemas --bench codec -- --warm-up-time 1 --measurement-time 3"
echo "running: $codec_command" >&2
(cd "$top" && $codec_command >&2)
codec_table=$("$bin" bench codec --dir "$top/target/criterion")
echo "$codec_table"

apply_events=${BENCH_APPLY_EVENTS:-300000}
apply_command="$bin bench apply --events $apply_events --runs $runs"
echo "running: $apply_command" >&2
apply_table=$($apply_command)
echo "$apply_table"

links=${BENCH_LINKS:-10}
command="$bin bench capture --events $events --links $links --runs $runs"
echo "running: $command" >&2
table=$($command)
echo "$table"

replay_events=${BENCH_REPLAY_EVENTS:-1000000}
replay_command="$bin bench replay --events $replay_events --runs $runs"
echo "running: $replay_command" >&2
replay_table=$($replay_command)
echo "$replay_table"

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

## Codec

Command: \`make bench\`, which runs \`$codec_command\` and reads criterion's
results with \`netwatch bench codec\`.

$codec_table

- One event of each topic in the single-object encoding the topics carry: a ringing call
  event (the capture path's record), a DN creation, a DN registration command, a monitor
  heartbeat. Min and max are criterion's slowest and fastest sample.

## Projection apply

Command: \`make bench\`, which runs \`netwatch bench apply --events $apply_events --runs $runs\`.

$apply_table

- Simulated inbound calls (ringing, established, released at an agent DN; 10 T-Servers of
  100 DNs) decoded and folded by each projection's applier into a fresh embedded SQLite
  store, in the runner's batches (500 records, one transaction each), without a broker.
  The 15-minute statistics are kept by call-history (\`interval_legs\`), so "every
  projection" covers them.

## Capture

Command: \`make bench\`, which runs \`netwatch bench capture --events $events --links $links --runs $runs\`
against its own broker.

$table

- *raw produce*: the records the monitor appends for simulated calls (same size,
  pre-encoded), sent by a plain idempotent rdkafka producer (acks=all, linger 5 ms) with
  every send in flight: the broker's ceiling for this partition.
- *capture*: a simulated T-Server streams the events as fast as it can write them to one
  CTI link; the monitor's link reads, parses and encodes each and appends it through the
  pipelined emitter (at most 20,000 in flight); timed from the moment every DN is registered
  to the broker's acknowledgement of the last event. With several links, each simulated
  T-Server has its own link and key (and so its partition); the ceiling is the raw
  producer over the same keys.

## Replay

Command: \`make bench\`, which runs \`netwatch bench replay --events $replay_events --runs $runs\`
against its own broker.

$replay_table

- The same simulated calls appended once to \`calls\` (8 partitions, 10 keys).
- *raw consume*: a plain rdkafka consumer assigned every partition from the start, until
  it has received every record.
- *replay*: \`netwatch replay\`'s code path into a fresh embedded store: a new generation
  built in its own consumer group, the switch of readers to it, the 2 s grace for queries
  in flight and the old generation dropped — wall clock of the whole command.

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
