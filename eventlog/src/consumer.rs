//! Group consumers on a dedicated thread, with rebalances delivered in order with records.
//!
//! The poll loop runs on its own OS thread so that a revocation can block until the
//! owner has released what it held (a monitor unregisters its DNs before the rebalance
//! completes) without stalling the async runtime. Assignments start each partition where
//! the owner says: at the beginning (monitors, dispatchers rebuild from the log) or at
//! a position kept with the owner's effects (projections).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tracing::{debug, error, warn};

use crate::{KafkaConfig, LogError, Record};

/// Reads a stored position: (topic, partition) → next offset to read, if any.
pub type PositionFn = Arc<dyn Fn(&str, i32) -> Result<Option<i64>, String> + Send + Sync>;

/// Where an assigned partition starts.
#[derive(Clone)]
pub enum StartAt {
    /// From the first record: the owner rebuilds its state from the log.
    Beginning,
    /// From a stored position (next offset to read); the beginning when none is stored.
    /// An error leaves the partition unassigned and is reported as [`ConsumerEvent::Fatal`].
    Stored(PositionFn),
}

/// What a group consumer reports, in order.
#[derive(Debug)]
pub enum ConsumerEvent {
    /// These partitions are now ours.
    Assigned(Vec<(String, i32)>),
    /// These partitions are being taken away; release them, then send on `ack`.
    Revoked { partitions: Vec<(String, i32)>, ack: std_mpsc::SyncSender<()> },
    /// A record from an assigned partition.
    Record(Record),
    /// The consumer reached the current end of a partition.
    Eof { partition: i32 },
    /// A non-fatal consumer error, already logged.
    Error(String),
    /// The owner cannot go on (its start position could not be read).
    Fatal(String),
}

/// How to join a group.
#[derive(Clone)]
pub struct GroupOptions {
    pub group: String,
    pub topics: Vec<String>,
    pub start: StartAt,
    /// How long a revocation waits for the owner's acknowledgement.
    pub revoke_timeout: Duration,
    /// Use the cooperative-sticky assignor: a rebalance revokes only the partitions that
    /// move, so the others keep working through it.
    pub cooperative: bool,
}

/// A running group consumer. Dropping `events` and calling [`GroupConsumer::stop`] leaves
/// the group.
pub struct GroupConsumer {
    pub events: mpsc::Receiver<ConsumerEvent>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl GroupConsumer {
    /// Leave the group and wait for the poll thread to end.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.events.close();
        // A revocation still queued holds the poll thread until acknowledged.
        while let Ok(event) = self.events.try_recv() {
            if let ConsumerEvent::Revoked { ack, .. } = event {
                let _ = ack.send(());
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

struct Context {
    tx: mpsc::Sender<ConsumerEvent>,
    start: StartAt,
    revoke_timeout: Duration,
    group: String,
    /// Partitions whose lag this consumer reported last time.
    lagging: std::sync::Mutex<BTreeSet<(String, i32)>>,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        report_error(error, reason);
    }

    /// Every [`STATS_EVERY`]: `netwatch_consumer_lag` of each partition this member
    /// fetches, the records between the partition's end and what the member has handed
    /// to its application (0 once a partition went to another member).
    fn stats(&self, statistics: Statistics) {
        let mut now = BTreeSet::new();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                let position = if p.app_offset >= 0 { p.app_offset } else { p.next_offset };
                if *partition < 0 || p.fetch_state != "active" || position < 0 || p.hi_offset < 0 {
                    continue;
                }
                lag_gauge(&self.group, topic, *partition).set((p.hi_offset - position).max(0) as f64);
                now.insert((topic.clone(), *partition));
            }
        }
        let Ok(mut before) = self.lagging.lock() else { return };
        for (topic, partition) in before.difference(&now) {
            lag_gauge(&self.group, topic, *partition).set(0.0);
        }
        *before = now;
    }
}

/// How often group members report their lag.
const STATS_EVERY: Duration = Duration::from_secs(5);

fn lag_gauge(group: &str, topic: &str, partition: i32) -> metrics::Gauge {
    metrics::gauge!("netwatch_consumer_lag", "group" => group.to_string(), "topic" => topic.to_string(), "partition" => partition.to_string())
}

/// End of partition is delivered as an event; librdkafka also reports it as an error.
fn report_error(error: KafkaError, reason: &str) {
    if matches!(error, KafkaError::PartitionEOF(_)) || reason.contains("reached end of partition") {
        return;
    }
    error!(%error, %reason, "Kafka client error.");
}

/// Client context of tail consumers: errors reported like a group consumer's.
struct Quiet;

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        report_error(error, reason);
    }
}

impl ConsumerContext for Quiet {}

