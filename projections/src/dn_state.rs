//! DN state: a pure fold of config and call events into one row per DN.

use netwatch_schemas::calls::{AgentEventKind, CallBody, CallEvent, TEventKind};
use netwatch_schemas::config::{ConfigChange, DnType};

use crate::rows::DnState;

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
/// Returns the DN key it concerns and the new row.
pub fn apply_config(current: impl FnOnce(i32, &str) -> Option<DnState>, change: &ConfigChange, at_ms: i64) -> Option<DnState> {
    match change {
        ConfigChange::DnCreated(d) | ConfigChange::DnUpdated(d) => {
            let mut row = current(d.tserver, &d.number).unwrap_or_else(|| DnState::new(d.tserver, &d.number));
            row.configured = true;
            row.dbid = Some(d.dbid);
            row.dn_type = Some(dn_type_name(d.dn_type));
            row.updated_ms = at_ms;
            Some(row)
        }
        ConfigChange::DnDeleted(d) => {
            let mut row = current(d.tserver, &d.number).unwrap_or_else(|| DnState::new(d.tserver, &d.number));
            row.configured = false;
            row.updated_ms = at_ms;
            Some(row)
        }
        ConfigChange::TServerCreated(_) | ConfigChange::TServerUpdated(_) | ConfigChange::TServerDeleted(_) => None,
    }
}

fn set_call_state(row: &mut DnState, state: &str, at: i64) {
    if row.call_state != state {
        row.call_state = state.to_string();
        row.state_since_ms = at;
    }
}

