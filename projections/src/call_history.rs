//! Call history: a pure fold of telephony events into one record per call (ConnID).
//!
//! A call starts with its first event; each internal DN it reaches gets a leg, opened
//! by Dialing or Ringing and closed by Released or Abandoned. The call ends when its
//! last open leg closes. Durations, from the T-Server's timestamps:
//! ring = answer − start (or end − start if never answered); hold = sum of hold periods;
//! talk = end − answer − hold; total = end − start (clamped so that ring + talk + hold
//! = total, see [`crate::rows::durations`]). Consultation calls are calls of their own
//! (type `Consult`); a two-step transfer or conference completion links the surviving
//! call to the one it continues (`previous_connid`). A call is a conference once three
//! or more parties talk on it at once.

use netwatch_schemas::calls::{CallType, TEventKind, Telephony};

use crate::rows::{durations, CallLeg, CallRecord};

/// Fold one telephony event into its call. `current` is the call's record so far.
pub fn apply(current: Option<CallRecord>, tserver: i32, t: &Telephony, at: i64) -> CallRecord {
    let mut call = current.unwrap_or_else(|| CallRecord {
        tserver,
        connid: t.connid.clone(),
        call_type: format!("{:?}", t.call_type),
        started_ms: at,
        outcome: "in_progress".into(),
        ..Default::default()
    });
    for party in [Some(&t.dn), t.other_dn.as_ref()].into_iter().flatten() {
        if !call.parties.contains(party) {
            call.parties.push(party.clone());
        }
    }
    if call.call_type == "Unknown" && t.call_type != CallType::Unknown {
        // A T-Server may leave the call type out of later events; keep the first known.
        call.call_type = format!("{:?}", t.call_type);
    }
    let (leg_index, new_leg) = match call.legs.iter().rposition(|l| l.dn == t.dn && l.ended_ms.is_none()) {
        Some(i) => (i, false),
        None => {
            call.legs.push(CallLeg { dn: t.dn.clone(), started_ms: at, outcome: "in_progress".into(), ..Default::default() });
            (call.legs.len() - 1, true)
        }
    };
    if t.previous_connid.is_some() {
        call.previous_connid = t.previous_connid.clone();
    }
    let leg = &mut call.legs[leg_index];
    if t.other_dn.is_some() {
        leg.other_dn = t.other_dn.clone();
    }
    // A leg first seen held, retrieved or changed is connected: it joined by a
    // completed transfer or conference, or was answered before a gap in monitoring.
    if new_leg && matches!(t.kind, TEventKind::Held | TEventKind::Retrieved | TEventKind::PartyChanged) {
        leg.answered_ms = Some(at);
        call.answered_ms.get_or_insert(at);
    }
    // A leg first seen released: what happened before is not known.
    let unseen_start = new_leg && t.kind == TEventKind::Released;
    match t.kind {
        TEventKind::Dialing => {}
        TEventKind::Ringing => leg.offered = true,
        TEventKind::Established => {
            leg.answered_ms.get_or_insert(at);
            call.answered_ms.get_or_insert(at);
        }
        TEventKind::Held => {
            if leg.held_since_ms.is_none() {
                leg.held_since_ms = Some(at);
                leg.hold_count += 1;
            }
        }
        TEventKind::Retrieved => close_hold(leg, at),
        TEventKind::PartyChanged => {}
        TEventKind::Released | TEventKind::Abandoned => {
            close_hold(leg, at);
            leg.ended_ms = Some(at);
            if let Some(by) = &t.released_by {
                call.released_by.get_or_insert_with(|| by.clone());
            }
            let cause = t.cause.as_deref();
            leg.outcome = if t.kind == TEventKind::Abandoned || cause == Some("canceled") {
                "abandoned".into()
            } else if t.third_party_dn.is_some() {
                call.transferred = true;
                "transferred".into()
            } else if leg.answered_ms.is_some() {
                "answered".into()
            } else if cause == Some("busy") {
                "busy".into()
            } else if cause == Some("failed") {
                "failed".into()
            } else if unseen_start || cause == Some("lost") {
                "unknown".into()
            } else if !leg.offered || call.call_type == "Outbound" {
                // Dialled from here and never answered: an attempt that failed, not a
                // caller who gave up.
                "failed".into()
            } else {
                "abandoned".into()
            };
        }
    }
    if matches!(t.kind, TEventKind::Established | TEventKind::Retrieved | TEventKind::PartyChanged) && talking(&call) >= 3 {
        call.conference = true;
    }
    settle(&mut call, at);
    call
}

