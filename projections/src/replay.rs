//! Replay: build a new generation of a projection from the start of the log while the
//! current one keeps answering, switch readers over when it has caught up, drop the old.
//!
//! 1. A new generation is recorded `building` (or an unfinished one is resumed).
//! 2. It is applied from the log in its own consumer group, exactly as a runner would.
//! 3. Every second the lag (log end − stored position, summed over partitions) is
//!    reported; once it is at most [`CAUGHT_UP`] the builder stops after its batch.
//! 4. One store change makes the new generation `current` and the old one `retired`:
//!    queries read the new one from then on; runners notice within a second (or at
//!    their next write, which the store refuses for a retired generation) and continue
//!    the new generation from its stored positions.
//! 5. After a grace period for queries in flight, the old generation's rows are dropped.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netwatch_eventlog::{KafkaConfig, Log, LogError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::watch;
use tracing::info;

use crate::runner::{run_generation, Metrics, Projection, ProjectionError};
use crate::store::{ensure_current, Gen, GenState, Store};

/// A generation within this many records of the log end counts as caught up; the
/// runners that take it over apply the rest.
pub const CAUGHT_UP: i64 = 20;

/// How long readers keep the old generation after the switch.
pub const GRACE: Duration = Duration::from_secs(2);

/// Where a replay stands.
#[derive(Clone, Debug)]
pub struct Progress {
    pub gen: Gen,
    /// Records applied so far by this replay.
    pub applied: u64,
    /// Records between the stored positions and the log end.
    pub lag: i64,
    /// Records in the log when last measured.
    pub total: i64,
    /// Records per second since the start.
    pub rate: f64,
    /// Time left at this rate.
    pub eta: Option<Duration>,
}

/// How a replay ended.
#[derive(Debug)]
pub enum Replayed {
    /// Switched from `from` (if any) to `to`, old rows dropped.
    Switched { from: Option<Gen>, to: Gen },
    /// Stopped before catching up; the building generation is resumed next time.
    Interrupted { gen: Gen },
}

/// The end offset (high watermark) of every partition of `topics`. Blocking.
pub fn end_offsets(kafka: &KafkaConfig, topics: &[String]) -> Result<BTreeMap<(String, i32), i64>, LogError> {
    let consumer: BaseConsumer = kafka.client().create()?;
    let timeout = Duration::from_secs(10);
    let mut out = BTreeMap::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                let (_, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
                out.insert((topic.clone(), p.id()), high);
            }
        }
    }
    Ok(out)
}

/// Rebuild `projection` into a new generation and switch to it.
pub async fn replay<S: Store>(
    log: Log,
    store: S,
    projection: Projection,
    group: &str,
    mut on_progress: impl FnMut(&Progress),
    mut shutdown: watch::Receiver<bool>,
) -> Result<Replayed, ProjectionError> {
    let name = projection.name();
    // g1 is current on a fresh store (runners start it), so a replay always replaces
    // a generation and never leaves one behind.
    let current = Some(ensure_current(&store, name).await?);
    let gens = store.generations(name).await?;
    let gen = match gens.iter().rev().find(|(_, s)| *s == GenState::Building) {
        Some((g, _)) => *g,
        None => gens.iter().map(|(g, _)| *g).max().unwrap_or(1) + 1,
    };
    store.set_generation(name, gen, GenState::Building).await?;
    info!(projection = name, gen, ?current, "Replay started.");
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = {
        let (log, store, metrics, group) = (log.clone(), store.clone(), metrics.clone(), group.to_string());
        tokio::spawn(async move { run_generation(&log, &store, projection, gen, &group, metrics, stop_rx, false).await })
    };
    let topics: Vec<String> = projection.topics().iter().map(|t| log.topic(*t)).collect();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let caught_up = loop {
        tokio::select! {
            _ = shutdown.changed() => break false,
            done = &mut builder => {
                // The builder only ends on its own by failing.
                return match done {
                    Ok(Ok(_)) => Ok(Replayed::Interrupted { gen }),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(ProjectionError::Fatal(format!("replay task failed: {e}"))),
                };
            }
            _ = tick.tick() => {}
        }
        let ends = {
            let (kafka, topics) = (log.kafka.clone(), topics.clone());
            tokio::task::spawn_blocking(move || end_offsets(&kafka, &topics))
                .await
                .map_err(|e| ProjectionError::Fatal(format!("end offsets task failed: {e}")))??
        };
        let positions = store.positions(name, gen).await?;
        let lag: i64 = ends.iter().map(|(k, end)| (end - positions.get(k).copied().unwrap_or(0)).max(0)).sum();
        let total: i64 = ends.values().sum();
        let applied = metrics.applied.load(Ordering::Relaxed) + metrics.dead_lettered.load(Ordering::Relaxed);
        let rate = applied as f64 / started.elapsed().as_secs_f64().max(0.001);
        let eta = (rate > 0.0).then(|| Duration::from_secs_f64(lag as f64 / rate));
        on_progress(&Progress { gen, applied, lag, total, rate, eta });
        if lag <= CAUGHT_UP {
            break true;
        }
    };
    let _ = stop_tx.send(true);
    match builder.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e),
        Err(e) => return Err(ProjectionError::Fatal(format!("replay task failed: {e}"))),
    }
    if !caught_up {
        info!(projection = name, gen, "Replay interrupted; running it again resumes this generation.");
        return Ok(Replayed::Interrupted { gen });
    }
    store.switch_generation(name, current, gen).await?;
    info!(projection = name, from = ?current, to = gen, "Readers switched to the new generation.");
    if let Some(old) = current {
        tokio::time::sleep(GRACE).await;
        store.drop_generation(name, old).await?;
        info!(projection = name, gen = old, "Old generation dropped.");
    }
    Ok(Replayed::Switched { from: current, to: gen })
}
