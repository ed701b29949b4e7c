//! The CTI link protocol between a monitor and a T-Server (the contract is
//! `docs/cti-link.md`).
//!
//! JSON lines over TCP: every message is one JSON object on one line, with a `type`
//! naming it after its T-Library counterpart. Requests carry a `ref_id` that the answer
//! echoes. [`parse_message`] accepts exactly the forms the document describes and says
//! why anything else is unusable.

use std::collections::BTreeMap;

use netwatch_schemas::calls::{AgentEventKind, CallType, TEventKind};
use serde::{Deserialize, Serialize};

mod parse;

pub use parse::{parse_message, Unusable};

/// Longest line either side accepts, without its `\n`; longer input means framing is lost.
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
    /// Take the simulated switch link down or up (simulator).
    RequestSwitchLink { ref_id: u64, connected: bool },
}

/// Attributes of a telephony event (ThisDN, ConnID, OtherDN, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CallInfo {
    pub dn: String,
    pub connid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_type: Option<CallType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_dn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub third_party_dn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_connid: Option<String>,
}

/// Attributes of an agent event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentInfo {
    pub dn: String,
    pub agent_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Attributes of a switch-link event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SwitchLinkInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
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
    /// Is the (simulated) switch link up?
    #[serde(default = "up")]
    pub switch_link: bool,
}

fn up() -> bool {
    true
}

/// Server to client: answers to requests and unsolicited events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum Message {
    EventServerInfo {
        ref_id: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        server: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        time_ms: Option<i64>,
    },
    EventRegistered {
        ref_id: u64,
        dn: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        time_ms: Option<i64>,
    },
    EventUnregistered {
        ref_id: u64,
        dn: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        time_ms: Option<i64>,
    },
    EventError {
        ref_id: Option<u64>,
        code: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
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
    /// A telephony, agent or switch-link event.
    Event(Box<TEvent>),
}

/// An event as the T-Server reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TEvent {
    /// Position of the event on this link, from 1.
    pub seq: u64,
    /// The T-Server's timestamp, ms since the epoch.
    pub time_ms: i64,
    #[serde(flatten)]
    pub body: TEventBody,
}

/// Telephony, agent and switch-link events, named as in T-Library.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
    EventLinkConnected(SwitchLinkInfo),
    EventLinkDisconnected(SwitchLinkInfo),
}

/// Every `type` a server may send, as the document lists them.
pub const MESSAGE_TYPES: [&str; 7] =
    ["EventServerInfo", "EventRegistered", "EventUnregistered", "EventError", "EventStatus", "EventLinksDropped", "Event"];

/// Every `event` name of the document's event table.
pub const EVENT_NAMES: [&str; 15] = [
    "EventRinging",
    "EventDialing",
    "EventEstablished",
    "EventHeld",
    "EventRetrieved",
    "EventPartyChanged",
    "EventReleased",
    "EventAbandoned",
    "EventAgentLogin",
    "EventAgentLogout",
    "EventAgentReady",
    "EventAgentNotReady",
    "EventAgentAfterCallWork",
    "EventLinkConnected",
    "EventLinkDisconnected",
];

/// The T-Library name of an event.
pub fn event_name(body: &TEventBody) -> &'static str {
    match body {
        TEventBody::EventRinging(_) => "EventRinging",
        TEventBody::EventDialing(_) => "EventDialing",
        TEventBody::EventEstablished(_) => "EventEstablished",
        TEventBody::EventHeld(_) => "EventHeld",
        TEventBody::EventRetrieved(_) => "EventRetrieved",
        TEventBody::EventPartyChanged(_) => "EventPartyChanged",
        TEventBody::EventReleased(_) => "EventReleased",
        TEventBody::EventAbandoned(_) => "EventAbandoned",
        TEventBody::EventAgentLogin(_) => "EventAgentLogin",
        TEventBody::EventAgentLogout(_) => "EventAgentLogout",
        TEventBody::EventAgentReady(_) => "EventAgentReady",
        TEventBody::EventAgentNotReady(_) => "EventAgentNotReady",
        TEventBody::EventAgentAfterCallWork(_) => "EventAgentAfterCallWork",
        TEventBody::EventLinkConnected(_) => "EventLinkConnected",
        TEventBody::EventLinkDisconnected(_) => "EventLinkDisconnected",
    }
}

/// What a T-Server event means for the `calls` topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capture {
    /// A telephony or agent event on one DN.
    Dn(netwatch_schemas::calls::CallBody),
    /// The T-Server's switch link came back.
    SwitchUp,
    /// The T-Server lost its switch link, for this reason.
    SwitchDown(Option<String>),
}

