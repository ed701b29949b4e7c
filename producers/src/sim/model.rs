//! The simulated switch's call model: actions in, T-Library events out. Pure.

use std::collections::{BTreeSet, HashMap};

use netwatch_schemas::calls::{AgentEventKind, CallType, TEventKind};
use serde::{Deserialize, Serialize};

use crate::cti::{AgentInfo, CallInfo, TEventBody};

/// Something that happens on the switch. Numbers starting with `+` are outside
/// numbers; anything else is a DN of this T-Server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// `from` calls `to`; `call` names the call for later steps.
    Call {
        call: String,
        from: String,
        to: String,
        #[serde(default)]
        connid: Option<String>,
    },
    /// The ringing party answers.
    Answer {
        call: String,
    },
    /// The caller hangs up before anyone answered.
    Abandon {
        call: String,
    },
    /// `dn` puts the call on hold.
    Hold {
        call: String,
        dn: String,
    },
    /// `dn` takes the call off hold.
    Retrieve {
        call: String,
        dn: String,
    },
    /// Single-step transfer: `from` leaves the call and `to` starts ringing.
    Transfer {
        call: String,
        from: String,
        to: String,
    },
    /// The call ends (either side hangs up).
    Release {
        call: String,
    },
    Login {
        dn: String,
        agent: String,
    },
    Logout {
        dn: String,
    },
    Ready {
        dn: String,
    },
    NotReady {
        dn: String,
        #[serde(default)]
        reason: Option<String>,
    },
    AfterCallWork {
        dn: String,
    },
}

/// Is this a DN of the switch (not an outside number)?
pub fn is_internal(number: &str) -> bool {
    !number.starts_with('+')
}

#[derive(Clone, Debug)]
struct SimCall {
    connid: String,
    call_type: CallType,
    /// The two ends: originator and destination (after transfers, whoever holds them).
    a: String,
    b: String,
    established: BTreeSet<String>,
    held: BTreeSet<String>,
}

impl SimCall {
    fn other(&self, dn: &str) -> &str {
        if self.a == dn {
            &self.b
        } else {
            &self.a
        }
    }

    fn info(&self, dn: &str, third_party: Option<&str>) -> CallInfo {
        CallInfo {
            dn: dn.to_string(),
            connid: self.connid.clone(),
            call_type: self.call_type,
            other_dn: Some(self.other(dn).to_string()),
            third_party_dn: third_party.map(str::to_string),
            previous_connid: None,
        }
    }
}

/// Calls in progress and agents logged in.
#[derive(Debug, Default)]
pub struct CallModel {
    calls: HashMap<String, SimCall>,
    agents: HashMap<String, String>,
    next_connid: u64,
    connid_base: u64,
}

impl CallModel {
    /// A model whose generated ConnIDs start at `connid_base`.
    pub fn new(connid_base: u64) -> Self {
        CallModel { connid_base, ..Default::default() }
    }

