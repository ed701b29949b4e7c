//! The embedded store: one SQLite database file (WAL mode, so queries from other
//! processes read while a projection writes).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use super::{Batch, Store, StoreError};
use crate::rows::{CallRecord, DnCall, DnState};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS positions (
    projection TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (projection, topic, partition));
CREATE TABLE IF NOT EXISTS dn_state (
    tserver INTEGER NOT NULL, dn TEXT NOT NULL, row TEXT NOT NULL,
    PRIMARY KEY (tserver, dn));
CREATE TABLE IF NOT EXISTS calls (
    tserver INTEGER NOT NULL, connid TEXT NOT NULL, row TEXT NOT NULL,
    PRIMARY KEY (tserver, connid));
CREATE TABLE IF NOT EXISTS dn_calls (
    tserver INTEGER NOT NULL, dn TEXT NOT NULL, started_ms INTEGER NOT NULL, connid TEXT NOT NULL, row TEXT NOT NULL,
    PRIMARY KEY (tserver, dn, started_ms, connid));
";

/// SQLite behind a mutex; every call is short.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Open (and create) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        if let Some(dir) = path.as_ref().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Task(format!("cannot create {}: {e}", dir.display())))?;
            }
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)) })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().map_err(|_| StoreError::Task("store lock poisoned".into()))?;
        f(&mut conn)
    }
}

fn rows<T: serde::de::DeserializeOwned>(stmt: &mut rusqlite::Statement<'_>, params: impl rusqlite::Params) -> Result<Vec<T>, StoreError> {
    let texts: Vec<String> = stmt.query_map(params, |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?;
    texts.iter().map(|t| serde_json::from_str(t).map_err(StoreError::from)).collect()
}

impl Store for SqliteStore {
    async fn position(&self, projection: &str, topic: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT next_offset FROM positions WHERE projection = ?1 AND topic = ?2 AND partition = ?3",
                params![projection, topic, partition],
                |r| r.get(0),
            )
            .optional()?)
        })
    }

    async fn dn(&self, tserver: i32, dn: &str) -> Result<Option<DnState>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT row FROM dn_state WHERE tserver = ?1 AND dn = ?2")?;
            Ok(rows(&mut stmt, params![tserver, dn])?.pop())
        })
    }

    async fn dns(&self, tserver: i32) -> Result<Vec<DnState>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT row FROM dn_state WHERE tserver = ?1 ORDER BY dn")?;
            rows(&mut stmt, params![tserver])
        })
    }

    async fn call(&self, tserver: i32, connid: &str) -> Result<Option<CallRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT row FROM calls WHERE tserver = ?1 AND connid = ?2")?;
            Ok(rows(&mut stmt, params![tserver, connid])?.pop())
        })
    }

    async fn dn_calls(&self, tserver: i32, dn: &str, since_ms: i64, limit: usize) -> Result<Vec<DnCall>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT row FROM dn_calls WHERE tserver = ?1 AND dn = ?2 AND started_ms >= ?3 ORDER BY started_ms DESC, connid DESC LIMIT ?4",
            )?;
            rows(&mut stmt, params![tserver, dn, since_ms, limit as i64])
        })
    }

    async fn write(&self, batch: Batch) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut put_dn = tx.prepare_cached("INSERT OR REPLACE INTO dn_state (tserver, dn, row) VALUES (?1, ?2, ?3)")?;
                for ((tserver, dn), row) in &batch.dns {
                    put_dn.execute(params![tserver, dn, serde_json::to_string(row)?])?;
                }
                let mut put_call = tx.prepare_cached("INSERT OR REPLACE INTO calls (tserver, connid, row) VALUES (?1, ?2, ?3)")?;
                let mut put_dn_call = tx
                    .prepare_cached("INSERT OR REPLACE INTO dn_calls (tserver, dn, started_ms, connid, row) VALUES (?1, ?2, ?3, ?4, ?5)")?;
                for ((tserver, connid), call) in &batch.calls {
                    put_call.execute(params![tserver, connid, serde_json::to_string(call)?])?;
                    for row in call.dn_calls() {
                        put_dn_call.execute(params![tserver, row.dn, row.started_ms, connid, serde_json::to_string(&row)?])?;
                    }
                }
                let mut put_pos = tx.prepare_cached(
                    "INSERT OR REPLACE INTO positions (projection, topic, partition, next_offset) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for ((topic, partition), next) in &batch.positions {
                    put_pos.execute(params![batch.projection, topic, partition, next])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }
}
