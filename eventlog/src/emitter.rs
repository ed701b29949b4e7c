//! Pipelined, ordered appends of one stream of records (one T-Server's events, one
//! import): many records in flight, never one broker round trip per record.
//!
//! Records are handed to the idempotent producer as soon as they come, in order, for one
//! partition; the producer keeps their order through retries. At most `limit` records
//! wait for their acknowledgement: when that many are in flight [`Emitter::has_room`] is
//! false and the caller stops taking input (a CTI link stops reading its socket, so TCP
//! pushes back on the T-Server). Long-running roles use a producer whose sends never
//! expire (`message.timeout.ms=0`, see [`crate::Producer::new`]), so a broker outage only
//! delays records; a record the broker refuses for good is counted as failed.

use std::collections::{BTreeMap, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use rdkafka::producer::DeliveryFuture;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::producer::Enqueued;
use crate::Producer;

/// Where one stream's records go.
#[derive(Clone, Debug)]
pub struct Destination {
    pub topic: String,
    pub partition: i32,
    pub key: String,
}

/// What became of the oldest record in flight.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    /// The broker acknowledged it at this offset.
    Appended(i64),
    /// It will never be appended, for this reason; its tag.
    Failed { tag: u64, reason: String },
    /// The producer's queue was full; records waiting for it were offered again.
    Retried,
}

/// Failures are logged once at once, then summed up at most this often.
const FAILURE_NOTE_EVERY: Duration = Duration::from_secs(10);

/// Counts of one stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmitCounts {
    /// Records the broker acknowledged.
    pub appended: u64,
    /// Records that will never be appended.
    pub failed: u64,
}

/// What a bounded drain left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    pub counts: EmitCounts,
    /// Records still unacknowledged when the time was up.
    pub pending: usize,
}

/// A pipelined sender of one ordered stream of records.
pub struct Emitter {
    producer: Producer,
    to: Destination,
    limit: usize,
    /// Records the producer has not taken yet (its queue was full), oldest first, with
    /// their tags.
    waiting: VecDeque<(u64, Vec<u8>)>,
    /// Records taken by the producer, oldest first, with their tags, acknowledgements and
    /// when they were taken.
    in_flight: VecDeque<(u64, DeliveryFuture, Instant)>,
    /// Time from the producer taking a record to the broker's acknowledgement
    /// (`netwatch_produce_latency_seconds`, by topic).
    latency: metrics::Histogram,
    counts: EmitCounts,
    /// Failures per tag (a CTI link session, say).
    failed_by_tag: BTreeMap<u64, u64>,
    /// Failures not logged yet, and when failures were last logged.
    unlogged: u64,
    last_note: Option<Instant>,
    fatal_noted: bool,
}

impl Emitter {
    /// A stream to `to` with at most `limit` records unacknowledged (at least 1).
    pub fn new(producer: Producer, to: Destination, limit: usize) -> Self {
        let latency = metrics::histogram!("netwatch_produce_latency_seconds", "topic" => to.topic.clone());
        Emitter {
            producer,
            to,
            limit: limit.max(1),
            waiting: VecDeque::new(),
            latency,
            in_flight: VecDeque::new(),
            counts: EmitCounts::default(),
            failed_by_tag: BTreeMap::new(),
            unlogged: 0,
            last_note: None,
            fatal_noted: false,
        }
    }

    /// May another record be pushed without going over the limit?
    pub fn has_room(&self) -> bool {
        self.len() < self.limit
    }

    /// Records pushed and not yet settled.
    pub fn len(&self) -> usize {
        self.waiting.len() + self.in_flight.len()
    }

    /// Is nothing in flight?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts so far.
    pub fn counts(&self) -> EmitCounts {
        self.counts
    }

    /// Records of this tag that failed so far.
    pub fn failed(&self, tag: u64) -> u64 {
        self.failed_by_tag.get(&tag).copied().unwrap_or(0)
    }

    /// Queue a record after every record pushed before it. Never waits: the caller
    /// checks [`Emitter::has_room`] before it takes more input. `tag` groups records for
    /// [`Emitter::failed`].
    pub fn push(&mut self, tag: u64, bytes: Vec<u8>) {
        self.waiting.push_back((tag, bytes));
        self.hand_over();
    }

