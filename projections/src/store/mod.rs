//! The store trait and the engines behind it, picked from a URL.
//!
//! Every access pattern is one a partitioned store serves by partition key and
//! clustering range: DN by (generation, T-Server, DN), DNs by (generation, T-Server),
//! call by (generation, T-Server, ConnID), calls of a DN by (generation, T-Server, DN)
//! ordered by start time, the DN legs of an interval by (generation, T-Server, interval).
//!
//! Rows live in a *generation* of their projection: `netwatch replay` builds a new one
//! while the current one serves, then switches ([`Store::switch_generation`]) and drops
//! the old one. A generation is `building`, `current` or `retired`; a store refuses
//! writes to a retired generation ([`StoreError::Retired`]), so a late writer cannot
//! bring rows of a dropped generation back.

#[cfg(feature = "scylla")]
mod scylla;
mod sqlite;

use std::collections::BTreeMap;
use std::future::Future;

#[cfg(feature = "scylla")]
pub use self::scylla::ScyllaStore;
pub use sqlite::SqliteStore;

use crate::rows::{CallRecord, DnCall, DnState};

/// A generation number (`g1`, `g2`, ...).
pub type Gen = u32;

/// The 15-minute statistics interval.
pub const INTERVAL_MS: i64 = 15 * 60 * 1000;

/// Start of the interval holding `at_ms`.
pub fn interval_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(INTERVAL_MS) * INTERVAL_MS
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("ScyllaDB: {0}")]
    Scylla(String),
    #[error("stored row is not valid JSON: {0}")]
    Row(#[from] serde_json::Error),
    #[error("unsupported store URL {0:?} (expected sqlite://PATH or scylla://HOST[:PORT][,HOST...]/KEYSPACE)")]
    Url(String),
    #[error("store task failed: {0}")]
    Task(String),
    #[error("generation g{gen} of {projection} is retired; nothing was written")]
    Retired { projection: String, gen: Gen },
}

/// The life of a generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GenState {
    /// Being rebuilt by `netwatch replay`; not read by queries.
    Building,
    /// What queries read and runners extend.
    Current,
    /// Switched away from; its rows are being (or have been) dropped.
    Retired,
}

impl GenState {
    /// Name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            GenState::Building => "building",
            GenState::Current => "current",
            GenState::Retired => "retired",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "building" => Ok(GenState::Building),
            "current" => Ok(GenState::Current),
            "retired" => Ok(GenState::Retired),
            other => Err(StoreError::Task(format!("unknown generation state {other:?} in the store"))),
        }
    }
}

/// The key positions of a projection generation are stored under, and its group suffix.
pub fn gen_key(projection: &str, gen: Gen) -> String {
    format!("{projection}.g{gen}")
}

/// Where a page of a DN's calls ends: the last row's start and ConnID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub started_ms: i64,
    pub connid: String,
}

impl Cursor {
    /// The opaque paging token: hex of `started_ms:connid`.
    pub fn token(&self) -> String {
        format!("{}:{}", self.started_ms, self.connid).bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// Read a paging token; the error is one line.
    pub fn parse(token: &str) -> Result<Cursor, String> {
        let bad = || format!("page token {token:?} is not one this API handed out");
        if !token.len().is_multiple_of(2) || token.len() > 512 {
            return Err(bad());
        }
        let bytes: Vec<u8> =
            (0..token.len()).step_by(2).map(|i| u8::from_str_radix(&token[i..i + 2], 16)).collect::<Result<_, _>>().map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (ms, connid) = text.split_once(':').ok_or_else(bad)?;
        Ok(Cursor { started_ms: ms.parse().map_err(|_| bad())?, connid: connid.to_string() })
    }
}

/// Which of a DN's calls: started in `[from_ms, to_ms)`, older than `after` (newest
/// first), at most `limit`.
#[derive(Clone, Debug)]
pub struct CallsPage {
    pub from_ms: i64,
    pub to_ms: i64,
    pub after: Option<Cursor>,
    pub limit: usize,
}

/// Rows and positions written atomically.
#[derive(Debug, Default)]
pub struct Batch {
    /// Projection name (`dn-state`, `call-history`).
    pub projection: String,
    /// Generation the rows and positions belong to.
    pub gen: Gen,
    /// (topic, partition) → next offset to read.
    pub positions: BTreeMap<(String, i32), i64>,
    pub dns: BTreeMap<(i32, String), DnState>,
    pub calls: BTreeMap<(i32, String), CallRecord>,
    /// Statistics rows (JSON) by (T-Server, part, key): see [`Store::stat_range`].
    pub stats: BTreeMap<(i32, String, String), String>,
    /// Per T-Server: the log position its rows reflect after this batch, the sum of the
    /// next offsets of its partition in every topic the projection reads. It only grows
    /// as the log is applied, so ScyllaDB writes its rows `USING TIMESTAMP` it.
    pub stamps: BTreeMap<i32, i64>,
}

impl Batch {
    /// An empty batch for a projection generation.
    pub fn new(projection: &str, gen: Gen) -> Self {
        Batch { projection: projection.to_string(), gen, ..Default::default() }
    }

