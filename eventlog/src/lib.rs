//! The log: topic catalogue, Kafka client settings, admin, producer, readers and
//! group consumers, dead-letter routing.
//!
//! Every role talks to Kafka through this crate, so the client settings (idempotent
//! producer, no auto-commit, partition EOF) are chosen once, here.

mod admin;
mod client;
mod consumer;
mod deadletter;
mod emitter;
mod error;
mod health;
mod producer;
mod reader;
mod topics;

pub use admin::{create_topics, wait_until_ready};
pub use client::{KafkaConfig, SESSION_TIMEOUT_MS};
pub use consumer::{spawn_group_consumer, spawn_tail, ConsumerEvent, GroupConsumer, GroupOptions, PositionFn, StartAt};
pub use deadletter::{header, identity, DeadLetter, Identity};
pub use emitter::{Destination, Drained, EmitCounts, Emitter, Settled};
pub use error::LogError;
pub use health::{watch_broker, BrokerHealth, Stall};
pub use producer::{Enqueued, Producer};
pub use reader::{read_range, read_to_end, scan, Record};
pub use topics::{Topic, Topics};

/// What every role needs to talk to the log: where it is, the topic names, a producer.
#[derive(Clone)]
pub struct Log {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub producer: Producer,
}

impl Log {
    /// Connect a producer for a long-running role: its sends never expire.
    pub fn new(kafka: KafkaConfig, topics: Topics) -> Result<Self, LogError> {
        let producer = Producer::new(&kafka)?;
        Ok(Log { kafka, topics, producer })
    }

    /// Connect a producer for a one-shot command: a send fails after `within`.
    pub fn one_shot(kafka: KafkaConfig, topics: Topics, within: std::time::Duration) -> Result<Self, LogError> {
        let producer = Producer::one_shot(&kafka, within)?;
        Ok(Log { kafka, topics, producer })
    }

    /// Full name of a topic.
    pub fn topic(&self, topic: Topic) -> String {
        self.topics.name(topic)
    }

    /// A dead-letter sender for a consumer.
    pub fn dead_letter(&self, consumer: &str) -> DeadLetter {
        DeadLetter::new(self.producer.clone(), self.kafka.clone(), self.topic(Topic::DeadLetter), consumer)
    }

    /// Read the last `per_partition` records of every partition of a topic.
    pub async fn read_recent(&self, topic: Topic, per_partition: i64) -> Result<Vec<Record>, LogError> {
        let kafka = self.kafka.clone();
        let name = self.topic(topic);
        tokio::task::spawn_blocking(move || read_range(&kafka, &name, None, |_, _, high| high - per_partition))
            .await
            .map_err(|e| LogError::Task(e.to_string()))?
    }

    /// The current end (high watermark) of every partition of a topic.
    pub async fn high_watermarks(&self, topic: Topic) -> Result<std::collections::BTreeMap<i32, i64>, LogError> {
        let kafka = self.kafka.clone();
        let name = self.topic(topic);
        let partitions = self.topics.partitions(topic);
        tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::{BaseConsumer, Consumer};
            let consumer: BaseConsumer = kafka.client().create()?;
            (0..partitions).map(|p| Ok((p, consumer.fetch_watermarks(&name, p, std::time::Duration::from_secs(10))?.1))).collect()
        })
        .await
        .map_err(|e| LogError::Task(e.to_string()))?
    }

    /// Read a whole topic (or some partitions) to its current end, off the async runtime.
    pub async fn read_all(&self, topic: Topic, only: Option<Vec<i32>>) -> Result<Vec<Record>, LogError> {
        let kafka = self.kafka.clone();
        let name = self.topic(topic);
        tokio::task::spawn_blocking(move || read_to_end(&kafka, &name, only.as_deref())).await.map_err(|e| LogError::Task(e.to_string()))?
    }
}
