//! DN state: a pure fold of config and call events into one row per DN.
//!
//! The state machine is documented in `docs/call-model.md` (event × state → new state);
//! every row of that table has a test below, and property tests check that no sequence
//! of events breaks [`check`].

use netwatch_schemas::calls::{AgentEventKind, CallBody, CallEvent, TEventKind, Telephony};
use netwatch_schemas::config::{ConfigChange, DnType};

use crate::rows::{DnCallState, DnState};

/// At most this many calls are kept at one DN; beyond it the oldest is dropped (a
/// switch never has more, so only lost events can lead there).
pub const MAX_CALLS: usize = 8;

/// Which rows an event touches.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// One DN of the event's T-Server.
    Dn(String),
    /// Every DN of the T-Server (link events).
    AllDns,
    /// None.
    Nothing,
}

/// The rows a call event touches.
pub fn target(event: &CallEvent) -> Target {
    match &event.body {
        CallBody::LinkConnected(_) | CallBody::LinkDisconnected(_) => Target::AllDns,
        CallBody::DnRegistered(d) | CallBody::DnUnregistered(d) => Target::Dn(d.dn.clone()),
        CallBody::Telephony(t) => Target::Dn(t.dn.clone()),
        CallBody::Agent(a) => Target::Dn(a.dn.clone()),
    }
}

fn dn_type_name(t: DnType) -> String {
    t.as_str().to_string()
}

/// Fold a config change into the row of its DN (T-Server changes touch no DN row).
///
/// Config changes set only the configuration fields and call events never do, and
/// `updated_ms` keeps the latest time seen, so the row does not depend on how a reader
/// interleaved the two topics.
/// Returns the DN key it concerns and the new row.
pub fn apply_config(current: impl FnOnce(i32, &str) -> Option<DnState>, change: &ConfigChange, at_ms: i64) -> Option<DnState> {
    match change {
        ConfigChange::DnCreated(d) | ConfigChange::DnUpdated(d) => {
            let mut row = current(d.tserver, &d.number).unwrap_or_else(|| DnState::new(d.tserver, &d.number));
            row.configured = true;
            row.dbid = Some(d.dbid);
            row.dn_type = Some(dn_type_name(d.dn_type));
            row.updated_ms = row.updated_ms.max(at_ms);
            Some(row)
        }
        ConfigChange::DnDeleted(d) => {
            let mut row = current(d.tserver, &d.number).unwrap_or_else(|| DnState::new(d.tserver, &d.number));
            row.configured = false;
            row.updated_ms = row.updated_ms.max(at_ms);
            Some(row)
        }
        ConfigChange::TServerCreated(_)
        | ConfigChange::TServerUpdated(_)
        | ConfigChange::TServerDeleted(_)
        | ConfigChange::GroupCreated(_)
        | ConfigChange::GroupUpdated(_)
        | ConfigChange::GroupDeleted(_) => None,
    }
}

/// Rank of a call state when picking the DN's active call: the call the agent is
/// connected to wins over one that rings, which wins over one on hold.
fn rank(state: &str) -> u8 {
    match state {
        "talking" => 4,
        "dialing" => 3,
        "ringing" => 2,
        _ => 1,
    }
}

/// Recompute `call_state`, `connid`, `other_dn` from the calls at the DN.
fn derive(row: &mut DnState, at: i64) {
    let (state, connid, other) = if row.registered_by.is_none() {
        ("unknown".to_string(), None, None)
    } else {
        match row.calls.iter().enumerate().max_by_key(|(i, c)| (rank(&c.state), c.since_ms, *i)) {
            Some((_, c)) => (c.state.clone(), Some(c.connid.clone()), c.other_dn.clone()),
            None => ("idle".to_string(), None, None),
        }
    };
    if row.call_state != state {
        row.call_state = state;
        row.state_since_ms = at;
    }
    row.connid = connid;
    row.other_dn = other;
}

