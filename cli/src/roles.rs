//! The long-running roles, alone or all together (`netwatch up`).

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use netwatch_eventlog::{create_topics, wait_until_ready, Log};
use netwatch_processors::cluster::Liveness;
use netwatch_processors::dispatcher::{self, DispatcherConfig, Settings};
use netwatch_processors::monitor::{self, LinkSettings, MonitorConfig};
use netwatch_producers::sim::traffic::TrafficConfig;
use netwatch_producers::sim::{SimConfig, SimMode};
use netwatch_projections::http::{parts, serve as serve_http, with_openapi, ApiState};
use netwatch_projections::runner::Metrics;
use netwatch_projections::stat_query::Settings as StatSettings;
use netwatch_projections::wallboard::Hub;
use netwatch_projections::Projection;
use netwatch_schemas::config::{ConfigChange, Dn, DnType, Group, GroupKind, TServer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info};

use crate::config::{current_state, submit};
use crate::{input, CliError, Ctx};

#[derive(Subcommand, Debug)]
pub enum TopicsCmd {
    /// Create the topics that do not exist yet (idempotent).
    Create,
    /// Wait until the broker answers a metadata request.
    Wait {
        /// Give up after this long.
        #[arg(long, default_value = "30s")]
        timeout: humantime::Duration,
    },
}

/// Where a role without an API of its own serves `/metrics`.
#[derive(Args, Debug, Clone)]
pub struct MetricsArgs {
    /// Address of this role's `/metrics` and `/healthz` (port 0: a free port, logged at
    /// start; give one per instance for Prometheus to scrape).
    #[arg(long, default_value = "127.0.0.1:0")]
    metrics_listen: String,
}

#[derive(Args, Debug)]
pub struct DispatcherArgs {
    /// Instance id (default: host and pid).
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    metrics: MetricsArgs,
    #[command(flatten)]
    balance: BalanceArgs,
}

/// How the dispatcher judges monitors and paces moves.
#[derive(Args, Debug, Clone)]
pub struct BalanceArgs {
    /// Heartbeat interval the monitors use.
    #[arg(long, default_value = "1s")]
    monitor_heartbeat: humantime::Duration,
    /// Heartbeats a monitor may miss before it counts as dead.
    #[arg(long, default_value_t = 3)]
    missed_heartbeats: i64,
    /// At most this many T-Server moves per --move-window.
    #[arg(long, default_value_t = 2)]
    max_moves: usize,
    #[arg(long, default_value = "10s")]
    move_window: humantime::Duration,
}

impl BalanceArgs {
    pub fn settings(&self, slots: i32) -> Settings {
        Settings {
            slots,
            liveness: self.liveness(),
            max_moves: self.max_moves,
            move_window_ms: Duration::from(self.move_window).as_millis() as i64,
        }
    }

    pub fn liveness(&self) -> Liveness {
        Liveness { heartbeat_ms: Duration::from(self.monitor_heartbeat).as_millis() as i64, missed: self.missed_heartbeats }
    }
}

#[derive(Args, Debug)]
pub struct MonitorArgs {
    /// Monitor id (default: host and pid).
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    metrics: MetricsArgs,
    /// Time between heartbeats (a monitor is dead after three missed ones).
    #[arg(long, default_value = "1s")]
    heartbeat: humantime::Duration,
    /// Use the cooperative-sticky assignor (needs a broker that keeps the members'
    /// owned partitions; not tansu 0.6.0, see docs/broker-notes.md).
    #[arg(long)]
    cooperative: bool,
    /// Events per CTI link read and not yet acknowledged by the broker, at most; beyond
    /// it the link stops reading and TCP pushes back on the T-Server.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight: u32,
}

#[derive(Subcommand, Debug)]
pub enum ProjectionsCmd {
    /// Run projections into the store.
    Run {
        /// dn-state, call-history, statistics, or all.
        #[arg(long, default_value = "all")]
        projection: String,
        /// Consumer group name (after the topic prefix): instances writing the same store
        /// share it and split the partitions; another store needs another group.
        #[arg(long, env = "NETWATCH_PROJECTION_GROUP", default_value = "projection")]
        group: String,
        #[command(flatten)]
        metrics: MetricsArgs,
    },
    /// Print a stable digest of a projection's current content.
    Checksum(crate::replay::ChecksumArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    #[command(flatten)]
    stats: StatsArgs,
}

/// How the API reads statistics and feeds wallboards (docs/statistics.md).
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Time zone of "since midnight" statistics (IANA name, e.g. Europe/Paris).
    #[arg(long, env = "NETWATCH_STATS_TZ", default_value = "UTC")]
    stats_time_zone: String,
    /// Wallboard tile thresholds, STAT=AMBER:RED separated by commas (e.g.
    /// service_level_pct=85:75,asa_ms=15000:30000); the rest keep their defaults.
    #[arg(long, env = "NETWATCH_THRESHOLDS", default_value = "")]
    thresholds: String,
    /// Wallboard event streams open at once, at most.
    #[arg(long, default_value_t = netwatch_projections::wallboard::DEFAULT_MAX_CLIENTS)]
    max_wallboard_streams: usize,
}

