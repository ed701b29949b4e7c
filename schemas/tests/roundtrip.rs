//! Property tests: every event of every topic survives encode → decode unchanged,
//! and corrupt input is an error, never a panic.

use netwatch_schemas::assignments::{Assignment, Command};
use netwatch_schemas::calls::*;
use netwatch_schemas::config::*;
use netwatch_schemas::monitors::*;
use netwatch_schemas::{decode, encode, CodecError};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _./:-]{0,16}"
}

fn tserver() -> impl Strategy<Value = TServer> {
    (
        any::<i32>(),
        text(),
        text(),
        any::<i32>(),
        prop::sample::select(vec![ServerKind::Cti, ServerKind::Kamailio]),
        proptest::option::of(text()),
    )
        .prop_map(|(id, name, host, port, kind, rpc)| TServer { id, name, host, port, kind, rpc })
}

fn dn_type() -> impl Strategy<Value = DnType> {
    prop::sample::select(DnType::ALL.to_vec())
}

fn dn() -> impl Strategy<Value = Dn> {
    (any::<i32>(), any::<i32>(), text(), dn_type()).prop_map(|(dbid, tserver, number, dn_type)| Dn { dbid, tserver, number, dn_type })
}

fn dn_ref() -> impl Strategy<Value = DnRef> {
    (any::<i32>(), any::<i32>(), text()).prop_map(|(dbid, tserver, number)| DnRef { dbid, tserver, number })
}

fn group() -> impl Strategy<Value = Group> {
    (any::<i32>(), any::<i32>(), text(), prop::sample::select(vec![GroupKind::Agent, GroupKind::Dn]), prop::collection::vec(text(), 0..5))
        .prop_map(|(id, tserver, name, kind, members)| Group { id, tserver, name, kind, members })
}

fn config_event() -> impl Strategy<Value = ConfigEvent> {
    let change = prop_oneof![
        tserver().prop_map(ConfigChange::TServerCreated),
        tserver().prop_map(ConfigChange::TServerUpdated),
        any::<i32>().prop_map(|id| ConfigChange::TServerDeleted(TServerRef { id })),
        dn().prop_map(ConfigChange::DnCreated),
        dn().prop_map(ConfigChange::DnUpdated),
        dn_ref().prop_map(ConfigChange::DnDeleted),
        group().prop_map(ConfigChange::GroupCreated),
        group().prop_map(ConfigChange::GroupUpdated),
        (any::<i32>(), any::<i32>()).prop_map(|(id, tserver)| ConfigChange::GroupDeleted(GroupRef { id, tserver })),
    ];
    (text(), any::<i64>(), text(), change).prop_map(|(event_id, at_ms, source, change)| ConfigEvent { event_id, at_ms, source, change })
}

fn call_event() -> impl Strategy<Value = CallEvent> {
    let kinds = prop::sample::select(TEventKind::ALL.to_vec());
    let types = prop::sample::select(CallType::ALL.to_vec());
    let agent_kinds = prop::sample::select(AgentEventKind::ALL.to_vec());
    let body = prop_oneof![
        text().prop_map(|endpoint| CallBody::LinkConnected(LinkConnected { endpoint })),
        (text(), proptest::option::of(any::<i64>()))
            .prop_map(|(reason, events_lost)| CallBody::LinkDisconnected(LinkDisconnected { reason, events_lost })),
        text().prop_map(|dn| CallBody::DnRegistered(DnAddress { dn })),
        text().prop_map(|dn| CallBody::DnUnregistered(DnAddress { dn })),
        (
            (kinds, text(), text(), types, proptest::option::of(text())),
            (proptest::option::of(text()), proptest::option::of(text()), proptest::option::of(text()), proptest::option::of(text()))
        )
            .prop_map(|((kind, dn, connid, call_type, other_dn), (third_party_dn, previous_connid, cause, released_by))| {
                CallBody::Telephony(Telephony {
                    kind,
                    dn,
                    connid,
                    call_type,
                    other_dn,
                    third_party_dn,
                    previous_connid,
                    cause,
                    released_by,
                })
            }),
        (agent_kinds, text(), text(), proptest::option::of(text())).prop_map(|(kind, dn, agent_id, reason)| CallBody::Agent(Agent {
            kind,
            dn,
            agent_id,
            reason
        })),
    ];
    (text(), any::<i32>(), text(), text(), any::<i64>(), proptest::option::of(any::<i64>()), body).prop_map(
        |(event_id, tserver, monitor, session, server_time_ms, link_seq, body)| CallEvent {
            event_id,
            tserver,
            monitor,
            session,
            server_time_ms,
            link_seq,
            body,
        },
    )
}

