//! `netwatch bench registration` and `netwatch bench live`: figures of the whole system,
//! with the roles running as processes of this binary against simulated T-Servers served
//! by this process (one simulator process may serve many T-Servers).

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use netwatch_eventlog::{create_topics, wait_until_ready, Log, Topics};
use netwatch_processors::cluster::Liveness;
use netwatch_processors::status::cluster_status;
use netwatch_producers::sim::{serve as serve_sim, SimConfig, SimMode, Switch, Wire};
use netwatch_schemas::config::{ConfigChange, Dn, DnType, TServer};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::bench::{spread, timed_command, yes};
use crate::config::{current_state, submit};
use crate::{input, CliError, Ctx};

#[derive(Args, Debug)]
pub struct RegistrationArgs {
    /// Simulated T-Servers (all served by this process, one port each).
    #[arg(long, default_value_t = 1_000)]
    tservers: i32,
    /// DNs per T-Server.
    #[arg(long, default_value_t = 100)]
    dns: i32,
    /// Runs; the table shows the median with min and max.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[derive(Args, Debug)]
pub struct LiveArgs {
    /// Event rates of the latency figures (events per second, one simulated T-Server).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1_000.0, 5_000.0])]
    rates: Vec<f64>,
    /// Seconds each figure is measured, after 3 s of warm-up.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Concurrent HTTP clients of the last figure (run while the highest rate streams).
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Pause between one client's requests.
    #[arg(long, default_value = "100ms")]
    client_interval: humantime::Duration,
    /// DNs of each simulated T-Server.
    #[arg(long, default_value_t = 100)]
    dns: usize,
}

/// A role of this binary running as its own process, killed when dropped.
pub(crate) struct Role {
    child: std::sync::Mutex<Child>,
}

impl Role {
    pub(crate) fn spawn(ctx: &Ctx, prefix: &str, store: &str, args: &[&str], log: &Path) -> Result<Role, CliError> {
        let err = std::fs::File::create(log)?;
        let mut command = Command::new(std::env::current_exe()?);
        for (k, v) in &ctx.kafka.extra {
            command.arg("--kafka-option").arg(format!("{k}={v}"));
        }
        let child = command
            .args(args)
            .env("NETWATCH_BROKERS", &ctx.kafka.brokers)
            .env("NETWATCH_TOPIC_PREFIX", prefix)
            .env("NETWATCH_STORE", store)
            .env("NETWATCH_LOG", "warn")
            // The bench's own HTTP clients carry no token.
            .env_remove("NETWATCH_API_TOKEN")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(err)
            .kill_on_drop(true)
            .spawn()?;
        Ok(Role { child: std::sync::Mutex::new(child) })
    }

