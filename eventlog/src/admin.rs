//! Topic creation and broker readiness.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use tracing::{debug, info};

use crate::{KafkaConfig, LogError, Topic, Topics};

/// Create every topic of the catalogue that does not exist yet. Idempotent.
pub async fn create_topics(kafka: &KafkaConfig, topics: &Topics) -> Result<Vec<String>, LogError> {
    let admin: AdminClient<DefaultClientContext> = kafka.client().create()?;
    let names: Vec<(Topic, String)> = Topic::ALL.iter().map(|t| (*t, topics.name(*t))).collect();
    let new: Vec<NewTopic<'_>> =
        names.iter().map(|(t, name)| NewTopic::new(name, topics.partitions(*t), TopicReplication::Fixed(1))).collect();
    let results = admin.create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))).await?;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(name) => {
                info!(topic = %name, "Created topic.");
                created.push(name);
            }
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => debug!(topic = %name, "Topic already exists."),
            Err((name, code)) => {
                return Err(LogError::Task(format!("creating topic {name} failed: {code}")));
            }
        }
    }
    Ok(created)
}

/// Poll the broker with metadata requests until it answers or the deadline passes.
pub async fn wait_until_ready(kafka: &KafkaConfig, within: Duration) -> Result<(), LogError> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + within;
        let consumer: BaseConsumer = kafka.client().create()?;
        loop {
            match consumer.fetch_metadata(None, Duration::from_millis(1000)) {
                Ok(md) if !md.brokers().is_empty() => return Ok(()),
                Ok(_) | Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                _ => {
                    return Err(LogError::NotReady { brokers: kafka.brokers.clone(), seconds: within.as_secs() });
                }
            }
        }
    })
    .await
    .map_err(|e| LogError::Task(e.to_string()))?
}
