//! `netwatch cdc postgres`: the committed changes of a PostgreSQL provisioning database
//! (a T-Server table and a DN table, infra/postgres/schema.sql) stream into `config`, the
//! same events `netwatch config` appends and validated the same way (docs/cdc.md).
//!
//! Logical decoding through plain SQL (wal2json, format 2): the process peeks at its slot,
//! appends each committed transaction's changes in commit order, and advances the slot
//! only after the broker acknowledged them. Every event carries its position — the slot,
//! the transaction's commit LSN and the change's index in it — in headers. On start the
//! slot hands out again the transactions committed after its confirmed position; the
//! configuration is rebuilt as it was before them, and each change of theirs whose position
//! is in `config` (or `deadletter`, for the changes it refused) is replayed into that state
//! without being appended: a crash between the append and the slot's advance, even one that
//! left only some partitions' records acknowledged, appends nothing twice and loses
//! nothing.
//!
//! The first start takes a snapshot: the slot is created first, then the tables are read
//! in one REPEATABLE READ transaction together with `pg_current_snapshot()`. A streamed
//! transaction whose changes that snapshot already saw (its xid is visible in it) is
//! skipped, every other one is applied: the switch loses and repeats nothing.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use clap::{Args, Subcommand};
use netwatch_eventlog::{header, Log, Topic};
use netwatch_producers::config::ConfigState;
use netwatch_schemas::config::{ConfigChange, ConfigEvent, Dn, DnType, ServerKind, TServer, TServerRef};
use netwatch_schemas::{decode, encode, now_ms};
use serde::Deserialize;
use tokio_postgres::{Client, NoTls};
use tracing::{info, warn};

use crate::{input, CliError, Ctx};

/// Headers of the events this process appends.
pub mod headers {
    /// The replication slot the event came through.
    pub const SLOT: &str = "netwatch.cdc.slot";
    /// `<commit LSN>#<index of the change in its transaction>`; the snapshot's events
    /// have commit LSN 0/0.
    pub const POSITION: &str = "netwatch.cdc.position";
    /// On the snapshot's events: `xmin:xmax:xip,...` of the snapshot (pg_current_snapshot).
    pub const SNAPSHOT: &str = "netwatch.cdc.snapshot";
    /// On the record that ends a snapshot (a `config` record without a value, keyed by the
    /// slot): the snapshot is complete.
    pub const SNAPSHOT_END: &str = "netwatch.cdc.snapshot-end";
}

#[derive(Subcommand, Debug)]
pub enum CdcCmd {
    /// Stream a PostgreSQL provisioning database's committed changes into `config`.
    Postgres(PostgresArgs),
}

#[derive(Args, Debug)]
pub struct PostgresArgs {
    /// Connection string, e.g. "host=127.0.0.1 port=5433 user=postgres dbname=netwatch"
    /// (the user needs the REPLICATION attribute or superuser).
    #[arg(long, env = "NETWATCH_CDC_DSN", hide_env_values = true)]
    dsn: String,
    /// Logical replication slot (created with the wal2json plugin if missing).
    #[arg(long, default_value = "netwatch_config")]
    slot: String,
    /// The T-Server table and the DN table, schema-qualified.
    #[arg(long, value_delimiter = ',', default_value = "public.tservers,public.dns")]
    tables: Vec<String>,
    /// Time between looks at the slot when nothing is waiting.
    #[arg(long, default_value = "200ms")]
    poll: humantime::Duration,
    /// How often an idle slot is advanced to the end of the WAL, so it pins none.
    #[arg(long, default_value = "10s")]
    heartbeat: humantime::Duration,
    /// Changes read per look (whole transactions: a look may return more).
    #[arg(long, default_value_t = 1000)]
    batch: i32,
}

/// A position in the stream: (commit LSN, index of the change in its transaction).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub commit_lsn: u64,
    pub index: u32,
}

impl Position {
    pub fn header(&self) -> String {
        format!("{}#{}", fmt_lsn(self.commit_lsn), self.index)
    }

    pub fn parse(text: &str) -> Option<Position> {
        let (lsn, index) = text.split_once('#')?;
        Some(Position { commit_lsn: parse_lsn(lsn)?, index: index.parse().ok()? })
    }
}

/// PostgreSQL's `X/Y` LSN as a number.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// A number as PostgreSQL's `X/Y` LSN.
pub fn fmt_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// A snapshot's visibility (`pg_current_snapshot()`): which transactions it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub xmin: u64,
    pub xmax: u64,
    pub xip: Vec<u64>,
    text: String,
}

