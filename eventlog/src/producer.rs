//! The one producer every writer uses: idempotent, acks=all, typed sends.

use std::time::Duration;

use netwatch_schemas::{encode, Event};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use crate::{KafkaConfig, LogError};

/// An idempotent producer. Cheap to clone.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
}

impl Producer {
    /// Build a producer for these brokers.
    pub fn new(kafka: &KafkaConfig) -> Result<Self, LogError> {
        let mut config = kafka.client();
        config.set("enable.idempotence", "true").set("acks", "all").set("linger.ms", "5").set("message.timeout.ms", "30000");
        for (k, v) in &kafka.extra {
            config.set(k, v);
        }
        Ok(Producer { inner: config.create()? })
    }

    /// Encode and append an event; returns (partition, offset) once the broker has it.
    pub async fn send<E: Event>(&self, topic: &str, key: &str, partition: Option<i32>, event: &E) -> Result<(i32, i64), LogError> {
        let bytes = encode(event)?;
        self.send_raw(topic, key, partition, &bytes, None).await
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
}
