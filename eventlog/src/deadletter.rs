//! Records that could not be decoded or applied go to `deadletter`, with the reason.
//!
//! A record is dead-lettered once per consumer: a consumer that reads it again (after a
//! rebalance, a restart, a crash before its effects were stored) finds its dead letter
//! already in the topic and writes none. `netwatch deadletter list|replay` reads them.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::{read_to_end, KafkaConfig, LogError, Producer, Record};

/// Header names of a dead letter.
pub mod header {
    pub const SOURCE_TOPIC: &str = "netwatch.source.topic";
    pub const SOURCE_PARTITION: &str = "netwatch.source.partition";
    pub const SOURCE_OFFSET: &str = "netwatch.source.offset";
    pub const REASON: &str = "netwatch.reason";
    pub const CONSUMER: &str = "netwatch.consumer";
    /// On a record re-appended by `netwatch deadletter replay`: the dead letter's id.
    pub const REPLAY_OF: &str = "netwatch.replay-of";
}

/// What identifies a failing record for one consumer: (consumer, source topic,
/// partition, offset).
pub type Identity = (String, String, i32, i64);

/// The identity a dead letter's headers give, if complete.
pub fn identity(dead: &Record) -> Option<Identity> {
    let get = |k: &str| dead.headers.iter().find(|(h, _)| h == k).map(|(_, v)| v.clone());
    Some((
        get(header::CONSUMER)?,
        get(header::SOURCE_TOPIC)?,
        get(header::SOURCE_PARTITION)?.parse().ok()?,
        get(header::SOURCE_OFFSET)?.parse().ok()?,
    ))
}

/// Sends failed records to the dead-letter topic. Cheap to clone.
#[derive(Clone)]
pub struct DeadLetter {
    producer: Producer,
    kafka: KafkaConfig,
    topic: String,
    /// Which consumer is reporting (for the `netwatch.consumer` header).
    consumer: String,
    /// Dead letters already in the topic (read at the first failure) or written since.
    written: Arc<Mutex<Option<HashSet<Identity>>>>,
}

impl DeadLetter {
    /// A dead-letter sender writing to `topic` on behalf of `consumer`.
    pub fn new(producer: Producer, kafka: KafkaConfig, topic: String, consumer: impl Into<String>) -> Self {
        DeadLetter { producer, kafka, topic, consumer: consumer.into(), written: Arc::default() }
    }

    /// Append the record's bytes with its source position and the reason in headers,
    /// unless this consumer dead-lettered that record before.
    pub async fn send(&self, record: &Record, reason: &str) -> Result<(), LogError> {
        let id: Identity = (self.consumer.clone(), record.topic.clone(), record.partition, record.offset);
        let mut written = self.written.lock().await;
        if written.is_none() {
            let (kafka, topic) = (self.kafka.clone(), self.topic.clone());
            let existing = tokio::task::spawn_blocking(move || read_to_end(&kafka, &topic, None))
                .await
                .map_err(|e| LogError::Task(e.to_string()))??;
            *written = Some(existing.iter().filter_map(identity).collect());
        }
        let seen = written.get_or_insert_with(HashSet::new);
        if seen.contains(&id) {
            debug!(topic = %record.topic, partition = record.partition, offset = record.offset, "Already dead-lettered; not again.");
            return Ok(());
        }
        warn!(topic = %record.topic, partition = record.partition, offset = record.offset, %reason, "Sending record to the dead-letter topic.");
        let partition = record.partition.to_string();
        let offset = record.offset.to_string();
        let headers = [
            (header::SOURCE_TOPIC, record.topic.as_str()),
            (header::SOURCE_PARTITION, partition.as_str()),
            (header::SOURCE_OFFSET, offset.as_str()),
            (header::REASON, reason),
            (header::CONSUMER, self.consumer.as_str()),
        ];
        let value = record.value.as_deref().unwrap_or_default();
        self.producer.send_raw(&self.topic, &record.key_str(), Some(0), value, Some(&headers)).await?;
        seen.insert(id);
        Ok(())
    }
}