impl Snapshot {
    pub fn parse(text: &str) -> Option<Snapshot> {
        let mut parts = text.split(':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let xip = parts.next()?.split(',').filter(|x| !x.is_empty()).map(|x| x.parse().ok()).collect::<Option<Vec<u64>>>()?;
        Some(Snapshot { xmin, xmax, xip, text: text.to_string() })
    }

    /// Did the snapshot see the committed transaction `xid` (wal2json's 32-bit xid)? The
    /// snapshot's xids carry an epoch; the comparison is within the current epoch.
    pub fn saw(&self, xid: u64) -> bool {
        let low = |x: u64| x & 0xffff_ffff;
        let (xmin, xmax) = (low(self.xmin), low(self.xmax));
        xid < xmin || (xid < xmax && !self.xip.iter().any(|x| low(*x) == xid))
    }
}

/// One wal2json (format 2) row.
#[derive(Clone, Debug, Deserialize)]
struct Row {
    action: String,
    #[serde(default)]
    xid: Option<u64>,
    #[serde(default)]
    lsn: Option<String>,
    #[serde(default)]
    schema: Option<String>,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    columns: Vec<Column>,
    #[serde(default)]
    identity: Vec<Column>,
}

impl Row {
    /// (schema, table) the row is of.
    fn table(&self) -> (String, String) {
        (self.schema.clone().unwrap_or_default(), self.table.clone().unwrap_or_default())
    }
}

#[derive(Clone, Debug, Deserialize)]
struct Column {
    name: String,
    value: serde_json::Value,
}

/// A committed transaction read from the slot.
#[derive(Debug, Default)]
struct Txn {
    xid: u64,
    commit_lsn: u64,
    /// Where the slot may be advanced to once it is appended.
    end_lsn: u64,
    /// Each change as wal2json wrote it, and parsed.
    changes: Vec<(String, Row)>,
}

/// The two tables.
#[derive(Clone, Debug)]
struct Tables {
    tservers: (String, String),
    dns: (String, String),
}

impl Tables {
    fn parse(list: &[String]) -> Result<Tables, CliError> {
        let qualified = |t: &str| -> Result<(String, String), CliError> {
            let (schema, table) = t.split_once('.').unwrap_or(("public", t));
            // Unquoted, as PostgreSQL folds them: wal2json names tables as stored.
            let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if ok(schema) && ok(table) {
                Ok((schema.to_string(), table.to_string()))
            } else {
                Err(input(format!("table {t:?} is not SCHEMA.TABLE of lower-case letters, digits and _")))
            }
        };
        match list {
            [t, d] => Ok(Tables { tservers: qualified(t)?, dns: qualified(d)? }),
            _ => Err(input("--tables takes two tables: the T-Servers' and the DNs' (e.g. public.tservers,public.dns)")),
        }
    }

    fn add_tables(&self) -> String {
        format!("{}.{},{}.{}", self.tservers.0, self.tservers.1, self.dns.0, self.dns.1)
    }
}

fn column<'a>(cols: &'a [Column], name: &str) -> Result<&'a serde_json::Value, String> {
    cols.iter().find(|c| c.name == name).map(|c| &c.value).ok_or_else(|| format!("the row has no column {name:?}"))
}

fn int(cols: &[Column], name: &str) -> Result<i32, String> {
    let v = column(cols, name)?;
    v.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or_else(|| format!("column {name} is {v}, not a 32-bit integer"))
}

fn text(cols: &[Column], name: &str) -> Result<String, String> {
    let v = column(cols, name)?;
    v.as_str().map(str::to_string).ok_or_else(|| format!("column {name} is {v}, not text"))
}

fn tserver_of(cols: &[Column]) -> Result<TServer, String> {
    let kind = match column(cols, "kind") {
        Ok(serde_json::Value::Null) | Err(_) => ServerKind::Cti,
        Ok(v) => v.as_str().unwrap_or_default().parse()?,
    };
    let rpc = match column(cols, "rpc_url") {
        Ok(v) => v.as_str().map(str::to_string),
        Err(_) => None,
    };
    Ok(TServer { id: int(cols, "id")?, name: text(cols, "name")?, host: text(cols, "host")?, port: int(cols, "port")?, kind, rpc })
}

fn dn_of(cols: &[Column]) -> Result<Dn, String> {
    let dn_type = match column(cols, "type") {
        Ok(serde_json::Value::Null) | Err(_) => DnType::Extension,
        Ok(v) => v.as_str().unwrap_or_default().parse()?,
    };
    Ok(Dn { dbid: int(cols, "dbid")?, tserver: int(cols, "tserver")?, number: text(cols, "number")?, dn_type })
}

/// The `config` changes one row change means, given the configuration so far; the reason
/// when it means none Netwatch accepts.
fn changes_of(state: &ConfigState, tables: &Tables, row: &Row) -> Result<Vec<ConfigChange>, String> {
    let table = row.table();
    if row.action == "T" {
        // TRUNCATE empties the table: every DN is deleted, and of the T-Server table every
        // T-Server too (its DNs first; PostgreSQL truncates the DN table with it).
        let dns = state.dns.values().map(|d| ConfigChange::DnDeleted(d.identity()));
        if table == tables.tservers {
            let tservers = state.tservers.keys().map(|&id| ConfigChange::TServerDeleted(TServerRef { id }));
            return Ok(dns.chain(tservers).collect());
        }
        if table == tables.dns {
            return Ok(dns.collect());
        }
    }
    if table == tables.tservers {
        return Ok(vec![match row.action.as_str() {
            "I" => ConfigChange::TServerCreated(tserver_of(&row.columns)?),
            "U" => ConfigChange::TServerUpdated(tserver_of(&row.columns)?),
            "D" => ConfigChange::TServerDeleted(TServerRef { id: int(&row.identity, "id")? }),
            other => return Err(format!("unexpected action {other:?}")),
        }]);
    }
    if table == tables.dns {
        let gone = |dbid: i32| {
            state
                .dn_by_dbid(dbid)
                .map(|d| ConfigChange::DnDeleted(d.identity()))
                .ok_or_else(|| format!("no DN with DBID {dbid} is configured"))
        };
        return match row.action.as_str() {
            "I" => Ok(vec![ConfigChange::DnCreated(dn_of(&row.columns)?)]),
            "U" => {
                let new = dn_of(&row.columns)?;
                let old_dbid = row.identity.iter().find(|c| c.name == "dbid").map_or(Ok(new.dbid), |_| int(&row.identity, "dbid"))?;
                Ok(match state.dn_by_dbid(old_dbid) {
                    Some(old) => replaced(old, new),
                    None => vec![ConfigChange::DnUpdated(new)],
                })
            }
            "D" => Ok(vec![gone(int(&row.identity, "dbid")?)?]),
            other => Err(format!("unexpected action {other:?}")),
        };
    }
    Err(format!("table {}.{} is not one this source reads", table.0, table.1))
}

