//! `netwatch bench ...`: whole-system benchmarks against a running broker, printed as a
//! table with the ratio to the raw broker (docs/benchmarks.md).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use netwatch_eventlog::{create_topics, wait_until_ready, Log, LogError, Producer, Record, Topic, Topics};
use netwatch_processors::monitor::{LinkHandle, LinkSettings};
use netwatch_producers::sim::{SimConfig, SimMode, Wire};
use netwatch_projections::runner::apply_in_process;
use netwatch_projections::store::SqliteStore;
use netwatch_projections::Projection;
use netwatch_schemas::calls::{CallBody, CallEvent, CallType, TEventKind, Telephony};
use netwatch_schemas::config::TServer;
use netwatch_schemas::encode;
use rdkafka::producer::DeliveryFuture;
use tokio::net::TcpListener;

use crate::{input, CliError, Ctx};

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// One CTI link capturing a burst of events into `calls`, against a plain rdkafka
    /// producer of the same records on the same broker.
    Capture(CaptureArgs),
    /// `netwatch config import` of a whole site, then single `netwatch config` commands
    /// with that site configured (each a separate process, timed from spawn to exit).
    Config(ConfigArgs),
    /// The projections' folds and the embedded store applying simulated calls in this
    /// process, without a broker.
    Apply(ApplyArgs),
    /// A plain rdkafka consumer reading simulated calls from `calls`, against
    /// `netwatch replay` of each projection over the same records.
    Replay(ReplayArgs),
    /// 1,000 simulated T-Servers × 100 DNs imported while a dispatcher and a monitor run
    /// (processes of this binary): time until every DN is registered, monitor memory.
    Registration(crate::bench_live::RegistrationArgs),
    /// `netwatch up` fed by a simulated T-Server streaming at given rates: end-to-end
    /// latency to the HTTP API, then HTTP latency under many concurrent clients.
    Live(crate::bench_live::LiveArgs),
    /// A real Kamailio watched by a dispatcher and a monitor, SIPp placing calls: calls/s
    /// completed through Kamailio against calls/s whose release reached `calls`.
    Sip(crate::bench_sip::SipArgs),
    /// A real PostgreSQL taking plain SQL writes, `netwatch cdc postgres` streaming them
    /// into `config`: changes/s of a backlog and of live writes, against wal2json's own
    /// decoding and a plain producer.
    Cdc(crate::bench_cdc::CdcArgs),
    /// The table of the criterion benches (`cargo bench -p netwatch-schemas --bench codec`)
    /// from their results under `--dir`.
    Codec(CodecArgs),
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Events to apply (three per simulated call).
    #[arg(long, default_value_t = 300_000)]
    events: u64,
    /// Runs of each figure; the table shows the median with min and max.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Events in `calls` (three per simulated call).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Runs of each figure; the table shows the median with min and max.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[derive(Args, Debug)]