/// Parties talking on the call now: answered legs still open and not on hold, and the
/// outside party if there is one.
fn talking(call: &CallRecord) -> usize {
    let legs = call.legs.iter().filter(|l| l.answered_ms.is_some() && l.ended_ms.is_none() && l.held_since_ms.is_none()).count();
    legs + usize::from(call.parties.iter().any(|p| p.starts_with('+')))
}

/// The DN's part in call `merged` ended at `at` because a completed two-step transfer or
/// conference merged it into another call (`EventPartyChanged` with `previous_connid` =
/// `merged.connid` at `dn`; the T-Server sends no `EventReleased` for it).
pub fn merged_away(mut merged: CallRecord, dn: &str, into: &str, at: i64) -> CallRecord {
    if let Some(leg) = merged.legs.iter_mut().rev().find(|l| l.dn == dn && l.ended_ms.is_none()) {
        close_hold(leg, at);
        leg.ended_ms = Some(at);
        leg.outcome = if leg.answered_ms.is_some() { "answered" } else { "merged" }.into();
        merged.merged_into = Some(into.to_string());
    }
    settle(&mut merged, at);
    merged
}

/// End the call when its last leg closed; open it again if a party joined since.
fn settle(call: &mut CallRecord, at: i64) {
    if call.legs.iter().all(|l| l.ended_ms.is_some()) {
        finish(call, at);
    } else if call.ended_ms.is_some() {
        // A party joined a call that had looked over (a transfer's far end rings
        // after the transferring DN left): it is in progress again.
        call.ended_ms = None;
        call.outcome = "in_progress".into();
        (call.ring_ms, call.talk_ms, call.hold_ms, call.total_ms) = (0, 0, 0, 0);
    }
}

fn close_hold(leg: &mut CallLeg, at: i64) {
    if let Some(since) = leg.held_since_ms.take() {
        leg.hold_ms += (at - since).max(0);
    }
}