impl StatsArgs {
    /// The API's state over `store`; a bad setting is a one-line input error.
    fn api_state(&self, store: netwatch_projections::AnyStore) -> Result<ApiState, CliError> {
        let settings = StatSettings::default()
            .with_time_zone(&self.stats_time_zone)
            .and_then(|s| s.with_thresholds(&self.thresholds))
            .map_err(input)?;
        Ok(ApiState { store, settings: Arc::new(settings), hub: Hub::new(self.max_wallboard_streams) })
    }
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    #[command(flatten)]
    stats: StatsArgs,
    /// Monitors to run in this process.
    #[arg(long, default_value_t = 1)]
    monitors: u32,
    /// Also run a simulated site and register its configuration.
    #[arg(long)]
    simulate: bool,
    /// Simulated T-Servers.
    #[arg(long, default_value_t = 2)]
    sim_tservers: i32,
    /// DNs per simulated T-Server.
    #[arg(long, default_value_t = 25)]
    sim_dns: i32,
    /// CTI port of simulated T-Server 1; the others follow.
    #[arg(long, default_value_t = 17001)]
    sim_base_port: i32,
    /// New calls per minute per simulated T-Server.
    #[arg(long, default_value_t = 12.0)]
    sim_calls_per_minute: f64,
}

fn default_id(role: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "host".into());
    format!("{role}-{host}-{}", std::process::id())
}

/// A shutdown signal that turns true on Ctrl-C or SIGTERM.
/// How long a role may take to stop after SIGTERM or Ctrl-C, whatever the broker does.
const STOP_WITHIN: Duration = Duration::from_secs(14);

/// The producer whose unacknowledged records a forced exit counts.
static PRODUCER: std::sync::OnceLock<netwatch_eventlog::Producer> = std::sync::OnceLock::new();

/// Count this role's producer in a forced exit's report.
fn count_at_exit(log: &Log) {
    let _ = PRODUCER.set(log.producer.clone());
}

pub fn shutdown_on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        info!("Shutting down.");
        let _ = tx.send(true);
        // A broker that does not answer must not keep the process: stop within a bound,
        // saying what could not be appended. A thread, so a blocked runtime cannot stop it.
        std::thread::spawn(|| {
            std::thread::sleep(STOP_WITHIN);
            let left = PRODUCER.get().map(|p| p.in_flight()).unwrap_or(0);
            error!(
                records = left,
                "Stopping took longer than {} s; exiting now. Records the broker has not acknowledged are not appended.",
                STOP_WITHIN.as_secs()
            );
            std::process::exit(1);
        });
    });
    rx
}

pub async fn topics(ctx: &Ctx, cmd: TopicsCmd) -> Result<(), CliError> {
    match cmd {
        TopicsCmd::Create => {
            wait_until_ready(&ctx.kafka, Duration::from_secs(30)).await?;
            let created = create_topics(&ctx.kafka, &ctx.topics).await?;
            println!("{} topics created, {} already existed", created.len(), 5 - created.len());
        }
        TopicsCmd::Wait { timeout } => {
            wait_until_ready(&ctx.kafka, timeout.into()).await?;
            println!("broker at {} is ready", ctx.kafka.brokers);
        }
    }
    Ok(())
}

pub async fn dispatcher(ctx: &Ctx, args: DispatcherArgs) -> Result<(), CliError> {
    let shutdown = shutdown_on_signal();
    let config = DispatcherConfig {
        id: args.id.clone().unwrap_or_else(|| default_id("dispatcher")),
        settings: args.balance.settings(ctx.topics.slots),
    };
    let log = ctx.log()?;
    count_at_exit(&log);
    crate::metrics::start(Some(&log));
    crate::metrics::serve_alone(&args.metrics.metrics_listen, ctx.api_token.clone(), "dispatcher", shutdown.clone()).await?;
    dispatcher::run(log, config, shutdown).await?;
    Ok(())
}