pub struct CodecArgs {
    /// Where criterion wrote its results (`target/criterion`).
    #[arg(long, default_value = "target/criterion")]
    dir: std::path::PathBuf,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// T-Servers of the imported site.
    #[arg(long, default_value_t = 1_000)]
    tservers: i32,
    /// DNs per T-Server.
    #[arg(long, default_value_t = 100)]
    dns: i32,
    /// Runs of each figure; the table shows the median with min and max.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// Events per run.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Links capturing together in the second figure (one T-Server each).
    #[arg(long, default_value_t = 10)]
    links: i32,
    /// Runs of each figure; the table shows the median with min and max.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

pub async fn run(ctx: &Ctx, cmd: BenchCmd) -> Result<(), CliError> {
    match cmd {
        BenchCmd::Capture(args) => capture(ctx, args).await,
        BenchCmd::Config(args) => config(ctx, args).await,
        BenchCmd::Apply(args) => apply(ctx, args).await,
        BenchCmd::Replay(args) => replay(ctx, args).await,
        BenchCmd::Codec(args) => codec(&args.dir),
        BenchCmd::Registration(args) => crate::bench_live::registration(ctx, args).await,
        BenchCmd::Live(args) => crate::bench_live::live(ctx, args).await,
        BenchCmd::Sip(args) => crate::bench_sip::sip(ctx, args).await,
        BenchCmd::Cdc(args) => crate::bench_cdc::cdc(ctx, args).await,
    }
}

/// A measured figure: events per second of each run.
struct Figure {
    name: &'static str,
    events: u64,
    rates: Vec<f64>,
}

impl Figure {
    fn new(name: &'static str, events: u64) -> Self {
        Figure { name, events, rates: Vec::new() }
    }
    fn median(&self) -> f64 {
        spread(&self.rates).0
    }
    fn min(&self) -> f64 {
        self.rates.iter().copied().fold(f64::INFINITY, f64::min)
    }
    fn max(&self) -> f64 {
        self.rates.iter().copied().fold(0.0, f64::max)
    }
}

async fn capture(ctx: &Ctx, args: CaptureArgs) -> Result<(), CliError> {
    if args.events == 0 || args.runs == 0 {
        return Err(input("--events and --runs must be at least 1"));
    }
    wait_until_ready(&ctx.kafka, Duration::from_secs(30)).await?;
    let topics = Topics { prefix: format!("bench-{}.", &uuid::Uuid::new_v4().simple().to_string()[..8]), ..ctx.topics.clone() };
    create_topics(&ctx.kafka, &topics).await?;
    let log = Log::new(ctx.kafka.clone(), topics)?;
    eprintln!("topics {}*, {} events per run, {} runs", log.topics.prefix, args.events, args.runs);
    if args.links < 1 {
        return Err(input("--links must be at least 1"));
    }
    let mut raw = Figure::new("raw produce: plain rdkafka producer, same records, one key", args.events);
    let mut link = Figure::new("capture: one CTI link into calls", args.events);
    let many = format!("{} keys", args.links);
    let mut raw_many = Figure::new("raw produce: the same over the partitions of", args.events);
    let mut links = Figure::new("capture: CTI links together into calls:", args.events);
    for run in 1..=args.runs {
        let r = raw_produce(&log, args.events, 1).await?;
        eprintln!("run {run}: raw produce {r:.0} events/s");
        raw.rates.push(r);
        let c = capture_links(&log, args.events, 1, run as i32).await?;
        eprintln!("run {run}: one link {c:.0} events/s");
        link.rates.push(c);
        let r = raw_produce(&log, args.events, args.links).await?;
        eprintln!("run {run}: raw produce over {many}: {r:.0} events/s");
        raw_many.rates.push(r);
        let c = capture_links(&log, args.events, args.links, run as i32).await?;
        eprintln!("run {run}: {} links {c:.0} events/s", args.links);
        links.rates.push(c);
    }
    println!("| figure | events | events/s (median) | min | max | ratio to raw | target | met |");
    println!("|---|---:|---:|---:|---:|---:|---|---|");
    row(&raw, "", &raw, None);
    row(&link, "", &raw, None);
    row(&raw_many, &many, &raw_many, None);
    row(&links, &format!("{}", args.links), &raw_many, Some(0.70));
    Ok(())
}

/// A call event of the size the monitor appends for a simulated inbound call.
fn sample_event(i: u64) -> CallEvent {
    CallEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        tserver: 1,
        monitor: "bench".into(),
        session: uuid::Uuid::new_v4().to_string(),
        server_time_ms: netwatch_schemas::now_ms(),
        link_seq: Some(i as i64 + 1),
        body: CallBody::Telephony(Telephony {
            kind: TEventKind::Ringing,
            dn: format!("{}", 5001 + i % 10),
            connid: format!("{:016x}", i),
            call_type: CallType::Inbound,
            other_dn: Some(format!("+1555{:07}", i % 10_000_000)),
            third_party_dn: None,
            previous_connid: None,
            cause: None,
            released_by: None,
        }),
    }
}