/// Fold a call event into one DN's row (one that [`target`] named).
pub fn apply_call(mut row: DnState, event: &CallEvent) -> DnState {
    let at = event.server_time_ms;
    row.updated_ms = at;
    match &event.body {
        CallBody::LinkConnected(_) => {
            row.link = "up".into();
        }
        CallBody::LinkDisconnected(_) => {
            // Only the monitor that had the DN can lose it; a late event from a monitor
            // that no longer has it changes nothing.
            if row.registered_by.as_deref() == Some(event.monitor.as_str()) {
                row.link = "down".into();
                row.registered_by = None;
                set_call_state(&mut row, "unknown", at);
                row.connid = None;
                row.other_dn = None;
            }
        }
        CallBody::DnRegistered(_) => {
            row.registered_by = Some(event.monitor.clone());
            row.link = "up".into();
            if row.call_state == "unknown" {
                set_call_state(&mut row, "idle", at);
            }
        }
        CallBody::DnUnregistered(_) => {
            if row.registered_by.as_deref() == Some(event.monitor.as_str()) {
                row.registered_by = None;
                set_call_state(&mut row, "unknown", at);
                row.connid = None;
                row.other_dn = None;
            }
        }
        CallBody::Telephony(t) => {
            let this_call = row.connid.as_deref().is_none_or(|c| c == t.connid);
            match t.kind {
                TEventKind::Dialing | TEventKind::Ringing | TEventKind::Established | TEventKind::Held | TEventKind::Retrieved => {
                    let state = match t.kind {
                        TEventKind::Dialing => "dialing",
                        TEventKind::Ringing => "ringing",
                        TEventKind::Held => "held",
                        _ => "talking",
                    };
                    set_call_state(&mut row, state, at);
                    row.connid = Some(t.connid.clone());
                    row.other_dn = t.other_dn.clone();
                }
                TEventKind::PartyChanged => {
                    if this_call {
                        row.other_dn = t.other_dn.clone();
                    }
                }
                TEventKind::Released | TEventKind::Abandoned => {
                    if this_call {
                        set_call_state(&mut row, "idle", at);
                        row.connid = None;
                        row.other_dn = None;
                    }
                }
            }
        }
        CallBody::Agent(a) => {
            let state = match a.kind {
                AgentEventKind::Login | AgentEventKind::NotReady => "not_ready",
                AgentEventKind::Ready => "ready",
                AgentEventKind::AfterCallWork => "after_call_work",
                AgentEventKind::Logout => "logged_out",
            };
            row.agent_state = Some(state.into());
            row.agent_id = Some(a.agent_id.clone());
            row.agent_reason = if a.kind == AgentEventKind::NotReady { a.reason.clone() } else { None };
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwatch_schemas::calls::{Agent, CallType, DnAddress, LinkDisconnected, Telephony};

    fn ev(monitor: &str, at: i64, body: CallBody) -> CallEvent {
        CallEvent { event_id: "e".into(), tserver: 1, monitor: monitor.into(), session: "s".into(), server_time_ms: at, body }
    }

    fn tel(kind: TEventKind, connid: &str) -> CallBody {
        CallBody::Telephony(Telephony {
            kind,
            dn: "5001".into(),
            connid: connid.into(),
            call_type: CallType::Inbound,
            other_dn: Some("+1555".into()),
            third_party_dn: None,
            previous_connid: None,
        })
    }

    #[test]
    fn a_call_moves_the_dn_through_its_states() {
        let mut row = apply_call(DnState::new(1, "5001"), &ev("m1", 1, CallBody::DnRegistered(DnAddress { dn: "5001".into() })));
        assert_eq!((row.call_state.as_str(), row.registered_by.as_deref(), row.link.as_str()), ("idle", Some("m1"), "up"));
        for (kind, state) in [
            (TEventKind::Ringing, "ringing"),
            (TEventKind::Established, "talking"),
            (TEventKind::Held, "held"),
            (TEventKind::Retrieved, "talking"),
        ] {
            row = apply_call(row, &ev("m1", 2, tel(kind, "c1")));
            assert_eq!(row.call_state, state);
            assert_eq!(row.connid.as_deref(), Some("c1"));
        }
        row = apply_call(row, &ev("m1", 9, tel(TEventKind::Released, "other-call")));
        assert_eq!(row.call_state, "talking", "releasing another call leaves this one");
        row = apply_call(row, &ev("m1", 10, tel(TEventKind::Released, "c1")));
        assert_eq!((row.call_state.as_str(), row.connid.as_deref(), row.state_since_ms), ("idle", None, 10));
    }

    #[test]
    fn link_loss_marks_the_dn_unknown_only_for_its_monitor() {
        let row = apply_call(DnState::new(1, "5001"), &ev("m1", 1, CallBody::DnRegistered(DnAddress { dn: "5001".into() })));
        let lost = CallBody::LinkDisconnected(LinkDisconnected { reason: "x".into() });
        let other = apply_call(row.clone(), &ev("m2", 2, lost.clone()));
        assert_eq!((other.call_state.as_str(), other.registered_by.as_deref()), ("idle", Some("m1")));
        let own = apply_call(row, &ev("m1", 2, lost));
        assert_eq!((own.call_state.as_str(), own.registered_by, own.link.as_str()), ("unknown", None, "down"));
    }

    #[test]
    fn agent_events_set_agent_state_and_reason() {
        let agent = |kind, reason: Option<&str>| {
            CallBody::Agent(Agent { kind, dn: "5001".into(), agent_id: "a1".into(), reason: reason.map(str::to_string) })
        };
        let mut row = apply_call(DnState::new(1, "5001"), &ev("m", 1, agent(AgentEventKind::Login, None)));
        assert_eq!(row.agent_state.as_deref(), Some("not_ready"));
        row = apply_call(row, &ev("m", 2, agent(AgentEventKind::NotReady, Some("lunch"))));
        assert_eq!((row.agent_state.as_deref(), row.agent_reason.as_deref()), (Some("not_ready"), Some("lunch")));
        row = apply_call(row, &ev("m", 3, agent(AgentEventKind::Ready, None)));
        assert_eq!((row.agent_state.as_deref(), row.agent_reason.as_deref()), (Some("ready"), None));
    }
}
