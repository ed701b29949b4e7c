//! `netwatch bench ...`: whole-system benchmarks against a running broker, printed as a
//! table with the ratio to the raw broker (docs/benchmarks.md).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use netwatch_eventlog::{create_topics, wait_until_ready, Log, Producer, Topic, Topics};
use netwatch_processors::monitor::{LinkHandle, LinkSettings};
use netwatch_producers::sim::{SimConfig, SimMode, Wire};
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
    /// Runs of each figure; the table shows the median with min and max.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

pub async fn run(ctx: &Ctx, cmd: BenchCmd) -> Result<(), CliError> {
    match cmd {
        BenchCmd::Capture(args) => capture(ctx, args).await,
        BenchCmd::Config(args) => config(ctx, args).await,
    }
}

/// A measured figure: events per second of each run.
struct Figure {
    name: &'static str,
    events: u64,
    rates: Vec<f64>,
}

impl Figure {
    fn median(&self) -> f64 {
        let mut r = self.rates.clone();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
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
    let mut raw = Figure { name: "raw produce: plain rdkafka producer, same records", events: args.events, rates: Vec::new() };
    let mut link = Figure { name: "capture: one CTI link into calls", events: args.events, rates: Vec::new() };
    for run in 1..=args.runs {
        let r = raw_produce(&log, args.events).await?;
        eprintln!("run {run}: raw produce {r:.0} events/s");
        raw.rates.push(r);
        let c = one_link(&log, args.events, run as i32).await?;
        eprintln!("run {run}: one link {c:.0} events/s");
        link.rates.push(c);
    }
    print_table(&raw, &[&raw, &link]);
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
        }),
    }
}

/// The ceiling: the same records, pre-encoded, from a plain idempotent producer with
/// every send in flight at once.
async fn raw_produce(log: &Log, events: u64) -> Result<f64, CliError> {
    let records: Vec<Vec<u8>> = (0..events).map(|i| encode(&sample_event(i))).collect::<Result<_, _>>()?;
    let producer = Producer::new(&log.kafka)?;
    let topic = log.topic(Topic::Calls);
    let partition = log.topics.tserver_partition(1);
    let start = Instant::now();
    let mut pending: Vec<DeliveryFuture> = Vec::with_capacity(records.len());
    for bytes in &records {
        loop {
            match producer.enqueue(&topic, "1", partition, bytes) {
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
    Ok(events as f64 / start.elapsed().as_secs_f64())
}

/// A simulated T-Server streams `events` as fast as it can write them to one monitor
/// link, which appends them to `calls`: from the moment every DN is registered to the
/// broker's acknowledgement of the last event.
async fn one_link(log: &Log, events: u64, run: i32) -> Result<f64, CliError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let dns: Vec<String> = (5001..=5010).map(|d| d.to_string()).collect();
    let sim = SimConfig {
        name: "BenchTServer".into(),
        mode: SimMode::Stream { dns: dns.clone(), rate: 0.0, count: Some(events) },
        connid_base: (run as u64) << 40,
        wire: Wire::Minimal,
        sent_log: None,
    };
    let (stop_sim, sim_shutdown) = tokio::sync::watch::channel(false);
    let sim_task = tokio::spawn(netwatch_producers::sim::run(sim, listener, sim_shutdown));
    let tserver = TServer { id: 1, name: "BenchTServer".into(), host: "127.0.0.1".into(), port: port.into() };
    let wanted: BTreeSet<String> = dns.iter().cloned().collect();
    let handle = LinkHandle::spawn(log.clone(), format!("bench-{run}"), tserver, wanted, LinkSettings::default());
    // LinkConnected and one DnRegistered per DN come before the stream.
    let before = 1 + dns.len() as u64;
    let mut start = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let captured = handle.stats.captured();
        if start.is_none() && handle.stats.registered() == dns.len() as i64 {
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
    handle.stop().await;
    let _ = stop_sim.send(true);
    let _ = sim_task.await;
    log.producer.flush(Duration::from_secs(10))?;
    Ok(events as f64 / elapsed.as_secs_f64())
}

fn print_table(ceiling: &Figure, figures: &[&Figure]) {
    let ceiling = ceiling.median();
    println!("| figure | events | events/s (median) | min | max | ratio to raw |");
    println!("|---|---:|---:|---:|---:|---:|");
    for f in figures {
        println!("| {} | {} | {:.0} | {:.0} | {:.0} | {:.2} |", f.name, f.events, f.median(), f.min(), f.max(), f.median() / ceiling);
    }
}

/// Median, min and max of measured values.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// Run this binary with `args` against the topics under `prefix`, keeping configuration
/// snapshots in `snapshots`; the wall time from spawn to exit.
async fn timed_command(ctx: &Ctx, prefix: &str, snapshots: &std::path::Path, args: &[&str]) -> Result<Duration, CliError> {
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

fn yes(met: bool) -> &'static str {
    if met {
        "yes"
    } else {
        "**no**"
    }
}
