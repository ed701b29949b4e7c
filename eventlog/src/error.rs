use rdkafka::error::KafkaError;

/// Errors talking to the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("broker at {brokers} did not answer within {seconds} s; is it running?")]
    NotReady { brokers: String, seconds: u64 },
    #[error("topic {0} does not exist; run `netwatch topics create`")]
    MissingTopic(String),
    #[error("encoding: {0}")]
    Codec(#[from] netwatch_schemas::CodecError),
    #[error("background task failed: {0}")]
    Task(String),
}

impl LogError {
    /// A metadata request failed: say which broker did not answer, in one line.
    pub fn unreachable(kafka: &crate::KafkaConfig, error: KafkaError) -> LogError {
        match error {
            KafkaError::MetadataFetch(_) => LogError::NotReady { brokers: kafka.brokers.clone(), seconds: 10 },
            other => LogError::Kafka(other),
        }
    }
}
