//! The CTI link protocol between a monitor and a T-Server (see `docs/cti-link.md`).
//!
//! JSON lines over TCP: every message is one JSON object on one line, with a `type`
//! naming it after its T-Library counterpart. Requests carry a `ref_id` that the
//! answer echoes.

use std::collections::BTreeMap;

use netwatch_schemas::calls::{AgentEventKind, CallType, TEventKind};
use serde::{Deserialize, Serialize};

/// Longest line either side accepts; longer input means framing is lost.
pub const MAX_LINE: usize = 64 * 1024;

/// Client to server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Request {
    /// First message on a link: who the client is.
    RequestOpen { ref_id: u64, client_name: String },
    /// Start receiving events of a DN.
    RequestRegisterAddress { ref_id: u64, dn: String },
    /// Stop receiving events of a DN.
    RequestUnregisterAddress { ref_id: u64, dn: String },
    /// Which client has registered which DN (simulator and test tooling).
    RequestStatus { ref_id: u64 },
    /// Close every other client's link at once, as a network failure would (simulator).
    RequestDropLinks { ref_id: u64 },
}

/// Attributes of a telephony event (ThisDN, ConnID, OtherDN, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallInfo {
    pub dn: String,
    pub connid: String,
    pub call_type: CallType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_dn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub third_party_dn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_connid: Option<String>,
}

/// Attributes of an agent event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub dn: String,
    pub agent_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the simulator knows about registrations, for tests and operators.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// DN → names of the clients that have it registered now.
    pub registrations: BTreeMap<String, Vec<String>>,
    /// Names of the connected clients.
    pub clients: Vec<String>,
    /// Times a DN was registered by a second client while another still had it.
    pub overlaps: u64,
    /// Scenario steps played so far and in all (scripted mode).
    pub steps_played: u64,
    pub steps_total: u64,
}

/// Server to client: answers to requests and unsolicited events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Message {
    EventServerInfo {
        ref_id: u64,
        server: String,
        time_ms: i64,
    },
    EventRegistered {
        ref_id: u64,
        dn: String,
        time_ms: i64,
    },
    EventUnregistered {
        ref_id: u64,
        dn: String,
        time_ms: i64,
    },
    EventError {
        ref_id: Option<u64>,
        code: u32,
        text: String,
    },
    EventStatus {
        ref_id: u64,
        status: Status,
    },
    /// Answer to `RequestDropLinks`: how many links were closed.
    EventLinksDropped {
        ref_id: u64,
        dropped: u64,
    },
    /// The T-Server's link to its switch.
    EventLinkConnected {
        time_ms: i64,
    },
    EventLinkDisconnected {
        time_ms: i64,
        reason: String,
    },
    /// A telephony or agent event on a registered DN.
    Event(Box<TEvent>),
}

/// A telephony or agent event as the T-Server reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TEvent {
    /// Sequence number on this link.
    pub seq: u64,
    /// The T-Server's timestamp, ms since the epoch.
    pub time_ms: i64,
    #[serde(flatten)]
    pub body: TEventBody,
}

/// Telephony and agent events, named as in T-Library.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum TEventBody {
    EventRinging(CallInfo),
    EventDialing(CallInfo),
    EventEstablished(CallInfo),
    EventHeld(CallInfo),
    EventRetrieved(CallInfo),
    EventPartyChanged(CallInfo),
    EventReleased(CallInfo),
    EventAbandoned(CallInfo),
    EventAgentLogin(AgentInfo),
    EventAgentLogout(AgentInfo),
    EventAgentReady(AgentInfo),
    EventAgentNotReady(AgentInfo),
    EventAgentAfterCallWork(AgentInfo),
}

impl TEventBody {
    /// The DN the event is reported on.
    pub fn dn(&self) -> &str {
        match self {
            TEventBody::EventRinging(c)
            | TEventBody::EventDialing(c)
            | TEventBody::EventEstablished(c)
            | TEventBody::EventHeld(c)
            | TEventBody::EventRetrieved(c)
            | TEventBody::EventPartyChanged(c)
            | TEventBody::EventReleased(c)
            | TEventBody::EventAbandoned(c) => &c.dn,
            TEventBody::EventAgentLogin(a)
            | TEventBody::EventAgentLogout(a)
            | TEventBody::EventAgentReady(a)
            | TEventBody::EventAgentNotReady(a)
            | TEventBody::EventAgentAfterCallWork(a) => &a.dn,
        }
    }

