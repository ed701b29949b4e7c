//! `netwatch bench cdc`: a real PostgreSQL (`infra/postgres.sh`) whose provisioning tables
//! take plain SQL writes, `netwatch cdc postgres` as a process of its own streaming them
//! into `config` (docs/cdc.md): committed changes per second, against PostgreSQL's own
//! decoding of the same changes and a plain producer of as many records.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use netwatch_eventlog::{Log, Producer, Topic};
use netwatch_schemas::config::{ConfigChange, ConfigEvent, Dn, DnType};
use netwatch_schemas::{encode, now_ms};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::bench::spread;
use crate::bench_live::{fresh_topics, wait_for, Role};
use crate::cdc::headers;
use crate::{input, CliError, Ctx};

#[derive(Args, Debug)]
pub struct CdcArgs {
    /// Committed changes of each figure (DN inserts, updates, deletes; the first is a
    /// T-Server insert).
    #[arg(long, default_value_t = 10_000)]
    changes: u32,
    /// Changes per transaction.
    #[arg(long, default_value_t = 10)]
    per_txn: u32,
    /// Runs; the table shows the median with min and max.
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// The checkout: infra/postgres.sh and its schema.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Port of the benchmark's own PostgreSQL (apart from infra/postgres.sh's default).
    #[arg(long, default_value_t = 5491)]
    pg_port: u16,
}

/// The benchmark's PostgreSQL cluster, stopped and removed when dropped.
struct Postgres {
    script: PathBuf,
    data: PathBuf,
    port: u16,
}

impl Postgres {
    fn command(&self, action: &str) -> std::process::Command {
        let mut c = std::process::Command::new(&self.script);
        c.arg(action).env("PG_DATA", &self.data).env("PG_PORT", self.port.to_string());
        c
    }