/// The ceiling: the same records, pre-encoded, from a plain idempotent producer with
/// every send in flight at once, keyed by `keys` T-Servers in turn.
async fn raw_produce(log: &Log, events: u64, keys: i32) -> Result<f64, CliError> {
    let records: Vec<Vec<u8>> = (0..events).map(|i| encode(&sample_event(i))).collect::<Result<_, _>>()?;
    let start = Instant::now();
    produce_all(log, records.iter().enumerate().map(|(i, r)| (1 + i as i32 % keys, r.as_slice()))).await?;
    Ok(events as f64 / start.elapsed().as_secs_f64())
}

/// Append every `(tserver, record)` to `calls` with a plain idempotent producer, all in
/// flight at once (as far as the producer's queue takes them), and await every ack.
async fn produce_all<'a>(log: &Log, records: impl Iterator<Item = (i32, &'a [u8])>) -> Result<(), CliError> {
    let producer = Producer::new(&log.kafka)?;
    let topic = log.topic(Topic::Calls);
    let mut pending: Vec<DeliveryFuture> = Vec::new();
    for (tserver, bytes) in records {
        let (key, partition) = (tserver.to_string(), log.topics.tserver_partition(tserver));
        loop {
            match producer.enqueue(&topic, &key, partition, bytes) {
                netwatch_eventlog::Enqueued::Taken(d) => break pending.push(d),
                netwatch_eventlog::Enqueued::QueueFull => tokio::time::sleep(Duration::from_millis(1)).await,
                netwatch_eventlog::Enqueued::Refused(reason) => return Err(CliError::Failed(anyhow::anyhow!(reason))),
            }
        }
    }
    for d in pending {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(CliError::Failed(e.into())),
            Err(_) => return Err(CliError::Failed(anyhow::anyhow!("the producer was closed"))),
        }
    }
    Ok(())
}