impl ConsumerContext for Context {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let partitions: Vec<(String, i32)> = tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                for (topic, partition) in &partitions {
                    let offset = match &self.start {
                        StartAt::Beginning => Offset::Beginning,
                        StartAt::Stored(f) => match f(topic, *partition) {
                            Ok(stored) => stored.map(Offset::Offset).unwrap_or(Offset::Beginning),
                            Err(e) => {
                                error!(%topic, partition, error = %e, "Cannot read the stored position; not consuming.");
                                let _ = self.tx.blocking_send(ConsumerEvent::Fatal(format!(
                                    "cannot read the stored position of {topic}/{partition}: {e}"
                                )));
                                return;
                            }
                        },
                    };
                    if let Err(e) = tpl.set_partition_offset(topic, *partition, offset) {
                        error!(%topic, partition, error = %e, "Could not set the start position.");
                    }
                }
                debug!(?partitions, "Partitions assigned.");
                let assigned = match consumer.rebalance_protocol() {
                    RebalanceProtocol::Cooperative => consumer.incremental_assign(tpl),
                    _ => consumer.assign(tpl),
                };
                if let Err(e) = assigned {
                    error!(error = %e, "Assigning partitions failed.");
                }
                let _ = self.tx.blocking_send(ConsumerEvent::Assigned(partitions));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                debug!(?partitions, "Partitions revoked.");
                let (ack, acked) = std_mpsc::sync_channel(1);
                if self.tx.blocking_send(ConsumerEvent::Revoked { partitions, ack }).is_ok()
                    && acked.recv_timeout(self.revoke_timeout).is_err()
                {
                    warn!("The owner did not release revoked partitions in time.");
                }
                let unassigned = match consumer.rebalance_protocol() {
                    RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
                    _ => consumer.unassign(),
                };
                if let Err(e) = unassigned {
                    error!(error = %e, "Unassigning partitions failed.");
                }
            }
            other => error!(error = ?other, "Rebalance error."),
        }
    }
}

/// Join a consumer group on a dedicated thread.
pub fn spawn_group_consumer(kafka: &KafkaConfig, options: GroupOptions) -> Result<GroupConsumer, LogError> {
    let (tx, events) = mpsc::channel(1024);
    let context = Context {
        tx: tx.clone(),
        start: options.start.clone(),
        revoke_timeout: options.revoke_timeout,
        group: options.group.clone(),
        lagging: Default::default(),
    };
    let mut config = kafka.consumer(&options.group);
    config.set("statistics.interval.ms", STATS_EVERY.as_millis().to_string());
    if options.cooperative {
        config.set("partition.assignment.strategy", "cooperative-sticky");
    }
    let consumer: BaseConsumer<Context> = config.create_with_context(context)?;
    let topics: Vec<&str> = options.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("consumer-{}", options.group))
        .spawn(move || poll_loop(consumer, tx, stopping))
        .map_err(|e| LogError::Task(e.to_string()))?;
    Ok(GroupConsumer { events, stop, thread: Some(thread) })
}

fn poll_loop(consumer: BaseConsumer<Context>, tx: mpsc::Sender<ConsumerEvent>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        let event = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Ok(m)) => ConsumerEvent::Record(Record::from_message(&m)),
            Some(Err(KafkaError::PartitionEOF(partition))) => ConsumerEvent::Eof { partition },
            Some(Err(e)) => {
                warn!(error = %e, "Consumer error.");
                ConsumerEvent::Error(e.to_string())
            }
        };
        if tx.blocking_send(event).is_err() {
            break;
        }
    }
    debug!("Leaving the consumer group.");
    consumer.unsubscribe();
}

/// Follow every partition of a topic outside any group, from `start(partition, low, high)`
/// (an offset between the partition's low and high watermarks), on a dedicated thread.
/// Reports records and end-of-partition events like a group consumer.
pub fn spawn_tail(kafka: &KafkaConfig, topic: &str, start: impl Fn(i32, i64, i64) -> i64) -> Result<GroupConsumer, LogError> {
    let (tx, events) = mpsc::channel(1024);
    let consumer: BaseConsumer<Quiet> = kafka
        .client()
        .set("group.id", "netwatch-tail")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "100")
        .create_with_context(Quiet)?;
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| LogError::unreachable(kafka, e))?;
    let partitions: Vec<i32> = match md.topics().first() {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => t.partitions().iter().map(|p| p.id()).collect(),
        _ => return Err(LogError::MissingTopic(topic.to_string())),
    };
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        tpl.add_partition_offset(topic, p, Offset::Offset(start(p, low, high).clamp(low, high)))?;
    }
    consumer.assign(&tpl)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("tail-{topic}"))
        .spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                let event = match consumer.poll(Duration::from_millis(200)) {
                    None => continue,
                    Some(Ok(m)) => ConsumerEvent::Record(Record::from_message(&m)),
                    Some(Err(KafkaError::PartitionEOF(partition))) => ConsumerEvent::Eof { partition },
                    Some(Err(e)) => ConsumerEvent::Error(e.to_string()),
                };
                if tx.blocking_send(event).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| LogError::Task(e.to_string()))?;
    Ok(GroupConsumer { events, stop, thread: Some(thread) })
}
