//! The pipelined emitter on librdkafka's mock cluster, with faults injected: records keep
//! their order, stay queued (never expire) while the broker is down, and are appended
//! once each when it is back; the in-flight bound holds.

use std::time::Duration;

use netwatch_eventlog::{Destination, Emitter, KafkaConfig, Producer, Settled};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const TOPIC: &str = "calls";

fn cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, 2, 1).unwrap();
    mock
}

fn emitter(brokers: &str, limit: usize) -> Emitter {
    let kafka = KafkaConfig::new(brokers);
    let producer = Producer::new(&kafka).unwrap();
    Emitter::new(producer, Destination { topic: TOPIC.into(), partition: 1, key: "1".into() }, limit)
}

/// The payloads of partition 1, in offset order.
fn read_back(brokers: &str, expected: usize) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "read-back")
        .set("enable.partition.eof", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 1, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while out.len() < expected && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
        }
    }
    // Nothing beyond what was sent (no duplicates) shows up either.
    while let Some(Ok(m)) = consumer.poll(Duration::from_millis(300)) {
        out.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
    }
    out
}

fn records(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("event-{i:06}")).collect()
}

#[tokio::test]
async fn records_are_pipelined_and_appended_in_order() {
    let mock = cluster();
    let mut e = emitter(&mock.bootstrap_servers(), 50_000);
    let sent = records(5_000);
    for r in &sent {
        e.push(0, r.clone().into_bytes());
    }
    let drained = e.drain(Duration::from_secs(30)).await;
    assert_eq!((drained.counts.appended, drained.counts.failed, drained.pending), (5_000, 0, 0));
    assert_eq!(read_back(&mock.bootstrap_servers(), sent.len()), sent);
}

#[tokio::test]
async fn while_the_broker_is_down_records_wait_within_the_bound_and_none_expires() {
    let mock = cluster();
    let brokers = mock.bootstrap_servers();
    let mut e = emitter(&brokers, 100);
    e.push(0, b"before".to_vec());
    assert_eq!(e.settle().await, Settled::Appended(0));
    mock.broker_down(1).unwrap();
    let sent = records(100);
    for r in &sent {
        assert!(e.has_room(), "room until the bound");
        e.push(0, r.clone().into_bytes());
    }
    assert!(!e.has_room(), "the bound is reached: the caller stops reading");
    // Longer than the sends of a one-shot producer live (see below): these do not expire.
    assert!(tokio::time::timeout(Duration::from_secs(4), e.settle()).await.is_err(), "nothing settles while the broker is down");
    mock.broker_up(1).unwrap();
    let drained = e.drain(Duration::from_secs(60)).await;
    assert_eq!((drained.counts.appended, drained.counts.failed, drained.pending), (101, 0, 0), "every record appended, none failed");
    let mut want = vec!["before".to_string()];
    want.extend(sent);
    assert_eq!(read_back(&brokers, want.len()), want);
}

#[tokio::test]
async fn retried_produce_errors_append_each_record_once_in_order() {
    let mock = cluster();
    let brokers = mock.bootstrap_servers();
    let mut e = emitter(&brokers, 10_000);
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        ],
    );
    let sent = records(2_000);
    for r in &sent {
        e.push(0, r.clone().into_bytes());
    }
    let drained = e.drain(Duration::from_secs(60)).await;
    assert_eq!((drained.counts.appended, drained.counts.failed, drained.pending), (2_000, 0, 0));
    assert_eq!(read_back(&brokers, sent.len()), sent);
}

#[test]
fn long_running_roles_never_expire_a_send() {
    let config = Producer::settings(&KafkaConfig::new("127.0.0.1:9"), Producer::NEVER);
    assert_eq!(config.get("message.timeout.ms"), Some("0"));
    assert_eq!((config.get("enable.idempotence"), config.get("acks")), (Some("true"), Some("all")));
}

/// What the never-expiring setting prevents: a one-shot producer's sends fail once the
/// broker has been away longer than their timeout (and librdkafka bumps the epoch).
#[tokio::test]
async fn a_one_shot_producers_sends_expire_while_the_broker_is_down() {
    let mock = cluster();
    let kafka = KafkaConfig::new(mock.bootstrap_servers());
    let producer = Producer::one_shot(&kafka, Duration::from_secs(1)).unwrap();
    let mut e = Emitter::new(producer, Destination { topic: TOPIC.into(), partition: 1, key: "1".into() }, 10);
    // The first send also waits for the producer id: on a loaded machine it can take longer
    // than the one second and expire too (as it did in CI), so warm up until one is appended.
    let warm_up_until = std::time::Instant::now() + Duration::from_secs(60);
    e.push(1, b"warm-up".to_vec());
    loop {
        match e.settle().await {
            Settled::Appended(_) => break,
            Settled::Retried => {}
            Settled::Failed { .. } if std::time::Instant::now() < warm_up_until => e.push(1, b"warm-up".to_vec()),
            other => panic!("the broker never took the warm-up record: {other:?}"),
        }
    }
    let failed_before = e.counts().failed;
    mock.broker_down(1).unwrap();
    e.push(7, b"expires".to_vec());
    match tokio::time::timeout(Duration::from_secs(30), e.settle()).await {
        Ok(Settled::Failed { tag: 7, .. }) => {}
        other => panic!("the send should expire: {other:?}"),
    }
    assert_eq!((e.failed(7), e.counts().failed - failed_before), (1, 1));
}

/// A stopped link hands its unacknowledged records to the background: when the broker
/// takes them, the final counts reach the caller (the link's metrics), every record once.
#[tokio::test]
async fn detached_records_are_counted_when_the_broker_takes_them() {
    let mock = cluster();
    let brokers = mock.bootstrap_servers();
    let mut e = emitter(&brokers, 100);
    e.push(0, b"before".to_vec());
    assert_eq!(e.settle().await, Settled::Appended(0));
    mock.broker_down(1).unwrap();
    for r in records(10) {
        e.push(0, r.into_bytes());
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = e.detach("test".into(), move |counts| {
        let _ = tx.send(counts);
    });
    assert!(task.is_some(), "ten records were in flight");
    mock.broker_up(1).unwrap();
    let counts = tokio::time::timeout(Duration::from_secs(60), rx).await.expect("settled within a minute").unwrap();
    assert_eq!((counts.appended, counts.failed), (11, 0), "the one before the stop and the ten after");
    assert_eq!(read_back(&brokers, 11).len(), 11);
    // Nothing in flight: no task, and nothing to report.
    let idle = emitter(&brokers, 10);
    assert!(idle.detach("idle".into(), |_| panic!("not called")).is_none());
}