    /// A telephony event of this kind.
    pub fn call(kind: TEventKind, info: CallInfo) -> TEventBody {
        match kind {
            TEventKind::Ringing => TEventBody::EventRinging(info),
            TEventKind::Dialing => TEventBody::EventDialing(info),
            TEventKind::Established => TEventBody::EventEstablished(info),
            TEventKind::Held => TEventBody::EventHeld(info),
            TEventKind::Retrieved => TEventBody::EventRetrieved(info),
            TEventKind::PartyChanged => TEventBody::EventPartyChanged(info),
            TEventKind::Released => TEventBody::EventReleased(info),
            TEventKind::Abandoned => TEventBody::EventAbandoned(info),
        }
    }

    /// An agent event of this kind.
    pub fn agent(kind: AgentEventKind, info: AgentInfo) -> TEventBody {
        match kind {
            AgentEventKind::Login => TEventBody::EventAgentLogin(info),
            AgentEventKind::Logout => TEventBody::EventAgentLogout(info),
            AgentEventKind::Ready => TEventBody::EventAgentReady(info),
            AgentEventKind::NotReady => TEventBody::EventAgentNotReady(info),
            AgentEventKind::AfterCallWork => TEventBody::EventAgentAfterCallWork(info),
        }
    }

    /// The event as a `calls` topic body.
    pub fn to_call_body(&self) -> netwatch_schemas::calls::CallBody {
        use netwatch_schemas::calls::{Agent, CallBody, Telephony};
        let tel = |kind: TEventKind, c: &CallInfo| {
            CallBody::Telephony(Telephony {
                kind,
                dn: c.dn.clone(),
                connid: c.connid.clone(),
                call_type: c.call_type,
                other_dn: c.other_dn.clone(),
                third_party_dn: c.third_party_dn.clone(),
                previous_connid: c.previous_connid.clone(),
            })
        };
        let agent = |kind: AgentEventKind, a: &AgentInfo| {
            CallBody::Agent(Agent { kind, dn: a.dn.clone(), agent_id: a.agent_id.clone(), reason: a.reason.clone() })
        };
        match self {
            TEventBody::EventRinging(c) => tel(TEventKind::Ringing, c),
            TEventBody::EventDialing(c) => tel(TEventKind::Dialing, c),
            TEventBody::EventEstablished(c) => tel(TEventKind::Established, c),
            TEventBody::EventHeld(c) => tel(TEventKind::Held, c),
            TEventBody::EventRetrieved(c) => tel(TEventKind::Retrieved, c),
            TEventBody::EventPartyChanged(c) => tel(TEventKind::PartyChanged, c),
            TEventBody::EventReleased(c) => tel(TEventKind::Released, c),
            TEventBody::EventAbandoned(c) => tel(TEventKind::Abandoned, c),
            TEventBody::EventAgentLogin(a) => agent(AgentEventKind::Login, a),
            TEventBody::EventAgentLogout(a) => agent(AgentEventKind::Logout, a),
            TEventBody::EventAgentReady(a) => agent(AgentEventKind::Ready, a),
            TEventBody::EventAgentNotReady(a) => agent(AgentEventKind::NotReady, a),
            TEventBody::EventAgentAfterCallWork(a) => agent(AgentEventKind::AfterCallWork, a),
        }
    }
}

/// Encode a message as one line (with the trailing newline).
pub fn to_line<T: Serialize>(message: &T) -> String {
    // Serializing these plain types to JSON cannot fail.
    let mut line = serde_json::to_string(message).unwrap_or_default();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_flat_json_named_after_tlib() {
        let m = Message::Event(Box::new(TEvent {
            seq: 3,
            time_ms: 10,
            body: TEventBody::EventRinging(CallInfo {
                dn: "5001".into(),
                connid: "00a1".into(),
                call_type: CallType::Inbound,
                other_dn: Some("+15550100".into()),
                third_party_dn: None,
                previous_connid: None,
            }),
        }));
        let line = to_line(&m);
        assert_eq!(
            line,
            "{\"type\":\"Event\",\"seq\":3,\"time_ms\":10,\"event\":\"EventRinging\",\"dn\":\"5001\",\"connid\":\"00a1\",\"call_type\":\"Inbound\",\"other_dn\":\"+15550100\"}\n"
        );
        assert_eq!(serde_json::from_str::<Message>(line.trim()).unwrap(), m);
    }

    #[test]
    fn requests_round_trip() {
        let r = Request::RequestRegisterAddress { ref_id: 7, dn: "5001".into() };
        assert_eq!(to_line(&r), "{\"type\":\"RequestRegisterAddress\",\"ref_id\":7,\"dn\":\"5001\"}\n");
        assert_eq!(serde_json::from_str::<Request>(to_line(&r).trim()).unwrap(), r);
    }
}