/// A configured DN that becomes `new`: an update, or — when its DBID, T-Server or number
/// change — the deletion of the old and the creation of the new (Netwatch keys a DN by
/// T-Server and number: a row that changes them is another DN).
fn replaced(old: &Dn, new: Dn) -> Vec<ConfigChange> {
    if (old.dbid, old.tserver, &old.number) == (new.dbid, new.tserver, &new.number) {
        vec![ConfigChange::DnUpdated(new)]
    } else {
        vec![ConfigChange::DnDeleted(old.identity()), ConfigChange::DnCreated(new)]
    }
}

/// The changes that make the configuration hold one snapshot row as it is: nothing when
/// it does, else a creation or what [`replaced`] says.
fn snapshot_changes(state: &ConfigState, tables: &Tables, row: &Row) -> Result<Vec<ConfigChange>, String> {
    if row.table() == tables.tservers {
        let t = tserver_of(&row.columns)?;
        return Ok(match state.tservers.get(&t.id) {
            None => vec![ConfigChange::TServerCreated(t)],
            Some(old) if *old == t => vec![],
            Some(_) => vec![ConfigChange::TServerUpdated(t)],
        });
    }
    let d = dn_of(&row.columns)?;
    Ok(match state.dn_by_dbid(d.dbid) {
        None => vec![ConfigChange::DnCreated(d)],
        Some(old) if *old == d => vec![],
        Some(old) => replaced(old, d),
    })
}

/// What the log says about this slot: the configuration, the last position appended or
/// dead-lettered, the snapshot taken, and what of the transactions the slot hands out again
/// was appended already.
struct Resume {
    /// The configuration before the transactions the slot hands out again.
    state: ConfigState,
    /// The last position appended or dead-lettered; None until a snapshot was completed.
    last: Option<Position>,
    /// The visibility of the completed snapshot.
    snapshot: Option<Snapshot>,
    /// Positions in the log of transactions committed at or after the slot's confirmed
    /// position: appended or dead-lettered before a crash that came before the advance.
    done: HashSet<Position>,
}

/// This slot's place in the log. `confirmed`: the slot's confirmed_flush_lsn; transactions
/// that committed before it are never handed out again, later ones are.
async fn resume(log: &Log, slot: &str, confirmed: Option<u64>) -> Result<Resume, CliError> {
    let (mut last, mut snapshot, mut complete) = (None::<Position>, None, false);
    let mut done = HashSet::new();
    let mut partitions: BTreeMap<i32, VecDeque<Folded>> = BTreeMap::new();
    for topic in [Topic::Config, Topic::DeadLetter] {
        for r in log.read_all(topic, None).await? {
            let header = |name: &str| r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
            let ours = header(headers::SLOT) == Some(slot);
            let at = if ours { header(headers::POSITION).and_then(Position::parse) } else { None };
            // Of a transaction the slot hands out again: replayed, not folded.
            let again = at.filter(|p| p.commit_lsn > 0 && confirmed.is_some_and(|c| p.commit_lsn >= c));
            if let Some(p) = again {
                done.insert(p);
            } else if topic == Topic::Config {
                if let Some(event) = r.value.as_deref().and_then(|v| decode::<ConfigEvent>(v).ok()) {
                    partitions.entry(r.partition).or_default().push_back(Folded { at_ms: event.at_ms, position: at, change: event.change });
                }
            }
            if let Some(p) = at {
                complete |= p.commit_lsn > 0;
                last = last.max(Some(p));
            }
            if ours && header(headers::SNAPSHOT_END).is_some() {
                complete = true;
                snapshot = header(headers::SNAPSHOT).and_then(Snapshot::parse);
            }
        }
    }
    // A snapshot cut short by a crash is taken again: what it appended is in the
    // configuration, so the new one appends the rest.
    if !complete {
        (last, snapshot) = (None, None);
    }
    Ok(Resume { state: fold(partitions), last, snapshot, done })
}

/// A `config` event to fold into the configuration.
struct Folded {
    at_ms: i64,
    /// This slot's position, for events of this source.
    position: Option<Position>,
    change: ConfigChange,
}

/// The configuration the events make: each partition in its order, the partitions merged by
/// the events' time (a DN moved to another T-Server is deleted in one partition and created
/// in another, and the deletion must come first); this source's events of one millisecond
/// by their position.
fn fold(mut partitions: BTreeMap<i32, VecDeque<Folded>>) -> ConfigState {
    let mut state = ConfigState::default();
    while let Some(p) = partitions.iter().filter_map(|(p, q)| q.front().map(|f| ((f.at_ms, f.position), *p))).min().map(|(_, p)| p) {
        if let Some(f) = partitions.get_mut(&p).and_then(VecDeque::pop_front) {
            // Appended events were valid when appended.
            let _ = state.accept(&f.change);
        }
    }
    state
}