/// Forget every call and mark the DN unknown (link lost, unregistered).
fn lose(row: &mut DnState, at: i64) {
    row.registered_by = None;
    row.calls.clear();
    derive(row, at);
}

/// Put every call the DN is connected to (talking, dialing) on hold, but `except`.
fn hold_others(row: &mut DnState, except: &str, at: i64) {
    for c in row.calls.iter_mut().filter(|c| c.connid != except && (c.state == "talking" || c.state == "dialing")) {
        c.state = "held".into();
        c.since_ms = at;
    }
}

/// Set call `t.connid` at the DN to `state`, adding it if new.
fn set_call(row: &mut DnState, t: &Telephony, state: &str, at: i64) {
    match row.calls.iter_mut().find(|c| c.connid == t.connid) {
        Some(c) => {
            if c.state != state {
                c.state = state.to_string();
                c.since_ms = at;
            }
            if t.other_dn.is_some() {
                c.other_dn = t.other_dn.clone();
            }
        }
        None => {
            if row.calls.len() >= MAX_CALLS {
                row.calls.remove(0);
            }
            row.calls.push(DnCallState {
                connid: t.connid.clone(),
                state: state.to_string(),
                call_type: format!("{:?}", t.call_type),
                other_dn: t.other_dn.clone(),
                since_ms: at,
            });
        }
    }
}

fn telephony(row: &mut DnState, t: &Telephony, at: i64) {
    match t.kind {
        TEventKind::Ringing => set_call(row, t, "ringing", at),
        TEventKind::Dialing | TEventKind::Established | TEventKind::Retrieved => {
            hold_others(row, &t.connid, at);
            let state = if t.kind == TEventKind::Dialing { "dialing" } else { "talking" };
            set_call(row, t, state, at);
        }
        TEventKind::Held => set_call(row, t, "held", at),
        TEventKind::PartyChanged => {
            let previous = t.previous_connid.as_deref().filter(|p| *p != t.connid);
            let merged_into_existing = row.calls.iter().any(|c| c.connid == t.connid);
            if let Some(prev) = previous {
                if merged_into_existing {
                    row.calls.retain(|c| c.connid != prev);
                } else if let Some(c) = row.calls.iter_mut().find(|c| c.connid == prev) {
                    c.connid = t.connid.clone();
                }
            }
            if let Some(c) = row.calls.iter_mut().find(|c| c.connid == t.connid) {
                if t.other_dn.is_some() {
                    c.other_dn = t.other_dn.clone();
                }
            }
        }
        TEventKind::Released | TEventKind::Abandoned => row.calls.retain(|c| c.connid != t.connid),
    }
}

/// Fold a call event into one DN's row (one that [`target`] named).
pub fn apply_call(mut row: DnState, event: &CallEvent) -> DnState {
    let at = event.server_time_ms;
    row.updated_ms = row.updated_ms.max(at);
    match &event.body {
        CallBody::LinkConnected(_) => {
            row.link = "up".into();
        }
        CallBody::LinkDisconnected(_) => {
            // Only the monitor that had the DN can lose it; a late event from a monitor
            // that no longer has it changes nothing.
            if row.registered_by.as_deref() == Some(event.monitor.as_str()) {
                row.link = "down".into();
                lose(&mut row, at);
            }
        }
        CallBody::DnRegistered(_) => {
            row.registered_by = Some(event.monitor.clone());
            row.link = "up".into();
            derive(&mut row, at);
        }
        CallBody::DnUnregistered(_) => {
            if row.registered_by.as_deref() == Some(event.monitor.as_str()) {
                lose(&mut row, at);
            }
        }
        CallBody::Telephony(t) => {
            // Unknown until registered: events before that cannot give the full picture.
            // Only the monitor that has the DN registered speaks for it: an event another
            // monitor appended late (it held the T-Server before) changes nothing.
            if row.registered_by.as_deref() == Some(event.monitor.as_str()) {
                telephony(&mut row, t, at);
                derive(&mut row, at);
            }
        }
        CallBody::Agent(a) => {
            let state = match a.kind {
                AgentEventKind::Login | AgentEventKind::NotReady => "not_ready",
                AgentEventKind::Ready => "ready",
                AgentEventKind::AfterCallWork => "after_call_work",
                AgentEventKind::Logout => "logged_out",
            };
            let reason = if a.kind == AgentEventKind::NotReady { a.reason.clone() } else { None };
            if row.agent_state.as_deref() != Some(state) || row.agent_reason != reason || row.agent_id.as_deref() != Some(&a.agent_id) {
                row.agent_since_ms = at;
            }
            row.agent_state = Some(state.into());
            row.agent_id = Some(a.agent_id.clone());
            row.agent_reason = reason;
        }
    }
    row
}

