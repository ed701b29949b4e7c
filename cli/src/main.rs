//! `netwatch`: one binary, a subcommand per role.

mod bench;
mod bench_cdc;
mod bench_live;
mod bench_sip;
mod cat;
mod cdc;
mod config;
mod config_snapshot;
mod deadletter;
mod metrics;
mod query;
mod replay;
mod roles;
mod sim;
mod status;
mod table;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use netwatch_eventlog::{KafkaConfig, Log, Topics};

/// Netwatch: event-sourced monitoring of contact-center telephony on Kafka.
#[derive(Parser, Debug)]
#[command(name = "netwatch", version, about)]
struct Cli {
    /// Kafka bootstrap servers.
    #[arg(long, global = true, env = "NETWATCH_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Prefix of every topic and consumer group name.
    #[arg(long, global = true, env = "NETWATCH_TOPIC_PREFIX", default_value = "netwatch.")]
    topic_prefix: String,
    /// Extra librdkafka settings, `key=value` (TLS, SASL, ...); repeatable.
    #[arg(long = "kafka-option", global = true, value_parser = parse_kv)]
    kafka_options: Vec<(String, String)>,
    /// Projection store URL.
    #[arg(long, global = true, env = "NETWATCH_STORE", default_value = "sqlite://data/netwatch.db")]
    store: String,
    /// A bearer token every HTTP request of the roles must carry (the API, the wallboard,
    /// /metrics; not /healthz). Unset: no token is asked for. Best given in the
    /// environment: it is never logged or shown.
    #[arg(long, global = true, env = "NETWATCH_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create or check the topics.
    #[command(subcommand)]
    Topics(roles::TopicsCmd),
    /// Print a topic's records as JSON lines.
    Cat(cat::CatArgs),
    /// Change the monitored configuration (T-Servers, DNs).
    #[command(subcommand)]
    Config(config::ConfigCmd),
    /// Simulated telephony servers.
    #[command(subcommand)]
    Sim(sim::SimCmd),
    /// Run the dispatcher.
    Dispatcher(roles::DispatcherArgs),
    /// Run a monitor.
    Monitor(roles::MonitorArgs),
    /// Run projections.
    #[command(subcommand)]
    Projections(roles::ProjectionsCmd),
    /// Rebuild a projection into a new generation from the start of the log, then switch
    /// readers over while the current generation keeps serving.
    Replay(replay::ReplayArgs),
    /// Query the projections.
    Query(query::QueryArgs),
    /// Serve the query API over HTTP.
    Serve(roles::ServeArgs),
    /// Run every role in one process (dispatcher, monitors, projections, HTTP API).
    Up(roles::UpArgs),
    /// Live monitors, their slots, load, T-Servers and DNs; dispatcher group members.
    Status(status::StatusArgs),
    /// Records a consumer could not decode or apply: list them, re-drive them after a fix.
    #[command(subcommand)]
    Deadletter(deadletter::DeadLetterCmd),
    /// Benchmarks against a running broker (docs/benchmarks.md).
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Stream a configuration database's committed changes into `config` (docs/cdc.md).
    #[command(subcommand)]
    Cdc(cdc::CdcCmd),
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s:?} is not key=value"))
}

/// How a command failed: bad input (exit 2) or anything else (exit 1).
#[derive(Debug)]
pub enum CliError {
    Input(String),
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError::Failed(e.into())
    }
}

/// Shorthand for a bad-input error.
pub fn input(reason: impl Into<String>) -> CliError {
    CliError::Input(reason.into())
}

/// Connection settings every command gets.
pub struct Ctx {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub store: String,
    /// The bearer token of the roles' HTTP servers, if one is set.
    pub api_token: Option<netwatch_projections::http::Token>,
    /// A role that runs until stopped (its sends never expire), not a one-shot command.
    pub long_running: bool,
}

impl Ctx {
    /// Connect a producer: a role's never gives a record up; a one-shot command's fails
    /// after 30 s, and the command exits with the reason.
    pub fn log(&self) -> Result<Log, CliError> {
        Ok(if self.long_running {
            Log::new(self.kafka.clone(), self.topics.clone())?
        } else {
            Log::one_shot(self.kafka.clone(), self.topics.clone(), std::time::Duration::from_secs(30))?
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let long_running = matches!(
        cli.command,
        Command::Dispatcher(_)
            | Command::Monitor(_)
            | Command::Projections(_)
            | Command::Serve(_)
            | Command::Up(_)
            | Command::Cdc(_)
            | Command::Sim(sim::SimCmd::Tserver(_))
    );
    // One-shot commands report their own one-line error; librdkafka's retries would bury it.
    let default_level = if long_running { "info" } else { "warn,rdkafka=off,librdkafka=off" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NETWATCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if cli.api_token.as_deref().is_some_and(|t| t.trim().is_empty() || t.trim().contains(char::is_whitespace)) {
        eprintln!(
            "netwatch: the API token (--api-token or NETWATCH_API_TOKEN) is empty or has spaces inside; set one word or leave it unset"
        );
        return ExitCode::from(2);
    }
    let ctx = Ctx {
        kafka: KafkaConfig { brokers: cli.brokers.clone(), extra: cli.kafka_options.clone() },
        topics: Topics { prefix: cli.topic_prefix.clone(), ..Topics::default() },
        store: cli.store.clone(),
        // Trimmed: a secret file's trailing newline is not part of the token.
        api_token: cli.api_token.as_deref().map(|t| netwatch_projections::http::Token(t.trim().into())),
        long_running: long_running || matches!(cli.command, Command::Replay(_)),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("netwatch: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Topics(cmd) => roles::topics(&ctx, cmd).await,
            Command::Cat(args) => cat::run(&ctx, args).await,
            Command::Config(cmd) => config::run(&ctx, cmd).await,
            Command::Sim(cmd) => sim::run(cmd).await,
            Command::Dispatcher(args) => roles::dispatcher(&ctx, args).await,
            Command::Monitor(args) => roles::monitor(&ctx, args).await,
            Command::Projections(cmd) => roles::projections(&ctx, cmd).await,
            Command::Query(cmd) => query::run(&ctx, cmd).await,
            Command::Replay(args) => replay::run(&ctx, args).await,
            Command::Serve(args) => roles::serve(&ctx, args).await,
            Command::Up(args) => roles::up(&ctx, args).await,
            Command::Status(args) => status::run(&ctx, args).await,
            Command::Bench(cmd) => bench::run(&ctx, cmd).await,
            Command::Cdc(cmd) => cdc::run(&ctx, cmd).await,
            Command::Deadletter(cmd) => deadletter::run(&ctx, cmd).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Input(reason)) => {
            eprintln!("netwatch: {reason}");
            ExitCode::from(2)
        }
        Err(CliError::Failed(e)) => {
            eprintln!("netwatch: {e:#}");
            ExitCode::from(1)
        }
    }
}
