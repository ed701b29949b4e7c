//! Moves records from the log through the projection folds into the store.
//!
//! Each projection is its own consumer group. Assigned partitions start at the position
//! stored with the rows; records are applied in batches, and every batch's rows and
//! next positions are written in one store write, so a crash anywhere re-applies nothing.
//!
//! A runner always extends the current generation of its projection; `netwatch replay`
//! builds a new generation beside it and switches readers over, and the runner notices
//! (it checks every second, and a write to a retired generation is refused) and moves to
//! the new generation's group, resuming at the positions replay stored.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netwatch_eventlog::{
    spawn_group_consumer, watch_broker, ConsumerEvent, DeadLetter, GroupOptions, Log, LogError, Record, Stall, StartAt, Topic,
};
use netwatch_schemas::calls::{CallBody, CallEvent, TEventKind};
use netwatch_schemas::config::{ConfigChange, ConfigEvent};
use netwatch_schemas::decode;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::call_history;
use crate::dn_state::{self, Target};
use crate::rows::{CallRecord, DnState};
use crate::stat_fold::{self, StatCall, StatDn, StatGroup, DN_PART, GROUP_PART};
use crate::statistics::Tally;
use crate::store::{current_gen, ensure_current, gen_key, Batch, Gen, Store, StoreError};

/// The projections there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projection {
    DnState,
    CallHistory,
    Statistics,
}

impl Projection {
    /// Every projection.
    pub const ALL: [Projection; 3] = [Projection::DnState, Projection::CallHistory, Projection::Statistics];

    /// Name on the command line and in positions.
    pub fn name(self) -> &'static str {
        match self {
            Projection::DnState => "dn-state",
            Projection::CallHistory => "call-history",
            Projection::Statistics => "statistics",
        }
    }

    /// The topics it reads.
    pub fn topics(self) -> &'static [Topic] {
        match self {
            Projection::DnState => &[Topic::Config, Topic::Calls],
            Projection::CallHistory => &[Topic::Calls],
            Projection::Statistics => &[Topic::Config, Topic::Calls],
        }
    }
}

impl std::str::FromStr for Projection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Projection::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown projection {s:?} (expected dn-state, call-history or statistics)"))
    }
}

/// Why a projection stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Fatal(String),
}

/// What a runner applied, for its caller (replay's progress). The process's metrics
/// registry counts the same ([`Series`]).
#[derive(Debug, Default)]
pub struct Metrics {
    pub applied: AtomicU64,
    pub dead_lettered: AtomicU64,
}

/// A projection's series in the process's metrics registry.
struct Series {
    applied: metrics::Counter,
    dead_lettered: metrics::Counter,
    /// Time to write one batch (one store transaction).
    batch: metrics::Histogram,
}

impl Series {
    fn new(projection: Projection) -> Self {
        let p = projection.name();
        Series {
            applied: metrics::counter!("netwatch_projection_events_applied_total", "projection" => p),
            dead_lettered: metrics::counter!("netwatch_projection_events_dead_lettered_total", "projection" => p),
            batch: metrics::histogram!("netwatch_store_batch_seconds", "projection" => p),
        }
    }
}

/// How often the statistics runner deletes minute buckets older than they are kept.
const PRUNE_MINUTES: Duration = Duration::from_secs(600);

/// How often a runner checks whether its generation is still the current one.
const GENERATION_CHECK: Duration = Duration::from_secs(1);

/// The consumer group of a projection generation: `{prefix}{group}.{projection}.g{gen}`.
/// Instances writing one store share `group` (default `projection`) and so split the
/// partitions; instances writing different stores must use different groups.
pub fn group_name(log: &Log, group: &str, projection: Projection, gen: Gen) -> String {
    format!("{}{group}.{}", log.topics.prefix, gen_key(projection.name(), gen))
}

/// How a generation run ends.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// `shutdown` turned true.
    Shutdown,
    /// Another generation became current (replay switched readers over).
    Switched,
}