pub async fn run(ctx: &Ctx, cmd: CdcCmd) -> Result<(), CliError> {
    let CdcCmd::Postgres(args) = cmd;
    let tables = Tables::parse(&args.tables)?;
    if args.slot.is_empty() || !args.slot.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(input(format!("slot {:?} must be lower-case letters, digits and _", args.slot)));
    }
    let log = ctx.log()?;
    let (client, connection) = tokio_postgres::connect(&args.dsn, NoTls)
        .await
        .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot connect to PostgreSQL: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(error = %e, "The PostgreSQL connection ended.");
        }
    });
    let shutdown = crate::roles::shutdown_on_signal();
    let mut cdc = Cdc::start(client, log, args.slot.clone(), tables, args.batch).await?;
    let mut idle_since = tokio::time::Instant::now();
    let mut busy_since = tokio::time::Instant::now();
    loop {
        if *shutdown.borrow() {
            info!(slot = %cdc.slot, "Stopped.");
            return Ok(());
        }
        let moved = match cdc.step().await {
            Ok(moved) => moved,
            // A reader killed while it peeked leaves its server process finishing the
            // query, holding the slot for a moment: wait for it (another live reader of the
            // slot keeps it for longer, and this one gives up).
            Err(CliError::Failed(e)) if e.to_string().contains("is active for PID") && busy_since.elapsed() < SLOT_BUSY_PATIENCE => {
                warn!(slot = %cdc.slot, error = %e, "The slot is busy; trying again.");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        busy_since = tokio::time::Instant::now();
        if moved {
            idle_since = tokio::time::Instant::now();
            continue;
        }
        if idle_since.elapsed() >= Duration::from(args.heartbeat) {
            cdc.heartbeat().await?;
            idle_since = tokio::time::Instant::now();
        }
        tokio::time::sleep(args.poll.into()).await;
    }
}

/// How long a slot held by another server process is waited for.
const SLOT_BUSY_PATIENCE: Duration = Duration::from_secs(60);

struct Cdc {
    client: Client,
    log: Log,
    slot: String,
    tables: Tables,
    batch: i32,
    resume: Resume,
}

fn pg(e: tokio_postgres::Error) -> CliError {
    CliError::Failed(anyhow::anyhow!("PostgreSQL: {}", e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())))
}

impl Cdc {
    /// Check the slot, read the log to resume, and on the first start create the slot and
    /// snapshot the tables.
    async fn start(client: Client, log: Log, slot: String, tables: Tables, batch: i32) -> Result<Cdc, CliError> {
        let row = client
            .query_opt(
                "SELECT plugin, wal_status, confirmed_flush_lsn::text FROM pg_replication_slots \
                 WHERE slot_name = $1 AND database = current_database()",
                &[&slot],
            )
            .await
            .map_err(pg)?;
        let confirmed = row.as_ref().and_then(|r| r.get::<_, Option<String>>(2)).and_then(|l| parse_lsn(&l));
        let resume = resume(&log, &slot, confirmed).await?;
        let mut cdc = Cdc { client, log, slot, tables, batch, resume };
        cdc.open(row).await?;
        Ok(cdc)
    }

    async fn open(&mut self, row: Option<tokio_postgres::Row>) -> Result<(), CliError> {
        match row {
            None if self.resume.last.is_some() => {
                return Err(CliError::Failed(anyhow::anyhow!(
                    "slot {} is gone, so the changes since {} cannot be read; to start over from the tables' content, \
                     run again with another --slot (it takes a new snapshot)",
                    self.slot,
                    self.resume.last.map(|p| p.header()).unwrap_or_default()
                )))
            }
            None => {
                self.client.execute("SELECT pg_create_logical_replication_slot($1, 'wal2json')", &[&self.slot]).await.map_err(pg)?;
                info!(slot = %self.slot, "Replication slot created.");
            }
            Some(r) => {
                let (plugin, status): (String, Option<String>) = (r.get(0), r.get(1));
                if plugin != "wal2json" {
                    return Err(input(format!("slot {} decodes with {plugin}, not wal2json", self.slot)));
                }
                self.check_status(status.as_deref())?;
            }
        }
        if self.resume.last.is_none() {
            self.snapshot().await?;
        }
        info!(slot = %self.slot, after = %self.resume.last.map(|p| p.header()).unwrap_or_default(), "Streaming changes.");
        Ok(())
    }

    fn check_status(&self, status: Option<&str>) -> Result<(), CliError> {
        match status {
            Some("lost") => Err(CliError::Failed(anyhow::anyhow!(
                "slot {} was invalidated (it held more WAL than max_slot_wal_keep_size allows) and changes were lost; \
                 drop it (SELECT pg_drop_replication_slot('{}')) and run again with a new --slot to take a new snapshot",
                self.slot,
                self.slot
            ))),
            None => Err(CliError::Failed(anyhow::anyhow!("slot {} disappeared while streaming", self.slot))),
            _ => Ok(()),
        }
    }

