#!/usr/bin/env bash
# `make bench`: run the benchmarks against a fresh broker of their own and rewrite
# docs/benchmarks.md with the figures, the machine and the command.
#
# The defaults fit the whole run, the release build included, in 15 minutes on 2 cores
# (the section times are at the end of the document); the issue's full sizes take about 30:
#
#   BENCH_EVENTS=100000 BENCH_APPLY_EVENTS=300000 BENCH_REPLAY_EVENTS=1000000 \
#   BENCH_REPLAY_RUNS=3 BENCH_CONFIG_RUNS=3 BENCH_REGISTRATION_RUNS=3 BENCH_LIVE_SECONDS=20 \
#   BENCH_SIP_CALLS=6000 infra/bench.sh
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/target/release/netwatch
events=${BENCH_EVENTS:-30000}
runs=${BENCH_RUNS:-3}
port=${BENCH_BROKER_PORT:-19692}
data=$(mktemp -d /tmp/netwatch-bench.XXXXXX)
trap 'BROKER_DATA=$data BROKER_PORT=$port "$top/infra/broker.sh" stop >/dev/null; rm -rf "$data"' EXIT

# fresh_broker: an empty broker for the next section. tansu keeps every record in one
# SQLite file; after the replay's millions of records every request is slower, and the
# whole-system sections (registration, live, Kamailio) would measure that instead.
fresh_broker() {
  BROKER_DATA=$data BROKER_PORT=$port "$top/infra/broker.sh" stop >/dev/null 2>&1 || true
  rm -rf "${data:?}"/*
  BROKER_DATA=$data BROKER_PORT=$port NETWATCH_BIN=$bin "$top/infra/broker.sh" start >/dev/null
}
# Wall clock per section, for the table at the end (the whole run must fit in 15 minutes).
times="| section | seconds |
|---|---:|"
# timed LABEL SINCE: add a row for the section that began at SINCE (a $SECONDS value).
timed() { times+=$'\n'"| $1 | $((SECONDS - $2)) |"; }

# One build for the binary and the criterion bench (one feature resolution, so the bench
# reuses the binary's dependencies), without the ScyllaDB driver: every figure here is of
# the embedded store, and the driver is about a minute of a release build on 2 cores.
packages=(--no-default-features -p netwatch -p netwatch-schemas)
since=$SECONDS
echo "running: cargo build --release ${packages[*]} --bin netwatch --bench codec" >&2
(cd "$top" && ${CARGO:-cargo} build --release "${packages[@]}" --bin netwatch --bench codec >&2)
timed "release build (\`cargo build --release ${packages[*]} --bin netwatch --bench codec\`)" "$since"

fresh_broker
export NETWATCH_BROKERS=127.0.0.1:$port

# measure NAME COMMAND...: run a figure's command (progress on stderr), print its table and
# keep it in the variable NAME for the document.
measure() {
  local name=$1; shift
  echo "running: $*" >&2
  local since=$SECONDS
  local out; out=$("$@")
  echo "$out"
  printf -v "$name" '%s' "$out"
  timed "\`netwatch ${2:-} ${3:-}\`" "$since"
}

# Criterion first: it needs the machine to itself, before the broker has work.
codec_command="${CARGO:-cargo} bench ${packages[*]} --bench codec -- --warm-up-time 0.5 --measurement-time 1.5"
echo "running: $codec_command" >&2
since=$SECONDS
(cd "$top" && $codec_command >&2)
timed "codec benches (\`cargo bench\`)" "$since"
measure codec_table "$bin" bench codec --dir "$top/target/criterion"

apply_events=${BENCH_APPLY_EVENTS:-100000}
measure apply_table "$bin" bench apply --events "$apply_events" --runs "$runs"

links=${BENCH_LINKS:-10}
measure table "$bin" bench capture --events "$events" --links "$links" --runs "$runs"

replay_events=${BENCH_REPLAY_EVENTS:-200000}
replay_runs=${BENCH_REPLAY_RUNS:-2}
measure replay_table "$bin" bench replay --events "$replay_events" --runs "$replay_runs"

tservers=${BENCH_TSERVERS:-1000}
dns=${BENCH_DNS:-100}
config_runs=${BENCH_CONFIG_RUNS:-2}
measure config_table "$bin" bench config --tservers "$tservers" --dns "$dns" --runs "$config_runs"
fresh_broker
registration_runs=${BENCH_REGISTRATION_RUNS:-2}
measure registration_table "$bin" bench registration --tservers "$tservers" --dns "$dns" --runs "$registration_runs"

live_seconds=${BENCH_LIVE_SECONDS:-8}
fresh_broker
measure live_table "$bin" bench live --rates 1000,5000 --seconds "$live_seconds" --clients 200

sip_rate=${BENCH_SIP_RATE:-300}
sip_calls=${BENCH_SIP_CALLS:-2000}
fresh_broker
measure sip_table "$bin" bench sip --rate "$sip_rate" --calls "$sip_calls" --runs 2 --repo "$top"

cdc_changes=${BENCH_CDC_CHANGES:-10000}
fresh_broker
measure cdc_table "$bin" bench cdc --changes "$cdc_changes" --per-txn 10 --runs 2 --repo "$top"

# The first `make run` takes a fresh machine (about 20 minutes): infra/first-run.sh measures
# it apart and keeps its results; the table shows the latest.
first_runs=$top/docs/benchmarks.first-run.md
last_first_run=$(grep -o 'after [0-9.]* min' "$first_runs" 2>/dev/null | tail -1 | awk '{print $2}' || true)
if [ -n "$last_first_run" ]; then
  met=$(awk -v m="$last_first_run" 'BEGIN { print (m <= 10 ? "yes" : "**no**") }')
  first_run_table="| figure | target | latest | met |
|---|---|---:|---|
| first \`make run\` on a fresh machine until \"Netwatch is running\" | ≤ 10 min | $last_first_run min | $met |"
else
  first_run_table="Not measured on this machine yet: run \`infra/first-run.sh\`."
fi
echo "$first_run_table"

times+=$'\n'"| **the whole \`make bench\`** | **$SECONDS** (target ≤ 900) |"
echo "$times"

cores=$(nproc)
memory=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
{
  cat <<DOC
# Benchmarks

Written by \`make bench\` (infra/bench.sh) on $(date -u +%Y-%m-%d): release build, a fresh
tansu 0.6.0 broker with SQLite storage on the same machine (emptied again before the
registration, live system and Kamailio sections), every figure the median of the runs
its command names, with min and max. The sizes are the ones that fit the whole run, the
release build included, in 15 minutes on this machine (see "Time of this run" at the end);
\`BENCH_REPLAY_EVENTS=1000000\` and the other variables at the top of infra/bench.sh give
the issue's full sizes.

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

Command: \`make bench\`, which runs \`netwatch bench replay --events $replay_events --runs $replay_runs\`
against its own broker.

$replay_table

- The same simulated calls appended once to \`calls\` (8 partitions, 10 keys).
- *raw consume*: a plain rdkafka consumer assigned every partition from the start, until
  it has received every record.
- *replay*: \`netwatch replay\`'s code path into a fresh embedded store: a new generation
  built in its own consumer group, the switch of readers to it, the 2 s grace for queries
  in flight and the old generation dropped — wall clock of the whole command.

## Configuration

Command: \`make bench\`, which runs \`netwatch bench config --tservers $tservers --dns $dns --runs $config_runs\`
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
  cat <<DOC

## Registration

Command: \`make bench\`, which runs \`netwatch bench registration --tservers $tservers --dns $dns --runs $registration_runs\`
against its own broker.

$registration_table

- This process serves $tservers simulated T-Servers (one port each, $dns DNs each); a
  \`netwatch dispatcher\` and a \`netwatch monitor\` run as processes of their own. Once the
  monitor owns every slot, \`netwatch config import\` appends the site; the figure is the
  time from the import's start until every DN is registered at its simulator (the
  simulators' own registration tables, polled every 50 ms). Memory is the monitor
  process's resident set (\`/proc/PID/status\`) at that moment and its peak until then.

## Live system

Command: \`make bench\`, which runs \`netwatch bench live --rates 1000,5000 --seconds $live_seconds --clients 200\`
against its own broker.

$live_table

- \`netwatch up\` (dispatcher, monitor, projections, HTTP API in one process, embedded
  store) runs as its own process; for each figure a new simulated T-Server of 100 DNs
  streams short inbound calls (ring, answer, release) at the given rate.
- *end-to-end latency*: four clients each poll one DN's row
  (\`GET /v1/tservers/T/dns/DN\`, one request every 2 ms); whenever the row's
  \`updated_ms\` (the T-Server's timestamp of the event that changed it last) changes, the
  sample is the wall clock at the answer minus that timestamp (same machine, same clock;
  resolution 1 ms, plus up to the 2 ms between polls). Measured after 3 s of warm-up.
- *HTTP latency*: 200 clients, each on its own keep-alive connection, each asking every
  100 ms for a DN's row (three times in four) or the T-Server's list of 100 DN rows, while
  the stream runs at the highest rate; the time from sending a request to the last byte of
  its answer.

## Kamailio

Command: \`make bench\`, which runs \`netwatch bench sip --rate $sip_rate --calls $sip_calls --runs 2\`
against its own broker and a Kamailio of its own (\`infra/kamailio.sh\`).

$sip_table

- A real Kamailio 5.6 (docs/sip.md) watched by \`netwatch dispatcher\` and \`netwatch monitor\`
  as processes; 100 callee users registered by SIPp, then SIPp places $sip_calls calls at
  $sip_rate calls/s between 100 caller and the 100 callee users (ring 200 ms, talk 500 ms,
  the caller hangs up: six call events each).
- *raw*: the calls SIPp completed per second of its run, through Kamailio: the ceiling.
- *captured*: the same calls per second from SIPp's start until the last of their
  releases (Released at the caller) was appended to \`calls\`.

## Configuration database (CDC)

Command: \`make bench\`, which runs \`netwatch bench cdc --changes $cdc_changes --per-txn 10 --runs 2\`
against its own broker and a PostgreSQL 15 cluster of its own (\`infra/postgres.sh\`).

$cdc_table

- The provisioning schema of infra/postgres/schema.sql; the changes are what the CDC
  test writes: a T-Server, then its DNs inserted (half), retyped (three in ten) and deleted
  (two in ten) at random, ten per transaction, each transaction one round trip of one
  client. The cluster is a throw-away one (\`fsync = off\`).
- *raw broker*: a plain idempotent producer appending as many \`config\` records of the
  same size and headers (slot, position), all in flight, connected before the clock starts.
- *raw PostgreSQL*: the backlog decoded by wal2json (format 2) in one
  \`pg_logical_slot_peek_changes\` over the slot, as the CDC reads it: PostgreSQL's ceiling.
- *backlog*: \`netwatch cdc postgres\` (a process of its own, default \`--batch 1000\`)
  started after the changes were committed; from its start (reading \`config\` to resume
  included) until the slot's \`confirmed_flush_lsn\` passed the last transaction — the slot
  advances only after the broker acknowledged, so every change is appended by then.
- *live*: the same number of changes committed while the process streams; from the first
  commit until the slot passed the last. Bounded by the writer (the row above) when the CDC
  keeps up.
- Each run then checks that \`config\` holds one event per row of the trigger's change log
  and \`deadletter\` none.
DOC
  cat <<DOC

## First run

Command: \`infra/first-run.sh\` (apart from \`make bench\`: it takes a fresh machine).

$first_run_table

- A clone of HEAD with an empty cargo home (every crate downloaded, tansu installed from
  source, netwatch built from nothing), timed from \`make run\` until it prints "Netwatch is
  running". Every measurement so far:

$(cat "$first_runs" 2>/dev/null || true)

## Time of this run

Wall clock of each section of this \`make bench\` (the broker and Kamailio already
installed; the release build from where the target directory was).

$times
DOC
  if [ -f "$top/docs/benchmarks.notes.md" ]; then echo; cat "$top/docs/benchmarks.notes.md"; fi
} > "$top/docs/benchmarks.md"
echo "wrote docs/benchmarks.md" >&2