pub async fn monitor(ctx: &Ctx, args: MonitorArgs) -> Result<(), CliError> {
    if Duration::from(args.heartbeat).is_zero() {
        return Err(input("--heartbeat must be longer than 0"));
    }
    let shutdown = shutdown_on_signal();
    let config = MonitorConfig {
        id: args.id.clone().unwrap_or_else(|| default_id("monitor")),
        heartbeat: args.heartbeat.into(),
        cooperative: args.cooperative,
        link: LinkSettings { max_in_flight: args.max_in_flight as usize, ..LinkSettings::default() },
    };
    let log = ctx.log()?;
    count_at_exit(&log);
    crate::metrics::start(Some(&log));
    crate::metrics::serve_alone(&args.metrics.metrics_listen, ctx.api_token.clone(), "monitor", shutdown.clone()).await?;
    monitor::run(log, config, shutdown).await?;
    Ok(())
}

fn projections_named(name: &str) -> Result<Vec<Projection>, CliError> {
    if name == "all" {
        return Ok(Projection::ALL.to_vec());
    }
    Ok(vec![name.parse().map_err(input)?])
}

pub async fn projections(ctx: &Ctx, cmd: ProjectionsCmd) -> Result<(), CliError> {
    let (projection, group, metrics) = match cmd {
        ProjectionsCmd::Run { projection, group, metrics } => (projection, group, metrics),
        ProjectionsCmd::Checksum(args) => return crate::replay::checksum(ctx, args).await,
    };
    let which = projections_named(&projection)?;
    let store = crate::replay::store(ctx).await?;
    let shutdown = shutdown_on_signal();
    let log = ctx.log()?;
    count_at_exit(&log);
    crate::metrics::start(Some(&log));
    crate::metrics::serve_alone(&metrics.metrics_listen, ctx.api_token.clone(), "projections", shutdown.clone()).await?;
    let mut tasks = JoinSet::new();
    for p in which {
        let (log, store, shutdown, group) = (log.clone(), store.clone(), shutdown.clone(), group.clone());
        tasks.spawn(async move {
            netwatch_projections::runner::run_in_group(log, store, p, &group, Arc::new(Metrics::default()), shutdown)
                .await
                .map_err(anyhow::Error::from)
        });
    }
    join_all(tasks).await
}

pub async fn serve(ctx: &Ctx, args: ServeArgs) -> Result<(), CliError> {
    let store = crate::replay::store(ctx).await?;
    let state = args.stats.api_state(store)?;
    let listener = TcpListener::bind(&args.listen).await.map_err(|e| input(format!("cannot listen on {}: {e}", args.listen)))?;
    info!(addr = %listener.local_addr()?, "HTTP API listening.");
    crate::metrics::start(None);
    let app = api(state, ctx.log()?, ctx);
    serve_http(listener, app, shutdown_on_signal()).await?;
    Ok(())
}

/// The HTTP API of `serve` and `up`: queries, status, metrics, behind the token if set.
fn api(state: ApiState, log: Log, ctx: &Ctx) -> axum::Router {
    let (app, mut doc) = parts(state);
    let (status, status_doc) = crate::status::router(log, Liveness::default()).split_for_parts();
    let (metrics, metrics_doc) = crate::metrics::router().split_for_parts();
    doc.merge(status_doc);
    doc.merge(metrics_doc);
    let app = with_openapi(app.merge(status).merge(metrics), doc);
    netwatch_projections::http::guarded(app, ctx.api_token.clone())
}

/// Wait for every task; the first failure is the result, after all have ended.
async fn join_all(mut tasks: JoinSet<anyhow::Result<()>>) -> Result<(), CliError> {
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        let outcome = done.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = outcome {
            error!(error = %e, "A task failed.");
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(CliError::Failed(e)),
        None => Ok(()),
    }
}

