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

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use rdkafka::producer::DeliveryFuture;
use tracing::{info, warn};

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
    /// It will never be appended, for this reason.
    Failed(String),
    /// The producer's queue was full; records waiting for it were offered again.
    Retried,
}

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
    /// Records the producer has not taken yet (its queue was full), oldest first.
    waiting: VecDeque<Vec<u8>>,
    /// Records taken by the producer, oldest first, with their acknowledgements.
    in_flight: VecDeque<DeliveryFuture>,
    counts: EmitCounts,
}

impl Emitter {
    /// A stream to `to` with at most `limit` records unacknowledged (at least 1).
    pub fn new(producer: Producer, to: Destination, limit: usize) -> Self {
        Emitter { producer, to, limit: limit.max(1), waiting: VecDeque::new(), in_flight: VecDeque::new(), counts: EmitCounts::default() }
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

    /// Queue a record after every record pushed before it. Never waits: the caller
    /// checks [`Emitter::has_room`] before it takes more input.
    pub fn push(&mut self, bytes: Vec<u8>) {
        self.waiting.push_back(bytes);
        self.hand_over();
    }

    /// Offer waiting records to the producer, in order, until its queue is full.
    fn hand_over(&mut self) {
        while let Some(bytes) = self.waiting.front() {
            match self.producer.enqueue(&self.to.topic, &self.to.key, self.to.partition, bytes) {
                Enqueued::Taken(delivery) => {
                    self.in_flight.push_back(delivery);
                    self.waiting.pop_front();
                }
                Enqueued::QueueFull => break,
                Enqueued::Refused(reason) => {
                    self.waiting.pop_front();
                    self.counts.failed += 1;
                    warn!(topic = %self.to.topic, partition = self.to.partition, %reason, "A record was refused by the producer.");
                }
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
            Some(f) => Pin::new(f).poll(cx),
            None => Poll::Pending,
        })
        .await;
        self.in_flight.pop_front();
        self.hand_over();
        let settled = match result {
            Ok(Ok(delivery)) => Settled::Appended(delivery.offset),
            Ok(Err((e, _))) => Settled::Failed(e.to_string()),
            Err(_) => Settled::Failed("the producer was closed".into()),
        };
        match &settled {
            Settled::Appended(_) => self.counts.appended += 1,
            Settled::Failed(reason) => {
                self.counts.failed += 1;
                warn!(topic = %self.to.topic, partition = self.to.partition, %reason, "A record could not be appended.");
            }
            Settled::Retried => {}
        }
        settled
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

    /// Hand what is still in flight to a background task that settles it and logs the
    /// outcome as `what` (the records stay queued in the producer and are delivered when
    /// the broker answers).
    pub fn detach(mut self, what: String) {
        if self.is_empty() {
            return;
        }
        let before = self.counts;
        let pending = self.len();
        info!(%what, pending, "Records are still on their way to the broker; they are delivered in the background.");
        tokio::spawn(async move {
            while !self.is_empty() {
                self.settle().await;
            }
            let failed = self.counts.failed - before.failed;
            if failed > 0 {
                warn!(%what, failed, appended = self.counts.appended - before.appended, "Background delivery finished; some records were not appended.");
            } else {
                info!(%what, appended = self.counts.appended - before.appended, "Background delivery finished.");
            }
        });
    }
}