impl TEventBody {
    /// The DN the event is reported on (none for switch-link events).
    pub fn dn(&self) -> Option<&str> {
        match self {
            TEventBody::EventRinging(c)
            | TEventBody::EventDialing(c)
            | TEventBody::EventEstablished(c)
            | TEventBody::EventHeld(c)
            | TEventBody::EventRetrieved(c)
            | TEventBody::EventPartyChanged(c)
            | TEventBody::EventReleased(c)
            | TEventBody::EventAbandoned(c) => Some(&c.dn),
            TEventBody::EventAgentLogin(a)
            | TEventBody::EventAgentLogout(a)
            | TEventBody::EventAgentReady(a)
            | TEventBody::EventAgentNotReady(a)
            | TEventBody::EventAgentAfterCallWork(a) => Some(&a.dn),
            TEventBody::EventLinkConnected(_) | TEventBody::EventLinkDisconnected(_) => None,
        }
    }

    /// The telephony kind and attributes, for telephony events.
    pub fn telephony(&self) -> Option<(TEventKind, &CallInfo)> {
        Some(match self {
            TEventBody::EventRinging(c) => (TEventKind::Ringing, c),
            TEventBody::EventDialing(c) => (TEventKind::Dialing, c),
            TEventBody::EventEstablished(c) => (TEventKind::Established, c),
            TEventBody::EventHeld(c) => (TEventKind::Held, c),
            TEventBody::EventRetrieved(c) => (TEventKind::Retrieved, c),
            TEventBody::EventPartyChanged(c) => (TEventKind::PartyChanged, c),
            TEventBody::EventReleased(c) => (TEventKind::Released, c),
            TEventBody::EventAbandoned(c) => (TEventKind::Abandoned, c),
            _ => return None,
        })
    }

