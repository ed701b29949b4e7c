//! The log: topic catalogue, Kafka client settings, admin, producer, readers and
//! group consumers, dead-letter routing.
//!
//! Every role talks to Kafka through this crate, so the client settings (idempotent
//! producer, no auto-commit, partition EOF) are chosen once, here.

mod admin;
mod client;
mod consumer;
mod deadletter;
mod error;
mod producer;
mod reader;
mod topics;

pub use admin::{create_topics, wait_until_ready};
pub use client::KafkaConfig;
pub use consumer::{spawn_group_consumer, ConsumerEvent, GroupConsumer, GroupOptions, StartAt};
pub use deadletter::DeadLetter;
pub use error::LogError;
pub use producer::Producer;
pub use reader::{read_to_end, Record};
pub use topics::{Topic, Topics};