    /// Calls in progress.
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Apply an action; the events it causes, in order, or why it is impossible now.
    pub fn apply(&mut self, action: &Action) -> Result<Vec<TEventBody>, String> {
        use TEventBody as E;
        let mut out = Vec::new();
        match action {
            Action::Call { call, from, to, connid } => {
                if self.calls.contains_key(call) {
                    return Err(format!("call {call} already exists"));
                }
                if from == to {
                    return Err(format!("call {call}: {from} cannot call itself"));
                }
                let call_type = match (is_internal(from), is_internal(to)) {
                    (true, true) => CallType::Internal,
                    (false, true) => CallType::Inbound,
                    (true, false) => CallType::Outbound,
                    (false, false) => return Err(format!("call {call}: neither {from} nor {to} is a DN of this switch")),
                };
                let connid = connid.clone().unwrap_or_else(|| {
                    self.next_connid += 1;
                    format!("{:016x}", self.connid_base.wrapping_add(self.next_connid))
                });
                let c = SimCall { connid, call_type, a: from.clone(), b: to.clone(), established: BTreeSet::new(), held: BTreeSet::new() };
                if is_internal(from) {
                    out.push(E::EventDialing(c.info(from, None)));
                }
                if is_internal(to) {
                    out.push(E::EventRinging(c.info(to, None)));
                }
                self.calls.insert(call.clone(), c);
            }
            Action::Answer { call } => {
                let c = self.call_mut(call)?;
                if c.established.contains(&c.b) {
                    return Err(format!("call {call} is already answered"));
                }
                for dn in [c.b.clone(), c.a.clone()] {
                    if is_internal(&dn) && c.established.insert(dn.clone()) {
                        out.push(E::EventEstablished(c.info(&dn, None)));
                    }
                }
            }
            Action::Abandon { call } => {
                let c = self.call(call)?;
                if !c.established.is_empty() {
                    return Err(format!("call {call} was answered; use release"));
                }
                if is_internal(&c.b) {
                    out.push(E::EventAbandoned(c.info(&c.b, None)));
                }
                if is_internal(&c.a) {
                    out.push(E::EventReleased(c.info(&c.a, None)));
                }
                self.calls.remove(call);
            }
            Action::Hold { call, dn } => {
                let c = self.call_mut(call)?;
                if !c.established.contains(dn) || !c.held.insert(dn.clone()) {
                    return Err(format!("call {call}: {dn} is not talking on it"));
                }
                out.push(E::EventHeld(c.info(dn, None)));
            }
            Action::Retrieve { call, dn } => {
                let c = self.call_mut(call)?;
                if !c.held.remove(dn) {
                    return Err(format!("call {call}: {dn} does not hold it"));
                }
                out.push(E::EventRetrieved(c.info(dn, None)));
            }
            Action::Transfer { call, from, to } => {
                let c = self.call_mut(call)?;
                if !c.established.contains(from) || c.held.contains(from) {
                    return Err(format!("call {call}: {from} is not talking on it"));
                }
                if to == &c.a || to == &c.b {
                    return Err(format!("call {call}: {to} is already on it"));
                }
                out.push(E::EventReleased(c.info(from, Some(to))));
                c.established.remove(from);
                if c.a == *from {
                    c.a = to.clone();
                } else {
                    c.b = to.clone();
                }
                // The transferred-to party rings as the destination of the call.
                if c.a == *to {
                    std::mem::swap(&mut c.a, &mut c.b);
                }
                let remaining = c.a.clone();
                if is_internal(to) {
                    out.push(E::EventRinging(c.info(to, Some(from))));
                }
                if is_internal(&remaining) {
                    out.push(E::EventPartyChanged(c.info(&remaining, Some(from))));
                }
            }
            Action::Release { call } => {
                let c = self.call(call)?;
                for dn in [&c.a, &c.b] {
                    if is_internal(dn) {
                        out.push(E::EventReleased(c.info(dn, None)));
                    }
                }
                self.calls.remove(call);
            }
            Action::Login { dn, agent } => {
                if let Some(other) = self.agents.get(dn) {
                    return Err(format!("agent {other} is already logged in at {dn}"));
                }
                self.agents.insert(dn.clone(), agent.clone());
                out.push(E::agent(AgentEventKind::Login, AgentInfo { dn: dn.clone(), agent_id: agent.clone(), reason: None }));
            }
            Action::Logout { dn } => {
                let agent = self.agents.remove(dn).ok_or_else(|| format!("no agent is logged in at {dn}"))?;
                out.push(E::agent(AgentEventKind::Logout, AgentInfo { dn: dn.clone(), agent_id: agent, reason: None }));
            }
            Action::Ready { dn } => out.push(self.agent_event(AgentEventKind::Ready, dn, None)?),
            Action::NotReady { dn, reason } => out.push(self.agent_event(AgentEventKind::NotReady, dn, reason.clone())?),
            Action::AfterCallWork { dn } => out.push(self.agent_event(AgentEventKind::AfterCallWork, dn, None)?),
        }
        Ok(out)
    }

    fn agent_event(&self, kind: AgentEventKind, dn: &str, reason: Option<String>) -> Result<TEventBody, String> {
        let agent = self.agents.get(dn).ok_or_else(|| format!("no agent is logged in at {dn}"))?;
        Ok(TEventBody::agent(kind, AgentInfo { dn: dn.to_string(), agent_id: agent.clone(), reason }))
    }

    fn call(&self, call: &str) -> Result<&SimCall, String> {
        self.calls.get(call).ok_or_else(|| format!("no call named {call} is in progress"))
    }