    /// Nothing to write?
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty() && self.dns.is_empty() && self.calls.is_empty() && self.stats.is_empty()
    }

    /// The DN legs of the batch's calls: per-DN history rows, and the ended ones
    /// keyed by their statistics interval.
    pub fn legs(&self) -> Vec<DnCall> {
        self.calls.values().flat_map(CallRecord::dn_calls).collect()
    }
}

/// A projection store. Each method is one round of partition-key access.
pub trait Store: Clone + Send + Sync + 'static {
    /// Every generation of a projection with its state, oldest first.
    fn generations(&self, projection: &str) -> impl Future<Output = Result<Vec<(Gen, GenState)>, StoreError>> + Send;
    /// Record a generation's state.
    fn set_generation(&self, projection: &str, gen: Gen, state: GenState) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Make `to` current and `from` (if any) retired, as one change readers see at once.
    fn switch_generation(&self, projection: &str, from: Option<Gen>, to: Gen) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Delete every row and position of a generation (its state entry stays, retired).
    fn drop_generation(&self, projection: &str, gen: Gen) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Next offset to read for a projection generation's topic partition, if stored.
    fn position(
        &self,
        projection: &str,
        gen: Gen,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
    /// Every stored position of a projection generation.
    fn positions(&self, projection: &str, gen: Gen) -> impl Future<Output = Result<BTreeMap<(String, i32), i64>, StoreError>> + Send;
    /// One DN's state.
    fn dn(&self, gen: Gen, tserver: i32, dn: &str) -> impl Future<Output = Result<Option<DnState>, StoreError>> + Send;
    /// Every DN of a T-Server, by number.
    fn dns(&self, gen: Gen, tserver: i32) -> impl Future<Output = Result<Vec<DnState>, StoreError>> + Send;
    /// One call by ConnID.
    fn call(&self, gen: Gen, tserver: i32, connid: &str) -> impl Future<Output = Result<Option<CallRecord>, StoreError>> + Send;
    /// A page of a DN's calls, newest first (by start, then ConnID, descending).
    fn dn_calls(&self, gen: Gen, tserver: i32, dn: &str, page: &CallsPage) -> impl Future<Output = Result<Vec<DnCall>, StoreError>> + Send;
    /// The ended DN legs of a T-Server that started in the interval starting at
    /// `interval_ms`, by DN then start; only those of `dn` if given.
    fn interval_legs(
        &self,
        gen: Gen,
        tserver: i32,
        interval_ms: i64,
        dn: Option<&str>,
    ) -> impl Future<Output = Result<Vec<DnCall>, StoreError>> + Send;
    /// One statistics row (JSON) of a T-Server: `part` is the kind of row and what it is
    /// about (`dn`, `group`, `call:<connid>`, `b:<object>`), `key` the row within it.
    fn stat_row(&self, gen: Gen, tserver: i32, part: &str, key: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// The statistics rows of a part with `from_key <= key < to_key`, by key: (key, JSON).
    fn stat_range(
        &self,
        gen: Gen,
        tserver: i32,
        part: &str,
        from_key: &str,
        to_key: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;
    /// Delete every generation's minute buckets (keys `m:...`) that start before
    /// `before_ms`: they serve windows of at most an hour, so they are kept for
    /// [`crate::stat_fold::MINUTES_KEPT_MS`] only.
    fn prune_minutes(&self, before_ms: i64) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Every row of a projection generation as canonical JSON, in key order (checksums;
    /// statistics without its minute buckets, which are kept by wall-clock age).
    fn dump(&self, projection: &str, gen: Gen) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// At most this many log records per [`Store::write`].
    fn max_batch(&self) -> usize {
        500
    }
    /// Write rows and positions atomically (SQLite) or guarded by log position
    /// (ScyllaDB); refused for a retired generation.
    fn write(&self, batch: Batch) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Every engine, picked from a URL.
#[derive(Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    #[cfg(feature = "scylla")]
    Scylla(ScyllaStore),
}

/// Open the store a URL names: `sqlite://PATH` (created if missing) or
/// `scylla://HOST[:PORT][,HOST...]/KEYSPACE[?replication_factor=N&datacenter=DC]`.
pub async fn open_store(url: &str) -> Result<AnyStore, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(StoreError::Url(url.to_string()));
        }
        return Ok(AnyStore::Sqlite(SqliteStore::open(path)?));
    }
    #[cfg(feature = "scylla")]
    if url.starts_with("scylla://") {
        return Ok(AnyStore::Scylla(ScyllaStore::connect(url).await?));
    }
    #[cfg(not(feature = "scylla"))]
    if url.starts_with("scylla://") {
        return Err(StoreError::Url(format!("{url} (this netwatch was built without the ScyllaDB store)")));
    }
    Err(StoreError::Url(url.to_string()))
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e,
            #[cfg(feature = "scylla")]
            AnyStore::Scylla($s) => $e,
        }
    };
}

