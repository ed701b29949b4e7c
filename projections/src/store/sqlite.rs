//! The embedded store: one SQLite database file (WAL mode, so queries read while a
//! projection writes, in this process and others). Rows are JSON text keyed like the
//! ScyllaDB tables (schemas/cql/projections.cql).
//!
//! One connection writes, on tokio's blocking threads (a batch's transaction must not hold
//! an executor thread); queries take one of a few read-only connections, so a query never
//! waits for a batch being written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use super::{interval_of, Batch, CallsPage, Gen, GenState, Store, StoreError};
use crate::rows::{CallRecord, DnCall, DnState};

/// Bumped when the tables change; an older database's projection tables are dropped
/// and rebuilt from the log (they hold nothing the log does not).
const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS generations (
    projection TEXT NOT NULL, gen INTEGER NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (projection, gen));
CREATE TABLE IF NOT EXISTS positions (
    projection TEXT NOT NULL, gen INTEGER NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (projection, gen, topic, partition));
CREATE TABLE IF NOT EXISTS dn_state (
    gen INTEGER NOT NULL, tserver INTEGER NOT NULL, dn TEXT NOT NULL, row TEXT NOT NULL,
    PRIMARY KEY (gen, tserver, dn));
CREATE TABLE IF NOT EXISTS calls (
    gen INTEGER NOT NULL, tserver INTEGER NOT NULL, connid TEXT NOT NULL, row TEXT NOT NULL,
    PRIMARY KEY (gen, tserver, connid));
CREATE TABLE IF NOT EXISTS dn_calls (
    gen INTEGER NOT NULL, tserver INTEGER NOT NULL, dn TEXT NOT NULL, started_ms INTEGER NOT NULL, connid TEXT NOT NULL, row TEXT NOT NULL,
    PRIMARY KEY (gen, tserver, dn, started_ms, connid));
CREATE TABLE IF NOT EXISTS interval_legs (
    gen INTEGER NOT NULL, tserver INTEGER NOT NULL, interval_ms INTEGER NOT NULL, dn TEXT NOT NULL, started_ms INTEGER NOT NULL,
    connid TEXT NOT NULL, row TEXT NOT NULL,
    PRIMARY KEY (gen, tserver, interval_ms, dn, started_ms, connid));
CREATE TABLE IF NOT EXISTS stats (
    gen INTEGER NOT NULL, tserver INTEGER NOT NULL, part TEXT NOT NULL, key TEXT NOT NULL, row TEXT NOT NULL,
    PRIMARY KEY (gen, tserver, part, key));
";

/// Tables of each projection's rows.
fn tables(projection: &str) -> &'static [&'static str] {
    match projection {
        "dn-state" => &["dn_state"],
        "statistics" => &["stats"],
        _ => &["calls", "dn_calls", "interval_legs"],
    }
}

/// Idle read connections kept open.
const IDLE_READERS: usize = 8;

/// The writer connection and a pool of read connections of one database file.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    /// Idle read connections.
    readers: Mutex<Vec<Connection>>,
}

