//! The group consumer wrapper on librdkafka's mock cluster, with faults injected: it
//! reports its assignment, every record once and in order, the end of each partition,
//! and goes on delivering after the broker was down, after the group coordinator moved to
//! another broker, and through failed fetches.

use std::time::Duration;

use netwatch_eventlog::{spawn_group_consumer, ConsumerEvent, GroupConsumer, GroupOptions, KafkaConfig, StartAt};
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::ClientConfig;

const TOPIC: &str = "assignments";

fn produce(brokers: &str, from: usize, to: usize) {
    let p: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    for i in from..to {
        p.send(BaseRecord::to(TOPIC).key("k").partition(0).payload(&format!("r{i:05}"))).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

fn join(brokers: &str, group: &str) -> GroupConsumer {
    spawn_group_consumer(
        &KafkaConfig::new(brokers),
        GroupOptions {
            group: group.into(),
            topics: vec![TOPIC.into()],
            start: StartAt::Beginning,
            revoke_timeout: Duration::from_secs(5),
            cooperative: false,
        },
    )
    .unwrap()
}

/// Read records until `count` of them arrived (within `within`); acknowledge revocations.
async fn records(c: &mut GroupConsumer, count: usize, within: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while out.len() < count {
        let event = tokio::time::timeout_at(deadline, c.events.recv()).await.unwrap_or_else(|_| panic!("{} of {count} records", out.len()));
        match event {
            Some(ConsumerEvent::Record(r)) => out.push(String::from_utf8(r.value.unwrap()).unwrap()),
            Some(ConsumerEvent::Revoked { ack, .. }) => {
                let _ = ack.send(());
            }
            Some(_) => {}
            None => panic!("the consumer ended"),
        }
    }
    out
}

fn expected(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("r{i:05}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignment_records_in_order_and_the_end_of_the_partition() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, 1, 1).unwrap();
    produce(&mock.bootstrap_servers(), 0, 100);
    let mut c = join(&mock.bootstrap_servers(), "g1");
    let mut assigned = None;
    let mut got = Vec::new();
    let mut eof = false;
    while !eof {
        match tokio::time::timeout(Duration::from_secs(30), c.events.recv()).await.unwrap() {
            Some(ConsumerEvent::Assigned(parts)) => assigned = Some(parts),
            Some(ConsumerEvent::Record(r)) => got.push(String::from_utf8(r.value.unwrap()).unwrap()),
            Some(ConsumerEvent::Eof { partition: 0 }) => eof = true,
            _ => {}
        }
    }
    assert_eq!(assigned, Some(vec![(TOPIC.to_string(), 0)]), "the assignment comes before the records");
    assert_eq!(got, expected(0, 100));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_appended_after_the_broker_was_down_are_delivered_once() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, 1, 1).unwrap();
    produce(&mock.bootstrap_servers(), 0, 10);
    let mut c = join(&mock.bootstrap_servers(), "g2");
    assert_eq!(records(&mut c, 10, Duration::from_secs(30)).await, expected(0, 10));
    mock.broker_down(1).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await; // the outage is the scenario
    mock.broker_up(1).unwrap();
    produce(&mock.bootstrap_servers(), 10, 20);
    assert_eq!(records(&mut c, 10, Duration::from_secs(60)).await, expected(10, 20));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_coordinator_moving_to_another_broker_does_not_stop_delivery() {
    let mock = MockCluster::new(3).unwrap();
    mock.create_topic(TOPIC, 1, 3).unwrap();
    mock.coordinator(MockCoordinator::Group("g3".into()), 1).unwrap();
    produce(&mock.bootstrap_servers(), 0, 10);
    let mut c = join(&mock.bootstrap_servers(), "g3");
    assert_eq!(records(&mut c, 10, Duration::from_secs(30)).await, expected(0, 10));
    mock.coordinator(MockCoordinator::Group("g3".into()), 2).unwrap();
    produce(&mock.bootstrap_servers(), 10, 20);
    assert_eq!(records(&mut c, 10, Duration::from_secs(60)).await, expected(10, 20));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_fetches_are_retried_and_deliver_every_record_once() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, 1, 1).unwrap();
    produce(&mock.bootstrap_servers(), 0, 50);
    mock.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT],
    );
    let mut c = join(&mock.bootstrap_servers(), "g4");
    assert_eq!(records(&mut c, 50, Duration::from_secs(60)).await, expected(0, 50));
    c.stop().await;
}