impl Store for AnyStore {
    async fn generations(&self, projection: &str) -> Result<Vec<(Gen, GenState)>, StoreError> {
        each!(self, s => s.generations(projection).await)
    }
    async fn set_generation(&self, projection: &str, gen: Gen, state: GenState) -> Result<(), StoreError> {
        each!(self, s => s.set_generation(projection, gen, state).await)
    }
    async fn switch_generation(&self, projection: &str, from: Option<Gen>, to: Gen) -> Result<(), StoreError> {
        each!(self, s => s.switch_generation(projection, from, to).await)
    }
    async fn drop_generation(&self, projection: &str, gen: Gen) -> Result<(), StoreError> {
        each!(self, s => s.drop_generation(projection, gen).await)
    }
    async fn position(&self, projection: &str, gen: Gen, topic: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        each!(self, s => s.position(projection, gen, topic, partition).await)
    }
    async fn positions(&self, projection: &str, gen: Gen) -> Result<BTreeMap<(String, i32), i64>, StoreError> {
        each!(self, s => s.positions(projection, gen).await)
    }
    async fn dn(&self, gen: Gen, tserver: i32, dn: &str) -> Result<Option<DnState>, StoreError> {
        each!(self, s => s.dn(gen, tserver, dn).await)
    }
    async fn dns(&self, gen: Gen, tserver: i32) -> Result<Vec<DnState>, StoreError> {
        each!(self, s => s.dns(gen, tserver).await)
    }
    async fn call(&self, gen: Gen, tserver: i32, connid: &str) -> Result<Option<CallRecord>, StoreError> {
        each!(self, s => s.call(gen, tserver, connid).await)
    }
    async fn dn_calls(&self, gen: Gen, tserver: i32, dn: &str, page: &CallsPage) -> Result<Vec<DnCall>, StoreError> {
        each!(self, s => s.dn_calls(gen, tserver, dn, page).await)
    }
    async fn interval_legs(&self, gen: Gen, tserver: i32, interval_ms: i64, dn: Option<&str>) -> Result<Vec<DnCall>, StoreError> {
        each!(self, s => s.interval_legs(gen, tserver, interval_ms, dn).await)
    }
    async fn stat_row(&self, gen: Gen, tserver: i32, part: &str, key: &str) -> Result<Option<String>, StoreError> {
        each!(self, s => s.stat_row(gen, tserver, part, key).await)
    }
    async fn stat_range(
        &self,
        gen: Gen,
        tserver: i32,
        part: &str,
        from_key: &str,
        to_key: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        each!(self, s => s.stat_range(gen, tserver, part, from_key, to_key).await)
    }
    async fn prune_minutes(&self, before_ms: i64) -> Result<u64, StoreError> {
        each!(self, s => s.prune_minutes(before_ms).await)
    }
    async fn dump(&self, projection: &str, gen: Gen) -> Result<Vec<String>, StoreError> {
        each!(self, s => s.dump(projection, gen).await)
    }
    fn max_batch(&self) -> usize {
        each!(self, s => s.max_batch())
    }
    async fn write(&self, batch: Batch) -> Result<(), StoreError> {
        each!(self, s => s.write(batch).await)
    }
}

/// The generation queries read: the current one, or g1 when none was recorded yet
/// (a fresh store).
pub async fn current_gen<S: Store>(store: &S, projection: &str) -> Result<Gen, StoreError> {
    let gens = store.generations(projection).await?;
    Ok(gens.iter().rev().find(|(_, s)| *s == GenState::Current).map(|(g, _)| *g).unwrap_or(1))
}

/// Make sure a projection has a current generation (g1 on a fresh store); which one.
pub async fn ensure_current<S: Store>(store: &S, projection: &str) -> Result<Gen, StoreError> {
    let gens = store.generations(projection).await?;
    match gens.iter().rev().find(|(_, s)| *s == GenState::Current) {
        Some((g, _)) => Ok(*g),
        None => {
            store.set_generation(projection, 1, GenState::Current).await?;
            Ok(1)
        }
    }
}

/// A stable digest of a projection's current content: (generation, rows, hex digest).
/// FNV-1a 128 over the rows' canonical JSON in key order, so equal content gives equal
/// digests whichever store, generation or instance split produced it.
pub async fn checksum<S: Store>(store: &S, projection: &str) -> Result<(Gen, usize, String), StoreError> {
    let gen = current_gen(store, projection).await?;
    let rows = store.dump(projection, gen).await?;
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut h = OFFSET;
    for row in &rows {
        for b in row.bytes().chain(std::iter::once(b'\n')) {
            h ^= u128::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    Ok((gen, rows.len(), format!("{h:032x}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let c = Cursor { started_ms: 1_795_305_490_421, connid: "ts1:in/1".into() };
        assert_eq!(Cursor::parse(&c.token()), Ok(c));
        for bad in ["zz", "abc", "3132", "", "ff"] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn intervals_are_aligned_quarter_hours() {
        assert_eq!(interval_of(0), 0);
        assert_eq!(interval_of(INTERVAL_MS - 1), 0);
        assert_eq!(interval_of(INTERVAL_MS), INTERVAL_MS);
        assert_eq!(interval_of(-1), -INTERVAL_MS);
    }
}