impl SqliteStore {
    /// Open (and create) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Task(format!("cannot create {}: {e}", dir.display())))?;
            }
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Several processes may open a fresh file at once; SQLite reports some of these
        // races as busy without waiting, so the set-up is retried for a while.
        retry_busy(|| Ok(conn.pragma_update(None, "journal_mode", "WAL")?))?;
        retry_busy(|| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if version < SCHEMA_VERSION {
                tx.execute_batch(
                    "DROP TABLE IF EXISTS positions; DROP TABLE IF EXISTS dn_state; DROP TABLE IF EXISTS calls;
                     DROP TABLE IF EXISTS dn_calls; DROP TABLE IF EXISTS interval_legs; DROP TABLE IF EXISTS generations;
                     DROP TABLE IF EXISTS stats;",
                )?;
                tx.execute_batch(SCHEMA)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            }
            tx.commit()?;
            Ok(())
        })?;
        Ok(SqliteStore { inner: Arc::new(Inner { path: path.to_path_buf(), writer: Mutex::new(conn), readers: Mutex::new(Vec::new()) }) })
    }

    /// Run `f` with the writer connection on a blocking thread.
    async fn write_with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.writer.lock().map_err(|_| StoreError::Task("store lock poisoned".into()))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Run the query `f` on an idle read connection (a new one when all are busy). Queries
    /// are short and run in place: what they must not do is wait for a batch being written.
    fn read_with<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let idle = self.inner.readers.lock().map_err(|_| StoreError::Task("store lock poisoned".into()))?.pop();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = Connection::open_with_flags(&self.inner.path, flags)?;
                conn.busy_timeout(std::time::Duration::from_secs(10))?;
                conn
            }
        };
        let out = f(&conn);
        if let Ok(mut idle) = self.inner.readers.lock() {
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
        }
        out
    }
}

