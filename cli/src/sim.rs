//! `netwatch sim ...`: simulated T-Servers.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use netwatch_producers::sim::traffic::TrafficConfig;
use netwatch_producers::sim::{parse_scenario, query_status, SimConfig, SimMode, Wire};
use tokio::net::TcpListener;

use crate::{input, CliError};

#[derive(Subcommand, Debug)]
pub enum SimCmd {
    /// Serve a simulated T-Server on a CTI link port.
    Tserver(SimArgs),
    /// Print which DNs a simulated T-Server has registered, by which client.
    Status {
        /// host:port of the simulator.
        endpoint: String,
    },
    /// Make a simulated T-Server close every monitor's link at once (a network failure).
    DropLinks {
        /// host:port of the simulator.
        endpoint: String,
    },
    /// Take a simulated T-Server's switch link down or up (EventLinkDisconnected /
    /// EventLinkConnected to every client).
    SwitchLink {
        /// host:port of the simulator.
        endpoint: String,
        #[arg(value_enum)]
        state: LinkState,
    },
}

/// A switch link state.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum LinkState {
    Down,
    Up,
}

/// Event forms (docs/cti-link.md).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default)]
pub enum WireArg {
    /// Only what the document requires, plus `call_type`/`other_dn` where a call appears.
    #[default]
    Minimal,
    /// Every attribute on every event.
    Full,
}

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub listen: String,
    /// Server name reported to clients.
    #[arg(long, default_value = "SimTServer")]
    pub name: String,
    /// Play this scenario (JSON lines) instead of random traffic.
    #[arg(long, conflicts_with_all = ["idle", "stream"])]
    pub script: Option<PathBuf>,
    /// A steady stream of short calls on --dns at this many events per second (0: as
    /// fast as the links take them) instead of random traffic.
    #[arg(long, conflicts_with = "idle")]
    pub stream: Option<f64>,
    /// Stream: stop after this many events.
    #[arg(long, requires = "stream")]
    pub stream_count: Option<u64>,
    /// Append a JSON line per event written to a link to this file.
    #[arg(long)]
    pub sent_log: Option<PathBuf>,
    /// Event form.
    #[arg(long, value_enum, default_value_t = WireArg::Minimal)]
    pub wire: WireArg,
    /// No traffic at all: only links and registrations.
    #[arg(long)]
    pub idle: bool,
    /// Scenario speed-up factor (timestamps keep the scenario's own offsets).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Random traffic: seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Random traffic: agent DNs, e.g. 5001-5025,6001.
    #[arg(long, default_value = "5001-5025")]
    pub dns: String,
    /// Random traffic: new calls per minute.
    #[arg(long, default_value_t = 20.0)]
    pub calls_per_minute: f64,
    /// First generated ConnID (hex digits of the ConnIDs this simulator makes).
    #[arg(long, default_value_t = 0)]
    pub connid_base: u64,
}

/// Parse `5001-5025,6001` into DN numbers.
pub fn parse_dns(spec: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (
                    a.parse().map_err(|_| format!("{part:?} is not a DN range"))?,
                    b.parse().map_err(|_| format!("{part:?} is not a DN range"))?,
                );
                if a > b || b - a > 100_000 {
                    return Err(format!("{part:?} is not a DN range"));
                }
                out.extend((a..=b).map(|n| n.to_string()));
            }
            None => out.push(part.to_string()),
        }
    }
    if out.is_empty() {
        return Err("no DNs given".into());
    }
    Ok(out)
}

impl SimArgs {
    /// The simulator this names.
    pub fn build(&self) -> Result<SimConfig, CliError> {
        let mode = match &self.script {
            None if self.idle => SimMode::Idle,
            None if self.stream.is_some() => {
                let rate = self.stream.unwrap_or_default();
                if !rate.is_finite() || rate < 0.0 || (rate > 0.0 && rate < 0.01) {
                    return Err(input(format!("--stream must be 0 (as fast as possible) or at least 0.01 events per second, got {rate}")));
                }
                SimMode::Stream { dns: parse_dns(&self.dns).map_err(input)?, rate, count: self.stream_count }
            }
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| input(format!("cannot read {}: {e}", path.display())))?;
                let steps = parse_scenario(&text).map_err(|e| input(format!("{}: {e}", path.display())))?;
                if !self.speed.is_finite() || self.speed <= 0.0 {
                    return Err(input(format!("speed must be positive, got {}", self.speed)));
                }
                SimMode::Script { steps, speed: self.speed }
            }
            None => SimMode::Random(TrafficConfig {
                seed: self.seed,
                dns: parse_dns(&self.dns).map_err(input)?,
                calls_per_minute: self.calls_per_minute,
            }),
        };
        let wire = match self.wire {
            WireArg::Minimal => Wire::Minimal,
            WireArg::Full => Wire::Full,
        };
        Ok(SimConfig { name: self.name.clone(), mode, connid_base: self.connid_base, wire, sent_log: self.sent_log.clone() })
    }
}

pub async fn run(cmd: SimCmd) -> Result<(), CliError> {
    match cmd {
        SimCmd::Tserver(args) => {
            let config = args.build()?;
            let listener = TcpListener::bind(&args.listen).await.map_err(|e| input(format!("cannot listen on {}: {e}", args.listen)))?;
            let (tx, rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                let _ = tx.send(true);
            });
            netwatch_producers::sim::run(config, listener, rx).await?;
            Ok(())
        }
        SimCmd::DropLinks { endpoint } => {
            println!("dropped {} links", netwatch_producers::sim::drop_links(&endpoint).await?);
            Ok(())
        }
        SimCmd::SwitchLink { endpoint, state } => {
            let status = netwatch_producers::sim::switch_link(&endpoint, matches!(state, LinkState::Up)).await?;
            println!("switch link {}", if status.switch_link { "up" } else { "down" });
            Ok(())
        }
        SimCmd::Status { endpoint } => {
            let status = query_status(&endpoint).await?;
            println!("{}", serde_json::to_string_pretty(&status)?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_dns;

    #[test]
    fn dn_lists_and_ranges() {
        assert_eq!(parse_dns("5001-5003,6001").unwrap(), ["5001", "5002", "5003", "6001"]);
        assert!(parse_dns("5003-5001").is_err());
        assert!(parse_dns("").is_err());
    }
}