    fn start(repo: &Path, port: u16) -> Result<Postgres, CliError> {
        // Under /tmp itself: the server runs as the postgres user, which must reach it.
        let data = std::env::temp_dir().join(format!("netwatch-bench-pg-{}", std::process::id()));
        let pg = Postgres { script: repo.join("infra/postgres.sh"), data, port };
        let out = pg.command("start").output()?;
        if !out.status.success() {
            return Err(CliError::Failed(anyhow::anyhow!(
                "infra/postgres.sh start failed (make postgres-install): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(pg)
    }

    fn dsn(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=netwatch", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.command("stop").output();
        let _ = std::fs::remove_dir_all(&self.data);
        let _ = std::fs::remove_file(self.data.with_extension("initdb.log"));
    }
}

fn pg(e: tokio_postgres::Error) -> CliError {
    CliError::Failed(anyhow::anyhow!("PostgreSQL: {}", e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())))
}

/// What a provisioning tool writes: one T-Server, then its DNs created, retyped and
/// deleted at random (half inserts, three in ten updates, two in ten deletes).
struct Load {
    seed: u64,
    live: Vec<i32>,
    dbid: i32,
    tserver: bool,
}

impl Load {
    fn new() -> Load {
        Load { seed: 0x9e37_79b9_7f4a_7c15, live: Vec::new(), dbid: 1000, tserver: false }
    }

    fn next(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    /// One change as SQL.
    fn change(&mut self) -> String {
        if !self.tserver {
            self.tserver = true;
            return "INSERT INTO tservers (id, name, host, port) VALUES (1, 'TS1', '127.0.0.1', 1);".into();
        }
        let r = self.next() % 10;
        if self.live.len() < 5 || r < 5 {
            self.dbid += 1;
            self.live.push(self.dbid);
            format!("INSERT INTO dns VALUES ({}, 1, '{}', 'extension');", self.dbid, 10_000 + self.dbid)
        } else if r < 8 {
            let i = (self.next() % self.live.len() as u64) as usize;
            let d = self.live[i];
            format!("UPDATE dns SET type = CASE type WHEN 'extension' THEN 'acd-position' ELSE 'extension' END WHERE dbid = {d};")
        } else {
            let i = (self.next() % self.live.len() as u64) as usize;
            format!("DELETE FROM dns WHERE dbid = {};", self.live.swap_remove(i))
        }
    }
}

/// Commit `changes` changes in transactions of `per_txn`, one round trip each: the time
/// taken and an LSN inside the last transaction, before its commit (a slot advanced to it
/// or beyond has every one of them).
async fn write(client: &Client, load: &mut Load, changes: u32, per_txn: u32) -> Result<(Duration, String), CliError> {
    let start = Instant::now();
    let (mut left, mut mark) = (changes, String::new());
    while left > 0 {
        let n = left.min(per_txn);
        left -= n;
        let mut sql = String::from("BEGIN;");
        for _ in 0..n {
            sql.push_str(&load.change());
        }
        if left == 0 {
            sql.push_str("SELECT pg_current_wal_insert_lsn()::text;");
        }
        sql.push_str("COMMIT;");
        for m in client.simple_query(&sql).await.map_err(pg)? {
            if let SimpleQueryMessage::Row(row) = m {
                mark = row.get(0).unwrap_or_default().to_string();
            }
        }
    }
    Ok((start.elapsed(), mark))
}

async fn slot_passed(client: &Client, slot: &str, lsn: &str) -> Result<bool, CliError> {
    let row = client
        .query_opt("SELECT confirmed_flush_lsn >= $2::text::pg_lsn FROM pg_replication_slots WHERE slot_name = $1", &[&slot, &lsn])
        .await
        .map_err(pg)?;
    Ok(row.and_then(|r| r.get::<_, Option<bool>>(0)).unwrap_or(false))
}

async fn slot_idle(client: &Client, slot: &str) -> Result<bool, CliError> {
    let row = client.query_opt("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&slot]).await.map_err(pg)?;
    Ok(row.is_some_and(|r| !r.get::<_, bool>(0)))
}

/// The figures of one run, changes per second each.
struct Run {
    raw_broker: f64,
    decode: f64,
    writer: f64,
    backlog: f64,
    live: f64,
}

/// One figure of a run.
type Figure = fn(&Run) -> f64;

pub async fn cdc(ctx: &Ctx, args: CdcArgs) -> Result<(), CliError> {
    if args.changes == 0 || args.per_txn == 0 || args.runs == 0 {
        return Err(input("--changes, --per-txn and --runs must be at least 1"));
    }
    let repo = std::fs::canonicalize(&args.repo)?;
    let postgres = Postgres::start(&repo, args.pg_port)?;
    let (client, connection) = tokio_postgres::connect(&postgres.dsn(), NoTls).await.map_err(pg)?;
    tokio::spawn(connection);
    let work = tempfile::tempdir()?;
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        let r = cdc_run(ctx, &args, &client, &postgres, &work.path().join(format!("run{run}")), run).await?;
        eprintln!(
            "run {run}: raw broker {:.0}/s, wal2json {:.0}/s, writer {:.0}/s, CDC backlog {:.0}/s, CDC live {:.0}/s",
            r.raw_broker, r.decode, r.writer, r.backlog, r.live
        );
        runs.push(r);
    }
    let figure = |f: Figure| spread(&runs.iter().map(f).collect::<Vec<_>>());
    let raw = figure(|r| r.raw_broker).0;
    let (n, k) = (args.changes, args.per_txn);
    let txns = n.div_ceil(k);
    println!("| figure | changes | changes/s (median) | min | max | ratio to raw broker |");
    println!("|---|---:|---:|---:|---:|---:|");
    let rows: [(String, Figure); 5] = [
        (format!("raw broker: {n} `config` records with the CDC's headers, plain idempotent producer, all in flight"), |r| r.raw_broker),
        (format!("raw PostgreSQL: the {n} changes decoded by wal2json, one `pg_logical_slot_peek_changes`"), |r| r.decode),
        (format!("writer: {n} changes committed in {txns} transactions of {k}, one client"), |r| r.writer),
        (format!("CDC changes/s, backlog: {n} changes committed before `netwatch cdc postgres` starts, from its start to the slot advanced past the last"), |r| r.backlog),
        (format!("CDC changes/s, live: {n} changes committed while it streams, from the first commit to the slot advanced past the last"), |r| r.live),
    ];
    for (name, f) in rows {
        let (m, lo, hi) = figure(f);
        println!("| {name} | {n} | {m:.0} | {lo:.0} | {hi:.0} | {:.2} |", m / raw);
    }
    drop(postgres);
    Ok(())
}

/// One run on empty tables, fresh topics and a new slot.
async fn cdc_run(ctx: &Ctx, args: &CdcArgs, client: &Client, postgres: &Postgres, dir: &Path, run: usize) -> Result<Run, CliError> {
    std::fs::create_dir_all(dir)?;
    client.batch_execute("TRUNCATE tservers, dns, change_log").await.map_err(pg)?;
    let log = fresh_topics(ctx).await?;
    let prefix = log.topics.prefix.clone();
    let store = format!("sqlite://{}", dir.join("unused.db").display());
    let slot = format!("bench_{run}");
    let dsn = postgres.dsn();
    let cdc_args = ["cdc", "postgres", "--dsn", &dsn, "--slot", &slot];
    let cdc_log = dir.join("cdc.log");

    // The first start creates the slot and snapshots the empty tables; it is stopped once
    // it streams, so that the backlog waits in the slot.
    let first = Role::spawn(ctx, &prefix, &store, &cdc_args, &cdc_log)?;
    let l = &log;
    wait_for("the CDC's snapshot", Duration::from_secs(60), || async {
        first.check("netwatch cdc postgres", &cdc_log)?;
        let records = l.read_all(Topic::Config, None).await?;
        Ok(records.iter().any(|r| r.headers.iter().any(|(k, _)| k == headers::SNAPSHOT_END)))
    })
    .await?;
    drop(first);
    wait_for("the slot released by the stopped CDC", Duration::from_secs(60), || slot_idle(client, &slot)).await?;

    let mut load = Load::new();
    let (_, backlog_mark) = write(client, &mut load, args.changes, args.per_txn).await?;

    // PostgreSQL's own ceiling: decoding the backlog (the slot is only peeked at).
    let start = Instant::now();
    let rows = client
        .query(
            "SELECT lsn::text, data FROM pg_logical_slot_peek_changes($1, NULL, NULL, 'format-version', '2', \
             'include-xids', '1', 'include-lsn', '1', 'add-tables', 'public.tservers,public.dns')",
            &[&slot],
        )
        .await
        .map_err(pg)?;
    let decode = f64::from(args.changes) / start.elapsed().as_secs_f64();
    let decoded = rows.iter().filter(|r| r.get::<_, &str>(1).contains(r#""action":"B""#)).count();
    if decoded != args.changes.div_ceil(args.per_txn) as usize {
        return Err(CliError::Failed(anyhow::anyhow!("wal2json returned {decoded} transactions")));
    }

    // The backlog, from the process's start.
    let start = Instant::now();
    let cdc = Role::spawn(ctx, &prefix, &store, &cdc_args, &cdc_log)?;
    let within = Duration::from_secs(300);
    wait_for("the backlog streamed", within, || async {
        cdc.check("netwatch cdc postgres", &cdc_log)?;
        slot_passed(client, &slot, &backlog_mark).await
    })
    .await?;
    let backlog = f64::from(args.changes) / start.elapsed().as_secs_f64();

    // Live: committed while the process streams.
    let start = Instant::now();
    let (wrote, live_mark) = write(client, &mut load, args.changes, args.per_txn).await?;
    let writer = f64::from(args.changes) / wrote.as_secs_f64();
    wait_for("the live changes streamed", within, || async {
        cdc.check("netwatch cdc postgres", &cdc_log)?;
        slot_passed(client, &slot, &live_mark).await
    })
    .await?;
    let live = f64::from(args.changes) / start.elapsed().as_secs_f64();
    drop(cdc);

    // Every change is in `config` once, nothing was refused.
    let count = |records: Vec<netwatch_eventlog::Record>| {
        records.iter().filter(|r| r.value.is_some() && r.headers.iter().any(|(k, v)| k == headers::SLOT && *v == slot)).count()
    };
    let appended = count(log.read_all(Topic::Config, None).await?);
    let refused = count(log.read_all(Topic::DeadLetter, None).await?);
    let committed: i64 = client.query_one("SELECT count(*) FROM change_log", &[]).await.map_err(pg)?.get(0);
    if appended as i64 != committed || committed != 2 * i64::from(args.changes) || refused != 0 {
        return Err(CliError::Failed(anyhow::anyhow!(
            "{committed} changes committed, {appended} events in config, {refused} dead letters"
        )));
    }
    wait_for("the slot released", Duration::from_secs(60), || slot_idle(client, &slot)).await?;
    client.execute("SELECT pg_drop_replication_slot($1)", &[&slot]).await.map_err(pg)?;

    Ok(Run { raw_broker: raw_broker(&log, args.changes).await?, decode, writer, backlog, live })
}

/// A plain idempotent producer appending as many `config` records as the CDC would, with
/// the same headers, all in flight: the broker's ceiling.
async fn raw_broker(log: &Log, changes: u32) -> Result<f64, CliError> {
    let topic = log.topic(Topic::Config);
    let partition = log.topics.tserver_partition(1);
    let mut records = Vec::new();
    for i in 0..changes {
        let dn = Dn { dbid: 1000 + i as i32, tserver: 1, number: format!("{}", 11_000 + i), dn_type: DnType::Extension };
        let event = ConfigEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            at_ms: now_ms(),
            source: "cdc:raw".into(),
            change: ConfigChange::DnCreated(dn),
        };
        let h = vec![
            (headers::SLOT.to_string(), "raw".to_string()),
            (headers::POSITION.to_string(), format!("0/{:X}#{}", 0x100_0000 + i, i % 10)),
        ];
        records.push((encode(&event)?, h));
    }
    let headed: Vec<_> = records.iter().map(|(bytes, h)| (topic.as_str(), "1", partition, bytes.as_slice(), h.as_slice())).collect();
    let producer = Producer::new(&log.kafka)?;
    // Connected, with its producer id, before the clock starts (the CDC process is too by
    // the time it has a backlog to append).
    producer.send_all_with(&headed[..1]).await?;
    let start = Instant::now();
    producer.send_all_with(&headed).await?;
    Ok(f64::from(changes) / start.elapsed().as_secs_f64())
}