fn monitor_event() -> impl Strategy<Value = MonitorEvent> {
    let body =
        prop_oneof![
            (text(), any::<i32>()).prop_map(|(host, pid)| MonitorBody::Started(Started { host, pid })),
            (
                prop::collection::vec(any::<i32>(), 0..8),
                any::<i32>(),
                any::<i32>(),
                proptest::option::of(any::<i32>()),
                proptest::option::of(any::<i64>()),
                proptest::option::of(prop::collection::vec(any::<i32>(), 0..8)),
                proptest::option::of(prop::collection::vec(any::<i32>(), 0..8))
            )
                .prop_map(|(slots, tservers, dns, sessions, rss_bytes, tserver_ids, wanted)| MonitorBody::Heartbeat(
                    Heartbeat { slots, tservers, dns, sessions, rss_bytes, tserver_ids, wanted }
                )),
            text().prop_map(|reason| MonitorBody::Stopping(Stopping { reason })),
            prop::collection::vec(any::<i32>(), 0..8)
                .prop_map(|partitions| MonitorBody::DispatcherHeartbeat(DispatcherHeartbeat { partitions })),
        ];
    (text(), any::<i64>(), body).prop_map(|(monitor_id, at_ms, body)| MonitorEvent { monitor_id, at_ms, body })
}

fn assignment() -> impl Strategy<Value = Assignment> {
    let command = prop_oneof![
        tserver().prop_map(Command::AssignTServer),
        any::<i32>().prop_map(|id| Command::RevokeTServer(TServerRef { id })),
        dn().prop_map(Command::RegisterDn),
        dn_ref().prop_map(Command::UnregisterDn),
    ];
    (text(), any::<i64>(), text(), command).prop_map(|(command_id, at_ms, dispatcher, command)| Assignment {
        command_id,
        at_ms,
        dispatcher,
        command,
    })
}

proptest! {
    #[test]
    fn config_round_trips(event in config_event()) {
        prop_assert_eq!(decode::<ConfigEvent>(&encode(&event)?)?, event);
    }

    #[test]
    fn calls_round_trip(event in call_event()) {
        prop_assert_eq!(decode::<CallEvent>(&encode(&event)?)?, event);
    }

    #[test]
    fn monitors_round_trip(event in monitor_event()) {
        prop_assert_eq!(decode::<MonitorEvent>(&encode(&event)?)?, event);
    }

    #[test]
    fn assignments_round_trip(event in assignment()) {
        prop_assert_eq!(decode::<Assignment>(&encode(&event)?)?, event);
    }

    /// Any byte string is either a valid call event or an error: never a panic.
    #[test]
    fn garbage_is_an_error_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode::<CallEvent>(&bytes);
    }

    /// Truncating a valid record anywhere is detected (even where a union starts, which
    /// apache-avro alone would read as null).
    #[test]
    fn truncation_is_detected(event in call_event(), cut in 0usize..1000) {
        let bytes = encode(&event)?;
        let cut = cut % bytes.len();
        prop_assert!(decode::<CallEvent>(&bytes[..cut]).is_err());
    }
}

#[test]
fn a_value_of_another_topic_is_rejected() {
    let event = MonitorEvent { monitor_id: "m1".into(), at_ms: 1, body: MonitorBody::Stopping(Stopping { reason: "test".into() }) };
    let bytes = encode(&event).unwrap();
    assert!(matches!(decode::<CallEvent>(&bytes), Err(CodecError::WrongTopic { found: "monitors", expected: "calls" })));
}

#[test]
fn an_unknown_fingerprint_is_rejected() {
    let mut bytes =
        encode(&MonitorEvent { monitor_id: "m1".into(), at_ms: 1, body: MonitorBody::Stopping(Stopping { reason: "x".into() }) }).unwrap();
    bytes[2] ^= 0xff;
    assert!(matches!(decode::<MonitorEvent>(&bytes), Err(CodecError::UnknownFingerprint(_))));
}