    /// Offer waiting records to the producer, in order, until its queue is full.
    fn hand_over(&mut self) {
        while let Some((tag, bytes)) = self.waiting.front() {
            let tag = *tag;
            match self.producer.enqueue(&self.to.topic, &self.to.key, self.to.partition, bytes) {
                Enqueued::Taken(delivery) => {
                    self.in_flight.push_back((tag, delivery, Instant::now()));
                    self.waiting.pop_front();
                }
                Enqueued::QueueFull => break,
                Enqueued::Refused(reason) => {
                    self.waiting.pop_front();
                    self.fail(tag, &reason);
                }
            }
        }
    }

    /// Count a record that will never be appended; log at a bounded rate.
    fn fail(&mut self, tag: u64, reason: &str) {
        self.counts.failed += 1;
        *self.failed_by_tag.entry(tag).or_default() += 1;
        self.unlogged += 1;
        let now = Instant::now();
        if self.last_note.is_none_or(|t| now >= t + FAILURE_NOTE_EVERY) {
            warn!(
                topic = %self.to.topic,
                partition = self.to.partition,
                failed = self.unlogged,
                total = self.counts.failed,
                %reason,
                "Records could not be appended."
            );
            self.unlogged = 0;
            self.last_note = Some(now);
        }
        if !self.fatal_noted {
            if let Some(fatal) = self.producer.fatal_error() {
                self.fatal_noted = true;
                error!(%fatal, "The producer hit a fatal error: nothing more can be appended until this process restarts.");
            }
        }
    }

    /// Wait for the oldest record in flight to settle. Pending forever while nothing is
    /// in flight, so it can sit in a `select!` beside the input.
    pub async fn settle(&mut self) -> Settled {
        if self.in_flight.is_empty() {
            if self.waiting.is_empty() {
                return std::future::pending().await;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.hand_over();
            return Settled::Retried;
        }
        let result = poll_fn(|cx| match self.in_flight.front_mut() {
            Some((_, f, _)) => Pin::new(f).poll(cx),
            None => Poll::Pending,
        })
        .await;
        let (tag, taken) = self.in_flight.pop_front().map(|(t, _, at)| (t, Some(at))).unwrap_or_default();
        self.hand_over();
        match result {
            Ok(Ok(delivery)) => {
                self.counts.appended += 1;
                if let Some(at) = taken {
                    self.latency.record(at.elapsed().as_secs_f64());
                }
                Settled::Appended(delivery.offset)
            }
            Ok(Err((e, _))) => {
                let reason = e.to_string();
                self.fail(tag, &reason);
                Settled::Failed { tag, reason }
            }
            Err(_) => {
                let reason = "the producer was closed".to_string();
                self.fail(tag, &reason);
                Settled::Failed { tag, reason }
            }
        }
    }

    /// Settle everything pushed so far, waiting at most `within`.
    pub async fn drain(&mut self, within: Duration) -> Drained {
        let deadline = tokio::time::Instant::now() + within;
        while !self.is_empty() {
            if tokio::time::timeout_at(deadline, self.settle()).await.is_err() {
                break;
            }
        }
        Drained { counts: self.counts, pending: self.len() }
    }

    /// Hand what is still in flight to a background task that settles it, logs the
    /// outcome as `what` (the records stay queued in the producer and are delivered when
    /// the broker answers) and gives the final counts to `done`; the task, if anything was
    /// in flight.
    pub fn detach(mut self, what: String, done: impl FnOnce(EmitCounts) + Send + 'static) -> Option<JoinHandle<()>> {
        if self.is_empty() {
            return None;
        }
        let before = self.counts;
        let pending = self.len();
        info!(%what, pending, "Records are still on their way to the broker; they are delivered in the background.");
        Some(tokio::spawn(async move {
            while !self.is_empty() {
                self.settle().await;
            }
            let failed = self.counts.failed - before.failed;
            if failed > 0 {
                warn!(%what, failed, appended = self.counts.appended - before.appended, "Background delivery finished; some records were not appended.");
            } else {
                info!(%what, appended = self.counts.appended - before.appended, "Background delivery finished.");
            }
            done(self.counts);
        }))
    }
}