    /// Resident and peak resident memory (VmRSS, VmHWM) in bytes.
    fn memory(&self) -> Option<(u64, u64)> {
        let pid = self.child.lock().ok()?.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// Still running? An exit here is the benchmark's failure.
    pub(crate) fn check(&self, name: &str, log: &Path) -> Result<(), CliError> {
        let exited = self.child.lock().map_err(|_| CliError::Failed(anyhow::anyhow!("{name}: lock poisoned")))?.try_wait()?;
        match exited {
            None => Ok(()),
            Some(status) => {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                Err(CliError::Failed(anyhow::anyhow!("{name} exited ({status}): {}", tail.join(" | "))))
            }
        }
    }
}

/// Fresh topics under their own prefix.
pub(crate) async fn fresh_topics(ctx: &Ctx) -> Result<Log, CliError> {
    wait_until_ready(&ctx.kafka, Duration::from_secs(30)).await?;
    let topics = Topics { prefix: format!("bench-{}.", &uuid::Uuid::new_v4().simple().to_string()[..8]), ..ctx.topics.clone() };
    create_topics(&ctx.kafka, &topics).await?;
    Ok(Log::new(ctx.kafka.clone(), topics)?)
}

/// Serve a simulated T-Server on a port of its own; its switch shows the registrations.
async fn simulator(name: String, mode: SimMode, shutdown: &watch::Receiver<bool>) -> Result<(u16, Switch), CliError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let switch = Switch::new(Wire::Minimal);
    let config = SimConfig { name, mode, connid_base: u64::from(port) << 40, wire: Wire::Minimal, sent_log: None };
    tokio::spawn(serve_sim(config, listener, switch.clone(), shutdown.clone()));
    Ok((port, switch))
}

/// Poll `ready` every 50 ms until it holds, failing after `within`.
pub(crate) async fn wait_for<F, Fut>(what: &str, within: Duration, mut ready: F) -> Result<(), CliError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, CliError>>,
{
    let deadline = Instant::now() + within;
    loop {
        if ready().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CliError::Failed(anyhow::anyhow!("{what}: not within {} s", within.as_secs())));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn registration(ctx: &Ctx, args: RegistrationArgs) -> Result<(), CliError> {
    if args.tservers < 1 || args.dns < 1 || args.runs == 0 {
        return Err(input("--tservers, --dns and --runs must be at least 1"));
    }
    let work = tempfile::tempdir()?;
    let total = args.tservers as usize * args.dns as usize;
    let (mut took, mut rss, mut peak) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=args.runs {
        let (t, (r, p)) = registration_run(ctx, &args, &work.path().join(format!("run{run}"))).await?;
        eprintln!("run {run}: {total} DNs registered {:.1} s after the import began; monitor RSS {} MiB, peak {} MiB", t, r >> 20, p >> 20);
        took.push(t);
        rss.push((r >> 20) as f64);
        peak.push((p >> 20) as f64);
    }
    println!("| figure | target | median | min | max | met |");
    println!("|---|---|---:|---:|---:|---|");
    let (m, lo, hi) = spread(&took);
    println!(
        "| {} T-Servers × {} DNs configured → all {total} registered (from the start of `config import`) | ≤ 30 s | {m:.1} s | {lo:.1} s | {hi:.1} s | {} |",
        args.tservers,
        args.dns,
        yes(m <= 30.0)
    );
    let (m, lo, hi) = spread(&rss);
    println!(
        "| monitor memory (RSS) with {total} DNs registered | ≤ 150 MiB | {m:.0} MiB | {lo:.0} MiB | {hi:.0} MiB | {} |",
        yes(m <= 150.0)
    );
    let (m, lo, hi) = spread(&peak);
    println!("| monitor peak memory (VmHWM) until then | — | {m:.0} MiB | {lo:.0} MiB | {hi:.0} MiB | — |");
    Ok(())
}

/// One run: seconds from the start of the import until every DN is registered at its
/// simulator, and the monitor's memory then.
async fn registration_run(ctx: &Ctx, args: &RegistrationArgs, dir: &Path) -> Result<(f64, (u64, u64)), CliError> {
    std::fs::create_dir_all(dir)?;
    let log = fresh_topics(ctx).await?;
    let prefix = log.topics.prefix.clone();
    let (stop, shutdown) = watch::channel(false);
    let mut switches = Vec::new();
    let file = dir.join("site.jsonl");
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        for t in 1..=args.tservers {
            let (port, switch) = simulator(format!("BenchTServer{t}"), SimMode::Idle, &shutdown).await?;
            switches.push(switch);
            writeln!(out, r#"{{"op":"create_tserver","id":{t},"name":"TS{t}","host":"127.0.0.1","port":{port}}}"#)?;
            for d in 0..args.dns {
                writeln!(out, r#"{{"op":"create_dn","tserver":{t},"dbid":{},"number":"{}"}}"#, t * args.dns + d, 5000 + d)?;
            }
        }
    }
    let store = format!("sqlite://{}", dir.join("unused.db").display());
    let (dlog, mlog) = (dir.join("dispatcher.log"), dir.join("monitor.log"));
    let dispatcher = Role::spawn(ctx, &prefix, &store, &["dispatcher"], &dlog)?;
    let monitor = Role::spawn(ctx, &prefix, &store, &["monitor"], &mlog)?;
    let (d, m, l, dl, ml) = (&dispatcher, &monitor, &log, &dlog, &mlog);
    // The roles are up when a live monitor owns every slot.
    wait_for("a live monitor owning every slot", Duration::from_secs(90), move || async move {
        d.check("the dispatcher", dl)?;
        m.check("the monitor", ml)?;
        let s = cluster_status(l, Liveness::default()).await?;
        Ok(s.unowned_slots.is_empty() && s.monitors.iter().any(|m| m.live))
    })
    .await?;
    let total = args.tservers as usize * args.dns as usize;
    let snapshots = dir.join("snapshots");
    let start = Instant::now();
    let import_args = ["config", "import", file.to_str().unwrap_or_default()];
    let import = timed_command(ctx, &prefix, &snapshots, &import_args);
    let switches = &switches;
    let registered = async {
        wait_for("every DN registered", Duration::from_secs(300), move || async move {
            m.check("the monitor", ml)?;
            Ok(switches.iter().map(Switch::registered_count).sum::<usize>() >= total)
        })
        .await?;
        Ok::<_, CliError>(start.elapsed().as_secs_f64())
    };
    let (imported, took) = tokio::join!(import, registered);
    imported?;
    let took = took?;
    let memory = monitor.memory().ok_or_else(|| CliError::Failed(anyhow::anyhow!("cannot read the monitor's memory")))?;
    let _ = stop.send(true);
    drop((dispatcher, monitor));
    Ok((took, memory))
}

/// One HTTP/1.1 connection kept alive for a client's requests.
struct Client {
    addr: String,
    sender: SendRequest<Empty<Bytes>>,
}

impl Client {
    async fn connect(addr: &str) -> Result<Client, CliError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Client { addr: addr.to_string(), sender })
    }

    /// GET `path`: the body of a 200 answer.
    async fn get(&mut self, path: &str) -> Result<Bytes, CliError> {
        self.sender.ready().await?;
        let request = hyper::Request::get(path).header(hyper::header::HOST, &self.addr).body(Empty::new())?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if status != hyper::StatusCode::OK {
            return Err(CliError::Failed(anyhow::anyhow!("GET {path}: {status}: {}", String::from_utf8_lossy(&body))));
        }
        Ok(body)
    }
}

/// Percentile `p` (0..=100) of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p / 100.0).round() as usize]
}

