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
    /// Consultation (two-step transfer or conference, first step): `from`, talking on
    /// `of`, holds it and dials `to` on a new call named `call`.
    Consult {
        call: String,
        of: String,
        from: String,
        to: String,
        #[serde(default)]
        connid: Option<String>,
    },
    /// Two-step transfer, second step: the consultation `call` was answered; its
    /// originator leaves both calls and the consulted party takes its place on the first.
    CompleteTransfer {
        call: String,
    },
    /// Conference, second step: the consulted party joins the first call, whose
    /// originator takes it back from hold.
    CompleteConference {
        call: String,
    },
    /// The call ends (either side hangs up); with `dn`, only that party leaves it (a
    /// conference goes on while two parties remain).
    Release {
        call: String,
        #[serde(default)]
        dn: Option<String>,
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
    /// Parties that joined by a conference.
    extra: Vec<String>,
    established: BTreeSet<String>,
    held: BTreeSet<String>,
    /// For a consultation: the name of the call it consults on.
    consult_of: Option<String>,
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
            call_type: Some(self.call_type),
            other_dn: Some(self.other(dn).to_string()),
            third_party_dn: third_party.map(str::to_string),
            previous_connid: None,
        }
    }

    /// Every party on the call.
    fn parties(&self) -> Vec<String> {
        let mut all = vec![self.a.clone(), self.b.clone()];
        all.extend(self.extra.iter().cloned());
        all
    }

    /// `old` leaves the ends of the call and `new` takes its place.
    fn replace(&mut self, old: &str, new: &str) {
        for end in [&mut self.a, &mut self.b] {
            if end == old {
                *end = new.to_string();
            }
        }
        self.established.remove(old);
        self.held.remove(old);
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
                let c = SimCall {
                    connid,
                    call_type,
                    a: from.clone(),
                    b: to.clone(),
                    extra: Vec::new(),
                    established: BTreeSet::new(),
                    held: BTreeSet::new(),
                    consult_of: None,
                };
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
            Action::Consult { call, of, from, to, connid } => {
                if self.calls.contains_key(call) {
                    return Err(format!("call {call} already exists"));
                }
                let x = self.call_mut(of)?;
                if !x.established.contains(from) || x.held.contains(from) || !is_internal(from) {
                    return Err(format!("call {of}: {from} is not talking on it"));
                }
                if x.parties().contains(to) || to == from {
                    return Err(format!("call {of}: {to} is already on it"));
                }
                x.held.insert(from.clone());
                out.push(E::EventHeld(x.info(from, None)));
                let connid = connid.clone().unwrap_or_else(|| {
                    self.next_connid += 1;
                    format!("{:016x}", self.connid_base.wrapping_add(self.next_connid))
                });
                let y = SimCall {
                    connid,
                    call_type: CallType::Consult,
                    a: from.clone(),
                    b: to.clone(),
                    extra: Vec::new(),
                    established: BTreeSet::new(),
                    held: BTreeSet::new(),
                    consult_of: Some(of.clone()),
                };
                out.push(E::EventDialing(y.info(from, None)));
                if is_internal(to) {
                    out.push(E::EventRinging(y.info(to, None)));
                }
                self.calls.insert(call.clone(), y);
            }
            Action::CompleteTransfer { call } | Action::CompleteConference { call } => {
                let conference = matches!(action, Action::CompleteConference { .. });
                let y = self.call(call)?.clone();
                let of = y.consult_of.clone().ok_or_else(|| format!("call {call} is not a consultation"))?;
                if !y.established.contains(&y.b) {
                    return Err(format!("call {call}: the consultation is not answered"));
                }
                let (from, target) = (y.a.clone(), y.b.clone());
                let x = self.call_mut(&of)?;
                out.push(E::EventReleased(y.info(&from, None)));
                let far = x.other(&from).to_string();
                if conference {
                    x.held.remove(&from);
                    out.push(E::EventRetrieved(x.info(&from, None)));
                    x.extra.push(target.clone());
                } else {
                    out.push(E::EventReleased(x.info(&from, Some(&target))));
                    x.replace(&from, &target);
                }
                x.established.insert(target.clone());
                if is_internal(&target) {
                    let mut changed = x.info(&target, Some(&from));
                    changed.other_dn = Some(far);
                    changed.previous_connid = Some(y.connid.clone());
                    out.push(E::EventPartyChanged(changed));
                }
                self.calls.remove(call);
            }
            Action::Release { call, dn: None } => {
                let c = self.call(call)?;
                for dn in c.parties() {
                    if is_internal(&dn) {
                        out.push(E::EventReleased(c.info(&dn, None)));
                    }
                }
                self.calls.remove(call);
            }
            Action::Release { call, dn: Some(dn) } => {
                let c = self.call_mut(call)?;
                if !c.parties().contains(dn) {
                    return Err(format!("call {call}: {dn} is not on it"));
                }
                if c.extra.is_empty() {
                    return self.apply(&Action::Release { call: call.clone(), dn: None });
                }
                out.push(E::EventReleased(c.info(dn, None)));
                if let Some(i) = c.extra.iter().position(|p| p == dn) {
                    c.extra.remove(i);
                } else if let Some(next) = c.extra.pop() {
                    c.replace(dn, &next);
                    c.established.insert(next);
                }
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
    body.telephony().map(|(kind, _)| kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(events: &[TEventBody]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                let v = serde_json::to_value(e).unwrap();
                format!("{}@{}", v["event"].as_str().unwrap(), e.dn().unwrap())
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
        assert_eq!(names(&m.apply(&Action::Release { call: "A".into(), dn: None }).unwrap()), ["EventReleased@5001"]);
        assert_eq!(m.active_calls(), 0);
    }

    #[test]
    fn internal_call_reports_on_both_dns() {
        let mut m = CallModel::new(0);
        let ev = m.apply(&call("B", "5001", "5002")).unwrap();
        assert_eq!(names(&ev), ["EventDialing@5001", "EventRinging@5002"]);
        let TEventBody::EventRinging(info) = &ev[1] else { panic!() };
        assert_eq!((info.call_type, info.other_dn.as_deref()), (Some(CallType::Internal), Some("5001")));
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
        assert_eq!(names(&m.apply(&Action::Release { call: "D".into(), dn: None }).unwrap()), ["EventReleased@5002"]);
    }

    fn consult(call: &str, of: &str, from: &str, to: &str) -> Action {
        Action::Consult { call: call.into(), of: of.into(), from: from.into(), to: to.into(), connid: Some(format!("c-{call}")) }
    }

    /// The two-step transfer of docs/cti-link.md ("Call flows"), event by event.
    #[test]
    fn two_step_transfer_follows_the_documented_flow() {
        let mut m = CallModel::new(0);
        m.apply(&call("X", "+15550100", "5001")).unwrap();
        m.apply(&Action::Answer { call: "X".into() }).unwrap();
        assert_eq!(
            names(&m.apply(&consult("Y", "X", "5001", "5002")).unwrap()),
            ["EventHeld@5001", "EventDialing@5001", "EventRinging@5002"]
        );
        assert!(m.apply(&Action::CompleteTransfer { call: "Y".into() }).is_err(), "not before the consultation is answered");
        assert_eq!(names(&m.apply(&Action::Answer { call: "Y".into() }).unwrap()), ["EventEstablished@5002", "EventEstablished@5001"]);
        let ev = m.apply(&Action::CompleteTransfer { call: "Y".into() }).unwrap();
        assert_eq!(names(&ev), ["EventReleased@5001", "EventReleased@5001", "EventPartyChanged@5002"]);
        let TEventBody::EventReleased(y) = &ev[0] else { panic!() };
        assert_eq!((y.connid.as_str(), y.call_type), ("c-Y", Some(CallType::Consult)));
        let TEventBody::EventReleased(x) = &ev[1] else { panic!() };
        assert_eq!((x.connid.as_str(), x.third_party_dn.as_deref()), ("c-X", Some("5002")));
        let TEventBody::EventPartyChanged(p) = &ev[2] else { panic!() };
        assert_eq!(
            (p.connid.as_str(), p.previous_connid.as_deref(), p.other_dn.as_deref(), p.third_party_dn.as_deref()),
            ("c-X", Some("c-Y"), Some("+15550100"), Some("5001"))
        );
        assert_eq!(m.active_calls(), 1);
        assert_eq!(names(&m.apply(&Action::Release { call: "X".into(), dn: None }).unwrap()), ["EventReleased@5002"]);
    }

    /// The conference of docs/cti-link.md: the originator stays, the consulted party joins.
    #[test]
    fn conference_follows_the_documented_flow_and_parties_leave_one_by_one() {
        let mut m = CallModel::new(0);
        m.apply(&call("X", "+15550100", "5001")).unwrap();
        m.apply(&Action::Answer { call: "X".into() }).unwrap();
        m.apply(&consult("Y", "X", "5001", "5002")).unwrap();
        m.apply(&Action::Answer { call: "Y".into() }).unwrap();
        let ev = m.apply(&Action::CompleteConference { call: "Y".into() }).unwrap();
        assert_eq!(names(&ev), ["EventReleased@5001", "EventRetrieved@5001", "EventPartyChanged@5002"]);
        let leave = Action::Release { call: "X".into(), dn: Some("5001".into()) };
        assert_eq!(names(&m.apply(&leave).unwrap()), ["EventReleased@5001"]);
        assert_eq!(names(&m.apply(&Action::Release { call: "X".into(), dn: None }).unwrap()), ["EventReleased@5002"]);
        assert_eq!(m.active_calls(), 0);
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