    /// The agent kind and attributes, for agent events.
    pub fn agent_event(&self) -> Option<(AgentEventKind, &AgentInfo)> {
        Some(match self {
            TEventBody::EventAgentLogin(a) => (AgentEventKind::Login, a),
            TEventBody::EventAgentLogout(a) => (AgentEventKind::Logout, a),
            TEventBody::EventAgentReady(a) => (AgentEventKind::Ready, a),
            TEventBody::EventAgentNotReady(a) => (AgentEventKind::NotReady, a),
            TEventBody::EventAgentAfterCallWork(a) => (AgentEventKind::AfterCallWork, a),
            _ => return None,
        })
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

    /// What the event means for `calls` (a missing `call_type` is `Unknown`). The parser
    /// already left out attributes the document does not list for the event.
    pub fn capture(&self) -> Capture {
        use netwatch_schemas::calls::{Agent, CallBody, Telephony};
        if let Some((kind, c)) = self.telephony() {
            return Capture::Dn(CallBody::Telephony(Telephony {
                kind,
                dn: c.dn.clone(),
                connid: c.connid.clone(),
                call_type: c.call_type.unwrap_or(CallType::Unknown),
                other_dn: c.other_dn.clone(),
                third_party_dn: c.third_party_dn.clone(),
                previous_connid: c.previous_connid.clone(),
                cause: None,
                released_by: None,
            }));
        }
        if let Some((kind, a)) = self.agent_event() {
            return Capture::Dn(CallBody::Agent(Agent { kind, dn: a.dn.clone(), agent_id: a.agent_id.clone(), reason: a.reason.clone() }));
        }
        match self {
            TEventBody::EventLinkDisconnected(l) => Capture::SwitchDown(l.reason.clone()),
            _ => Capture::SwitchUp,
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
    use netwatch_schemas::calls::{CallBody, Telephony};

    fn ringing() -> Message {
        Message::Event(Box::new(TEvent {
            seq: 3,
            time_ms: 10,
            body: TEventBody::EventRinging(CallInfo {
                dn: "5001".into(),
                connid: "00a1".into(),
                call_type: Some(CallType::Inbound),
                other_dn: Some("+15550100".into()),
                ..Default::default()
            }),
        }))
    }

    #[test]
    fn events_are_flat_json_named_after_tlib() {
        let line = to_line(&ringing());
        assert_eq!(
            line,
            "{\"type\":\"Event\",\"seq\":3,\"time_ms\":10,\"event\":\"EventRinging\",\"dn\":\"5001\",\"connid\":\"00a1\",\"call_type\":\"Inbound\",\"other_dn\":\"+15550100\"}\n"
        );
        assert_eq!(parse_message(line.trim_end().as_bytes()).unwrap(), ringing());
    }

    #[test]
    fn requests_round_trip() {
        let r = Request::RequestRegisterAddress { ref_id: 7, dn: "5001".into() };
        assert_eq!(to_line(&r), "{\"type\":\"RequestRegisterAddress\",\"ref_id\":7,\"dn\":\"5001\"}\n");
        assert_eq!(serde_json::from_str::<Request>(to_line(&r).trim()).unwrap(), r);
    }

    #[test]
    fn a_released_without_call_type_is_usable_and_unknown_call_types_read_as_unknown() {
        let m = parse_message(br#"{"type":"Event","seq":1,"time_ms":5,"event":"EventReleased","dn":"5001","connid":"c1"}"#).unwrap();
        let Message::Event(e) = m else { panic!("an event") };
        let Capture::Dn(CallBody::Telephony(t)) = e.body.capture() else { panic!("telephony") };
        assert_eq!((t.call_type, t.other_dn), (CallType::Unknown, None));
        let m =
            parse_message(br#"{"type":"Event","seq":1,"time_ms":5,"event":"EventDialing","dn":"1","connid":"c","call_type":"Predictive"}"#)
                .unwrap();
        let Message::Event(e) = m else { panic!("an event") };
        assert_eq!(e.body.telephony().unwrap().1.call_type, Some(CallType::Unknown));
    }

    #[test]
    fn attributes_the_document_does_not_list_for_an_event_are_left_out() {
        let line = br#"{"type":"Event","seq":2,"time_ms":5,"event":"EventHeld","dn":"5001","connid":"c1","third_party_dn":5002,"previous_connid":"c0","x":1}"#;
        let Message::Event(e) = parse_message(line).unwrap() else { panic!("an event") };
        assert_eq!(
            e.body.capture(),
            Capture::Dn(CallBody::Telephony(Telephony {
                kind: TEventKind::Held,
                dn: "5001".into(),
                connid: "c1".into(),
                call_type: CallType::Unknown,
                other_dn: None,
                third_party_dn: None,
                previous_connid: None,
                cause: None,
                released_by: None,
            }))
        );
    }

    #[test]
    fn unusable_lines_say_why() {
        let cases: [(&[u8], &str); 9] = [
            (b"\xff\xfe", "not_json"),
            (b"hello", "not_json"),
            (b"[1,2]", "not_json"),
            (br#"{"ref_id":1}"#, "no_type"),
            (br#"{"type":"EventNonsense","ref_id":1}"#, "unknown_type"),
            (br#"{"type":"Event","seq":1,"time_ms":1,"event":"EventDNOutOfService","dn":"5001"}"#, "unknown_event"),
            (br#"{"type":"Event","seq":1,"time_ms":1,"event":"EventRinging","dn":"5001"}"#, "bad_attributes"),
            (br#"{"type":"Event","seq":0,"time_ms":1,"event":"EventLinkConnected"}"#, "bad_attributes"),
            (br#"{"type":"EventRegistered","dn":"5001"}"#, "bad_attributes"),
        ];
        for (line, kind) in cases {
            let err = parse_message(line).unwrap_err();
            assert_eq!(err.kind(), kind, "{:?}: {err}", String::from_utf8_lossy(line));
        }
        let err = parse_message(br#"{"type":"Event","seq":1,"time_ms":1,"event":"EventRinging","dn":"5001"}"#).unwrap_err();
        assert_eq!(err.to_string(), "EventRinging: missing required attribute `connid`");
        let err = parse_message(br#"{"type":"Event","seq":1,"time_ms":1,"event":"EventHeld","dn":"5001","connid":7}"#).unwrap_err();
        assert_eq!(err.to_string(), "EventHeld: `connid` must be a string");
    }

    #[test]
    fn seq_is_a_positive_signed_64_bit_integer() {
        let line = |seq: &str| format!(r#"{{"type":"Event","seq":{seq},"time_ms":1,"event":"EventLinkConnected"}}"#);
        assert!(parse_message(line("9223372036854775807").as_bytes()).is_ok());
        for bad in ["0", "-1", "9223372036854775808", "1.5", "\"1\""] {
            assert!(parse_message(line(bad).as_bytes()).is_err(), "seq {bad}");
        }
    }

    #[test]
    fn switch_link_events_are_events_with_a_sequence_number() {
        let m = parse_message(br#"{"type":"Event","seq":9,"time_ms":1,"event":"EventLinkDisconnected","reason":"pbx"}"#).unwrap();
        let Message::Event(e) = m else { panic!("an event") };
        assert_eq!((e.seq, e.body.capture()), (9, Capture::SwitchDown(Some("pbx".into()))));
        assert!(parse_message(br#"{"type":"EventLinkConnected","time_ms":1}"#).is_err(), "the top-level form is not the documented one");
    }
}
