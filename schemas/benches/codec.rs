//! Encode and decode of one event per topic, in the single-object encoding the topics
//! carry (`make bench` reads the results into docs/benchmarks.md; target ≥ 500k events/s
//! each way).
//!
//!     cargo bench -p netwatch-schemas --bench codec

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use netwatch_schemas::assignments::{Assignment, Command};
use netwatch_schemas::calls::{CallBody, CallEvent, CallType, TEventKind, Telephony};
use netwatch_schemas::config::{ConfigChange, ConfigEvent, Dn, DnType};
use netwatch_schemas::monitors::{Heartbeat, MonitorBody, MonitorEvent};
use netwatch_schemas::{decode, encode, Event};

/// What a monitor appends for a ringing inbound call (the size of the capture path's records).
fn call() -> CallEvent {
    CallEvent {
        event_id: "0b7e3f7c-5d7e-4a59-9a43-1b2c3d4e5f60".into(),
        tserver: 17,
        monitor: "m1".into(),
        session: "5f0e8a52-3c1d-4f0e-8d55-7a1b2c3d4e5f".into(),
        server_time_ms: 1_796_000_000_000,
        link_seq: Some(123_456),
        body: CallBody::Telephony(Telephony {
            kind: TEventKind::Ringing,
            dn: "5001".into(),
            connid: "00000000000a1b2c".into(),
            call_type: CallType::Inbound,
            other_dn: Some("+15550001234".into()),
            third_party_dn: None,
            previous_connid: None,
            cause: None,
            released_by: None,
        }),
    }
}

fn dn() -> Dn {
    Dn { dbid: 100_017, tserver: 17, number: "5001".into(), dn_type: DnType::Extension }
}

fn config() -> ConfigEvent {
    ConfigEvent {
        event_id: "9c2e4b1a-1111-4c3d-8e9f-0a1b2c3d4e5f".into(),
        at_ms: 1_796_000_000_000,
        source: "cli".into(),
        change: ConfigChange::DnCreated(dn()),
    }
}

fn assignment() -> Assignment {
    Assignment {
        command_id: "d1-000000000042".into(),
        at_ms: 1_796_000_000_000,
        dispatcher: "d1".into(),
        command: Command::RegisterDn(dn()),
    }
}

fn heartbeat() -> MonitorEvent {
    MonitorEvent {
        monitor_id: "m1".into(),
        at_ms: 1_796_000_000_000,
        body: MonitorBody::Heartbeat(Heartbeat {
            slots: vec![0, 7, 31],
            tservers: 3,
            dns: 300,
            sessions: Some(3),
            rss_bytes: Some(18_000_000),
            tserver_ids: Some(vec![1, 2, 3]),
            wanted: Some(vec![]),
        }),
    }
}

fn both_ways<T: Event>(c: &mut Criterion, topic: &str, event: T) {
    let bytes = encode(&event).expect("the sample encodes");
    let mut group = c.benchmark_group(topic);
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| b.iter(|| encode(std::hint::black_box(&event)).expect("encodes")));
    group.bench_function("decode", |b| b.iter(|| decode::<T>(std::hint::black_box(&bytes)).expect("decodes")));
    group.finish();
}

fn codec(c: &mut Criterion) {
    both_ways(c, "calls", call());
    both_ways(c, "config", config());
    both_ways(c, "assignments", assignment());
    both_ways(c, "monitors", heartbeat());
}

criterion_group!(benches, codec);
criterion_main!(benches);
