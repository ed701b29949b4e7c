//! `netwatch config ...`: validated changes to the configuration.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use netwatch_eventlog::{Log, Topic};
use netwatch_producers::config::{ConfigState, ImportLine};
use netwatch_schemas::config::{ConfigChange, ConfigEvent, Dn, DnRef, DnType, Group, GroupKind, GroupRef, ServerKind, TServer, TServerRef};
use netwatch_schemas::{encode, now_ms};

use crate::{input, CliError, Ctx};

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// T-Servers.
    #[command(subcommand)]
    Tserver(TServerCmd),
    /// Directory numbers.
    #[command(subcommand)]
    Dn(DnCmd),
    /// Agent groups and DN groups, whose statistics are kept together
    /// (docs/statistics.md).
    #[command(subcommand)]
    Group(GroupCmd),
    /// Apply a JSON-lines file of changes, all or nothing.
    Import {
        /// One change per line, e.g. {"op":"create_dn","tserver":1,"dbid":101,"number":"5001"}.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum TServerCmd {
    Create(TServerArgs),
    Update(TServerUpdate),
    Delete {
        #[arg(long)]
        id: i32,
    },
}

#[derive(Args, Debug)]
pub struct TServerArgs {
    /// T-Server id (its DBID).
    #[arg(long)]
    id: i32,
    #[arg(long)]
    name: String,
    /// Host of its CTI link.
    #[arg(long)]
    host: String,
    /// Port of its CTI link (Kamailio: of evapi).
    #[arg(long)]
    port: i32,
    /// How monitors talk to it: `cti` (a CTI link, docs/cti-link.md) or `kamailio` (evapi
    /// events and JSON-RPC, docs/sip.md).
    #[arg(long, default_value = "cti")]
    kind: ServerKind,
    /// Kamailio's JSON-RPC URL [default: http://HOST:(PORT+1)/RPC].
    #[arg(long)]
    rpc: Option<String>,
}