    /// Read both tables in one snapshot and append what the configuration lacks.
    async fn snapshot(&mut self) -> Result<(), CliError> {
        let tx = self
            .client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg)?;
        let snapshot: String = tx.query_one("SELECT pg_current_snapshot()::text", &[]).await.map_err(pg)?.get(0);
        let read = |(schema, table): &(String, String)| format!("SELECT row_to_json(t)::text FROM {schema}.{table} t");
        let mut rows = Vec::new();
        for (table, cols) in [(&self.tables.tservers, "id"), (&self.tables.dns, "dbid")] {
            for r in tx.query(&format!("{} ORDER BY {cols}", read(table)), &[]).await.map_err(pg)? {
                let json: String = r.get(0);
                let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&json).map_err(|e| input(e.to_string()))?;
                let columns = object.into_iter().map(|(name, value)| Column { name, value }).collect();
                let row = Row {
                    action: "I".into(),
                    xid: None,
                    lsn: None,
                    schema: Some(table.0.clone()),
                    table: Some(table.1.clone()),
                    columns,
                    identity: vec![],
                };
                rows.push((json, row));
            }
        }
        tx.commit().await.map_err(pg)?;
        let snap = Snapshot::parse(&snapshot).ok_or_else(|| input(format!("unexpected snapshot {snapshot:?}")))?;
        // The configuration becomes the tables' content: what it holds and the tables do not
        // is deleted (DNs first, so that a number now held by another DBID is free again;
        // T-Servers last, after their DNs), and each row is created or updated where it
        // differs.
        let ids = |table: &(String, String), key: &str| -> HashSet<i32> {
            rows.iter().filter(|(_, r)| r.table() == *table).filter_map(|(_, r)| int(&r.columns, key).ok()).collect()
        };
        let (tserver_ids, dn_ids) = (ids(&self.tables.tservers, "id"), ids(&self.tables.dns, "dbid"));
        let state = &self.resume.state;
        let absent = |change: ConfigChange| {
            let json = serde_json::json!({ "snapshot": "not in the tables", "change": format!("{change:?}") }).to_string();
            (json, Ok(vec![change]))
        };
        let absent_dns: Vec<_> =
            state.dns.values().filter(|d| !dn_ids.contains(&d.dbid)).map(|d| absent(ConfigChange::DnDeleted(d.identity()))).collect();
        let absent_tservers: Vec<_> = state
            .tservers
            .keys()
            .filter(|id| !tserver_ids.contains(id))
            .map(|&id| absent(ConfigChange::TServerDeleted(TServerRef { id })))
            .collect();
        let mut index = 0;
        let mut out = Out::default();
        let mut apply = |out: &mut Out, state: &mut ConfigState, json: &str, changes: Result<Vec<ConfigChange>, String>| match changes {
            Ok(changes) => {
                for change in changes {
                    out.push(state, change, json, Position { commit_lsn: 0, index }, Some(&snap));
                    index += 1;
                }
            }
            Err(reason) => {
                out.refuse(json, reason, Position { commit_lsn: 0, index });
                index += 1;
            }
        };
        for (json, changes) in absent_dns {
            apply(&mut out, &mut self.resume.state, &json, changes);
        }
        for (json, row) in &rows {
            let changes = snapshot_changes(&self.resume.state, &self.tables, row);
            apply(&mut out, &mut self.resume.state, json, changes);
        }
        for (json, changes) in absent_tservers {
            apply(&mut out, &mut self.resume.state, &json, changes);
        }
        info!(slot = %self.slot, rows = rows.len(), appended = out.records.len(), refused = out.refused.len(), "Snapshot taken.");
        out.end_snapshot = Some((snap.text.clone(), Position { commit_lsn: 0, index }));
        self.append(out).await?;
        self.resume.snapshot = Some(snap);
        self.resume.last.get_or_insert(Position::default());
        Ok(())
    }

    /// Read what the slot has up to the present end of the WAL and append it; did anything
    /// move?
    async fn step(&mut self) -> Result<bool, CliError> {
        let r = self
            .client
            .query_one(
                "SELECT pg_current_wal_flush_lsn()::text, (SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1)",
                &[&self.slot],
            )
            .await
            .map_err(pg)?;
        let (upto, status): (String, Option<String>) = (r.get(0), r.get(1));
        self.check_status(status.as_deref())?;
        let rows = self
            .client
            .query(
                "SELECT lsn::text, data FROM pg_logical_slot_peek_changes($1, $2::text::pg_lsn, $3, 'format-version', '2', \
                 'include-xids', '1', 'include-lsn', '1', 'add-tables', $4)",
                &[&self.slot, &upto, &self.batch, &self.tables.add_tables()],
            )
            .await
            .map_err(pg)?;
        if rows.is_empty() {
            return Ok(false);
        }
        let mut txns: Vec<Txn> = Vec::new();
        let mut open: Option<Txn> = None;
        for r in rows {
            let (at, data): (String, String) = (r.get(0), r.get(1));
            let unexpected = |what: &str| CliError::Failed(anyhow::anyhow!("wal2json row {data}: {what}"));
            let row: Row = serde_json::from_str(&data).map_err(|e| unexpected(&e.to_string()))?;
            match row.action.as_str() {
                "B" => open = Some(Txn { xid: row.xid.ok_or_else(|| unexpected("no xid"))?, ..Default::default() }),
                "C" => {
                    if let Some(mut t) = open.take() {
                        t.commit_lsn = row.lsn.as_deref().and_then(parse_lsn).ok_or_else(|| unexpected("no commit LSN"))?;
                        t.end_lsn = parse_lsn(&at).ok_or_else(|| unexpected("no end LSN"))?;
                        txns.push(t);
                    }
                }
                // Logical messages (pg_logical_emit_message) are not table changes.
                "M" => {}
                // Inserts, updates, deletes, truncates; anything else is refused with its
                // reason (changes_of).
                _ => {
                    if let Some(t) = open.as_mut() {
                        t.changes.push((data, row));
                    }
                }
            }
        }
        let Some(end) = txns.last().map(|t| t.end_lsn) else { return Ok(false) };
        let mut out = Out::default();
        for t in &txns {
            if self.resume.snapshot.as_ref().is_some_and(|s| s.saw(t.xid)) {
                continue;
            }
            let mut index = 0;
            for (json, row) in &t.changes {
                match changes_of(&self.resume.state, &self.tables, row) {
                    Ok(changes) => {
                        for change in changes {
                            let at = Position { commit_lsn: t.commit_lsn, index };
                            index += 1;
                            if self.resume.done.contains(&at) {
                                // Appended before a crash that came before the slot's advance.
                                let _ = self.resume.state.accept(&change);
                                continue;
                            }
                            out.push(&mut self.resume.state, change, json, at, None);
                        }
                    }
                    Err(reason) => {
                        let at = Position { commit_lsn: t.commit_lsn, index };
                        index += 1;
                        if !self.resume.done.contains(&at) {
                            out.refuse(json, reason, at);
                        }
                    }
                }
            }
        }
        let last = out.last;
        self.append(out).await?;
        if let Some(l) = last {
            self.resume.last = Some(l);
        }
        // Only now, with the broker's acknowledgement: the slot may forget them.
        self.client.execute("SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)", &[&self.slot, &fmt_lsn(end)]).await.map_err(pg)?;
        Ok(true)
    }

    /// An idle slot: advance it to the end of the WAL so that it keeps none (nothing of
    /// ours committed before that end, or the last look would have returned it).
    async fn heartbeat(&mut self) -> Result<(), CliError> {
        // The flushed end: the peek decodes no further, so the advance must not go further.
        let r = self.client.query_one("SELECT pg_current_wal_flush_lsn()::text", &[]).await.map_err(pg)?;
        let upto: String = r.get(0);
        let rows = self
            .client
            .query(
                "SELECT 1 FROM pg_logical_slot_peek_changes($1, $2::text::pg_lsn, 1, 'format-version', '2', 'add-tables', $3)",
                &[&self.slot, &upto, &self.tables.add_tables()],
            )
            .await
            .map_err(pg)?;
        if rows.is_empty() {
            self.client
                .execute(
                    "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn) WHERE $2::text::pg_lsn > \
                     (SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1)",
                    &[&self.slot, &upto],
                )
                .await
                .map_err(pg)?;
        }
        Ok(())
    }

    /// Append the events and dead letters, pipelined, and wait for the broker.
    async fn append(&self, out: Out) -> Result<(), CliError> {
        let config = self.log.topic(Topic::Config);
        let dead = self.log.topic(Topic::DeadLetter);
        let slot = (headers::SLOT.to_string(), self.slot.clone());
        let mut records: Vec<Owned> = Vec::new();
        for (change, at, snapshot) in out.records {
            let tserver = change.tserver_id();
            let event =
                ConfigEvent { event_id: uuid::Uuid::new_v4().to_string(), at_ms: now_ms(), source: format!("cdc:{}", self.slot), change };
            let mut h = vec![slot.clone(), (headers::POSITION.to_string(), at.header())];
            if let Some(s) = snapshot {
                h.push((headers::SNAPSHOT.to_string(), s));
            }
            records.push((config.clone(), tserver.to_string(), self.log.topics.tserver_partition(tserver), encode(&event)?, h));
        }
        // The snapshot's end, even of an empty one: a restart knows its visibility rule
        // and takes no second snapshot.
        if let Some((snapshot, at)) = out.end_snapshot {
            let h = vec![
                slot.clone(),
                (headers::POSITION.to_string(), at.header()),
                (headers::SNAPSHOT.to_string(), snapshot),
                (headers::SNAPSHOT_END.to_string(), "1".to_string()),
            ];
            records.push((config.clone(), self.slot.clone(), 0, Vec::new(), h));
        }
        for (json, reason, at) in out.refused {
            warn!(slot = %self.slot, position = %at.header(), %reason, "A change Netwatch refuses goes to the dead-letter topic.");
            let h = vec![
                slot.clone(),
                (headers::POSITION.to_string(), at.header()),
                (header::SOURCE_TOPIC.to_string(), format!("postgres:{}", self.slot)),
                (header::REASON.to_string(), reason),
                (header::CONSUMER.to_string(), format!("cdc.{}", self.slot)),
            ];
            records.push((dead.clone(), self.slot.clone(), 0, json.into_bytes(), h));
        }
        let borrowed: Vec<_> = records.iter().map(|(t, k, p, b, h)| (t.as_str(), k.as_str(), *p, b.as_slice(), h.as_slice())).collect();
        self.log.producer.send_all_with(&borrowed).await?;
        Ok(())
    }
}