fn finish(call: &mut CallRecord, at: i64) {
    call.ended_ms = Some(at);
    let held = call.legs.iter().map(|l| l.hold_ms).sum();
    (call.ring_ms, call.talk_ms, call.hold_ms, call.total_ms) = durations(call.started_ms, call.answered_ms, at, held);
    call.outcome = if call.transferred {
        "transferred"
    } else if call.answered_ms.is_some() {
        "answered"
    } else if call.legs.iter().any(|l| l.outcome == "abandoned") {
        "abandoned"
    } else if call.legs.iter().any(|l| l.outcome == "busy") {
        "busy"
    } else if call.legs.iter().all(|l| l.outcome == "unknown") {
        "unknown"
    } else {
        "failed"
    }
    .into();
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwatch_schemas::calls::CallType;

    fn t(kind: TEventKind, dn: &str, other: &str, call_type: CallType, third: Option<&str>) -> Telephony {
        Telephony {
            kind,
            dn: dn.into(),
            connid: "c1".into(),
            call_type,
            other_dn: Some(other.into()),
            third_party_dn: third.map(str::to_string),
            previous_connid: None,
            cause: None,
            released_by: None,
        }
    }

    fn play(events: &[(i64, Telephony)]) -> CallRecord {
        events.iter().fold(None, |c, (at, e)| Some(apply(c, 1, e, *at))).unwrap()
    }

    #[test]
    fn h1_h3_h4_h6_answered_inbound_call_with_hold() {
        use TEventKind::*;
        let ib = CallType::Inbound;
        let c = play(&[
            (0, t(Ringing, "5001", "+1555", ib, None)),
            (4_000, t(Established, "5001", "+1555", ib, None)),
            (10_000, t(Held, "5001", "+1555", ib, None)),
            (25_000, t(Retrieved, "5001", "+1555", ib, None)),
            (40_000, t(Released, "5001", "+1555", ib, None)),
        ]);
        assert_eq!((c.ring_ms, c.hold_ms, c.talk_ms, c.total_ms), (4_000, 15_000, 21_000, 40_000));
        assert_eq!((c.outcome.as_str(), c.parties.clone()), ("answered", vec!["5001".to_string(), "+1555".to_string()]));
        let rows = c.dn_calls();
        assert_eq!((rows[0].ring_ms, rows[0].talk_ms, rows[0].hold_ms, rows[0].total_ms), (4_000, 21_000, 15_000, 40_000));
    }

    /// A release as a SIP server reports it (docs/sip.md): why, and by whom.
    fn ended(mut e: Telephony, cause: Option<&str>, by: &str) -> Telephony {
        e.cause = cause.map(str::to_string);
        e.released_by = Some(by.into());
        e
    }

    #[test]
    fn sip_busy_call_is_busy_at_the_caller_and_says_who_rejected_it() {
        use TEventKind::*;
        let it = CallType::Internal;
        let c = play(&[(0, t(Dialing, "5001", "5002", it, None)), (0, ended(t(Released, "5001", "5002", it, None), Some("busy"), "5002"))]);
        assert_eq!((c.outcome.as_str(), c.released_by.as_deref(), c.legs[0].outcome.as_str()), ("busy", Some("5002"), "busy"));
        assert_eq!(c.parties, vec!["5001".to_string(), "5002".to_string()]);
    }

    #[test]
    fn sip_cancel_abandons_both_legs_and_a_failure_is_failed() {
        use TEventKind::*;
        let it = CallType::Internal;
        let c = play(&[
            (0, t(Dialing, "5001", "5002", it, None)),
            (100, t(Ringing, "5002", "5001", it, None)),
            (2_100, ended(t(Released, "5001", "5002", it, None), Some("canceled"), "5001")),
            (2_100, ended(t(Abandoned, "5002", "5001", it, None), Some("canceled"), "5001")),
        ]);
        let legs: Vec<&str> = c.legs.iter().map(|l| l.outcome.as_str()).collect();
        assert_eq!((c.outcome.as_str(), legs, c.ring_ms), ("abandoned", vec!["abandoned", "abandoned"], 2_100));
        let c =
            play(&[(0, t(Dialing, "5001", "5099", it, None)), (5, ended(t(Released, "5001", "5099", it, None), Some("failed"), "server"))]);
        assert_eq!((c.outcome.as_str(), c.released_by.as_deref()), ("failed", Some("server")));
        let rows = c.dn_calls();
        assert_eq!(rows[0].released_by.as_deref(), Some("server"));
    }

    #[test]
    fn h7_abandoned_while_ringing() {
        let c = play(&[
            (0, t(TEventKind::Ringing, "5001", "+1555", CallType::Inbound, None)),
            (7_000, t(TEventKind::Abandoned, "5001", "+1555", CallType::Inbound, None)),
        ]);
        assert_eq!((c.outcome.as_str(), c.ring_ms, c.talk_ms, c.total_ms), ("abandoned", 7_000, 0, 7_000));
    }

    #[test]
    fn h5_single_step_transfer() {
        use TEventKind::*;
        let ib = CallType::Inbound;
        let c = play(&[
            (0, t(Ringing, "5001", "+1555", ib, None)),
            (2_000, t(Established, "5001", "+1555", ib, None)),
            (12_000, t(Released, "5001", "+1555", ib, Some("5002"))),
            (12_000, t(Ringing, "5002", "+1555", ib, Some("5001"))),
            (15_000, t(Established, "5002", "+1555", ib, None)),
            (45_000, t(Released, "5002", "+1555", ib, None)),
        ]);
        assert_eq!(c.outcome, "transferred");
        assert_eq!((c.ring_ms, c.talk_ms, c.total_ms), (2_000, 43_000, 45_000));
        let rows = c.dn_calls();
        assert_eq!(
            rows.iter().map(|r| (r.dn.as_str(), r.outcome.as_str(), r.talk_ms)).collect::<Vec<_>>(),
            [("5001", "transferred", 10_000), ("5002", "answered", 30_000)]
        );
    }

    #[test]
    fn h2_h6_unanswered_outbound_call_failed() {
        let c = play(&[
            (0, t(TEventKind::Dialing, "5003", "+1555", CallType::Outbound, None)),
            (20_000, t(TEventKind::Released, "5003", "+1555", CallType::Outbound, None)),
        ]);
        assert_eq!((c.outcome.as_str(), c.ring_ms, c.total_ms), ("failed", 20_000, 20_000));
    }

    #[test]
    fn h12_the_call_stays_open_while_any_leg_is_open() {
        use TEventKind::*;
        let it = CallType::Internal;
        let c = play(&[
            (0, t(Dialing, "5001", "5002", it, None)),
            (0, t(Ringing, "5002", "5001", it, None)),
            (3_000, t(Released, "5001", "5002", it, None)),
        ]);
        assert_eq!((c.ended_ms, c.outcome.as_str()), (None, "in_progress"));
    }

    #[test]
    fn h11_conference_of_three_parties() {
        use TEventKind::*;
        let ib = CallType::Inbound;
        let c = play(&[
            (0, t(Ringing, "5001", "+1555", ib, None)),
            (1_000, t(Established, "5001", "+1555", ib, None)),
            (5_000, t(Established, "5002", "5001", ib, Some("5001"))),
            (9_000, t(Released, "5002", "5001", ib, None)),
            (12_000, t(Released, "5001", "+1555", ib, None)),
        ]);
        assert!(c.conference);
        assert_eq!((c.outcome.as_str(), c.total_ms), ("answered", 12_000));
    }

    /// Fold events of several calls as the projection runner does: each event into its
    /// call, and a PartyChanged with a previous ConnID also into the call it merged from.
    fn play_calls(events: &[(i64, Telephony)]) -> std::collections::BTreeMap<String, CallRecord> {
        let mut calls = std::collections::BTreeMap::new();
        for (at, e) in events {
            let current = calls.remove(&e.connid);
            calls.insert(e.connid.clone(), apply(current, 1, e, *at));
            if let (TEventKind::PartyChanged, Some(p)) = (e.kind, e.previous_connid.as_ref()) {
                if let Some(merged) = calls.remove(p) {
                    calls.insert(p.clone(), merged_away(merged, &e.dn, &e.connid, *at));
                }
            }
        }
        calls
    }

    fn on(connid: &str, mut e: Telephony) -> Telephony {
        e.connid = connid.into();
        e
    }

    /// The consultation of docs/cti-link.md ("Call flows"): 5001 answers X from outside,
    /// holds it and consults 5002 on Y, which 5002 answers.
    fn consultation() -> Vec<(i64, Telephony)> {
        use TEventKind::*;
        let (ib, cs) = (CallType::Inbound, CallType::Consult);
        vec![
            (0, on("X", t(Ringing, "5001", "+1555", ib, None))),
            (2_000, on("X", t(Established, "5001", "+1555", ib, None))),
            (10_000, on("X", t(Held, "5001", "+1555", ib, None))),
            (10_000, on("Y", t(Dialing, "5001", "5002", cs, None))),
            (10_000, on("Y", t(Ringing, "5002", "5001", cs, None))),
            (13_000, on("Y", t(Established, "5002", "5001", cs, None))),
            (13_000, on("Y", t(Established, "5001", "5002", cs, None))),
        ]
    }

    fn merged(at: i64) -> (i64, Telephony) {
        let mut changed = on("X", t(TEventKind::PartyChanged, "5002", "+1555", CallType::Unknown, Some("5001")));
        changed.previous_connid = Some("Y".into());
        (at, changed)
    }

    fn legs(c: &CallRecord) -> Vec<(&str, &str, bool, bool)> {
        c.legs.iter().map(|l| (l.dn.as_str(), l.outcome.as_str(), l.offered, l.answered_ms.is_some())).collect()
    }

    #[test]
    fn h10_two_step_transfer_ends_the_consultation_and_the_target_joins_answered() {
        use TEventKind::*;
        let mut events = consultation();
        events.push((20_000, on("Y", t(Released, "5001", "5002", CallType::Unknown, None))));
        events.push((20_000, on("X", t(Released, "5001", "+1555", CallType::Unknown, Some("5002")))));
        events.push(merged(20_000));
        events.push((50_000, on("X", t(Released, "5002", "+1555", CallType::Unknown, None))));
        let calls = play_calls(&events);
        let (x, y) = (&calls["X"], &calls["Y"]);
        assert_eq!(
            (y.outcome.as_str(), y.ended_ms, y.merged_into.as_deref()),
            ("answered", Some(20_000), Some("X")),
            "no consultation left in progress"
        );
        assert_eq!(legs(y), [("5001", "answered", false, true), ("5002", "answered", true, true)]);
        assert_eq!(
            (x.outcome.as_str(), x.ended_ms, x.conference, x.previous_connid.as_deref()),
            ("transferred", Some(50_000), false, Some("Y"))
        );
        assert_eq!(
            legs(x),
            [("5001", "transferred", true, true), ("5002", "answered", false, true)],
            "the target leg is answered, not offered"
        );
        let abandoned = calls.values().flat_map(|c| c.dn_calls()).filter(|r| r.outcome == "abandoned").count();
        assert_eq!(abandoned, 0, "a two-step transfer abandons nothing");
        let x5002 = &x.dn_calls()[1];
        assert_eq!((x5002.talk_ms, x5002.ring_ms, x5002.total_ms), (30_000, 0, 30_000));
    }

    #[test]
    fn h10_h11_completed_conference_is_flagged_not_transferred() {
        use TEventKind::*;
        let mut events = consultation();
        events.push((20_000, on("Y", t(Released, "5001", "5002", CallType::Unknown, None))));
        events.push((20_000, on("X", t(Retrieved, "5001", "+1555", CallType::Unknown, None))));
        events.push(merged(20_000));
        events.push((30_000, on("X", t(Released, "5001", "+1555", CallType::Unknown, None))));
        events.push((50_000, on("X", t(Released, "5002", "+1555", CallType::Unknown, None))));
        let calls = play_calls(&events);
        let (x, y) = (&calls["X"], &calls["Y"]);
        assert_eq!((y.outcome.as_str(), y.merged_into.as_deref()), ("answered", Some("X")));
        assert_eq!((x.outcome.as_str(), x.conference, x.transferred), ("answered", true, false));
        assert_eq!(legs(x), [("5001", "answered", true, true), ("5002", "answered", false, true)]);
        assert_eq!(x.legs[0].hold_ms, 10_000, "held from the consultation until the conference");
    }

    #[test]
    fn h10_a_transfer_whose_initiator_still_holds_the_call_is_no_conference() {
        use TEventKind::*;
        // The target's PartyChanged comes before the initiator's Released: the initiator
        // is still on hold, so only two parties talk.
        let mut events = consultation();
        events.push((20_000, on("Y", t(Released, "5001", "5002", CallType::Unknown, None))));
        events.push(merged(20_000));
        events.push((20_000, on("X", t(Released, "5001", "+1555", CallType::Unknown, Some("5002")))));
        let calls = play_calls(&events);
        assert!(!calls["X"].conference);
        assert_eq!(calls["X"].outcome, "in_progress");
    }

    #[test]
    fn h10_a_consultation_merged_while_it_still_rang_is_merged_not_abandoned() {
        use TEventKind::*;
        let mut events = consultation();
        events.truncate(5); // X answered and held; Y dialled from 5001, ringing at 5002
        events.push((11_000, on("Y", t(Released, "5001", "5002", CallType::Unknown, None))));
        events.push((11_000, on("X", t(Released, "5001", "+1555", CallType::Unknown, Some("5002")))));
        events.push(merged(11_000));
        let y = &play_calls(&events)["Y"];
        assert_eq!(legs(y), [("5001", "failed", false, false), ("5002", "merged", true, false)]);
        assert_ne!(y.outcome, "abandoned");
    }

    #[test]
    fn h6_an_unanswered_internal_call_failed_at_the_caller_and_was_abandoned_at_the_callee() {
        use TEventKind::*;
        let it = CallType::Internal;
        let c = play(&[
            (0, t(Dialing, "5001", "5002", it, None)),
            (0, t(Ringing, "5002", "5001", it, None)),
            (6_000, t(Released, "5001", "5002", it, None)),
            (6_000, t(Released, "5002", "5001", it, None)),
        ]);
        assert_eq!(legs(&c), [("5001", "failed", false, false), ("5002", "abandoned", true, false)]);
    }

    #[test]
    fn h8_a_leg_first_seen_released_is_unknown_not_abandoned() {
        let c = play(&[(9_000, t(TEventKind::Released, "5001", "+1555", CallType::Unknown, None))]);
        assert_eq!((c.outcome.as_str(), c.legs[0].outcome.as_str(), c.legs[0].offered), ("unknown", "unknown", false));
    }

    #[test]
    fn h9_a_leg_first_seen_held_was_answered() {
        use TEventKind::*;
        let c = play(&[
            (5_000, t(Held, "5001", "+1555", CallType::Unknown, None)),
            (8_000, t(Retrieved, "5001", "+1555", CallType::Unknown, None)),
            (9_000, t(Released, "5001", "+1555", CallType::Unknown, None)),
        ]);
        assert_eq!((c.outcome.as_str(), c.legs[0].outcome.as_str(), c.hold_ms, c.talk_ms), ("answered", "answered", 3_000, 1_000));
    }

    #[test]
    fn h13_the_first_known_call_type_is_kept() {
        use TEventKind::*;
        let c = play(&[
            (0, t(Held, "5001", "+1555", CallType::Unknown, None)),
            (1_000, t(Retrieved, "5001", "+1555", CallType::Outbound, None)),
            (2_000, t(Released, "5001", "+1555", CallType::Inbound, None)),
        ]);
        assert_eq!(c.call_type, "Outbound");
    }

    #[test]
    fn h12_a_call_that_looked_over_is_open_again_when_a_party_joins() {
        use TEventKind::*;
        let ib = CallType::Inbound;
        let c = play(&[
            (0, t(Ringing, "5001", "+1555", ib, None)),
            (1_000, t(Established, "5001", "+1555", ib, None)),
            (2_000, t(Released, "5001", "+1555", ib, Some("5002"))),
        ]);
        assert_eq!(c.ended_ms, Some(2_000));
        let c = apply(Some(c), 1, &t(Ringing, "5002", "+1555", ib, Some("5001")), 2_000);
        assert_eq!((c.ended_ms, c.outcome.as_str()), (None, "in_progress"));
    }

    fn any_telephony() -> impl proptest::strategy::Strategy<Value = (i64, Telephony)> {
        use proptest::prelude::*;
        let kind = proptest::sample::select(TEventKind::ALL.to_vec());
        let dn = prop_oneof![Just("5001"), Just("5002"), Just("5003")];
        let ty = prop_oneof![Just(CallType::Inbound), Just(CallType::Outbound), Just(CallType::Internal), Just(CallType::Consult)];
        (-5_000i64..60_000, kind, dn, ty, proptest::option::of(Just("5004")))
            .prop_map(|(at, k, dn, ty, third)| (at, t(k, dn, "+1555", ty, third)))
    }

    proptest::proptest! {
        /// Whatever the events and however the T-Server's clock jumps, every duration is
        /// non-negative and ring + talk + hold ≤ total, for the call and each DN's part.
        #[test]
        fn ring_talk_hold_never_exceed_total(events in proptest::collection::vec(any_telephony(), 1..40)) {
            let c = play(&events);
            proptest::prop_assert!(c.ring_ms >= 0 && c.talk_ms >= 0 && c.hold_ms >= 0);
            proptest::prop_assert!(c.ring_ms + c.talk_ms + c.hold_ms <= c.total_ms, "{:?}", c);
            for r in c.dn_calls() {
                proptest::prop_assert!(r.ring_ms >= 0 && r.talk_ms >= 0 && r.hold_ms >= 0, "{:?}", r);
                if r.ended_ms.is_some() {
                    proptest::prop_assert!(r.ring_ms + r.talk_ms + r.hold_ms <= r.total_ms, "{:?}", r);
                }
            }
        }
    }
}