/// A free local port for the HTTP API.
fn free_port() -> Result<u16, CliError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub async fn live(ctx: &Ctx, args: LiveArgs) -> Result<(), CliError> {
    if args.rates.is_empty() || args.rates.iter().any(|r| !r.is_finite() || *r < 1.0) {
        return Err(input("--rates must be events per second of at least 1 each"));
    }
    if args.seconds == 0 || args.clients == 0 || args.dns == 0 {
        return Err(input("--seconds, --clients and --dns must be at least 1"));
    }
    let work = tempfile::tempdir()?;
    let log = fresh_topics(ctx).await?;
    let prefix = log.topics.prefix.clone();
    let addr = format!("127.0.0.1:{}", free_port()?);
    let store = format!("sqlite://{}", work.path().join("live.db").display());
    let up_log = work.path().join("up.log");
    let up = Role::spawn(ctx, &prefix, &store, &["up", "--listen", &addr], &up_log)?;
    let (u, ul, a) = (&up, &up_log, &addr);
    wait_for("the HTTP API of netwatch up", Duration::from_secs(60), move || async move {
        u.check("netwatch up", ul)?;
        Ok(match Client::connect(a).await {
            Ok(mut c) => c.get("/healthz").await.is_ok(),
            Err(_) => false,
        })
    })
    .await?;
    let mut rows = Vec::new();
    let highest = args.rates.iter().copied().fold(0.0, f64::max);
    let mut phases: Vec<(f64, bool)> = args.rates.iter().map(|r| (*r, false)).collect();
    phases.push((highest, true));
    for (i, (rate, clients)) in phases.into_iter().enumerate() {
        let tserver = i as i32 + 1;
        let (sim_stop, sim_shutdown) = watch::channel(false);
        let dns: Vec<String> = (0..args.dns).map(|d| format!("{}", 5001 + d)).collect();
        let (port, switch) =
            simulator(format!("LiveTServer{tserver}"), SimMode::Stream { dns: dns.clone(), rate, count: None }, &sim_shutdown).await?;
        configure(&log, tserver, port, &dns).await?;
        let (sw, n) = (&switch, dns.len());
        wait_for("the simulated T-Server's DNs registered", Duration::from_secs(60), move || async move {
            u.check("netwatch up", ul)?;
            Ok(sw.registered_count() >= n)
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(3)).await; // warm-up: the stream starts, the consumers settle
        let measure = Duration::from_secs(args.seconds);
        if clients {
            let (lat, requests) = http_clients(&addr, tserver, &dns, args.clients, args.client_interval.into(), measure).await?;
            eprintln!(
                "{} clients at {rate} events/s: {} requests, p50 {:.1} ms p99 {:.1} ms",
                args.clients,
                requests,
                percentile(&lat, 50.0),
                percentile(&lat, 99.0)
            );
            rows.push(format!(
                "| HTTP latency, {} clients (one request each per {}) while {rate:.0} events/s apply | {} requests ({:.0}/s) | {:.1} ms | {:.1} ms | {:.1} ms | p99 ≤ 50 ms | {} |",
                args.clients,
                args.client_interval,
                requests,
                requests as f64 / measure.as_secs_f64(),
                percentile(&lat, 50.0),
                percentile(&lat, 99.0),
                lat.last().copied().unwrap_or(f64::NAN),
                yes(percentile(&lat, 99.0) <= 50.0)
            ));
        } else {
            let lat = latencies(&addr, tserver, &dns, measure).await?;
            eprintln!("{rate} events/s: {} samples, p50 {:.1} ms p99 {:.1} ms", lat.len(), percentile(&lat, 50.0), percentile(&lat, 99.0));
            let (target, met) = if rate >= 5_000.0 { ("p99 ≤ 100 ms", yes(percentile(&lat, 99.0) <= 100.0)) } else { ("—", "—") };
            rows.push(format!(
                "| end-to-end latency at {rate:.0} events/s: T-Server timestamp → readable over HTTP | {} samples | {:.1} ms | {:.1} ms | {:.1} ms | {target} | {met} |",
                lat.len(),
                percentile(&lat, 50.0),
                percentile(&lat, 99.0),
                lat.last().copied().unwrap_or(f64::NAN),
            ));
        }
        up.check("netwatch up", &up_log)?;
        let _ = sim_stop.send(true);
    }
    println!("| figure | measured | p50 | p99 | max | target | met |");
    println!("|---|---:|---:|---:|---:|---|---|");
    for row in rows {
        println!("{row}");
    }
    drop(up);
    Ok(())
}

/// Configure T-Server `id` at `port` with `dns` (what `netwatch config` would append).
async fn configure(log: &Log, id: i32, port: u16, dns: &[String]) -> Result<(), CliError> {
    let mut state = current_state(log).await?;
    let mut changes = vec![ConfigChange::TServerCreated(TServer::cti(id, format!("LiveTServer{id}"), "127.0.0.1", i32::from(port)))];
    for (i, number) in dns.iter().enumerate() {
        changes.push(ConfigChange::DnCreated(Dn {
            dbid: id * 100_000 + i as i32,
            tserver: id,
            number: number.clone(),
            dn_type: DnType::AcdPosition,
        }));
    }
    submit(log, "bench live", changes, &mut state).await
}

/// Samplers polling single DNs for `measure`: for every change of a DN's row they see,
/// the milliseconds from the event's T-Server timestamp (`updated_ms`) to the moment the
/// answer arrived. Sorted.
async fn latencies(addr: &str, tserver: i32, dns: &[String], measure: Duration) -> Result<Vec<f64>, CliError> {
    let until = Instant::now() + measure;
    let mut tasks = tokio::task::JoinSet::new();
    for dn in dns.iter().take(4) {
        let (addr, path) = (addr.to_string(), format!("/v1/tservers/{tserver}/dns/{dn}"));
        tasks.spawn(async move {
            let mut client = Client::connect(&addr).await?;
            let mut last = None;
            let mut out = Vec::new();
            while Instant::now() < until {
                let body = client.get(&path).await?;
                let seen = netwatch_schemas::now_ms();
                let row: serde_json::Value = serde_json::from_slice(&body)?;
                let updated = row["updated_ms"].as_i64();
                if last.is_some() && updated != last {
                    out.push((seen - updated.unwrap_or(seen)) as f64);
                }
                last = updated;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Ok::<_, CliError>(out)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.map_err(anyhow::Error::from)??);
    }
    all.sort_by(f64::total_cmp);
    Ok(all)
}

/// `clients` clients, each on its own connection, asking every `interval` for a DN's
/// state (three times in four) or the T-Server's DN list, for `measure`: every request's
/// latency in ms (sorted) and the number of requests.
async fn http_clients(
    addr: &str,
    tserver: i32,
    dns: &[String],
    clients: usize,
    interval: Duration,
    measure: Duration,
) -> Result<(Vec<f64>, usize), CliError> {
    let start = Instant::now();
    let until = start + measure;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let addr = addr.to_string();
        let dns = dns.to_vec();
        // Clients start spread over one interval, as independent pollers would.
        let first = start + interval.mul_f64(c as f64 / clients as f64);
        tasks.spawn(async move {
            let mut client = Client::connect(&addr).await?;
            let mut out = Vec::new();
            let mut next = first;
            let mut i = c;
            while next < until {
                tokio::time::sleep_until(next.into()).await;
                let path = if i % 4 == 3 {
                    format!("/v1/tservers/{tserver}/dns")
                } else {
                    format!("/v1/tservers/{tserver}/dns/{}", dns[i % dns.len()])
                };
                let sent = Instant::now();
                client.get(&path).await?;
                out.push(sent.elapsed().as_secs_f64() * 1000.0);
                i += 7;
                next += interval;
            }
            Ok::<_, CliError>(out)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.map_err(anyhow::Error::from)??);
    }
    all.sort_by(f64::total_cmp);
    let n = all.len();
    Ok((all, n))
}
