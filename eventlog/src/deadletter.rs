//! Records that could not be decoded or applied go to `deadletter`, with the reason.

use tracing::warn;

use crate::{LogError, Producer, Record};

/// Sends failed records to the dead-letter topic.
#[derive(Clone)]
pub struct DeadLetter {
    producer: Producer,
    topic: String,
    /// Which consumer is reporting (for the `netwatch.consumer` header).
    consumer: String,
}

impl DeadLetter {
    /// A dead-letter sender writing to `topic` on behalf of `consumer`.
    pub fn new(producer: Producer, topic: String, consumer: impl Into<String>) -> Self {
        DeadLetter { producer, topic, consumer: consumer.into() }
    }

    /// Append the record's bytes with its source position and the reason in headers.
    pub async fn send(&self, record: &Record, reason: &str) -> Result<(), LogError> {
        warn!(topic = %record.topic, partition = record.partition, offset = record.offset, %reason, "Sending record to the dead-letter topic.");
        let partition = record.partition.to_string();
        let offset = record.offset.to_string();
        let headers = [
            ("netwatch.source.topic", record.topic.as_str()),
            ("netwatch.source.partition", partition.as_str()),
            ("netwatch.source.offset", offset.as_str()),
            ("netwatch.reason", reason),
            ("netwatch.consumer", self.consumer.as_str()),
        ];
        let value = record.value.as_deref().unwrap_or_default();
        self.producer.send_raw(&self.topic, &record.key_str(), Some(0), value, Some(&headers)).await?;
        Ok(())
    }
}
