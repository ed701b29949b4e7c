//! Reading a topic from its start to its current end, outside any consumer group.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::{KafkaConfig, LogError};

/// One record as read from the log.
#[derive(Clone, Debug)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Append time (or create time) in ms since the epoch.
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<(String, String)>,
}

impl Record {
    /// Build from a librdkafka message.
    pub fn from_message<M: Message>(m: &M) -> Record {
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        Record {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            timestamp_ms: m.timestamp().to_millis(),
            headers,
        }
    }

    /// The key as text.
    pub fn key_str(&self) -> String {
        self.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default()
    }
}

/// Read every record of `topic` (all partitions, or the given ones) from the beginning
/// up to the high watermark seen at the start of the call. Blocking; run it off the
/// async runtime.
pub fn read_to_end(kafka: &KafkaConfig, topic: &str, only: Option<&[i32]>) -> Result<Vec<Record>, LogError> {
    read_range(kafka, topic, only, |_, low, _| low)
}

/// Like [`read_to_end`], from `start(partition, low, high)` (clamped to the watermarks).
pub fn read_range(
    kafka: &KafkaConfig,
    topic: &str,
    only: Option<&[i32]>,
    start: impl Fn(i32, i64, i64) -> i64,
) -> Result<Vec<Record>, LogError> {
    // Every partition read here has records up to a known end: a fetch that finds nothing
    // new (a partition already read to its end) must not wait librdkafka's default 500 ms
    // for more, nor hold up the consumer's close (`netwatch config` commands read a tail).
    let consumer: BaseConsumer =
        kafka.client().set("group.id", "netwatch-reader").set("enable.auto.commit", "false").set("fetch.wait.max.ms", "10").create()?;
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| LogError::unreachable(kafka, e))?;
    let partitions: Vec<i32> = match md.topics().first() {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => t.partitions().iter().map(|p| p.id()).collect(),
        _ => return Err(LogError::MissingTopic(topic.to_string())),
    };
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in partitions.into_iter().filter(|p| only.is_none_or(|o| o.contains(p))) {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        let from = start(p, low, high).clamp(low, high);
        if high > from {
            ends.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Offset(from))?;
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(LogError::Task(format!("reading {topic} to its end took longer than 120 s")));
        }
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let r = Record::from_message(&m);
                if let Some(end) = ends.get(&r.partition).copied() {
                    if r.offset + 1 >= end {
                        ends.remove(&r.partition);
                    }
                    if r.offset < end {
                        out.push(r);
                    }
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok(out)
}

/// Call `each` for the records of `topic`: from the beginning or only new ones, up to
/// the current end or, with `follow`, until `each` returns false. Blocking.
pub fn scan(
    kafka: &KafkaConfig,
    topic: &str,
    from_beginning: bool,
    follow: bool,
    mut each: impl FnMut(Record) -> bool,
) -> Result<(), LogError> {
    if from_beginning && !follow {
        for r in read_to_end(kafka, topic, None)? {
            if !each(r) {
                break;
            }
        }
        return Ok(());
    }
    if !follow {
        return Ok(());
    }
    let consumer: BaseConsumer = kafka.client().set("group.id", "netwatch-reader").set("enable.auto.commit", "false").create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(|e| LogError::unreachable(kafka, e))?;
    let mut tpl = TopicPartitionList::new();
    match md.topics().first() {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            for p in t.partitions() {
                tpl.add_partition_offset(topic, p.id(), if from_beginning { Offset::Beginning } else { Offset::End })?;
            }
        }
        _ => return Err(LogError::MissingTopic(topic.to_string())),
    }
    consumer.assign(&tpl)?;
    loop {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) if !each(Record::from_message(&m)) => return Ok(()),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(_)) | None => {}
        }
    }
}
