//! The link session's decisions, without I/O, under paused time.

use super::*;
use netwatch_producers::cti::{parse_message, CallInfo, SwitchLinkInfo, TEvent, TEventBody};
use netwatch_schemas::calls::{CallType, TEventKind, Telephony};

fn dns(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|d| d.to_string()).collect()
}

/// A session whose link is open and whose DNs are all confirmed.
fn open_with(list: &[&str]) -> Session {
    let (mut s, _) = Session::new("127.0.0.1:7001", dns(list));
    s.opened(Some("TS1".into()), 1_000, Instant::now());
    for dn in list {
        s.on_message(Message::EventRegistered { ref_id: 1, dn: dn.to_string(), time_ms: Some(1_001) }, 0, Instant::now());
    }
    s
}

fn event(seq: u64, body: TEventBody) -> Message {
    Message::Event(Box::new(TEvent { seq, time_ms: 5_000 + seq as i64, body }))
}

fn ringing(dn: &str, connid: &str) -> TEventBody {
    TEventBody::EventRinging(CallInfo { dn: dn.into(), connid: connid.into(), call_type: Some(CallType::Inbound), ..Default::default() })
}

fn emitted(actions: &[Action]) -> Vec<&CallBody> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit(e) => Some(&e.body),
            _ => None,
        })
        .collect()
}