/// Run one projection until `shutdown` turns true, in group `projection`.
pub async fn run<S: Store>(
    log: Log,
    store: S,
    projection: Projection,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ProjectionError> {
    run_in_group(log, store, projection, "projection", metrics, shutdown).await
}

/// Run one projection until `shutdown` turns true, always extending the *current*
/// generation: when `netwatch replay` switches readers to a new generation, the runner
/// leaves the old generation's group and continues the new one from the positions
/// stored with its rows.
pub async fn run_in_group<S: Store>(
    log: Log,
    store: S,
    projection: Projection,
    group: &str,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ProjectionError> {
    ensure_current(&store, projection.name()).await?;
    loop {
        let gen = current_gen(&store, projection.name()).await?;
        match run_generation(&log, &store, projection, gen, group, metrics.clone(), shutdown.clone(), true).await? {
            Ended::Shutdown => return Ok(()),
            Ended::Switched => {
                info!(projection = projection.name(), from = gen, "A new generation is current; following it.");
            }
        }
    }
}

/// Apply the log to generation `gen` of a projection until `stop` turns true, or (when
/// `follow`) until `gen` is no longer the current generation.
#[allow(clippy::too_many_arguments)]
pub async fn run_generation<S: Store>(
    log: &Log,
    store: &S,
    projection: Projection,
    gen: Gen,
    group: &str,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    follow: bool,
) -> Result<Ended, ProjectionError> {
    let group = group_name(log, group, projection, gen);
    let handle = tokio::runtime::Handle::current();
    let positions = {
        let store = store.clone();
        StartAt::Stored(Arc::new(move |topic: &str, partition| {
            handle.block_on(store.position(projection.name(), gen, topic, partition)).map_err(|e| e.to_string())
        }))
    };
    let topics: Vec<String> = projection.topics().iter().map(|t| log.topic(*t)).collect();
    let join = || {
        spawn_group_consumer(
            &log.kafka,
            GroupOptions {
                group: group.clone(),
                topics: topics.clone(),
                start: positions.clone(),
                revoke_timeout: Duration::from_secs(30),
                cooperative: false,
            },
        )
    };
    let mut consumer = join()?;
    let health = watch_broker(
        &log.kafka,
        format!("projection {} g{gen}", projection.name()),
        "it keeps its store as it is and applies the log from there once the broker is back",
        stop.clone(),
    );
    let mut stall = Stall::new(REJOIN_PATIENCE);
    let mut progress = Progress::default();
    // The partitions this member was given.
    let mut mine: BTreeSet<(String, i32)> = BTreeSet::new();
    let mut look = tokio::time::interval(PROGRESS_CHECK);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut applier = Applier {
        projection,
        gen,
        store: store.clone(),
        dead: log.dead_letter(&group),
        config_topic: log.topic(Topic::Config),
        topics: topics.clone(),
        known: BTreeMap::new(),
        metrics,
        series: Series::new(projection),
    };
    info!(projection = projection.name(), gen, %group, "Projection started.");
    let mut check = tokio::time::interval(GENERATION_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prune = tokio::time::interval(PRUNE_MINUTES);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let max_batch = store.max_batch();
    let result = loop {
        if *stop.borrow() {
            break Ok(Ended::Shutdown);
        }
        let first = tokio::select! {
            _ = stop.changed() => continue,
            _ = look.tick() => {
                // Lag that does not shrink while the broker answers: the group lost this
                // member's partitions (a broker restart or a long pause); join it again.
                let stuck = health.reachable() && progress.stuck(log, store, projection, gen, &mine).await;
                if stall.due(stuck, tokio::time::Instant::now()) {
                    warn!(projection = projection.name(), gen, "The log has records this projection does not apply; rejoining its group.");
                    applier.known.clear();
                    mine.clear();
                    match join() {
                        Ok(fresh) => std::mem::replace(&mut consumer, fresh).stop().await,
                        Err(e) => break Err(e.into()),
                    }
                }
                continue;
            }
            _ = prune.tick(), if projection == Projection::Statistics && follow => {
                match store.prune_minutes(netwatch_schemas::now_ms() - stat_fold::MINUTES_KEPT_MS).await {
                    Ok(n) => debug!(projection = projection.name(), n, "Old minute buckets pruned."),
                    Err(e) => warn!(projection = projection.name(), error = %e, "Pruning old minute buckets failed; trying again later."),
                }
                continue;
            }
            _ = check.tick(), if follow => {
                match current_gen(store, projection.name()).await {
                    Ok(current) if current != gen => break Ok(Ended::Switched),
                    Ok(_) => continue,
                    Err(e) => break Err(e.into()),
                }
            }
            event = consumer.events.recv() => match event { Some(e) => e, None => break Ok(Ended::Shutdown) },
        };
        let mut records = Vec::new();
        let mut control = None;
        let mut next = Some(first);
        while let Some(event) = next.take() {
            match event {
                ConsumerEvent::Record(r) => records.push(r),
                other => {
                    control = Some(other);
                    break;
                }
            }
            if records.len() < max_batch {
                next = consumer.events.try_recv().ok();
            }
        }
        if !records.is_empty() {
            match applier.apply(&records).await {
                Ok(()) => {}
                Err(ProjectionError::Store(StoreError::Retired { .. })) if follow => break Ok(Ended::Switched),
                Err(e) => {
                    error!(projection = projection.name(), error = %e, "Applying a batch failed; stopping.");
                    break Err(e);
                }
            }
        }
        match control {
            Some(ConsumerEvent::Revoked { ack, .. }) => {
                applier.known.clear();
                mine.clear();
                let _ = ack.send(());
            }
            Some(ConsumerEvent::Assigned(partitions)) => {
                mine.extend(partitions.iter().cloned());
                let numbers: Vec<String> = partitions.iter().map(|(t, p)| format!("{t}/{p}")).collect();
                info!(projection = projection.name(), gen, partitions = %numbers.join(","), "Partitions assigned.");
            }
            Some(ConsumerEvent::Fatal(reason)) => break Err(ProjectionError::Fatal(reason)),
            _ => {}
        }
    };
    consumer.stop().await;
    info!(projection = projection.name(), gen, "Projection stopped.");
    result
}

/// Apply `records` (as read from `log`'s topics) to the current generation of
/// `projection` in `store`, in batches of the store's size, exactly as a runner does but
/// without a broker in between: the in-process figure of `netwatch bench apply`.
pub async fn apply_in_process<S: Store>(log: &Log, store: &S, projection: Projection, records: &[Record]) -> Result<(), ProjectionError> {
    let gen = ensure_current(store, projection.name()).await?;
    let mut applier = Applier {
        projection,
        gen,
        store: store.clone(),
        dead: log.dead_letter("bench"),
        config_topic: log.topic(Topic::Config),
        topics: projection.topics().iter().map(|t| log.topic(*t)).collect(),
        known: BTreeMap::new(),
        metrics: Arc::new(Metrics::default()),
        series: Series::new(projection),
    };
    for batch in records.chunks(store.max_batch()) {
        applier.apply(batch).await?;
    }
    Ok(())
}

/// How long lag may stay without progress (while the broker answers) before the
/// projection joins its group again.
const REJOIN_PATIENCE: Duration = Duration::from_secs(10);
/// How often the projection looks at its lag.
const PROGRESS_CHECK: Duration = Duration::from_secs(5);

/// The stored positions seen at the last look, per topic and partition.
#[derive(Default)]
struct Progress {
    seen: BTreeMap<(String, i32), i64>,
}

impl Progress {
    /// Does some partition stay behind the log's end, unmoved since the last look, with
    /// nobody to move it? A partition of this member's assignment counts only when none
    /// of its partitions moved (a consumer catching up may read one partition at a time
    /// for a while); one assigned elsewhere counts on its own (after a broker restart or
    /// a long pause the group may give it to a ghost of a lost member). A failed look (the
    /// broker or the store did not answer) says no.
    async fn stuck<S: Store>(&mut self, log: &Log, store: &S, projection: Projection, gen: Gen, mine: &BTreeSet<(String, i32)>) -> bool {
        let (mut idle, mut moved) = (Vec::new(), false);
        for topic in projection.topics() {
            let Ok(ends) = log.high_watermarks(*topic).await else { return false };
            let name = log.topic(*topic);
            for (partition, end) in ends {
                let Ok(position) = store.position(projection.name(), gen, &name, partition).await else { return false };
                let position = position.unwrap_or(0);
                let key = (name.clone(), partition);
                match self.seen.insert(key.clone(), position) {
                    Some(before) if before == position => {
                        if position < end {
                            idle.push(key);
                        }
                    }
                    _ => moved = true,
                }
            }
        }
        idle.iter().any(|p| !moved || !mine.contains(p))
    }
}

struct Applier<S: Store> {
    projection: Projection,
    gen: Gen,
    store: S,
    dead: DeadLetter,
    config_topic: String,
    /// The topics read, for position stamps.
    topics: Vec<String>,
    /// Next offset per (topic, partition) as far as this runner knows.
    known: BTreeMap<String, BTreeMap<i32, i64>>,
    metrics: Arc<Metrics>,
    series: Series,
}

impl<S: Store> Applier<S> {
    async fn apply(&mut self, records: &[Record]) -> Result<(), ProjectionError> {
        let mut batch = Batch::new(self.projection.name(), self.gen);
        let mut stats = StatRows::default();
        let (mut applied, mut dead) = (0, 0);
        for r in records {
            batch.positions.insert((r.topic.clone(), r.partition), r.offset + 1);
            match self.known.get_mut(&r.topic) {
                Some(partitions) => {
                    partitions.insert(r.partition, r.offset + 1);
                }
                None => {
                    self.known.insert(r.topic.clone(), BTreeMap::from([(r.partition, r.offset + 1)]));
                }
            }
            let stamp = self.stamp(r.partition).await?;
            if let Ok(tserver) = r.key_str().parse::<i32>() {
                batch.stamps.insert(tserver, stamp);
            }
            let Some(value) = r.value.as_deref() else { continue };
            let outcome = if r.topic == self.config_topic {
                match decode::<ConfigEvent>(value) {
                    Ok(event) => Ok(self.config(&mut batch, &mut stats, &event).await?),
                    Err(e) => Err(format!("undecodable config event: {e}")),
                }
            } else {
                match decode::<CallEvent>(value) {
                    Ok(event) => Ok(self.call(&mut batch, &mut stats, &event).await?),
                    Err(e) => Err(format!("undecodable call event: {e}")),
                }
            };
            match outcome {
                Ok(()) => applied += 1,
                Err(reason) => {
                    self.dead.send(r, &reason).await?;
                    dead += 1;
                }
            }
        }
        self.flush_stats(&mut batch, stats).await?;
        let start = std::time::Instant::now();
        self.store.write(batch).await?;
        self.series.batch.record(start.elapsed().as_secs_f64());
        self.metrics.applied.fetch_add(applied, Ordering::Relaxed);
        self.metrics.dead_lettered.fetch_add(dead, Ordering::Relaxed);
        self.series.applied.increment(applied);
        self.series.dead_lettered.increment(dead);
        Ok(())
    }

    /// The position a partition's rows reflect: the sum of its next offsets over the
    /// topics read.
    async fn stamp(&mut self, partition: i32) -> Result<i64, StoreError> {
        let mut sum = 0;
        for topic in &self.topics {
            let next = match self.known.get(topic).and_then(|p| p.get(&partition)) {
                Some(n) => *n,
                None => {
                    let n = self.store.position(self.projection.name(), self.gen, topic, partition).await?.unwrap_or(0);
                    self.known.entry(topic.clone()).or_default().insert(partition, n);
                    n
                }
            };
            sum += next;
        }
        Ok(sum)
    }

    async fn config(&self, batch: &mut Batch, stats: &mut StatRows, event: &ConfigEvent) -> Result<(), StoreError> {
        let change = &event.change;
        if self.projection == Projection::Statistics {
            // The last configuration of each group: its members count at read time.
            let (tserver, id, row) = match change {
                ConfigChange::GroupCreated(g) | ConfigChange::GroupUpdated(g) => {
                    (g.tserver, g.id, serde_json::to_string(&StatGroup::from_config(g))?)
                }
                ConfigChange::GroupDeleted(g) => (g.tserver, g.id, "null".to_string()),
                _ => return Ok(()),
            };
            stats.groups.insert((tserver, id.to_string()), row);
            return Ok(());
        }
        if self.projection != Projection::DnState {
            return Ok(());
        }
        let key = match change {
            ConfigChange::DnCreated(d) | ConfigChange::DnUpdated(d) => (d.tserver, d.number.clone()),
            ConfigChange::DnDeleted(d) => (d.tserver, d.number.clone()),
            _ => return Ok(()),
        };
        let current = self.dn(batch, key.0, &key.1).await?;
        if let Some(row) = dn_state::apply_config(|_, _| current, change, event.at_ms) {
            batch.dns.insert(key, row);
        }
        Ok(())
    }

    async fn call(&self, batch: &mut Batch, stats: &mut StatRows, event: &CallEvent) -> Result<(), StoreError> {
        match self.projection {
            Projection::Statistics => {
                let tserver = event.tserver;
                let deltas = stats.deltas.entry(tserver).or_default();
                match dn_state::target(event) {
                    Target::Dn(dn) => {
                        let key = (tserver, dn.clone());
                        let row = match stats.dns.remove(&key) {
                            Some(row) => row,
                            None => self.stat(tserver, DN_PART, &dn).await?.unwrap_or_else(|| StatDn::new(tserver, &dn)),
                        };
                        let (call, merged) = match &event.body {
                            CallBody::Telephony(t) => {
                                let call = stats.take_call(self, tserver, &t.connid).await?;
                                let merged = match t.previous_connid.as_ref().filter(|p| **p != t.connid) {
                                    Some(p) if t.kind == TEventKind::PartyChanged => stats.take_call(self, tserver, p).await?,
                                    _ => None,
                                };
                                (call, merged)
                            }
                            _ => (None, None),
                        };
                        let deltas = stats.deltas.entry(tserver).or_default();
                        let (row, call, merged) = stat_fold::apply_at_dn(row, call, merged, event, deltas);
                        stats.dns.insert(key, row);
                        for c in [call, merged].into_iter().flatten() {
                            stats.calls.insert((tserver, c.record.connid.clone()), c);
                        }
                    }
                    Target::AllDns => {
                        let mut rows: BTreeMap<String, StatDn> = BTreeMap::new();
                        for (dn, json) in self.store.stat_range(self.gen, tserver, DN_PART, "", "\u{10FFFF}").await? {
                            rows.insert(dn, serde_json::from_str(&json)?);
                        }
                        for ((t, dn), row) in &stats.dns {
                            if *t == tserver {
                                rows.insert(dn.clone(), row.clone());
                            }
                        }
                        for (dn, row) in rows {
                            stats.dns.insert((tserver, dn), stat_fold::apply_to_every_dn(row, event, deltas));
                        }
                    }
                    Target::Nothing => {}
                }
            }
            Projection::DnState => match dn_state::target(event) {
                Target::Dn(dn) => {
                    let row = self.dn(batch, event.tserver, &dn).await?.unwrap_or_else(|| DnState::new(event.tserver, &dn));
                    batch.dns.insert((event.tserver, dn), dn_state::apply_call(row, event));
                }
                Target::AllDns => {
                    let mut rows: BTreeMap<String, DnState> =
                        self.store.dns(self.gen, event.tserver).await?.into_iter().map(|r| (r.dn.clone(), r)).collect();
                    for ((t, dn), row) in &batch.dns {
                        if *t == event.tserver {
                            rows.insert(dn.clone(), row.clone());
                        }
                    }
                    for (dn, row) in rows {
                        batch.dns.insert((event.tserver, dn), dn_state::apply_call(row, event));
                    }
                }
                Target::Nothing => {}
            },
            Projection::CallHistory => {
                if let CallBody::Telephony(t) = &event.body {
                    let key = (event.tserver, t.connid.clone());
                    let current = self.call_record(batch, &key).await?;
                    batch.calls.insert(key, call_history::apply(current, event.tserver, t, event.server_time_ms));
                    // A completed two-step transfer or conference ends the DN's part in the
                    // consultation it merged from (no EventReleased comes for it).
                    if let (TEventKind::PartyChanged, Some(previous)) = (t.kind, t.previous_connid.as_ref().filter(|p| **p != t.connid)) {
                        let key = (event.tserver, previous.clone());
                        if let Some(merged) = self.call_record(batch, &key).await? {
                            batch.calls.insert(key, call_history::merged_away(merged, &t.dn, &t.connid, event.server_time_ms));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A statistics row of the current generation, parsed.
    async fn stat<T: serde::de::DeserializeOwned>(&self, tserver: i32, part: &str, key: &str) -> Result<Option<T>, StoreError> {
        match self.store.stat_row(self.gen, tserver, part, key).await? {
            Some(json) => Ok(serde_json::from_str(&json)?),
            None => Ok(None),
        }
    }

    /// Write a batch's statistics rows: DN, call and group rows as they are, and each
    /// bucket touched as its stored sums plus the batch's.
    async fn flush_stats(&self, batch: &mut Batch, stats: StatRows) -> Result<(), StoreError> {
        for ((tserver, dn), row) in stats.dns {
            batch.stats.insert((tserver, DN_PART.into(), dn), serde_json::to_string(&row)?);
        }
        for ((tserver, connid), row) in stats.calls {
            batch.stats.insert((tserver, stat_fold::call_part(&connid), String::new()), serde_json::to_string(&row)?);
        }
        for ((tserver, id), row) in stats.groups {
            batch.stats.insert((tserver, GROUP_PART.into(), id), row);
        }
        // Minute buckets serve windows of the last hour: those older than they are kept
        // are not written (a replay of old history writes intervals only).
        let oldest_minute = netwatch_schemas::now_ms() - stat_fold::MINUTES_KEPT_MS;
        for (tserver, deltas) in stats.deltas {
            for ((object, width, start), delta) in deltas {
                if width == 'm' && start < oldest_minute {
                    continue;
                }
                let (part, key) = (stat_fold::bucket_part(&object), stat_fold::bucket_key(width, start));
                let mut tally: Tally = self.stat(tserver, &part, &key).await?.unwrap_or_default();
                tally.add(&delta);
                batch.stats.insert((tserver, part, key), serde_json::to_string(&tally)?);
            }
        }
        Ok(())
    }

    async fn call_record(&self, batch: &Batch, key: &(i32, String)) -> Result<Option<CallRecord>, StoreError> {
        match batch.calls.get(key) {
            Some(c) => Ok(Some(c.clone())),
            None => self.store.call(self.gen, key.0, &key.1).await,
        }
    }

    async fn dn(&self, batch: &Batch, tserver: i32, dn: &str) -> Result<Option<DnState>, StoreError> {
        match batch.dns.get(&(tserver, dn.to_string())) {
            Some(row) => Ok(Some(row.clone())),
            None => self.store.dn(self.gen, tserver, dn).await,
        }
    }
}

/// The statistics rows a batch changes, parsed, until it is written.
#[derive(Default)]
struct StatRows {
    dns: BTreeMap<(i32, String), StatDn>,
    calls: BTreeMap<(i32, String), StatCall>,
    /// Group rows as JSON (`null`: deleted).
    groups: BTreeMap<(i32, String), String>,
    deltas: BTreeMap<i32, stat_fold::Deltas>,
}

impl StatRows {
    /// A call's row, from this batch or the store (taken out; put back after the fold).
    async fn take_call<S: Store>(&mut self, applier: &Applier<S>, tserver: i32, connid: &str) -> Result<Option<StatCall>, StoreError> {
        match self.calls.remove(&(tserver, connid.to_string())) {
            Some(c) => Ok(Some(c)),
            None => applier.stat(tserver, &stat_fold::call_part(connid), "").await,
        }
    }
}