/// The DN's status as Stat Server would show it: the call state when a call is there or
/// the DN is unknown, else the agent's state (after_call_work, not_ready, ready,
/// logged_out), else idle.
pub fn status(row: &DnState) -> (&str, i64) {
    match (row.call_state.as_str(), row.agent_state.as_deref()) {
        ("idle", Some(agent)) => (agent, row.agent_since_ms.max(row.state_since_ms)),
        (call, _) => (call, row.state_since_ms),
    }
}

/// Is the row a possible state? Every rule the call model promises; the reason if not.
pub fn check(row: &DnState) -> Result<(), String> {
    const CALL_STATES: [&str; 6] = ["unknown", "idle", "dialing", "ringing", "talking", "held"];
    if !CALL_STATES.contains(&row.call_state.as_str()) {
        return Err(format!("call state {:?} is not one of {CALL_STATES:?}", row.call_state));
    }
    if row.registered_by.is_none() && (row.call_state != "unknown" || !row.calls.is_empty()) {
        return Err(format!("an unregistered DN is {} with {} calls", row.call_state, row.calls.len()));
    }
    if row.registered_by.is_some() && row.call_state == "unknown" {
        return Err("a registered DN is unknown".into());
    }
    if row.calls.is_empty() != (row.call_state == "idle" || row.call_state == "unknown") {
        return Err(format!("call state {} with {} calls", row.call_state, row.calls.len()));
    }
    if row.calls.len() > MAX_CALLS {
        return Err(format!("{} calls at one DN", row.calls.len()));
    }
    let connected = row.calls.iter().filter(|c| c.state == "talking" || c.state == "dialing").count();
    if connected > 1 {
        return Err(format!("connected to {connected} calls at once"));
    }
    for (i, c) in row.calls.iter().enumerate() {
        if !["dialing", "ringing", "talking", "held"].contains(&c.state.as_str()) {
            return Err(format!("call {} is {}", c.connid, c.state));
        }
        if row.calls[..i].iter().any(|d| d.connid == c.connid) {
            return Err(format!("call {} is there twice", c.connid));
        }
    }
    match row.calls.iter().find(|c| Some(&c.connid) == row.connid.as_ref()) {
        Some(active) if active.state != row.call_state => Err(format!("active call is {} but the DN is {}", active.state, row.call_state)),
        Some(_) => Ok(()),
        None if row.connid.is_some() => Err("the active ConnID is not among the calls".into()),
        None if !row.calls.is_empty() => Err("calls but no active ConnID".into()),
        None => Ok(()),
    }?;
    if row.agent_reason.is_some() && row.agent_state.as_deref() != Some("not_ready") {
        return Err("a not-ready reason without not-ready".into());
    }
    if row.agent_state.is_some() != row.agent_id.is_some() {
        return Err("agent state and agent id disagree".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! One test per row of the table in docs/call-model.md (named after the row), then
    //! property tests.
    use super::*;
    use netwatch_schemas::calls::{Agent, CallType, DnAddress, LinkConnected, LinkDisconnected};
    use proptest::prelude::*;

    fn ev(monitor: &str, at: i64, body: CallBody) -> CallEvent {
        CallEvent {
            event_id: "e".into(),
            tserver: 1,
            monitor: monitor.into(),
            session: "s".into(),
            server_time_ms: at,
            link_seq: None,
            body,
        }
    }

    fn tel_full(kind: TEventKind, connid: &str, other: &str, previous: Option<&str>) -> CallBody {
        CallBody::Telephony(Telephony {
            kind,
            dn: "5001".into(),
            connid: connid.into(),
            call_type: CallType::Inbound,
            other_dn: Some(other.into()),
            third_party_dn: None,
            previous_connid: previous.map(str::to_string),
            cause: None,
            released_by: None,
        })
    }

    fn tel(kind: TEventKind, connid: &str) -> CallBody {
        tel_full(kind, connid, "+1555", None)
    }

    fn registered() -> DnState {
        apply_call(DnState::new(1, "5001"), &ev("m1", 1, CallBody::DnRegistered(DnAddress { dn: "5001".into() })))
    }

    /// Apply telephony events at times 10, 20, ... to a registered DN.
    fn play(row: DnState, events: &[CallBody]) -> DnState {
        events.iter().enumerate().fold(row, |r, (i, e)| {
            let out = apply_call(r, &ev("m1", 10 * (i as i64 + 1), e.clone()));
            check(&out).unwrap_or_else(|why| panic!("impossible state after {e:?}: {why}"));
            out
        })
    }

    fn states(row: &DnState) -> Vec<(&str, &str)> {
        row.calls.iter().map(|c| (c.connid.as_str(), c.state.as_str())).collect()
    }

    fn summary(row: &DnState) -> (&str, Option<&str>) {
        (row.call_state.as_str(), row.connid.as_deref())
    }

    use TEventKind::*;

    #[test]
    fn t1_ringing_new_call_on_idle_dn() {
        let row = play(registered(), &[tel(Ringing, "c1")]);
        assert_eq!((summary(&row), row.other_dn.as_deref(), row.state_since_ms), (("ringing", Some("c1")), Some("+1555"), 10));
    }

    #[test]
    fn t1_ringing_second_call_while_talking_is_call_waiting() {
        let row = play(registered(), &[tel(Ringing, "c1"), tel(Established, "c1"), tel(Ringing, "c2")]);
        assert_eq!(summary(&row), ("talking", Some("c1")));
        assert_eq!(states(&row), [("c1", "talking"), ("c2", "ringing")]);
    }

    #[test]
    fn t2_ringing_again_on_a_known_call() {
        let row = play(registered(), &[tel(Ringing, "c1"), tel(Ringing, "c1")]);
        assert_eq!((summary(&row), row.state_since_ms), (("ringing", Some("c1")), 10));
    }

    #[test]
    fn t3_dialing_holds_the_connected_call_consultation() {
        let row = play(registered(), &[tel(Ringing, "c1"), tel(Established, "c1"), tel_full(Dialing, "c2", "5002", None)]);
        assert_eq!((summary(&row), row.other_dn.as_deref()), (("dialing", Some("c2")), Some("5002")));
        assert_eq!(states(&row), [("c1", "held"), ("c2", "dialing")]);
    }

    #[test]
    fn t4_established_answers_ringing_dialing_held_or_unseen_call() {
        for before in [vec![tel(Ringing, "c1")], vec![tel(Dialing, "c1")], vec![tel(Ringing, "c1"), tel(Held, "c1")], vec![]] {
            let mut events = before.clone();
            events.push(tel(Established, "c1"));
            let row = play(registered(), &events);
            assert_eq!(summary(&row), ("talking", Some("c1")), "{before:?}");
        }
        let row = play(registered(), &[tel(Established, "c1"), tel(Ringing, "c2"), tel(Established, "c2")]);
        assert_eq!(states(&row), [("c1", "held"), ("c2", "talking")], "answering a second call holds the first");
    }

    #[test]
    fn t5_held_puts_the_call_on_hold() {
        let row = play(registered(), &[tel(Ringing, "c1"), tel(Established, "c1"), tel(Held, "c1")]);
        assert_eq!((summary(&row), row.state_since_ms), (("held", Some("c1")), 30));
        let row = play(row, &[tel(Ringing, "c2")]);
        assert_eq!(summary(&row), ("ringing", Some("c2")), "a ringing call outranks a held one");
    }

    #[test]
    fn t6_held_on_an_unseen_call_adds_it_held() {
        let row = play(registered(), &[tel(Held, "c9")]);
        assert_eq!(summary(&row), ("held", Some("c9")));
    }

    #[test]
    fn t7_retrieved_takes_the_call_back_and_holds_the_other() {
        let row = play(
            registered(),
            &[
                tel(Established, "c1"),
                tel_full(Dialing, "c2", "5002", None),
                tel_full(Established, "c2", "5002", None),
                tel(Retrieved, "c1"),
            ],
        );
        assert_eq!(summary(&row), ("talking", Some("c1")));
        assert_eq!(states(&row), [("c1", "talking"), ("c2", "held")]);
    }

    #[test]
    fn t8_party_changed_updates_the_other_party() {
        let row = play(registered(), &[tel(Established, "c1"), tel_full(PartyChanged, "c1", "5003", None)]);
        assert_eq!((summary(&row), row.other_dn.as_deref()), (("talking", Some("c1")), Some("5003")));
    }

    #[test]
    fn t9_party_changed_with_previous_connid_renames_the_call() {
        let row = play(registered(), &[tel(Established, "c1"), tel_full(PartyChanged, "c2", "5003", Some("c1"))]);
        assert_eq!((summary(&row), row.other_dn.as_deref()), (("talking", Some("c2")), Some("5003")));
        assert_eq!(states(&row), [("c2", "talking")]);
    }

    #[test]
    fn t10_party_changed_merges_a_call_the_dn_already_has() {
        let row = play(
            registered(),
            &[tel(Established, "c1"), tel_full(Dialing, "c2", "5002", None), tel_full(PartyChanged, "c2", "5002", Some("c1"))],
        );
        assert_eq!(states(&row), [("c2", "dialing")]);
    }

    #[test]
    fn t11_released_removes_the_call_and_the_next_one_shows() {
        let row = play(registered(), &[tel(Established, "c1"), tel(Ringing, "c2"), tel(Released, "c1")]);
        assert_eq!(summary(&row), ("ringing", Some("c2")));
        let row = play(row, &[tel(Released, "c2")]);
        assert_eq!((summary(&row), row.other_dn.clone(), row.state_since_ms), (("idle", None), None, 10));
    }

    #[test]
    fn t12_released_of_another_call_changes_nothing() {
        let row = play(registered(), &[tel(Established, "c1"), tel(Released, "c7")]);
        assert_eq!(summary(&row), ("talking", Some("c1")));
    }

    #[test]
    fn t13_abandoned_while_ringing_removes_the_call() {
        let row = play(registered(), &[tel(Ringing, "c1"), tel(Abandoned, "c1")]);
        assert_eq!(summary(&row), ("idle", None));
    }

    #[test]
    fn t14_telephony_on_an_unknown_dn_is_ignored() {
        let row = apply_call(DnState::new(1, "5001"), &ev("m1", 5, tel(Ringing, "c1")));
        assert_eq!((summary(&row), row.calls.len()), (("unknown", None), 0));
    }

    #[test]
    fn t15_telephony_captured_by_a_monitor_that_does_not_hold_the_dn_is_ignored() {
        let row = apply_call(registered(), &ev("m2", 5, tel(Ringing, "c1")));
        assert_eq!((summary(&row), row.calls.len()), (("idle", None), 0));
    }

    #[test]
    fn l1_registered_makes_an_unknown_dn_idle() {
        let row = registered();
        assert_eq!((summary(&row), row.registered_by.as_deref(), row.link.as_str()), (("idle", None), Some("m1"), "up"));
    }

    #[test]
    fn l2_registered_by_another_monitor_keeps_the_calls() {
        let row = play(registered(), &[tel(Established, "c1")]);
        let row = apply_call(row, &ev("m2", 50, CallBody::DnRegistered(DnAddress { dn: "5001".into() })));
        assert_eq!((summary(&row), row.registered_by.as_deref()), (("talking", Some("c1")), Some("m2")));
    }

    #[test]
    fn l3_l4_unregistered_by_holder_only() {
        let row = play(registered(), &[tel(Established, "c1")]);
        let unreg = CallBody::DnUnregistered(DnAddress { dn: "5001".into() });
        let other = apply_call(row.clone(), &ev("m2", 50, unreg.clone()));
        assert_eq!(summary(&other), ("talking", Some("c1")));
        let own = apply_call(row, &ev("m1", 50, unreg));
        assert_eq!((summary(&own), own.calls.len(), own.registered_by.clone()), (("unknown", None), 0, None));
    }

    #[test]
    fn l5_l6_link_loss_marks_the_dn_unknown_only_for_its_monitor() {
        let row = play(registered(), &[tel(Ringing, "c1")]);
        let lost = CallBody::LinkDisconnected(LinkDisconnected { reason: "x".into(), events_lost: None });
        let other = apply_call(row.clone(), &ev("m2", 2, lost.clone()));
        assert_eq!((other.call_state.as_str(), other.registered_by.as_deref()), ("ringing", Some("m1")));
        let own = apply_call(row, &ev("m1", 2, lost));
        assert_eq!((own.call_state.as_str(), own.registered_by, own.link.as_str(), own.calls.len()), ("unknown", None, "down", 0));
    }

    #[test]
    fn l7_link_up_does_not_make_an_unknown_dn_known() {
        let lost =
            apply_call(registered(), &ev("m1", 2, CallBody::LinkDisconnected(LinkDisconnected { reason: "x".into(), events_lost: None })));
        let up = apply_call(lost, &ev("m1", 3, CallBody::LinkConnected(LinkConnected { endpoint: "h:1".into() })));
        assert_eq!((up.call_state.as_str(), up.link.as_str()), ("unknown", "up"));
        let again = apply_call(up, &ev("m1", 4, CallBody::DnRegistered(DnAddress { dn: "5001".into() })));
        assert_eq!((again.call_state.as_str(), again.state_since_ms), ("idle", 4));
    }

    fn agent(kind: AgentEventKind, reason: Option<&str>) -> CallBody {
        CallBody::Agent(Agent { kind, dn: "5001".into(), agent_id: "a1".into(), reason: reason.map(str::to_string) })
    }

    #[test]
    fn a1_to_a6_agent_states() {
        use AgentEventKind as K;
        type Step<'a> = (K, Option<&'a str>, &'a str, Option<&'a str>, i64);
        let steps: [Step; 7] = [
            (K::Login, None, "not_ready", None, 1),
            (K::Ready, None, "ready", None, 2),
            (K::NotReady, Some("lunch"), "not_ready", Some("lunch"), 3),
            (K::NotReady, Some("lunch"), "not_ready", Some("lunch"), 3),
            (K::AfterCallWork, None, "after_call_work", None, 5),
            (K::Ready, None, "ready", None, 6),
            (K::Logout, None, "logged_out", None, 7),
        ];
        let mut row = registered();
        for (i, (kind, reason, state, want_reason, since)) in steps.into_iter().enumerate() {
            row = apply_call(row, &ev("m1", i as i64 + 1, agent(kind, reason)));
            check(&row).unwrap();
            assert_eq!(
                (row.agent_state.as_deref(), row.agent_reason.as_deref(), row.agent_since_ms, row.agent_id.as_deref()),
                (Some(state), want_reason, since, Some("a1")),
                "step {i}"
            );
        }
    }

    #[test]
    fn status_shows_calls_first_then_the_agent() {
        let row = apply_call(registered(), &ev("m1", 5, agent(AgentEventKind::AfterCallWork, None)));
        assert_eq!(status(&row), ("after_call_work", 5));
        let row = play(row, &[tel(Ringing, "c1")]);
        assert_eq!(status(&row), ("ringing", 10));
        assert_eq!(status(&DnState::new(1, "5001")).0, "unknown");
    }

    #[test]
    fn config_and_call_events_commute() {
        use netwatch_schemas::config::Dn;
        let created = ConfigChange::DnCreated(Dn { dbid: 7, tserver: 1, number: "5001".into(), dn_type: DnType::AcdPosition });
        let calls = [tel(Ringing, "c1"), tel(Established, "c1")];
        let config_first = play(apply_config(|_, _| Some(registered()), &created, 5).unwrap(), &calls);
        let calls_first = apply_config(|_, _| Some(play(registered(), &calls)), &created, 5).unwrap();
        assert_eq!(config_first, calls_first);
    }

    #[test]
    fn c1_c2_configuration_sets_configured_only() {
        use netwatch_schemas::config::{Dn, DnRef};
        let talking = play(registered(), &[tel(Established, "c1")]);
        let created = ConfigChange::DnCreated(Dn { dbid: 7, tserver: 1, number: "5001".into(), dn_type: DnType::AcdPosition });
        let row = apply_config(|_, _| Some(talking.clone()), &created, 99).unwrap();
        assert_eq!((row.configured, row.dbid, row.call_state.as_str()), (true, Some(7), "talking"));
        let deleted = ConfigChange::DnDeleted(DnRef { dbid: 7, tserver: 1, number: "5001".into() });
        let row = apply_config(|_, _| Some(row), &deleted, 100).unwrap();
        assert_eq!((row.configured, row.call_state.as_str()), (false, "talking"));
    }

    fn any_event() -> impl Strategy<Value = CallBody> {
        let kind = proptest::sample::select(TEventKind::ALL.to_vec());
        let connid = prop_oneof![Just("c1"), Just("c2"), Just("c3")];
        let previous = proptest::option::of(prop_oneof![Just("c1"), Just("c2"), Just("c3")]);
        let telephony = (kind, connid, previous).prop_map(|(k, c, p)| tel_full(k, c, "+1555", p));
        let agent_kind = prop_oneof![
            Just(AgentEventKind::Login),
            Just(AgentEventKind::Logout),
            Just(AgentEventKind::Ready),
            Just(AgentEventKind::NotReady),
            Just(AgentEventKind::AfterCallWork)
        ];
        prop_oneof![
            6 => telephony,
            1 => (agent_kind, proptest::option::of(Just("break"))).prop_map(|(k, r)| agent(k, r)),
            1 => Just(CallBody::DnRegistered(DnAddress { dn: "5001".into() })),
            1 => Just(CallBody::DnUnregistered(DnAddress { dn: "5001".into() })),
            1 => Just(CallBody::LinkDisconnected(LinkDisconnected { reason: "x".into(), events_lost: None })),
            1 => Just(CallBody::LinkConnected(LinkConnected { endpoint: "h:1".into() })),
        ]
    }

    proptest! {
        /// Whatever events arrive, in whatever order, from whichever monitor, the row is
        /// a possible state.
        #[test]
        fn no_sequence_of_events_yields_an_impossible_state(
            events in proptest::collection::vec((any_event(), prop_oneof![Just("m1"), Just("m2")], 0i64..1000), 0..60)
        ) {
            let mut row = DnState::new(1, "5001");
            for (body, monitor, at) in events {
                row = apply_call(row, &ev(monitor, at, body.clone()));
                prop_assert!(check(&row).is_ok(), "after {:?}: {:?} in {:?}", body, check(&row), row);
            }
        }
    }
}