fn requests(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Register(d) => Some(format!("+{d}")),
            Action::Unregister(d) => Some(format!("-{d}")),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_opened_link_appends_link_connected_then_registers_every_wanted_dn() {
    let (mut s, first) = Session::new("127.0.0.1:7001", dns(&["5001", "5002"]));
    assert_eq!(first, vec![Action::Connect]);
    let out = s.opened(Some("TS1".into()), 42, Instant::now());
    assert_eq!(emitted(&out), [&CallBody::LinkConnected(LinkConnected { endpoint: "127.0.0.1:7001".into() })]);
    assert_eq!(requests(&out), ["+5001", "+5002"]);
    let out = s.on_message(Message::EventRegistered { ref_id: 2, dn: "5001".into(), time_ms: None }, 77, Instant::now());
    assert_eq!(out, vec![emit(77, None, CallBody::DnRegistered(DnAddress { dn: "5001".into() }))], "no time_ms: the monitor's clock");
    assert_eq!(s.registered(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_change_of_wanted_dns_sends_only_the_difference() {
    let mut s = open_with(&["5001", "5002"]);
    assert_eq!(requests(&s.want(dns(&["5002", "5003"]))), ["+5003", "-5001"]);
    assert_eq!(s.registered(), 1, "5001 no longer counts as registered");
    assert!(s.want(dns(&["5002", "5003"])).is_empty(), "the same set again sends nothing");
}

#[tokio::test(start_paused = true)]
async fn failed_opens_back_off_and_a_stable_link_resets_the_backoff() {
    let (mut s, _) = Session::new("127.0.0.1:7001", dns(&["5001"]));
    let t0 = Instant::now();
    let out = s.open_failed("refused", t0);
    assert!(matches!(&out[..], [Action::Note(Note::ConnectFailed { failures: 1, .. })]), "the first failure is logged");
    let first = s.next_deadline().unwrap() - t0;
    assert!((Duration::from_millis(300)..=Duration::from_millis(500)).contains(&first), "{first:?}");
    assert!(s.tick(t0 + first - Duration::from_millis(1)).is_empty(), "not before the backoff");
    assert_eq!(s.tick(t0 + first), vec![Action::Connect]);
    assert!(s.open_failed("refused", t0 + first).is_empty(), "the second failure is not logged");
    let second = s.next_deadline().unwrap() - (t0 + first);
    assert!(second > first, "{second:?} after {first:?}");

    // A link that stays up for STABLE_AFTER, then drops: reconnect after the base delay.
    tokio::time::advance(Duration::from_secs(30)).await;
    s.tick(Instant::now());
    s.opened(None, 0, Instant::now());
    tokio::time::advance(STABLE_AFTER).await;
    let out = s.lost("the T-Server closed the link", Instant::now());
    assert_eq!(out, vec![Action::EndLink { reason: "the T-Server closed the link".into(), finish: false }]);
    let delay = s.next_deadline().unwrap() - Instant::now();
    assert!(delay <= Duration::from_millis(250), "{delay:?}");
}

#[tokio::test(start_paused = true)]
async fn events_carry_their_seq_and_jumps_are_noted_at_a_bounded_rate() {
    let mut s = open_with(&["5001"]);
    let now = Instant::now();
    let out = s.on_message(event(1, ringing("5001", "c1")), 0, now);
    assert_eq!(
        out,
        vec![emit(
            5_001,
            Some(1),
            CallBody::Telephony(Telephony {
                kind: TEventKind::Ringing,
                dn: "5001".into(),
                connid: "c1".into(),
                call_type: CallType::Inbound,
                other_dn: None,
                third_party_dn: None,
                previous_connid: None,
                cause: None,
                released_by: None,
            })
        )]
    );
    let out = s.on_message(event(5, ringing("5001", "c2")), 0, now);
    assert!(out.contains(&Action::Note(Note::SeqJumps { count: 1, expected: 2, got: 5 })), "{out:?}");
    assert_eq!(emitted(&out).len(), 1, "the event after a jump is appended all the same");
    let out = s.on_message(event(9, ringing("5001", "c3")), 0, now);
    assert!(!out.iter().any(|a| matches!(a, Action::Note(_))), "the second jump waits for the summary");
    assert_eq!(s.next_deadline(), Some(now + NOTE_EVERY));
    tokio::time::advance(NOTE_EVERY).await;
    assert_eq!(s.tick(Instant::now()), vec![Action::Note(Note::SeqJumps { count: 1, expected: 6, got: 9 })]);
}

#[tokio::test(start_paused = true)]
async fn unusable_lines_are_counted_the_first_logged_at_once_the_rest_summed_up() {
    let mut s = open_with(&["5001"]);
    // Events without a ConnID, numbered on as the T-Server does.
    let bad = |seq: u64| {
        let line = format!(r#"{{"type":"Event","seq":{seq},"time_ms":1,"event":"EventRinging","dn":"5001"}}"#);
        parse_message(line.as_bytes()).unwrap_err()
    };
    let out = s.on_unusable(&bad(1), Instant::now());
    assert!(matches!(&out[..], [Action::Note(Note::Unusable { count: 1, total: 1, .. })]), "{out:?}");
    for seq in 2..=6 {
        assert!(s.on_unusable(&bad(seq), Instant::now()).is_empty());
    }
    tokio::time::advance(NOTE_EVERY).await;
    let out = s.tick(Instant::now());
    let [Action::Note(Note::Unusable { count: 5, total: 6, last })] = &out[..] else { panic!("{out:?}") };
    assert_eq!(last, "EventRinging: missing required attribute `connid`");
    assert_eq!(s.unusable_total(), 6);
    assert!(s.on_message(Message::EventLinksDropped { ref_id: 1, dropped: 0 }, 0, Instant::now()).is_empty(), "counted, not yet logged");
    assert_eq!(s.unusable_total(), 7);
}

#[tokio::test(start_paused = true)]
async fn a_link_whose_first_event_is_not_seq_1_is_noted() {
    let mut s = open_with(&["5001"]);
    let out = s.on_message(event(4, ringing("5001", "c1")), 0, Instant::now());
    assert!(out.contains(&Action::Note(Note::SeqJumps { count: 1, expected: 1, got: 4 })), "{out:?}");
}

#[tokio::test(start_paused = true)]
async fn an_unknown_event_keeps_its_place_in_the_sequence() {
    let mut s = open_with(&["5001"]);
    s.on_message(event(1, ringing("5001", "c1")), 0, Instant::now());
    let unknown = parse_message(br#"{"type":"Event","seq":2,"time_ms":1,"event":"EventDNOutOfService","dn":"5001"}"#).unwrap_err();
    s.on_unusable(&unknown, Instant::now());
    let out = s.on_message(event(3, ringing("5001", "c2")), 0, Instant::now());
    assert!(!out.iter().any(|a| matches!(a, Action::Note(Note::SeqJumps { .. }))), "no jump: seq 2 was the unknown event");
}

#[tokio::test(start_paused = true)]
async fn a_switch_link_flap_marks_the_gap_and_registers_every_dn_again() {
    let mut s = open_with(&["5001", "5002"]);
    let down = s.on_message(event(1, TEventBody::EventLinkDisconnected(SwitchLinkInfo { reason: Some("pbx".into()) })), 0, Instant::now());
    assert_eq!(emitted(&down), [&CallBody::LinkDisconnected(LinkDisconnected { reason: "switch: pbx".into(), events_lost: None })]);
    assert_eq!(s.registered(), 0);
    let up = s.on_message(event(2, TEventBody::EventLinkConnected(SwitchLinkInfo::default())), 0, Instant::now());
    assert_eq!(emitted(&up), [&CallBody::LinkConnected(LinkConnected { endpoint: "switch".into() })]);
    assert_eq!(requests(&up), ["+5001", "+5002"], "re-register, so the answers make the DNs known again");
}

#[tokio::test(start_paused = true)]
async fn a_release_unregisters_and_ends_when_every_dn_is_confirmed() {
    let mut s = open_with(&["5001", "5002"]);
    let out = s.release(Instant::now());
    assert_eq!(requests(&out), ["-5001", "-5002"]);
    assert!(!s.is_done());
    let out = s.on_message(Message::EventUnregistered { ref_id: 9, dn: "5001".into(), time_ms: Some(3) }, 0, Instant::now());
    assert_eq!(emitted(&out).len(), 1);
    assert!(!out.iter().any(|a| matches!(a, Action::EndLink { .. })));
    let out = s.on_message(Message::EventUnregistered { ref_id: 10, dn: "5002".into(), time_ms: Some(4) }, 0, Instant::now());
    assert_eq!(out.last(), Some(&Action::EndLink { reason: "monitor released the T-Server".into(), finish: true }));
    assert!(s.is_done());
}

#[tokio::test(start_paused = true)]
async fn a_release_gives_up_waiting_after_the_release_wait() {
    let mut s = open_with(&["5001", "5002"]);
    let t0 = Instant::now();
    s.release(t0);
    s.on_message(Message::EventUnregistered { ref_id: 9, dn: "5001".into(), time_ms: None }, 0, t0);
    assert!(s.tick(t0 + RELEASE_WAIT - Duration::from_millis(1)).is_empty());
    let out = s.tick(t0 + RELEASE_WAIT);
    assert_eq!(
        out,
        vec![Action::EndLink { reason: "monitor released the T-Server (1 DNs not confirmed unregistered)".into(), finish: true }]
    );
    assert!(s.is_done());
}

#[tokio::test(start_paused = true)]
async fn a_release_waits_on_while_the_tserver_still_sends_but_not_forever() {
    let mut s = open_with(&["5001"]);
    let t0 = Instant::now();
    s.release(t0);
    let mut now = t0;
    let mut seq = 0;
    // A backlog keeps arriving, one event every second: the wait moves with it...
    while now < t0 + RELEASE_MAX - Duration::from_secs(1) {
        now += Duration::from_secs(1);
        seq += 1;
        s.on_message(event(seq, ringing("5001", "c")), 0, now);
        assert!(s.tick(now).is_empty(), "still releasing at {:?}", now - t0);
    }
    // ... but never past RELEASE_MAX.
    assert_eq!(s.next_deadline(), Some(t0 + RELEASE_MAX));
    assert!(matches!(&s.tick(t0 + RELEASE_MAX)[..], [Action::EndLink { finish: true, .. }]));
}

#[tokio::test(start_paused = true)]
async fn a_release_without_a_link_ends_at_once_and_a_loss_during_release_finishes() {
    let (mut s, _) = Session::new("127.0.0.1:7001", dns(&["5001"]));
    s.open_failed("refused", Instant::now());
    assert!(s.release(Instant::now()).is_empty());
    assert!(s.is_done());
    assert_eq!(s.next_deadline(), None, "no retry after the release");

    let mut s = open_with(&["5001"]);
    s.release(Instant::now());
    assert_eq!(
        s.lost("the T-Server closed the link", Instant::now()),
        vec![Action::EndLink { reason: "the T-Server closed the link".into(), finish: true }]
    );
    assert!(s.is_done());
}

#[tokio::test(start_paused = true)]
async fn refusals_are_noted_at_a_bounded_rate() {
    let mut s = open_with(&["5001"]);
    let refusal = || Message::EventError { ref_id: Some(4), code: 400, text: Some("malformed request".into()) };
    let out = s.on_message(refusal(), 0, Instant::now());
    assert_eq!(out, vec![Action::Note(Note::Refused { count: 1, code: 400, text: "malformed request".into() })]);
    assert!(s.on_message(refusal(), 0, Instant::now()).is_empty());
}