/// Run `f` again while SQLite says the database is busy or locked, for up to 15 s.
fn retry_busy(mut f: impl FnMut() -> Result<(), StoreError>) -> Result<(), StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        match f() {
            Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn rows<T: serde::de::DeserializeOwned>(stmt: &mut rusqlite::Statement<'_>, params: impl rusqlite::Params) -> Result<Vec<T>, StoreError> {
    let texts: Vec<String> = stmt.query_map(params, |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?;
    texts.iter().map(|t| serde_json::from_str(t).map_err(StoreError::from)).collect()
}

fn gen_state(c: &Connection, projection: &str, gen: Gen) -> Result<Option<GenState>, StoreError> {
    let s: Option<String> = c
        .query_row("SELECT state FROM generations WHERE projection = ?1 AND gen = ?2", params![projection, gen], |r| r.get(0))
        .optional()?;
    s.map(|s| GenState::parse(&s)).transpose()
}

impl Store for SqliteStore {
    async fn generations(&self, projection: &str) -> Result<Vec<(Gen, GenState)>, StoreError> {
        self.read_with(|c| {
            let mut stmt = c.prepare_cached("SELECT gen, state FROM generations WHERE projection = ?1 ORDER BY gen")?;
            let raw: Vec<(Gen, String)> = stmt.query_map(params![projection], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
            raw.into_iter().map(|(g, s)| Ok((g, GenState::parse(&s)?))).collect()
        })
    }

    async fn set_generation(&self, projection: &str, gen: Gen, state: GenState) -> Result<(), StoreError> {
        let projection = projection.to_string();
        self.write_with(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO generations (projection, gen, state) VALUES (?1, ?2, ?3)",
                params![projection, gen, state.as_str()],
            )?;
            Ok(())
        })
        .await
    }

    async fn switch_generation(&self, projection: &str, from: Option<Gen>, to: Gen) -> Result<(), StoreError> {
        let projection = projection.to_string();
        self.write_with(move |c| {
            let tx = c.transaction()?;
            if let Some(from) = from {
                tx.execute(
                    "INSERT OR REPLACE INTO generations (projection, gen, state) VALUES (?1, ?2, 'retired')",
                    params![projection, from],
                )?;
            }
            tx.execute("INSERT OR REPLACE INTO generations (projection, gen, state) VALUES (?1, ?2, 'current')", params![projection, to])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn drop_generation(&self, projection: &str, gen: Gen) -> Result<(), StoreError> {
        let projection = projection.to_string();
        self.write_with(move |c| {
            let tx = c.transaction()?;
            for table in tables(&projection) {
                tx.execute(&format!("DELETE FROM {table} WHERE gen = ?1"), params![gen])?;
            }
            tx.execute("DELETE FROM positions WHERE projection = ?1 AND gen = ?2", params![projection, gen])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn position(&self, projection: &str, gen: Gen, topic: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        self.read_with(|c| {
            Ok(c.query_row(
                "SELECT next_offset FROM positions WHERE projection = ?1 AND gen = ?2 AND topic = ?3 AND partition = ?4",
                params![projection, gen, topic, partition],
                |r| r.get(0),
            )
            .optional()?)
        })
    }

    async fn positions(&self, projection: &str, gen: Gen) -> Result<BTreeMap<(String, i32), i64>, StoreError> {
        self.read_with(|c| {
            let mut stmt = c.prepare_cached("SELECT topic, partition, next_offset FROM positions WHERE projection = ?1 AND gen = ?2")?;
            let all = stmt.query_map(params![projection, gen], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?.collect::<Result<_, _>>()?;
            Ok(all)
        })
    }

    async fn dn(&self, gen: Gen, tserver: i32, dn: &str) -> Result<Option<DnState>, StoreError> {
        self.read_with(|c| {
            let mut stmt = c.prepare_cached("SELECT row FROM dn_state WHERE gen = ?1 AND tserver = ?2 AND dn = ?3")?;
            Ok(rows(&mut stmt, params![gen, tserver, dn])?.pop())
        })
    }

    async fn dns(&self, gen: Gen, tserver: i32) -> Result<Vec<DnState>, StoreError> {
        self.read_with(|c| {
            let mut stmt = c.prepare_cached("SELECT row FROM dn_state WHERE gen = ?1 AND tserver = ?2 ORDER BY dn")?;
            rows(&mut stmt, params![gen, tserver])
        })
    }

    async fn call(&self, gen: Gen, tserver: i32, connid: &str) -> Result<Option<CallRecord>, StoreError> {
        self.read_with(|c| {
            let mut stmt = c.prepare_cached("SELECT row FROM calls WHERE gen = ?1 AND tserver = ?2 AND connid = ?3")?;
            Ok(rows(&mut stmt, params![gen, tserver, connid])?.pop())
        })
    }

    async fn dn_calls(&self, gen: Gen, tserver: i32, dn: &str, page: &CallsPage) -> Result<Vec<DnCall>, StoreError> {
        let (before_ms, before_connid) = match &page.after {
            Some(c) => (c.started_ms, c.connid.clone()),
            None => (page.to_ms, String::new()),
        };
        self.read_with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT row FROM dn_calls WHERE gen = ?1 AND tserver = ?2 AND dn = ?3 AND started_ms >= ?4
                 AND (started_ms, connid) < (?5, ?6) ORDER BY started_ms DESC, connid DESC LIMIT ?7",
            )?;
            rows(&mut stmt, params![gen, tserver, dn, page.from_ms, before_ms, before_connid, page.limit as i64])
        })
    }

    async fn interval_legs(&self, gen: Gen, tserver: i32, interval_ms: i64, dn: Option<&str>) -> Result<Vec<DnCall>, StoreError> {
        self.read_with(|c| match dn {
            Some(dn) => {
                let mut stmt = c.prepare_cached(
                    "SELECT row FROM interval_legs WHERE gen = ?1 AND tserver = ?2 AND interval_ms = ?3 AND dn = ?4 ORDER BY started_ms, connid",
                )?;
                rows(&mut stmt, params![gen, tserver, interval_ms, dn])
            }
            None => {
                let mut stmt = c.prepare_cached(
                    "SELECT row FROM interval_legs WHERE gen = ?1 AND tserver = ?2 AND interval_ms = ?3 ORDER BY dn, started_ms, connid",
                )?;
                rows(&mut stmt, params![gen, tserver, interval_ms])
            }
        })
    }

    async fn stat_row(&self, gen: Gen, tserver: i32, part: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.read_with(|c| {
            let mut stmt = c.prepare_cached("SELECT row FROM stats WHERE gen = ?1 AND tserver = ?2 AND part = ?3 AND key = ?4")?;
            Ok(stmt.query_row(params![gen, tserver, part, key], |r| r.get(0)).optional()?)
        })
    }

    async fn stat_range(
        &self,
        gen: Gen,
        tserver: i32,
        part: &str,
        from_key: &str,
        to_key: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.read_with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT key, row FROM stats WHERE gen = ?1 AND tserver = ?2 AND part = ?3 AND key >= ?4 AND key < ?5 ORDER BY key",
            )?;
            let all =
                stmt.query_map(params![gen, tserver, part, from_key, to_key], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
            Ok(all)
        })
    }

    async fn prune_minutes(&self, before_ms: i64) -> Result<u64, StoreError> {
        let before = crate::stat_fold::bucket_key('m', before_ms);
        self.write_with(move |c| Ok(c.execute("DELETE FROM stats WHERE key >= 'm:' AND key < ?1", params![before])? as u64)).await
    }

    async fn dump(&self, projection: &str, gen: Gen) -> Result<Vec<String>, StoreError> {
        let sql = match projection {
            "dn-state" => "SELECT row FROM dn_state WHERE gen = ?1 ORDER BY tserver, dn",
            "statistics" => {
                "SELECT tserver || ' ' || part || ' ' || key || ' ' || row FROM stats WHERE gen = ?1 AND key NOT LIKE 'm:%'
                 ORDER BY tserver, part, key"
            }
            _ => "SELECT row FROM calls WHERE gen = ?1 ORDER BY tserver, connid",
        };
        self.read_with(|c| {
            let mut stmt = c.prepare_cached(sql)?;
            let all = stmt.query_map(params![gen], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?;
            Ok(all)
        })
    }

    async fn write(&self, batch: Batch) -> Result<(), StoreError> {
        self.write_with(move |c| {
            let legs = batch.legs();
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if gen_state(&tx, &batch.projection, batch.gen)? == Some(GenState::Retired) {
                return Err(StoreError::Retired { projection: batch.projection.clone(), gen: batch.gen });
            }
            {
                let gen = batch.gen;
                let mut put_dn = tx.prepare_cached("INSERT OR REPLACE INTO dn_state (gen, tserver, dn, row) VALUES (?1, ?2, ?3, ?4)")?;
                for ((tserver, dn), row) in &batch.dns {
                    put_dn.execute(params![gen, tserver, dn, serde_json::to_string(row)?])?;
                }
                let mut put_call = tx.prepare_cached("INSERT OR REPLACE INTO calls (gen, tserver, connid, row) VALUES (?1, ?2, ?3, ?4)")?;
                for ((tserver, connid), call) in &batch.calls {
                    put_call.execute(params![gen, tserver, connid, serde_json::to_string(call)?])?;
                }
                let mut put_dn_call = tx.prepare_cached(
                    "INSERT OR REPLACE INTO dn_calls (gen, tserver, dn, started_ms, connid, row) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                let mut put_leg = tx.prepare_cached(
                    "INSERT OR REPLACE INTO interval_legs (gen, tserver, interval_ms, dn, started_ms, connid, row) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for row in &legs {
                    let json = serde_json::to_string(row)?;
                    put_dn_call.execute(params![gen, row.tserver, row.dn, row.started_ms, row.connid, json])?;
                    if row.ended_ms.is_some() {
                        put_leg.execute(params![gen, row.tserver, interval_of(row.started_ms), row.dn, row.started_ms, row.connid, json])?;
                    }
                }
                let mut put_pos = tx.prepare_cached(
                    "INSERT OR REPLACE INTO positions (projection, gen, topic, partition, next_offset) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                let mut put_stat =
                    tx.prepare_cached("INSERT OR REPLACE INTO stats (gen, tserver, part, key, row) VALUES (?1, ?2, ?3, ?4, ?5)")?;
                for ((tserver, part, key), row) in &batch.stats {
                    put_stat.execute(params![gen, tserver, part, key, row])?;
                }
                for ((topic, partition), next) in &batch.positions {
                    put_pos.execute(params![batch.projection, gen, topic, partition, next])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}
