//! Schema evolution: `monitors` v2 added two optional fields to Heartbeat. Bytes
//! written by a v1 writer (committed in `golden/`) must still decode with today's code.

use netwatch_schemas::codec::encode_with;
use netwatch_schemas::monitors::{Heartbeat, MonitorBody, MonitorEvent};
use netwatch_schemas::registry::registry;
use netwatch_schemas::{decode, SchemaKind};

const GOLDEN_V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/monitors.v1.heartbeat.bin");

/// The event the golden file holds, as a v1 writer saw it (v2 fields absent).
fn golden_event() -> MonitorEvent {
    MonitorEvent {
        monitor_id: "monitor-a".into(),
        at_ms: 1_700_000_000_000,
        body: MonitorBody::Heartbeat(Heartbeat {
            slots: vec![0, 7, 31],
            tservers: 2,
            dns: 50,
            sessions: None,
            rss_bytes: None,
            tserver_ids: None,
        }),
    }
}

#[test]
fn v1_heartbeat_bytes_decode_with_v2_code() {
    let bytes = std::fs::read(GOLDEN_V1).expect("golden file is committed");
    let v1 = registry().version(SchemaKind::Monitors, 1).unwrap();
    assert_eq!(bytes[2..10], v1.fingerprint, "golden file was written with monitors v1");
    assert_eq!(decode::<MonitorEvent>(&bytes).unwrap(), golden_event());
}

#[test]
fn current_writer_is_the_newest_version_and_keeps_the_new_fields() {
    let current = registry().current(SchemaKind::Monitors);
    assert_eq!(current.version, 4);
    let mut event = golden_event();
    if let MonitorBody::Heartbeat(h) = &mut event.body {
        h.sessions = Some(2);
        h.rss_bytes = Some(12_345_678);
        h.tserver_ids = Some(vec![1, 4]);
    }
    let bytes = netwatch_schemas::encode(&event).unwrap();
    assert_eq!(bytes[2..10], current.fingerprint);
    assert_eq!(decode::<MonitorEvent>(&bytes).unwrap(), event);
}

/// Writing the golden file again with the v1 schema gives the same bytes: the file is
/// what a v1 writer produces, not something hand-made. Set NETWATCH_WRITE_GOLDEN=1 to
/// write it again if it is ever lost.
#[test]
fn golden_file_is_what_a_v1_writer_produces() {
    let v1 = registry().version(SchemaKind::Monitors, 1).unwrap();
    let bytes = encode_with(&v1.schema, &v1.fingerprint, &golden_event()).unwrap();
    if std::env::var_os("NETWATCH_WRITE_GOLDEN").is_some() {
        std::fs::create_dir_all(std::path::Path::new(GOLDEN_V1).parent().unwrap()).unwrap();
        std::fs::write(GOLDEN_V1, &bytes).unwrap();
    }
    assert_eq!(std::fs::read(GOLDEN_V1).expect("golden file is committed"), bytes);
}

#[test]
fn every_schema_version_parses_and_fingerprints_are_distinct() {
    let all = registry().all();
    assert_eq!(all.len(), 7);
    let mut prints: Vec<_> = all.iter().map(|v| v.fingerprint).collect();
    prints.sort();
    prints.dedup();
    assert_eq!(prints.len(), all.len());
}