#[derive(Args, Debug)]
pub struct TServerUpdate {
    #[arg(long)]
    id: i32,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    host: Option<String>,
    #[arg(long)]
    port: Option<i32>,
    /// Kamailio's JSON-RPC URL.
    #[arg(long)]
    rpc: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum DnCmd {
    Create {
        #[arg(long)]
        tserver: i32,
        /// DBID, unique across all DNs.
        #[arg(long)]
        dbid: i32,
        #[arg(long)]
        number: String,
        /// extension, acd-position, acd-queue or routing-point.
        #[arg(long = "type", default_value = "extension")]
        dn_type: DnType,
    },
    Update {
        #[arg(long)]
        tserver: i32,
        #[arg(long)]
        number: String,
        #[arg(long = "type")]
        dn_type: DnType,
    },
    Delete {
        #[arg(long)]
        tserver: i32,
        #[arg(long)]
        number: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    Create {
        #[arg(long)]
        tserver: i32,
        /// Group id (its DBID), unique across all groups.
        #[arg(long)]
        id: i32,
        #[arg(long)]
        name: String,
        /// `agent` (members are agent ids) or `dn` (members are DNs of the T-Server).
        #[arg(long)]
        kind: GroupKind,
        /// Members, comma-separated.
        #[arg(long, value_delimiter = ',')]
        members: Vec<String>,
    },
    Update {
        #[arg(long)]
        tserver: i32,
        #[arg(long)]
        id: i32,
        #[arg(long)]
        name: Option<String>,
        /// The members from now on (replaces the list), comma-separated.
        #[arg(long, value_delimiter = ',', conflicts_with_all = ["add", "remove"])]
        members: Option<Vec<String>>,
        /// Members to add, comma-separated.
        #[arg(long, value_delimiter = ',')]
        add: Vec<String>,
        /// Members to remove, comma-separated.
        #[arg(long, value_delimiter = ',')]
        remove: Vec<String>,
    },
    Delete {
        #[arg(long)]
        tserver: i32,
        #[arg(long)]
        id: i32,
    },
}

/// The configuration as the log holds it now (from the last command's snapshot and the
/// records appended since: [`crate::config_snapshot`]).
pub async fn current_state(log: &Log) -> Result<ConfigState, CliError> {
    Ok(crate::config_snapshot::current_state(log).await?)
}

/// Validate every change against the current configuration, then append them all.
pub async fn submit(log: &Log, source: &str, changes: Vec<ConfigChange>, state: &mut ConfigState) -> Result<(), CliError> {
    for (i, change) in changes.iter().enumerate() {
        state.accept(change).map_err(|e| if changes.len() > 1 { input(format!("change {}: {e}", i + 1)) } else { input(e.to_string()) })?;
    }
    // Pipelined: every change is handed to the idempotent producer at once (order kept per
    // T-Server, which is the partition key), then every acknowledgement awaited.
    let topic = log.topic(Topic::Config);
    let mut records = Vec::with_capacity(changes.len());
    for change in changes {
        let tserver = change.tserver_id();
        let event = ConfigEvent { event_id: uuid::Uuid::new_v4().to_string(), at_ms: now_ms(), source: source.to_string(), change };
        records.push((topic.clone(), tserver.to_string(), log.topics.tserver_partition(tserver), encode(&event)?));
    }
    log.producer.send_all(&records).await?;
    Ok(())
}

fn source() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default();
    format!("cli@{host}")
}

pub async fn run(ctx: &Ctx, cmd: ConfigCmd) -> Result<(), CliError> {
    // Parse the input completely before touching the log.
    let import = match &cmd {
        ConfigCmd::Import { file } => {
            let text = std::fs::read_to_string(file).map_err(|e| input(format!("cannot read {}: {e}", file.display())))?;
            let mut lines = Vec::new();
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let parsed: ImportLine = serde_json::from_str(line)
                    .map_err(|e| input(format!("{} line {}: {e}; nothing was appended", file.display(), i + 1)))?;
                lines.push(parsed);
            }
            Some(lines)
        }
        _ => None,
    };
    let log = ctx.log()?;
    log.producer.warm_up();
    let mut state = current_state(&log).await?;
    let (changes, source) = match cmd {
        ConfigCmd::Tserver(TServerCmd::Create(a)) => {
            let tserver = TServer { id: a.id, name: a.name, host: a.host, port: a.port, kind: a.kind, rpc: a.rpc };
            (vec![ConfigChange::TServerCreated(tserver)], source())
        }
        ConfigCmd::Tserver(TServerCmd::Update(a)) => {
            let mut t = state.tserver(a.id).map_err(|e| input(e.to_string()))?.clone();
            t.name = a.name.unwrap_or(t.name);
            t.host = a.host.unwrap_or(t.host);
            t.port = a.port.unwrap_or(t.port);
            t.rpc = a.rpc.or(t.rpc);
            (vec![ConfigChange::TServerUpdated(t)], source())
        }
        ConfigCmd::Tserver(TServerCmd::Delete { id }) => (vec![ConfigChange::TServerDeleted(TServerRef { id })], source()),
        ConfigCmd::Dn(DnCmd::Create { tserver, dbid, number, dn_type }) => {
            (vec![ConfigChange::DnCreated(Dn { dbid, tserver, number, dn_type })], source())
        }
        ConfigCmd::Dn(DnCmd::Update { tserver, number, dn_type }) => {
            let mut d = state.dn(tserver, &number).map_err(|e| input(e.to_string()))?.clone();
            d.dn_type = dn_type;
            (vec![ConfigChange::DnUpdated(d)], source())
        }
        ConfigCmd::Dn(DnCmd::Delete { tserver, number }) => {
            let d = state.dn(tserver, &number).map_err(|e| input(e.to_string()))?;
            (vec![ConfigChange::DnDeleted(DnRef { dbid: d.dbid, tserver, number })], source())
        }
        ConfigCmd::Group(GroupCmd::Create { tserver, id, name, kind, members }) => {
            (vec![ConfigChange::GroupCreated(Group { id, tserver, name, kind, members })], source())
        }
        ConfigCmd::Group(GroupCmd::Update { tserver, id, name, members, add, remove }) => {
            let mut g = state.group(id, tserver).map_err(|e| input(e.to_string()))?.clone();
            g.name = name.unwrap_or(g.name);
            if let Some(members) = members {
                g.members = members;
            }
            g.members.retain(|m| !remove.contains(m));
            for m in add {
                if !g.members.contains(&m) {
                    g.members.push(m);
                }
            }
            (vec![ConfigChange::GroupUpdated(g)], source())
        }
        ConfigCmd::Group(GroupCmd::Delete { tserver, id }) => (vec![ConfigChange::GroupDeleted(GroupRef { id, tserver })], source()),
        ConfigCmd::Import { file } => {
            // Each line is turned into a change against the state as the lines before it
            // leave it, so a file can create a T-Server and then its DNs.
            let mut scratch = state.clone();
            let mut changes = Vec::new();
            for (i, line) in import.unwrap_or_default().into_iter().enumerate() {
                let change = line.to_change(&scratch).map_err(|e| input(format!("{} change {}: {e}", file.display(), i + 1)))?;
                scratch.accept(&change).map_err(|e| input(format!("{} change {}: {e}", file.display(), i + 1)))?;
                changes.push(change);
            }
            (changes, format!("import:{}", file.display()))
        }
    };
    let count = changes.len();
    submit(&log, &source, changes, &mut state).await?;
    log.producer.flush(std::time::Duration::from_secs(10))?;
    println!("appended {count} change{}", if count == 1 { "" } else { "s" });
    Ok(())
}