/// Make the configuration hold the simulated site: create what is missing, fix ports.
async fn register_site(log: &Log, args: &UpArgs) -> Result<(), CliError> {
    let mut state = current_state(log).await?;
    let mut changes = Vec::new();
    for t in 1..=args.sim_tservers {
        let wanted = TServer::cti(t, format!("SimTServer{t}"), "127.0.0.1", args.sim_base_port + t - 1);
        match state.tservers.get(&t) {
            None => changes.push(ConfigChange::TServerCreated(wanted)),
            Some(current) if *current != wanted => changes.push(ConfigChange::TServerUpdated(wanted)),
            Some(_) => {}
        }
        for i in 1..=args.sim_dns {
            let number = sim_dn(t, i);
            if !state.dns.contains_key(&(t, number.clone())) {
                changes.push(ConfigChange::DnCreated(Dn { dbid: t * 10_000 + i, tserver: t, number, dn_type: DnType::AcdPosition }));
            }
        }
        // Two teams per T-Server, the agents of the first and second half of its DNs (the
        // simulator logs agent-<DN> in at each), for the wallboard's group boards.
        let half = (args.sim_dns + 1) / 2;
        for (n, name, range) in [(1, "Team A", 1..=half), (2, "Team B", half + 1..=args.sim_dns)] {
            let members: Vec<String> = range.map(|i| format!("agent-{}", sim_dn(t, i))).collect();
            let id = t * 100 + n;
            if !members.is_empty() && !state.groups.contains_key(&id) {
                changes.push(ConfigChange::GroupCreated(Group { id, tserver: t, name: name.into(), kind: GroupKind::Agent, members }));
            }
        }
    }
    if !changes.is_empty() {
        info!(changes = changes.len(), "Registering the simulated site's configuration.");
        submit(log, "up --simulate", changes, &mut state).await?;
    }
    Ok(())
}

fn sim_dn(tserver: i32, i: i32) -> String {
    format!("{}{:03}", 4 + tserver, i)
}

pub async fn up(ctx: &Ctx, args: UpArgs) -> Result<(), CliError> {
    let store = crate::replay::store(ctx).await?;
    let state = args.stats.api_state(store.clone())?;
    let listener = TcpListener::bind(&args.listen).await.map_err(|e| input(format!("cannot listen on {}: {e}", args.listen)))?;
    wait_until_ready(&ctx.kafka, Duration::from_secs(30)).await?;
    create_topics(&ctx.kafka, &ctx.topics).await?;
    let log = ctx.log()?;
    count_at_exit(&log);
    crate::metrics::start(Some(&log));
    let shutdown = shutdown_on_signal();
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    if args.simulate {
        for t in 1..=args.sim_tservers {
            let addr = format!("127.0.0.1:{}", args.sim_base_port + t - 1);
            let sim_listener = TcpListener::bind(&addr).await.map_err(|e| input(format!("cannot listen on {addr}: {e}")))?;
            let dns = (1..=args.sim_dns).map(|i| sim_dn(t, i)).collect();
            let config = SimConfig {
                name: format!("SimTServer{t}"),
                mode: SimMode::Random(TrafficConfig { seed: t as u64, dns, calls_per_minute: args.sim_calls_per_minute }),
                connid_base: (t as u64) << 48 | (netwatch_schemas::now_ms() as u64 & 0xffff_ffff) << 16,
                wire: Default::default(),
                sent_log: None,
            };
            let shutdown = shutdown.clone();
            tasks.spawn(async move { Ok(netwatch_producers::sim::run(config, sim_listener, shutdown).await?) });
        }
        register_site(&log, &args).await?;
    }
    {
        let (log, shutdown) = (log.clone(), shutdown.clone());
        let config =
            DispatcherConfig { id: default_id("dispatcher"), settings: Settings { slots: log.topics.slots, ..Settings::default() } };
        tasks.spawn(async move { Ok(dispatcher::run(log, config, shutdown).await?) });
    }
    for i in 1..=args.monitors {
        let (log, shutdown) = (log.clone(), shutdown.clone());
        let config = MonitorConfig {
            id: format!("{}-{i}", default_id("monitor")),
            heartbeat: Duration::from_secs(1),
            cooperative: false,
            link: LinkSettings::default(),
        };
        tasks.spawn(async move { Ok(monitor::run(log, config, shutdown).await?) });
    }
    for p in Projection::ALL {
        let (log, store, shutdown) = (log.clone(), store.clone(), shutdown.clone());
        tasks.spawn(async move { Ok(netwatch_projections::run(log, store, p, Arc::new(Metrics::default()), shutdown).await?) });
    }
    let addr = listener.local_addr()?;
    {
        let shutdown = shutdown.clone();
        let app = api(state, log.clone(), ctx);
        tasks.spawn(async move { Ok(serve_http(listener, app, shutdown).await?) });
    }
    info!(http = %addr, "Netwatch is up.");
    println!("netwatch is up: HTTP API on http://{addr}/v1/ (Ctrl-C stops)");
    join_all(tasks).await
}