    fn call_mut(&mut self, call: &str) -> Result<&mut SimCall, String> {
        self.calls.get_mut(call).ok_or_else(|| format!("no call named {call} is in progress"))
    }
}

/// Kind of a telephony event body (None for agent events).
pub fn kind_of(body: &TEventBody) -> Option<TEventKind> {
    match body.to_call_body() {
        netwatch_schemas::calls::CallBody::Telephony(t) => Some(t.kind),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(events: &[TEventBody]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                let v = serde_json::to_value(e).unwrap();
                format!("{}@{}", v["event"].as_str().unwrap(), e.dn())
            })
            .collect()
    }

    fn call(id: &str, from: &str, to: &str) -> Action {
        Action::Call { call: id.into(), from: from.into(), to: to.into(), connid: Some(format!("c-{id}")) }
    }

    #[test]
    fn inbound_call_rings_then_establishes_then_releases() {
        let mut m = CallModel::new(0);
        assert_eq!(names(&m.apply(&call("A", "+15550100", "5001")).unwrap()), ["EventRinging@5001"]);
        assert_eq!(names(&m.apply(&Action::Answer { call: "A".into() }).unwrap()), ["EventEstablished@5001"]);
        assert_eq!(names(&m.apply(&Action::Hold { call: "A".into(), dn: "5001".into() }).unwrap()), ["EventHeld@5001"]);
        assert_eq!(names(&m.apply(&Action::Retrieve { call: "A".into(), dn: "5001".into() }).unwrap()), ["EventRetrieved@5001"]);
        assert_eq!(names(&m.apply(&Action::Release { call: "A".into() }).unwrap()), ["EventReleased@5001"]);
        assert_eq!(m.active_calls(), 0);
    }

    #[test]
    fn internal_call_reports_on_both_dns() {
        let mut m = CallModel::new(0);
        let ev = m.apply(&call("B", "5001", "5002")).unwrap();
        assert_eq!(names(&ev), ["EventDialing@5001", "EventRinging@5002"]);
        let TEventBody::EventRinging(info) = &ev[1] else { panic!() };
        assert_eq!((info.call_type, info.other_dn.as_deref()), (CallType::Internal, Some("5001")));
        assert_eq!(names(&m.apply(&Action::Answer { call: "B".into() }).unwrap()), ["EventEstablished@5002", "EventEstablished@5001"]);
    }

    #[test]
    fn abandon_reports_on_the_ringing_dn() {
        let mut m = CallModel::new(0);
        m.apply(&call("C", "+15550101", "5003")).unwrap();
        assert_eq!(names(&m.apply(&Action::Abandon { call: "C".into() }).unwrap()), ["EventAbandoned@5003"]);
        assert!(m.apply(&Action::Answer { call: "C".into() }).is_err());
    }

    #[test]
    fn transfer_releases_the_transferrer_and_rings_the_target() {
        let mut m = CallModel::new(0);
        m.apply(&call("D", "+15550102", "5001")).unwrap();
        m.apply(&Action::Answer { call: "D".into() }).unwrap();
        let ev = m.apply(&Action::Transfer { call: "D".into(), from: "5001".into(), to: "5002".into() }).unwrap();
        assert_eq!(names(&ev), ["EventReleased@5001", "EventRinging@5002"]);
        let TEventBody::EventRinging(info) = &ev[1] else { panic!() };
        assert_eq!((info.other_dn.as_deref(), info.third_party_dn.as_deref()), (Some("+15550102"), Some("5001")));
        assert_eq!(names(&m.apply(&Action::Answer { call: "D".into() }).unwrap()), ["EventEstablished@5002"]);
        assert_eq!(names(&m.apply(&Action::Release { call: "D".into() }).unwrap()), ["EventReleased@5002"]);
    }

    #[test]
    fn impossible_actions_are_errors() {
        let mut m = CallModel::new(0);
        assert!(m.apply(&Action::Answer { call: "X".into() }).is_err());
        assert!(m.apply(&call("E", "+1", "+2")).is_err());
        assert!(m.apply(&Action::Ready { dn: "5001".into() }).is_err());
        m.apply(&call("E", "+15550103", "5001")).unwrap();
        assert!(m.apply(&Action::Hold { call: "E".into(), dn: "5001".into() }).is_err(), "cannot hold a ringing call");
    }
}
