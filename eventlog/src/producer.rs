//! The one producer every writer uses: idempotent, acks=all, typed sends.

use std::time::Duration;

use netwatch_schemas::{encode, Event};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use tracing::warn;

use crate::{KafkaConfig, LogError};

/// A record with headers: (topic, key, partition, bytes, headers); empty bytes are a
/// null value.
pub type Headed<'a> = (&'a str, &'a str, i32, &'a [u8], &'a [(String, String)]);

/// An idempotent producer. Cheap to clone.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
}

/// What the producer did with a record offered by [`Producer::enqueue`].
pub enum Enqueued {
    /// Taken; the future tells when the broker acknowledged it.
    Taken(DeliveryFuture),
    /// The producer's queue is full: offer it again later.
    QueueFull,
    /// It can never be sent (too large, unknown partition, ...).
    Refused(String),
}

impl Producer {
    /// A producer for long-running roles: sends never expire (`message.timeout.ms=0`).
    ///
    /// A broker outage only delays records, in order, and the idempotent producer never
    /// bumps its epoch after a timed-out send — which tansu 0.6.0's SQLite engine cannot
    /// survive (docs/broker-notes.md).
    pub fn new(kafka: &KafkaConfig) -> Result<Self, LogError> {
        Self::build(kafka, Self::NEVER)
    }

    /// The message timeout of long-running roles: none.
    pub const NEVER: Duration = Duration::ZERO;

    /// A producer for one-shot commands: a send fails after `within`, and the command
    /// exits with that error.
    pub fn one_shot(kafka: &KafkaConfig, within: Duration) -> Result<Self, LogError> {
        Self::build(kafka, within.max(Duration::from_millis(1)))
    }

    fn build(kafka: &KafkaConfig, timeout: Duration) -> Result<Self, LogError> {
        Ok(Producer { inner: Self::settings(kafka, timeout).create()? })
    }

    /// The client settings of a producer whose sends expire after `timeout` (zero:
    /// never); pass-through options of `kafka` come last.
    pub fn settings(kafka: &KafkaConfig, timeout: Duration) -> rdkafka::ClientConfig {
        let mut config = kafka.client();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576");
        for (k, v) in &kafka.extra {
            config.set(k, v);
        }
        config
    }

    /// Connect now rather than at the first send: a one-shot command reads the log before
    /// it appends, and the producer's connection and idempotence handshake (its producer
    /// id, which librdkafka may retry only after 500 ms) then overlap that read.
    pub fn warm_up(&self) {
        let client = self.inner.clone();
        std::thread::spawn(move || {
            let _ = client.client().fetch_metadata(None, Duration::from_secs(5));
        });
    }

    /// Encode and append an event; returns (partition, offset) once the broker has it.
    pub async fn send<E: Event>(&self, topic: &str, key: &str, partition: Option<i32>, event: &E) -> Result<(i32, i64), LogError> {
        let bytes = encode(event)?;
        self.send_raw(topic, key, partition, &bytes, None).await
    }

