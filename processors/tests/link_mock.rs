//! A monitor's CTI link against a T-Server that sends faster than the broker takes, with
//! the broker down (librdkafka's mock cluster): the link stops reading at its in-flight
//! bound, so the T-Server's writes block (TCP back-pressure) instead of events piling up
//! in the monitor; stopping the link then still reads everything the T-Server sent before
//! it confirmed the unregistration, and once the broker is back every event is in `calls`
//! once, in order, followed by the `LinkDisconnected`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netwatch_eventlog::{KafkaConfig, Log, Topic, Topics};
use netwatch_processors::monitor::{LinkHandle, LinkSettings};
use netwatch_schemas::calls::{CallBody, CallEvent};
use netwatch_schemas::config::TServer;
use netwatch_schemas::decode;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Few enough for the mock cluster to keep them all (it keeps 5 MB per partition), many
/// more than the socket buffers of a T-Server with a small send buffer hold.
const EVENTS: u64 = 20_000;

/// A T-Server that, once its DN is registered, writes `EVENTS` events as fast as the
/// socket takes them, counting what it wrote; requests are answered in the same stream.
async fn tserver(listener: TcpListener, written: Arc<AtomicU64>) {
    let (stream, _) = listener.accept().await.unwrap();
    let (r, mut w) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let counter = written.clone();
    let writer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            w.write_all(line.as_bytes()).await.unwrap();
            if line.contains("\"EventRinging\"") {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let request: Value = serde_json::from_str(&line).unwrap();
        let ref_id = request["ref_id"].clone();
        match request["type"].as_str().unwrap() {
            "RequestOpen" => tx.send(format!("{}\n", json!({"type": "EventServerInfo", "ref_id": ref_id}))).unwrap(),
            "RequestRegisterAddress" => {
                tx.send(format!("{}\n", json!({"type": "EventRegistered", "ref_id": ref_id, "dn": request["dn"]}))).unwrap();
                for seq in 1..=EVENTS {
                    let event = json!({"type": "Event", "seq": seq, "time_ms": seq, "event": "EventRinging",
                        "dn": "5001", "connid": format!("c{seq}"), "call_type": "Inbound", "other_dn": "+15550100"});
                    tx.send(format!("{event}\n")).unwrap();
                }
            }
            "RequestUnregisterAddress" => {
                tx.send(format!("{}\n", json!({"type": "EventUnregistered", "ref_id": ref_id, "dn": request["dn"]}))).unwrap()
            }
            other => panic!("unexpected {other}"),
        }
    }
    drop(tx);
    let _ = writer.await;
}

fn read_back(brokers: &str, topic: &str, partition: i32, expected: usize) -> Vec<CallEvent> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", "read-back").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while out.len() < expected && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(decode::<CallEvent>(m.payload().unwrap()).unwrap());
        }
    }
    while let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
        out.push(decode::<CallEvent>(m.payload().unwrap()).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_pushes_back_on_the_tserver_while_the_broker_is_down_and_loses_nothing_when_stopped() {
    let mock = MockCluster::new(1).unwrap();
    let topics = Topics { prefix: "t.".into(), ..Topics::default() };
    mock.create_topic(&topics.name(Topic::Calls), topics.partitions(Topic::Calls), 1).unwrap();
    let log = Log::new(KafkaConfig::new(mock.bootstrap_servers()), topics).unwrap();
    mock.broker_down(1).unwrap();

    // A small send buffer (accepted sockets inherit it), as a T-Server's would be.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(16).unwrap();
    let port = listener.local_addr().unwrap().port();
    let written = Arc::new(AtomicU64::new(0));
    let server = tokio::spawn(tserver(listener, written.clone()));
    let tserver = TServer::cti(1, "TS1", "127.0.0.1", i32::from(port));
    let settings = LinkSettings { max_in_flight: 100, drain_wait: Duration::from_millis(500) };
    let dns: BTreeSet<String> = ["5001".to_string()].into();
    let link = LinkHandle::spawn(log.clone(), "m1".into(), tserver, dns, settings);

    // The T-Server's writes stall: the link took at most its bound and TCP holds the rest.
    let mut last = 0;
    let stalled = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = written.load(Ordering::SeqCst);
        if now == last && now > 0 {
            break now;
        }
        assert!(now < EVENTS, "all {EVENTS} events were taken while the broker was down: no back-pressure");
        last = now;
    };
    assert!(stalled < EVENTS / 2, "the T-Server is held back at {stalled} of {EVENTS} events");
    eprintln!("the T-Server was held back after {stalled} events");

    // Stop while full: the release reads everything up to the unregistration, so the
    // T-Server finishes writing; what cannot reach the broker yet is delivered later.
    let draining = link.stop().await.expect("events still on their way while the broker is down");
    assert_eq!(written.load(Ordering::SeqCst), EVENTS, "every event was read before the link closed");
    mock.broker_up(1).unwrap();
    tokio::time::timeout(Duration::from_secs(120), draining).await.expect("delivered once the broker is back").unwrap();
    server.await.unwrap();

    let partition = log.topics.tserver_partition(1);
    let events = read_back(&mock.bootstrap_servers(), &log.topic(Topic::Calls), partition, EVENTS as usize + 4);
    let seqs: Vec<i64> = events.iter().filter_map(|e| e.link_seq).collect();
    let in_order = seqs.iter().enumerate().all(|(i, s)| *s == i as i64 + 1);
    assert!(in_order && seqs.len() == EVENTS as usize, "every event once, in order: {} events, first {:?}", seqs.len(), seqs.first());
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| e.link_seq.is_none())
        .map(|e| match &e.body {
            CallBody::LinkConnected(_) => "LinkConnected",
            CallBody::DnRegistered(_) => "DnRegistered",
            CallBody::DnUnregistered(_) => "DnUnregistered",
            CallBody::LinkDisconnected(d) => {
                assert_eq!((d.reason.as_str(), d.events_lost), ("monitor released the T-Server", None));
                "LinkDisconnected"
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["LinkConnected", "DnRegistered", "DnUnregistered", "LinkDisconnected"]);
    assert!(matches!(events.last().unwrap().body, CallBody::LinkDisconnected(_)), "the gap is recorded last");
}
