//! Schema evolution: `monitors` v2 added two optional fields to Heartbeat; `calls` v2
//! added `link_seq` to the envelope and `events_lost` to LinkDisconnected. Bytes written
//! by v1 writers (committed in `golden/`) must still decode with today's code. `config`
//! v2 and `assignments` v2 added a server `kind` and an `rpc` URL to T-Servers, `calls`
//! v3 `cause` and `released_by` to telephony events, `config` v3 groups (three members
//! appended to the change union).

use netwatch_schemas::calls::{CallBody, CallEvent, CallType, LinkDisconnected, TEventKind, Telephony};
use netwatch_schemas::codec::encode_with;
use netwatch_schemas::config::{ConfigChange, ConfigEvent, Group, GroupKind, GroupRef, ServerKind, TServer};
use netwatch_schemas::monitors::{Heartbeat, MonitorBody, MonitorEvent};
use netwatch_schemas::registry::registry;
use netwatch_schemas::{decode, SchemaKind};

const GOLDEN_V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/monitors.v1.heartbeat.bin");
const GOLDEN_CONFIG_V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/config.v1.tserver-created.bin");
const GOLDEN_CALLS_V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/calls.v1.link-disconnected.bin");

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
            wanted: None,
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
    assert_eq!(current.version, 5);
    let mut event = golden_event();
    if let MonitorBody::Heartbeat(h) = &mut event.body {
        h.sessions = Some(2);
        h.rss_bytes = Some(12_345_678);
        h.tserver_ids = Some(vec![1, 4]);
        h.wanted = Some(vec![6]);
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

/// A `calls` event as a v1 writer saw it: no `link_seq`, no `events_lost`.
fn golden_call_event() -> CallEvent {
    CallEvent {
        event_id: "2f1c9a4e-0000-4000-8000-000000000001".into(),
        tserver: 3,
        monitor: "monitor-a".into(),
        session: "s-1".into(),
        server_time_ms: 1_700_000_000_000,
        link_seq: None,
        body: CallBody::LinkDisconnected(LinkDisconnected { reason: "the T-Server closed the link".into(), events_lost: None }),
    }
}

#[test]
fn calls_v1_bytes_decode_with_v2_code() {
    let bytes = std::fs::read(GOLDEN_CALLS_V1).expect("golden file is committed");
    let v1 = registry().version(SchemaKind::Calls, 1).unwrap();
    assert_eq!(bytes[2..10], v1.fingerprint, "golden file was written with calls v1");
    assert_eq!(decode::<CallEvent>(&bytes).unwrap(), golden_call_event());
}

/// Avro binary by hand, from the specification: zig-zag varints and length-prefixed
/// strings. Independent of apache-avro and of our codec.
fn zigzag(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn string(out: &mut Vec<u8>, s: &str) {
    zigzag(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

#[test]
fn calls_golden_file_is_the_v1_layout_of_the_specification() {
    let v1 = registry().version(SchemaKind::Calls, 1).unwrap();
    let e = golden_call_event();
    let mut expected = vec![0xC3, 0x01];
    expected.extend_from_slice(&v1.fingerprint);
    string(&mut expected, &e.event_id);
    zigzag(&mut expected, e.tserver.into());
    string(&mut expected, &e.monitor);
    string(&mut expected, &e.session);
    zigzag(&mut expected, e.server_time_ms);
    zigzag(&mut expected, 1); // union member 1 of v1: LinkDisconnected { reason }
    string(&mut expected, "the T-Server closed the link");
    assert_eq!(std::fs::read(GOLDEN_CALLS_V1).expect("golden file is committed"), expected);
}

#[test]
fn calls_golden_file_is_what_a_v1_writer_produces() {
    let v1 = registry().version(SchemaKind::Calls, 1).unwrap();
    let bytes = encode_with(&v1.schema, &v1.fingerprint, &golden_call_event()).unwrap();
    if std::env::var_os("NETWATCH_WRITE_GOLDEN").is_some() {
        std::fs::write(GOLDEN_CALLS_V1, &bytes).unwrap();
    }
    assert_eq!(std::fs::read(GOLDEN_CALLS_V1).expect("golden file is committed"), bytes);
}

#[test]
fn calls_v2_keeps_the_sequence_number_and_the_loss_count() {
    let current = registry().current(SchemaKind::Calls);
    assert_eq!(current.version, 3);
    let mut event = golden_call_event();
    event.link_seq = Some(41);
    event.body = CallBody::LinkDisconnected(LinkDisconnected { reason: "monitor stopped".into(), events_lost: Some(3) });
    let bytes = netwatch_schemas::encode(&event).unwrap();
    assert_eq!(bytes[2..10], current.fingerprint);
    assert_eq!(decode::<CallEvent>(&bytes).unwrap(), event);
}

#[test]
fn every_schema_version_parses_and_fingerprints_are_distinct() {
    let all = registry().all();
    assert_eq!(all.len(), 13);
    let mut prints: Vec<_> = all.iter().map(|v| v.fingerprint).collect();
    prints.sort();
    prints.dedup();
    assert_eq!(prints.len(), all.len());
}

/// A T-Server as a `config` v1 writer saw it: no kind, no RPC URL.
fn golden_config_event() -> ConfigEvent {
    ConfigEvent {
        event_id: "7a0e5b1c-0000-4000-8000-000000000002".into(),
        at_ms: 1_700_000_000_000,
        source: "cli@host".into(),
        change: ConfigChange::TServerCreated(TServer::cti(7, "TS7", "10.0.0.7", 7007)),
    }
}

#[test]
fn config_golden_file_is_the_v1_layout_of_the_specification() {
    let v1 = registry().version(SchemaKind::Config, 1).unwrap();
    let mut expected = vec![0xC3, 0x01];
    expected.extend_from_slice(&v1.fingerprint);
    string(&mut expected, "7a0e5b1c-0000-4000-8000-000000000002");
    zigzag(&mut expected, 1_700_000_000_000);
    string(&mut expected, "cli@host");
    zigzag(&mut expected, 0); // union member 0: TServerCreated { id, name, host, port }
    zigzag(&mut expected, 7);
    string(&mut expected, "TS7");
    string(&mut expected, "10.0.0.7");
    zigzag(&mut expected, 7007);
    if std::env::var_os("NETWATCH_WRITE_GOLDEN").is_some() {
        std::fs::write(GOLDEN_CONFIG_V1, &expected).unwrap();
    }
    assert_eq!(std::fs::read(GOLDEN_CONFIG_V1).expect("golden file is committed"), expected);
    assert_eq!(encode_with(&v1.schema, &v1.fingerprint, &golden_config_event()).unwrap(), expected, "a v1 writer produces it");
}

#[test]
fn config_v1_bytes_decode_as_a_cti_tserver() {
    let bytes = std::fs::read(GOLDEN_CONFIG_V1).expect("golden file is committed");
    let event = decode::<ConfigEvent>(&bytes).unwrap();
    assert_eq!(event, golden_config_event());
    let ConfigChange::TServerCreated(t) = event.change else { panic!("a T-Server creation") };
    assert_eq!((t.kind, t.rpc), (ServerKind::Cti, None));
}

#[test]
fn config_v2_keeps_the_kind_and_the_rpc_url() {
    let current = registry().current(SchemaKind::Config);
    assert_eq!(current.version, 3);
    let mut event = golden_config_event();
    let kamailio =
        TServer { kind: ServerKind::Kamailio, rpc: Some("http://10.0.0.7:8449/RPC".into()), ..TServer::cti(7, "K7", "10.0.0.7", 8448) };
    event.change = ConfigChange::TServerUpdated(kamailio);
    let bytes = netwatch_schemas::encode(&event).unwrap();
    assert_eq!(bytes[2..10], current.fingerprint);
    assert_eq!(decode::<ConfigEvent>(&bytes).unwrap(), event);
    // What a v2 writer wrote still reads the same.
    let v2 = registry().version(SchemaKind::Config, 2).unwrap();
    let old = encode_with(&v2.schema, &v2.fingerprint, &event).unwrap();
    assert_eq!((&old[2..10], decode::<ConfigEvent>(&old).unwrap()), (&v2.fingerprint[..], event));
}

/// A group creation in `config` v3 is the layout of the specification: the union index
/// after v2's six members, then id, tserver, name, the enum index, the array in one block.
#[test]
fn config_v3_group_is_the_layout_of_the_specification() {
    let event = ConfigEvent {
        change: ConfigChange::GroupCreated(Group {
            id: 12,
            tserver: 7,
            name: "Sales".into(),
            kind: GroupKind::Dn,
            members: vec!["5001".into(), "5002".into()],
        }),
        ..golden_config_event()
    };
    let v3 = registry().version(SchemaKind::Config, 3).unwrap();
    let mut expected = vec![0xC3, 0x01];
    expected.extend_from_slice(&v3.fingerprint);
    string(&mut expected, "7a0e5b1c-0000-4000-8000-000000000002");
    zigzag(&mut expected, 1_700_000_000_000);
    string(&mut expected, "cli@host");
    zigzag(&mut expected, 6); // union member 6: GroupCreated
    zigzag(&mut expected, 12);
    zigzag(&mut expected, 7);
    string(&mut expected, "Sales");
    zigzag(&mut expected, 1); // GroupKind symbol 1: Dn
    zigzag(&mut expected, 2); // one block of two items
    string(&mut expected, "5001");
    string(&mut expected, "5002");
    zigzag(&mut expected, 0); // end of the array
    assert_eq!(netwatch_schemas::encode(&event).unwrap(), expected);
    assert_eq!(decode::<ConfigEvent>(&expected).unwrap(), event);
    let deleted = ConfigEvent { change: ConfigChange::GroupDeleted(GroupRef { id: 12, tserver: 7 }), ..golden_config_event() };
    assert_eq!(decode::<ConfigEvent>(&netwatch_schemas::encode(&deleted).unwrap()).unwrap(), deleted);
}

#[test]
fn calls_v2_telephony_decodes_without_cause_and_v3_keeps_it() {
    let v2 = registry().version(SchemaKind::Calls, 2).unwrap();
    let mut event = golden_call_event();
    let released = Telephony {
        kind: TEventKind::Released,
        dn: "5001".into(),
        connid: "c1".into(),
        call_type: CallType::Internal,
        other_dn: Some("5002".into()),
        third_party_dn: None,
        previous_connid: None,
        cause: None,
        released_by: None,
    };
    event.body = CallBody::Telephony(released.clone());
    let bytes = encode_with(&v2.schema, &v2.fingerprint, &event).unwrap();
    assert_eq!(decode::<CallEvent>(&bytes).unwrap(), event);
    event.body = CallBody::Telephony(Telephony { cause: Some("busy".into()), released_by: Some("5002".into()), ..released });
    assert_eq!(decode::<CallEvent>(&netwatch_schemas::encode(&event).unwrap()).unwrap(), event);
}

#[test]
fn assignments_v1_bytes_assign_a_cti_tserver_and_v2_keeps_the_kind() {
    use netwatch_schemas::assignments::{Assignment, Command};
    let v1 = registry().version(SchemaKind::Assignments, 1).unwrap();
    let mut assignment = Assignment {
        command_id: "c1".into(),
        at_ms: 1,
        dispatcher: "d1".into(),
        command: Command::AssignTServer(TServer::cti(7, "TS7", "10.0.0.7", 7007)),
    };
    let old = encode_with(&v1.schema, &v1.fingerprint, &assignment).unwrap();
    assert_eq!(decode::<Assignment>(&old).unwrap(), assignment);
    assignment.command = Command::AssignTServer(TServer { kind: ServerKind::Kamailio, ..TServer::cti(7, "K7", "10.0.0.7", 8448) });
    let current = registry().current(SchemaKind::Assignments);
    let bytes = netwatch_schemas::encode(&assignment).unwrap();
    assert_eq!((current.version, &bytes[2..10]), (2, &current.fingerprint[..]));
    assert_eq!(decode::<Assignment>(&bytes).unwrap(), assignment);
}
