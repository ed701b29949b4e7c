//! The store trait and the engines behind it, picked from a URL.
//!
//! Every access pattern is one a partitioned store serves by partition key and
//! clustering range: DN by (T-Server, DN), DNs by T-Server, call by (T-Server, ConnID),
//! calls of a DN by (T-Server, DN) ordered by start time.

mod sqlite;

use std::collections::BTreeMap;
use std::future::Future;

pub use sqlite::SqliteStore;

use crate::rows::{CallRecord, DnCall, DnState};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored row is not valid JSON: {0}")]
    Row(#[from] serde_json::Error),
    #[error("unsupported store URL {0:?} (expected sqlite://PATH)")]
    Url(String),
    #[error("store task failed: {0}")]
    Task(String),
}

/// Rows and positions written atomically.
#[derive(Debug, Default)]
pub struct Batch {
    /// Projection (with generation) whose positions these are.
    pub projection: String,
    /// (topic, partition) → next offset to read.
    pub positions: BTreeMap<(String, i32), i64>,
    pub dns: BTreeMap<(i32, String), DnState>,
    pub calls: BTreeMap<(i32, String), CallRecord>,
}

impl Batch {
    /// An empty batch for a projection.
    pub fn new(projection: &str) -> Self {
        Batch { projection: projection.to_string(), ..Default::default() }
    }

    /// Nothing to write?
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty() && self.dns.is_empty() && self.calls.is_empty()
    }
}

/// A projection store.
pub trait Store: Clone + Send + Sync + 'static {
    /// Next offset to read for a projection's topic partition, if any was stored.
    fn position(&self, projection: &str, topic: &str, partition: i32) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
    /// One DN's state.
    fn dn(&self, tserver: i32, dn: &str) -> impl Future<Output = Result<Option<DnState>, StoreError>> + Send;
    /// Every DN of a T-Server, by number.
    fn dns(&self, tserver: i32) -> impl Future<Output = Result<Vec<DnState>, StoreError>> + Send;
    /// One call by ConnID.
    fn call(&self, tserver: i32, connid: &str) -> impl Future<Output = Result<Option<CallRecord>, StoreError>> + Send;
    /// Calls of a DN that started at or after `since_ms`, newest first, at most `limit`.
    fn dn_calls(&self, tserver: i32, dn: &str, since_ms: i64, limit: usize)
        -> impl Future<Output = Result<Vec<DnCall>, StoreError>> + Send;
    /// Write rows and positions atomically.
    fn write(&self, batch: Batch) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Every engine, picked from a URL.
#[derive(Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
}

/// Open the store a URL names: `sqlite://PATH` (created if missing).
pub fn open_store(url: &str) -> Result<AnyStore, StoreError> {
    match url.strip_prefix("sqlite://") {
        Some(path) if !path.is_empty() => Ok(AnyStore::Sqlite(SqliteStore::open(path)?)),
        _ => Err(StoreError::Url(url.to_string())),
    }
}

impl Store for AnyStore {
    async fn position(&self, projection: &str, topic: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.position(projection, topic, partition).await,
        }
    }
    async fn dn(&self, tserver: i32, dn: &str) -> Result<Option<DnState>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.dn(tserver, dn).await,
        }
    }
    async fn dns(&self, tserver: i32) -> Result<Vec<DnState>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.dns(tserver).await,
        }
    }
    async fn call(&self, tserver: i32, connid: &str) -> Result<Option<CallRecord>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.call(tserver, connid).await,
        }
    }
    async fn dn_calls(&self, tserver: i32, dn: &str, since_ms: i64, limit: usize) -> Result<Vec<DnCall>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.dn_calls(tserver, dn, since_ms, limit).await,
        }
    }
    async fn write(&self, batch: Batch) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.write(batch).await,
        }
    }
}