    /// Encode and append an event without waiting for the broker; a failure is logged.
    /// For soft state (heartbeats) that must not hold up its sender while the broker is
    /// away.
    pub fn send_detached<E: Event>(&self, topic: &str, key: &str, partition: Option<i32>, event: &E) -> Result<(), LogError> {
        let bytes = encode(event)?;
        let delivery = match self.enqueue(topic, key, partition.unwrap_or(-1), &bytes) {
            Enqueued::Taken(d) => d,
            Enqueued::QueueFull => return Err(LogError::Kafka(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull))),
            Enqueued::Refused(reason) => return Err(LogError::Task(reason)),
        };
        let topic = topic.to_string();
        tokio::spawn(async move {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => warn!(%topic, error = %e, "Could not append a record."),
                Err(_) => warn!(%topic, "Could not append a record: the producer was closed."),
            }
        });
        Ok(())
    }

    /// Append encoded records in order, pipelined: every record is handed to the producer
    /// first (its order per partition is kept), then every acknowledgement awaited. Each
    /// record is (topic, key, partition, bytes).
    pub async fn send_all(&self, records: &[(String, String, i32, Vec<u8>)]) -> Result<(), LogError> {
        let headed: Vec<_> = records.iter().map(|(t, k, p, b)| (t.as_str(), k.as_str(), *p, b.as_slice(), &[][..])).collect();
        self.send_all_with(&headed).await
    }

    /// [`Producer::send_all`] with headers on each record.
    pub async fn send_all_with(&self, records: &[Headed<'_>]) -> Result<(), LogError> {
        let mut pending = std::collections::VecDeque::new();
        for (topic, key, partition, bytes, headers) in records {
            loop {
                match self.enqueue_with(topic, key, *partition, bytes, headers) {
                    Enqueued::Taken(d) => break pending.push_back(d),
                    Enqueued::QueueFull => match pending.pop_front() {
                        Some(oldest) => Self::acknowledged(oldest).await?,
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    },
                    Enqueued::Refused(reason) => return Err(LogError::Task(reason)),
                }
            }
        }
        for d in pending {
            Self::acknowledged(d).await?;
        }
        Ok(())
    }

    async fn acknowledged(delivery: DeliveryFuture) -> Result<(), LogError> {
        match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(LogError::Kafka(e)),
            Err(_) => Err(LogError::Task("the producer was closed".into())),
        }
    }

    /// Offer a record to the producer's queue without waiting; `partition` -1 lets the
    /// partitioner choose.
    pub fn enqueue(&self, topic: &str, key: &str, partition: i32, bytes: &[u8]) -> Enqueued {
        self.enqueue_with(topic, key, partition, bytes, &[])
    }

    /// [`Producer::enqueue`] with headers. Empty `bytes` are appended as a null value: a
    /// marker that carries only its headers (readers skip records without a value).
    pub fn enqueue_with(&self, topic: &str, key: &str, partition: i32, bytes: &[u8], headers: &[(String, String)]) -> Enqueued {
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).key(key);
        if !bytes.is_empty() {
            record = record.payload(bytes);
        }
        if partition >= 0 {
            record = record.partition(partition);
        }
        if !headers.is_empty() {
            let mut h = OwnedHeaders::new();
            for (k, v) in headers {
                h = h.insert(Header { key: k, value: Some(v.as_str()) });
            }
            record = record.headers(h);
        }
        match self.inner.send_result(record) {
            Ok(delivery) => Enqueued::Taken(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Enqueued::QueueFull,
            Err((e, _)) => Enqueued::Refused(e.to_string()),
        }
    }

    /// Append raw bytes with optional headers.
    pub async fn send_raw(
        &self,
        topic: &str,
        key: &str,
        partition: Option<i32>,
        bytes: &[u8],
        headers: Option<&[(&str, &str)]>,
    ) -> Result<(i32, i64), LogError> {
        let mut record = FutureRecord::to(topic).key(key).payload(bytes);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(headers) = headers {
            let mut h = OwnedHeaders::new();
            for (k, v) in headers {
                h = h.insert(Header { key: k, value: Some(*v) });
            }
            record = record.headers(h);
        }
        let delivery = self.inner.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| LogError::Kafka(e))?;
        Ok((delivery.partition, delivery.offset))
    }

    /// Wait until everything sent so far is delivered.
    pub fn flush(&self, within: Duration) -> Result<(), LogError> {
        Ok(self.inner.flush(within)?)
    }

    /// The producer's fatal error, if it hit one (an idempotence violation, say): it
    /// cannot append anything any more.
    pub fn fatal_error(&self) -> Option<String> {
        self.inner.client().fatal_error().map(|(code, reason)| format!("{code}: {reason}"))
    }

    /// Records handed to the producer and not yet acknowledged (or failed).
    pub fn in_flight(&self) -> i32 {
        self.inner.in_flight_count()
    }
}