/// `links` simulated T-Servers stream `events` between them as fast as they can write
/// them, each to its own monitor link, which appends them to `calls`: from the moment every
/// link has registered its DNs to the broker's acknowledgement of the last event.
async fn capture_links(log: &Log, events: u64, links: i32, run: i32) -> Result<f64, CliError> {
    let dns: Vec<String> = (5001..=5010).map(|d| d.to_string()).collect();
    let mut sims = Vec::new();
    let mut handles = Vec::new();
    let (stop_sim, sim_shutdown) = tokio::sync::watch::channel(false);
    for t in 1..=links {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let count = events / links as u64 + u64::from((t as u64) <= events % links as u64);
        let sim = SimConfig {
            name: format!("BenchTServer{t}"),
            mode: SimMode::Stream { dns: dns.clone(), rate: 0.0, count: Some(count) },
            connid_base: ((run as u64) << 40) + ((t as u64) << 32),
            wire: Wire::Minimal,
            sent_log: None,
        };
        sims.push(tokio::spawn(netwatch_producers::sim::run(sim, listener, sim_shutdown.clone())));
        let tserver = TServer::cti(t, format!("BenchTServer{t}"), "127.0.0.1", i32::from(port));
        let wanted: BTreeSet<String> = dns.iter().cloned().collect();
        handles.push(LinkHandle::spawn(log.clone(), format!("bench-{run}"), tserver, wanted, LinkSettings::default()));
    }
    // LinkConnected and one DnRegistered per DN come before each stream.
    let before = links as u64 * (1 + dns.len() as u64);
    let mut start = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let captured: u64 = handles.iter().map(|h| h.stats.captured()).sum();
        if start.is_none() && handles.iter().all(|h| h.stats.registered() == dns.len() as i64) {
            start = Some(Instant::now());
        }
        if captured >= before + events {
            break;
        }
        if Instant::now() > deadline {
            return Err(CliError::Failed(anyhow::anyhow!("only {captured} of {} events appended in 10 minutes", before + events)));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = start.map(|s| s.elapsed()).unwrap_or_default();
    for handle in handles {
        handle.stop().await;
    }
    let _ = stop_sim.send(true);
    for sim in sims {
        let _ = sim.await;
    }
    log.producer.flush(Duration::from_secs(10))?;
    Ok(events as f64 / elapsed.as_secs_f64())
}

/// One table row: the figure's spread, its ratio to `ceiling` and, when given, whether
/// that ratio meets `target`.
fn row(f: &Figure, suffix: &str, ceiling: &Figure, target: Option<f64>) {
    let ratio = f.median() / ceiling.median();
    let (target, met) = match target {
        Some(t) => (format!("≥ {:.0} % of raw", t * 100.0), yes(ratio >= t).to_string()),
        None => ("—".to_string(), "—".to_string()),
    };
    let name = if suffix.is_empty() { f.name.to_string() } else { format!("{} {suffix}", f.name) };
    println!("| {name} | {} | {:.0} | {:.0} | {:.0} | {ratio:.2} | {target} | {met} |", f.events, f.median(), f.min(), f.max());
}

/// `calls` simulated inbound calls as the monitor appends them, three events each
/// (ringing, established, released at an agent DN), spread over `tservers` T-Servers of
/// 100 DNs each, every T-Server's events in their link order.
fn call_flows(calls: u64, tservers: i32) -> Vec<CallEvent> {
    let base = netwatch_schemas::now_ms() - 86_400_000;
    let mut seqs = vec![0i64; tservers as usize];
    let mut out = Vec::with_capacity(calls as usize * 3);
    for c in 0..calls {
        let t = (c % tservers as u64) as i32;
        let dn = format!("{}", 5001 + (c / tservers as u64) % 100);
        let connid = format!("{c:016x}");
        let at = base + c as i64 * 20;
        for (step, kind) in [TEventKind::Ringing, TEventKind::Established, TEventKind::Released].into_iter().enumerate() {
            seqs[t as usize] += 1;
            out.push(CallEvent {
                event_id: uuid::Uuid::new_v4().to_string(),
                tserver: t + 1,
                monitor: "bench".into(),
                session: "bench".into(),
                server_time_ms: at + step as i64 * 5_000,
                link_seq: Some(seqs[t as usize]),
                body: CallBody::Telephony(Telephony {
                    kind,
                    dn: dn.clone(),
                    connid: connid.clone(),
                    call_type: CallType::Inbound,
                    other_dn: Some(format!("+1555{:07}", c % 10_000_000)),
                    third_party_dn: None,
                    previous_connid: None,
                    cause: None,
                    released_by: None,
                }),
            });
        }
    }
    out
}

/// T-Servers the simulated calls of `apply` and `replay` are spread over.
const FLOW_TSERVERS: i32 = 10;

async fn apply(ctx: &Ctx, args: ApplyArgs) -> Result<(), CliError> {
    if args.events < 3 || args.runs == 0 {
        return Err(input("--events must be at least 3 and --runs at least 1"));
    }
    // Records as a consumer hands them over: offsets per partition in append order.
    let log = Log::new(ctx.kafka.clone(), ctx.topics.clone())?;
    let topic = log.topic(Topic::Calls);
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let records: Vec<Record> = call_flows(args.events / 3, FLOW_TSERVERS)
        .iter()
        .map(|e| {
            let partition = log.topics.tserver_partition(e.tserver);
            let offset = next.entry(partition).or_default();
            *offset += 1;
            Ok(Record {
                topic: topic.clone(),
                partition,
                offset: *offset - 1,
                key: Some(e.tserver.to_string().into_bytes()),
                value: Some(encode(e)?),
                timestamp_ms: Some(e.server_time_ms),
                headers: Vec::new(),
            })
        })
        .collect::<Result<_, CliError>>()?;
    let events = records.len() as u64;
    let dir = tempfile::tempdir()?;
    let mut figures: Vec<(Projection, Vec<f64>)> = Projection::ALL.iter().map(|p| (*p, Vec::new())).collect();
    let mut together = Vec::new();
    for run in 1..=args.runs {
        let store = SqliteStore::open(dir.path().join(format!("run{run}.db")))?;
        let mut total = 0.0;
        for (projection, rates) in figures.iter_mut() {
            let start = Instant::now();
            apply_in_process(&log, &store, *projection, &records).await.map_err(|e| CliError::Failed(e.into()))?;
            let took = start.elapsed().as_secs_f64();
            total += took;
            eprintln!("run {run}: {} applied {events} events in {took:.2} s", projection.name());
            rates.push(events as f64 / took);
        }
        together.push(events as f64 / total);
    }
    println!("| figure | events | events/s (median) | min | max | target | met |");
    println!("|---|---:|---:|---:|---:|---|---|");
    for (projection, rates) in &figures {
        let (m, lo, hi) = spread(rates);
        println!("| apply in process: {} | {events} | {m:.0} | {lo:.0} | {hi:.0} | — | — |", projection.name());
    }
    let (m, lo, hi) = spread(&together);
    println!(
        "| apply in process: every projection, one after the other | {events} | {m:.0} | {lo:.0} | {hi:.0} | ≥ 200,000/s | {} |",
        yes(m >= 200_000.0)
    );
    Ok(())
}

async fn replay(ctx: &Ctx, args: ReplayArgs) -> Result<(), CliError> {
    if args.events < 3 || args.runs == 0 {
        return Err(input("--events must be at least 3 and --runs at least 1"));
    }
    wait_until_ready(&ctx.kafka, Duration::from_secs(30)).await?;
    let topics = Topics { prefix: format!("bench-{}.", &uuid::Uuid::new_v4().simple().to_string()[..8]), ..ctx.topics.clone() };
    create_topics(&ctx.kafka, &topics).await?;
    let log = Log::new(ctx.kafka.clone(), topics)?;
    let flows = call_flows(args.events / 3, FLOW_TSERVERS);
    let events = flows.len() as u64;
    let records: Vec<(i32, Vec<u8>)> = flows.iter().map(|e| Ok((e.tserver, encode(e)?))).collect::<Result<_, CliError>>()?;
    drop(flows);
    let start = Instant::now();
    produce_all(&log, records.iter().map(|(t, r)| (*t, r.as_slice()))).await?;
    eprintln!("topics {}*: {events} events appended in {:.1} s", log.topics.prefix, start.elapsed().as_secs_f64());
    drop(records);
    let dir = tempfile::tempdir()?;
    let mut raw = Figure::new("raw consume: plain rdkafka consumer, every partition of calls", events);
    let mut figures: Vec<(Projection, Figure)> =
        Projection::ALL.iter().map(|p| (*p, Figure::new("replay (wall clock, new generation built and switched to):", events))).collect();
    for run in 1..=args.runs {
        let r = raw_consume(&log, events).await?;
        eprintln!("run {run}: raw consume {r:.0} events/s");
        raw.rates.push(r);
        for (projection, figure) in figures.iter_mut() {
            let store = SqliteStore::open(dir.path().join(format!("run{run}-{}.db", projection.name())))?;
            let (_stop, stop) = tokio::sync::watch::channel(false);
            let start = Instant::now();
            let done = netwatch_projections::replay::replay(log.clone(), store, *projection, &format!("bench{run}"), |_| {}, stop)
                .await
                .map_err(|e| CliError::Failed(e.into()))?;
            let took = start.elapsed().as_secs_f64();
            eprintln!("run {run}: replay {} {done:?} in {took:.1} s", projection.name());
            figure.rates.push(events as f64 / took);
        }
    }
    println!("| figure | events | events/s (median) | min | max | ratio to raw | target | met |");
    println!("|---|---:|---:|---:|---:|---:|---|---|");
    row(&raw, "", &raw, None);
    for (projection, figure) in &figures {
        row(figure, projection.name(), &raw, Some(0.80));
    }
    Ok(())
}

/// Read `events` records from every partition of `calls` from the start with a plain
/// consumer (assigned, no group work): events per second.
async fn raw_consume(log: &Log, events: u64) -> Result<f64, CliError> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: StreamConsumer =
        log.kafka.consumer(&format!("bench-raw-{}", uuid::Uuid::new_v4().simple())).create().map_err(LogError::from)?;
    let topic = log.topic(Topic::Calls);
    let mut assignment = TopicPartitionList::new();
    for partition in 0..log.topics.partitions(Topic::Calls) {
        assignment.add_partition_offset(&topic, partition, Offset::Beginning).map_err(LogError::from)?;
    }
    consumer.assign(&assignment).map_err(LogError::from)?;
    let start = Instant::now();
    let mut read = 0;
    while read < events {
        match tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await {
            Ok(Ok(_)) => read += 1,
            Ok(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {}
            Ok(Err(e)) => return Err(CliError::Failed(LogError::from(e).into())),
            Err(_) => return Err(CliError::Failed(anyhow::anyhow!("read only {read} of {events} records: nothing for 30 s"))),
        }
    }
    Ok(events as f64 / start.elapsed().as_secs_f64())
}

/// The criterion results of the codec benches as a table: events per second from the
/// median time per event, min and max over criterion's samples.
fn codec(dir: &std::path::Path) -> Result<(), CliError> {
    let mut rows = Vec::new();
    for topic in ["calls", "config", "assignments", "monitors"] {
        for way in ["encode", "decode"] {
            let bench = dir.join(topic).join(way).join("new");
            let read = |file: &str| -> Result<serde_json::Value, CliError> {
                let path = bench.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| input(format!("{}: {e} (run the criterion benches first)", path.display())))?;
                serde_json::from_str(&text).map_err(|e| input(format!("{}: {e}", path.display())))
            };
            let estimates = read("estimates.json")?;
            let median_ns = estimates["median"]["point_estimate"].as_f64().ok_or_else(|| input("estimates.json without a median"))?;
            let sample = read("sample.json")?;
            let per_iter: Vec<f64> = match (sample["iters"].as_array(), sample["times"].as_array()) {
                (Some(iters), Some(times)) => iters.iter().zip(times).filter_map(|(i, t)| Some(t.as_f64()? / i.as_f64()?)).collect(),
                _ => return Err(input("sample.json without iters and times")),
            };
            let (fast, slow) = per_iter.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), t| (lo.min(*t), hi.max(*t)));
            let rate = 1e9 / median_ns;
            rows.push(format!(
                "| {way} `{topic}` (criterion) | {rate:.0} | {:.0} | {:.0} | ≥ 500,000/s | {} |",
                1e9 / slow,
                1e9 / fast,
                yes(rate >= 500_000.0)
            ));
        }
    }
    println!("| figure | events/s (median) | min | max | target | met |");
    println!("|---|---:|---:|---:|---|---|");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}

