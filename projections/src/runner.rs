//! Moves records from the log through the projection folds into the store.
//!
//! Each projection is its own consumer group. Assigned partitions start at the position
//! stored with the rows; records are applied in batches, and every batch's rows and
//! next positions are written in one store write, so a crash anywhere re-applies nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netwatch_eventlog::{spawn_group_consumer, ConsumerEvent, DeadLetter, GroupOptions, Log, LogError, Record, StartAt, Topic};
use netwatch_schemas::calls::{CallBody, CallEvent};
use netwatch_schemas::config::{ConfigChange, ConfigEvent};
use netwatch_schemas::decode;
use tokio::sync::watch;
use tracing::{error, info};

use crate::call_history;
use crate::dn_state::{self, Target};
use crate::rows::DnState;
use crate::store::{Batch, Store, StoreError};

/// The projections there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projection {
    DnState,
    CallHistory,
}

impl Projection {
    /// Every projection.
    pub const ALL: [Projection; 2] = [Projection::DnState, Projection::CallHistory];

    /// Name on the command line and in positions.
    pub fn name(self) -> &'static str {
        match self {
            Projection::DnState => "dn-state",
            Projection::CallHistory => "call-history",
        }
    }

    /// The topics it reads.
    pub fn topics(self) -> &'static [Topic] {
        match self {
            Projection::DnState => &[Topic::Config, Topic::Calls],
            Projection::CallHistory => &[Topic::Calls],
        }
    }
}

impl std::str::FromStr for Projection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Projection::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown projection {s:?} (expected dn-state or call-history)"))
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

/// Counters exposed on /metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    pub applied: AtomicU64,
    pub dead_lettered: AtomicU64,
}

/// The generation every projection writes today (replay adds more).
pub const GENERATION: &str = "g1";

const MAX_BATCH: usize = 500;

/// Run one projection until `shutdown` turns true.
pub async fn run<S: Store>(
    log: Log,
    store: S,
    projection: Projection,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ProjectionError> {
    let key = format!("{}.{GENERATION}", projection.name());
    let group = format!("{}projection.{key}", log.topics.prefix);
    let handle = tokio::runtime::Handle::current();
    let positions = {
        let (store, key) = (store.clone(), key.clone());
        StartAt::Stored(Arc::new(move |topic: &str, partition| {
            handle.block_on(store.position(&key, topic, partition)).map_err(|e| e.to_string())
        }))
    };
    let topics = projection.topics().iter().map(|t| log.topic(*t)).collect();
    let mut consumer = spawn_group_consumer(
        &log.kafka,
        GroupOptions { group: group.clone(), topics, start: positions, revoke_timeout: Duration::from_secs(30), cooperative: false },
    )?;
    let mut applier = Applier { projection, key, store, dead: log.dead_letter(&group), config_topic: log.topic(Topic::Config), metrics };
    info!(projection = projection.name(), %group, "Projection started.");
    let result = loop {
        let first = tokio::select! {
            _ = shutdown.changed() => break Ok(()),
            event = consumer.events.recv() => match event { Some(e) => e, None => break Ok(()) },
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
            if records.len() < MAX_BATCH {
                next = consumer.events.try_recv().ok();
            }
        }
        if !records.is_empty() {
            if let Err(e) = applier.apply(records).await {
                error!(projection = projection.name(), error = %e, "Applying a batch failed; stopping.");
                break Err(e);
            }
        }
        match control {
            Some(ConsumerEvent::Revoked { ack, .. }) => {
                let _ = ack.send(());
            }
            Some(ConsumerEvent::Fatal(reason)) => break Err(ProjectionError::Fatal(reason)),
            _ => {}
        }
    };
    consumer.stop().await;
    info!(projection = projection.name(), "Projection stopped.");
    result
}

struct Applier<S: Store> {
    projection: Projection,
    key: String,
    store: S,
    dead: DeadLetter,
    config_topic: String,
    metrics: Arc<Metrics>,
}

impl<S: Store> Applier<S> {
    async fn apply(&mut self, records: Vec<Record>) -> Result<(), ProjectionError> {
        let mut batch = Batch::new(&self.key);
        for r in &records {
            batch.positions.insert((r.topic.clone(), r.partition), r.offset + 1);
            let Some(value) = r.value.as_deref() else { continue };
            let outcome = if r.topic == self.config_topic {
                match decode::<ConfigEvent>(value) {
                    Ok(event) => Ok(self.config(&mut batch, &event).await?),
                    Err(e) => Err(format!("undecodable config event: {e}")),
                }
            } else {
                match decode::<CallEvent>(value) {
                    Ok(event) => Ok(self.call(&mut batch, &event).await?),
                    Err(e) => Err(format!("undecodable call event: {e}")),
                }
            };
            match outcome {
                Ok(()) => {
                    self.metrics.applied.fetch_add(1, Ordering::Relaxed);
                }
                Err(reason) => {
                    self.dead.send(r, &reason).await?;
                    self.metrics.dead_lettered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.store.write(batch).await?;
        Ok(())
    }

    async fn config(&self, batch: &mut Batch, event: &ConfigEvent) -> Result<(), StoreError> {
        if self.projection != Projection::DnState {
            return Ok(());
        }
        let change = &event.change;
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

    async fn call(&self, batch: &mut Batch, event: &CallEvent) -> Result<(), StoreError> {
        match self.projection {
            Projection::DnState => match dn_state::target(event) {
                Target::Dn(dn) => {
                    let row = self.dn(batch, event.tserver, &dn).await?.unwrap_or_else(|| DnState::new(event.tserver, &dn));
                    batch.dns.insert((event.tserver, dn), dn_state::apply_call(row, event));
                }
                Target::AllDns => {
                    let mut rows: BTreeMap<String, DnState> =
                        self.store.dns(event.tserver).await?.into_iter().map(|r| (r.dn.clone(), r)).collect();
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
                    let current = match batch.calls.get(&key) {
                        Some(c) => Some(c.clone()),
                        None => self.store.call(key.0, &key.1).await?,
                    };
                    batch.calls.insert(key, call_history::apply(current, event.tserver, t, event.server_time_ms));
                }
            }
        }
        Ok(())
    }

    async fn dn(&self, batch: &Batch, tserver: i32, dn: &str) -> Result<Option<DnState>, StoreError> {
        match batch.dns.get(&(tserver, dn.to_string())) {
            Some(row) => Ok(Some(row.clone())),
            None => self.store.dn(tserver, dn).await,
        }
    }
}