/// A record to append, owned: (topic, key, partition, bytes, headers).
type Owned = (String, String, i32, Vec<u8>, Vec<(String, String)>);

/// What one look appends: events in commit order, and refused changes.
#[derive(Default)]
struct Out {
    records: Vec<(ConfigChange, Position, Option<String>)>,
    refused: Vec<(String, String, Position)>,
    last: Option<Position>,
    /// End the snapshot with a marker: its visibility and the marker's position.
    end_snapshot: Option<(String, Position)>,
}

impl Out {
    /// Validate `change` against the configuration so far and keep it, or refuse it.
    fn push(&mut self, state: &mut ConfigState, change: ConfigChange, json: &str, at: Position, snapshot: Option<&Snapshot>) {
        self.last = Some(at);
        match state.accept(&change) {
            Ok(()) => self.records.push((change, at, snapshot.map(|s| s.text.clone()))),
            Err(reason) => self.refused.push((json.to_string(), reason.to_string(), at)),
        }
    }

    fn refuse(&mut self, json: &str, reason: String, at: Position) {
        self.last = Some(at);
        self.refused.push((json.to_string(), reason, at));
    }
}

/// Every CDC source the log names, for `netwatch status`: slot, events appended, the
/// last position; with a connection string, the slot's own state and how many bytes of
/// WAL it is behind.
pub async fn sources(log: &Log, dsn: Option<&str>) -> Result<Vec<serde_json::Value>, CliError> {
    let mut slots: BTreeMap<String, (u64, Option<Position>)> = BTreeMap::new();
    for r in log.read_all(Topic::Config, None).await? {
        let header = |name: &str| r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        if let Some(slot) = header(headers::SLOT) {
            let entry = slots.entry(slot).or_default();
            // Events, not the marker that ends a snapshot (it has no value).
            entry.0 += u64::from(r.value.as_ref().is_some_and(|v| !v.is_empty()));
            entry.1 = entry.1.max(header(headers::POSITION).as_deref().and_then(Position::parse));
        }
    }
    let client = match dsn {
        Some(dsn) if !slots.is_empty() => {
            let (client, connection) = tokio_postgres::connect(dsn, NoTls)
                .await
                .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot connect to PostgreSQL: {e}")))?;
            tokio::spawn(connection);
            Some(client)
        }
        _ => None,
    };
    let mut out = Vec::new();
    for (slot, (events, last)) in slots {
        let mut v = serde_json::json!({
            "slot": slot,
            "events": events,
            "last_lsn": last.map(|p| fmt_lsn(p.commit_lsn)),
        });
        if let Some(client) = &client {
            let row = client
                .query_opt(
                    "SELECT confirmed_flush_lsn::text, wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint \
                     FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await
                .map_err(pg)?;
            match row {
                Some(r) => {
                    let (confirmed, status, lag): (Option<String>, Option<String>, Option<i64>) = (r.get(0), r.get(1), r.get(2));
                    v["confirmed_lsn"] = confirmed.into();
                    v["wal_status"] = status.into();
                    v["lag_bytes"] = lag.into();
                }
                None => v["wal_status"] = "missing".into(),
            }
        }
        out.push(v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwatch_schemas::config::DnRef;

    #[test]
    fn lsns_and_positions_read_back() {
        assert_eq!(parse_lsn("0/1956A40"), Some(0x1956A40));
        assert_eq!(parse_lsn("1A/0"), Some(0x1A << 32));
        assert_eq!(fmt_lsn(0x1A_0195_6A40), "1A/1956A40");
        let p = Position { commit_lsn: 0x1956A40, index: 3 };
        assert_eq!(Position::parse(&p.header()), Some(p));
        assert!(Position { commit_lsn: 1, index: 9 } < Position { commit_lsn: 2, index: 0 });
        assert_eq!(parse_lsn("nope"), None);
    }

    #[test]
    fn a_snapshot_saw_what_committed_before_it_only() {
        // xmin 741, xmax 745, 742 and 744 running when it was taken.
        let s = Snapshot::parse("741:745:742,744").unwrap();
        assert!(s.saw(700) && s.saw(743));
        assert!(!s.saw(742) && !s.saw(744) && !s.saw(745) && !s.saw(900));
        let empty = Snapshot::parse("741:741:").unwrap();
        assert!(empty.saw(740) && !empty.saw(741));
    }

    fn row(json: &str) -> Row {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn rows_map_to_the_config_changes_of_netwatch_config() {
        let tables = Tables::parse(&["public.tservers".into(), "public.dns".into()]).unwrap();
        let mut state = ConfigState::default();
        let ts = row(
            r#"{"action":"I","schema":"public","table":"tservers","columns":[{"name":"id","value":1},{"name":"name","value":"TS1"},
            {"name":"host","value":"127.0.0.1"},{"name":"port","value":7001},{"name":"kind","value":"cti"},{"name":"rpc_url","value":null}]}"#,
        );
        let c = changes_of(&state, &tables, &ts).unwrap();
        assert_eq!(c, [ConfigChange::TServerCreated(TServer::cti(1, "TS1", "127.0.0.1", 7001))]);
        state.accept(&c[0]).unwrap();
        let dn = row(r#"{"action":"I","schema":"public","table":"dns","columns":[{"name":"dbid","value":101},{"name":"tserver","value":1},
            {"name":"number","value":"5001"},{"name":"type","value":"acd-position"}]}"#);
        let c = changes_of(&state, &tables, &dn).unwrap();
        state.accept(&c[0]).unwrap();
        // A new number is another DN for Netwatch: the old one goes, the new one comes.
        let renumbered =
            row(r#"{"action":"U","schema":"public","table":"dns","columns":[{"name":"dbid","value":101},{"name":"tserver","value":1},
            {"name":"number","value":"5002"},{"name":"type","value":"acd-position"}],"identity":[{"name":"dbid","value":101}]}"#);
        let c = changes_of(&state, &tables, &renumbered).unwrap();
        assert!(
            matches!(&c[..], [ConfigChange::DnDeleted(d), ConfigChange::DnCreated(n)] if d.number == "5001" && n.number == "5002"),
            "{c:?}"
        );
        // A delete carries the key only; the configuration knows the rest.
        let deleted = row(r#"{"action":"D","schema":"public","table":"dns","identity":[{"name":"dbid","value":101}]}"#);
        assert!(matches!(&changes_of(&state, &tables, &deleted).unwrap()[..], [ConfigChange::DnDeleted(d)] if d.number == "5001"));
        // What Netwatch refuses says why.
        let bad_type =
            row(r#"{"action":"I","schema":"public","table":"dns","columns":[{"name":"dbid","value":102},{"name":"tserver","value":1},
            {"name":"number","value":"5003"},{"name":"type","value":"toaster"}]}"#);
        assert!(changes_of(&state, &tables, &bad_type).unwrap_err().contains("toaster"));
        let unknown = row(r#"{"action":"D","schema":"public","table":"dns","identity":[{"name":"dbid","value":999}]}"#);
        assert!(changes_of(&state, &tables, &unknown).unwrap_err().contains("999"));
    }

    fn tables() -> Tables {
        Tables::parse(&["public.tservers".into(), "public.dns".into()]).unwrap()
    }

    fn change_row(action: &str, table: &str, columns: serde_json::Value) -> Row {
        let columns = columns.as_object().unwrap().iter().map(|(k, v)| Column { name: k.clone(), value: v.clone() }).collect();
        Row {
            action: action.into(),
            xid: None,
            lsn: None,
            schema: Some("public".into()),
            table: Some(table.into()),
            columns,
            identity: vec![],
        }
    }

    fn ts(id: i32) -> TServer {
        TServer { id, name: format!("TS{id}"), host: "h".into(), port: id, kind: ServerKind::Cti, rpc: None }
    }

    fn dn(dbid: i32, tserver: i32, number: &str, dn_type: DnType) -> Dn {
        Dn { dbid, tserver, number: number.into(), dn_type }
    }

    fn folded(at_ms: i64, index: u32, change: ConfigChange) -> Folded {
        Folded { at_ms, position: Some(Position { commit_lsn: 0x100, index }), change }
    }

    #[test]
    fn the_configuration_is_folded_across_partitions_in_time_order() {
        // DN 101 moves from T-Server 2 to T-Server 1: deleted in T-Server 2's partition,
        // created in T-Server 1's, which is read first.
        let mut partitions = BTreeMap::new();
        partitions.insert(
            1,
            VecDeque::from([
                folded(1, 0, ConfigChange::TServerCreated(ts(1))),
                folded(3, 1, ConfigChange::DnCreated(dn(101, 1, "5001", DnType::Extension))),
            ]),
        );
        partitions.insert(
            2,
            VecDeque::from([
                folded(1, 1, ConfigChange::TServerCreated(ts(2))),
                folded(2, 0, ConfigChange::DnCreated(dn(101, 2, "5001", DnType::Extension))),
                folded(3, 0, ConfigChange::DnDeleted(DnRef { dbid: 101, tserver: 2, number: "5001".into() })),
            ]),
        );
        let state = fold(partitions);
        assert_eq!(state.dn_by_dbid(101), Some(&dn(101, 1, "5001", DnType::Extension)));
        assert_eq!(state.tservers.len(), 2);
    }

    #[test]
    fn truncate_deletes_every_dn_and_of_the_tserver_table_every_tserver_after_them() {
        let state =
            ConfigState::from_parts([ts(1), ts(2)], [dn(101, 1, "5001", DnType::Extension), dn(201, 2, "6001", DnType::AcdPosition)]);
        let dns = changes_of(&state, &tables(), &change_row("T", "dns", serde_json::json!({}))).unwrap();
        assert_eq!(
            dns,
            [
                ConfigChange::DnDeleted(DnRef { dbid: 101, tserver: 1, number: "5001".into() }),
                ConfigChange::DnDeleted(DnRef { dbid: 201, tserver: 2, number: "6001".into() })
            ]
        );
        let all = changes_of(&state, &tables(), &change_row("T", "tservers", serde_json::json!({}))).unwrap();
        assert_eq!(all[..2], dns[..]);
        assert_eq!(all[2..], [ConfigChange::TServerDeleted(TServerRef { id: 1 }), ConfigChange::TServerDeleted(TServerRef { id: 2 })]);
        let mut applied = state.clone();
        for change in &all {
            applied.accept(change).unwrap();
        }
        assert!(applied.tservers.is_empty() && applied.dns.is_empty());
        assert!(changes_of(&state, &tables(), &change_row("X", "dns", serde_json::json!({}))).is_err(), "an unknown action is refused");
    }

    #[test]
    fn a_snapshot_row_becomes_what_the_configuration_lacks() {
        let state = ConfigState::from_parts([ts(1)], [dn(101, 1, "5001", DnType::Extension)]);
        let dn_row = |number: &str, kind: &str| {
            change_row("I", "dns", serde_json::json!({"dbid": 101, "tserver": 1, "number": number, "type": kind}))
        };
        let map = |r: &Row| snapshot_changes(&state, &tables(), r).unwrap();
        assert_eq!(map(&dn_row("5001", "extension")), [], "held as it is");
        assert_eq!(map(&dn_row("5001", "acd-position")), [ConfigChange::DnUpdated(dn(101, 1, "5001", DnType::AcdPosition))]);
        assert_eq!(
            map(&dn_row("5011", "extension")),
            [
                ConfigChange::DnDeleted(DnRef { dbid: 101, tserver: 1, number: "5001".into() }),
                ConfigChange::DnCreated(dn(101, 1, "5011", DnType::Extension))
            ],
            "a renumbered DN is another DN"
        );
        let ts_row = |name: &str| {
            change_row("I", "tservers", serde_json::json!({"id": 1, "name": name, "host": "h", "port": 1, "kind": "cti", "rpc_url": null}))
        };
        assert_eq!(map(&ts_row("TS1")), []);
        assert_eq!(map(&ts_row("renamed")), [ConfigChange::TServerUpdated(TServer { name: "renamed".into(), ..ts(1) })]);
        assert!(Tables::parse(&["public.TServers".into(), "public.dns".into()]).is_err(), "unquoted names are lower case");
    }
}