/// Median, min and max of measured values.
/// (median, min, max) of at least one value; the median of an even count is the mean of
/// the middle two.
pub(crate) fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let (Some(&lo), Some(&hi)) = (v.first(), v.last()) else { return (f64::NAN, f64::NAN, f64::NAN) };
    let mid = v.len() / 2;
    let median = if v.len().is_multiple_of(2) { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] };
    (median, lo, hi)
}

/// Run this binary with `args` against the topics under `prefix`, keeping configuration
/// snapshots in `snapshots`; the wall time from spawn to exit.
pub(crate) async fn timed_command(ctx: &Ctx, prefix: &str, snapshots: &std::path::Path, args: &[&str]) -> Result<Duration, CliError> {
    let exe = std::env::current_exe()?;
    let start = Instant::now();
    let out = tokio::process::Command::new(exe)
        .args(args)
        .env("NETWATCH_BROKERS", &ctx.kafka.brokers)
        .env("NETWATCH_TOPIC_PREFIX", prefix)
        .env("NETWATCH_CONFIG_SNAPSHOT", snapshots)
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        return Err(CliError::Failed(anyhow::anyhow!(
            "netwatch {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(elapsed)
}

async fn config(ctx: &Ctx, args: ConfigArgs) -> Result<(), CliError> {
    if args.tservers < 1 || args.dns < 1 || args.runs == 0 {
        return Err(input("--tservers, --dns and --runs must be at least 1"));
    }
    wait_until_ready(&ctx.kafka, Duration::from_secs(30)).await?;
    let work = std::env::temp_dir().join(format!("netwatch-bench-config-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work)?;
    let result = config_runs(ctx, &args, &work).await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn config_runs(ctx: &Ctx, args: &ConfigArgs, work: &std::path::Path) -> Result<(), CliError> {
    let file = work.join("site.jsonl");
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        for t in 1..=args.tservers {
            writeln!(out, r#"{{"op":"create_tserver","id":{t},"name":"TS{t}","host":"127.0.0.1","port":{}}}"#, 10_000 + t % 50_000)?;
            for d in 0..args.dns {
                let dbid = t * args.dns + d;
                writeln!(out, r#"{{"op":"create_dn","tserver":{t},"dbid":{dbid},"number":"{}"}}"#, 5000 + d)?;
            }
        }
    }
    let changes = args.tservers as u64 * (1 + args.dns as u64);
    let (mut import, mut warm, mut cold) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=args.runs {
        let prefix = format!("bench-{}.", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let topics = Topics { prefix: prefix.clone(), ..ctx.topics.clone() };
        create_topics(&ctx.kafka, &topics).await?;
        let snapshots = work.join(format!("snapshots-{run}"));
        let took = timed_command(ctx, &prefix, &snapshots, &["config", "import", file.to_str().unwrap_or_default()]).await?;
        let rate = changes as f64 / took.as_secs_f64();
        eprintln!("run {run}: config import of {changes} changes in {:.1} s ({rate:.0}/s)", took.as_secs_f64());
        import.push(rate);
        // One command with the site configured: the first reads the import's records after
        // the snapshot the import left, the next ones only their predecessor's.
        for i in 0..4 {
            let dbid = (args.tservers + 1) * args.dns + run as i32 * 10 + i;
            let number = format!("9{dbid}");
            let took = timed_command(
                ctx,
                &prefix,
                &snapshots,
                &["config", "dn", "create", "--tserver", "1", "--dbid", &dbid.to_string(), "--number", &number],
            )
            .await?;
            eprintln!("run {run}: config dn create {} ms{}", took.as_millis(), if i == 0 { " (after the import)" } else { "" });
            if i > 0 {
                warm.push(took.as_secs_f64() * 1000.0);
            }
        }
        std::fs::remove_dir_all(&snapshots)?;
        let dbid = (args.tservers + 1) * args.dns + run as i32 * 10 + 9;
        let took = timed_command(
            ctx,
            &prefix,
            &snapshots,
            &["config", "dn", "create", "--tserver", "1", "--dbid", &dbid.to_string(), "--number", &format!("9{dbid}")],
        )
        .await?;
        eprintln!("run {run}: config dn create without a snapshot {} ms", took.as_millis());
        cold.push(took.as_secs_f64() * 1000.0);
    }
    println!("| figure | target | median | min | max | met |");
    println!("|---|---|---:|---:|---:|---|");
    let (m, lo, hi) = spread(&import);
    println!(
        "| `config import` of {changes} changes (process wall clock) | ≥ 10,000 changes/s | {m:.0}/s | {lo:.0}/s | {hi:.0}/s | {} |",
        yes(m >= 10_000.0)
    );
    let (m, lo, hi) = spread(&warm);
    println!(
        "| one `netwatch config dn create` with {} DNs configured (process wall clock) | ≤ 300 ms | {m:.0} ms | {lo:.0} ms | {hi:.0} ms | {} |",
        args.tservers * args.dns,
        yes(m <= 300.0)
    );
    let (m, lo, hi) = spread(&cold);
    println!("| the same without a snapshot (reads the whole `config` topic) | — | {m:.0} ms | {lo:.0} ms | {hi:.0} ms | — |");
    Ok(())
}

pub(crate) fn yes(met: bool) -> &'static str {
    if met {
        "yes"
    } else {
        "**no**"
    }
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(spread(&[14_715.0, 15_543.0]), (15_129.0, 14_715.0, 15_543.0));
        assert_eq!(spread(&[4.0, 1.0, 3.0, 2.0]), (2.5, 1.0, 4.0));
        assert!(spread(&[]).0.is_nan());
    }
}
