//! `calls` topic: TLib-style events captured on CTI links. Key: T-Server id.

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};

use crate::codec::{member, optional_long, parse, unknown_member, CodecError, Event, Fields};
use crate::registry::SchemaKind;

/// Telephony event kinds, after Genesys T-Library (EventRinging, EventDialing, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TEventKind {
    Ringing,
    Dialing,
    Established,
    Held,
    Retrieved,
    PartyChanged,
    Released,
    Abandoned,
}

impl TEventKind {
    /// Every kind, in schema order.
    pub const ALL: [TEventKind; 8] = [
        TEventKind::Ringing,
        TEventKind::Dialing,
        TEventKind::Established,
        TEventKind::Held,
        TEventKind::Retrieved,
        TEventKind::PartyChanged,
        TEventKind::Released,
        TEventKind::Abandoned,
    ];
}

/// Call type as T-Library reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CallType {
    Unknown,
    Internal,
    Inbound,
    Outbound,
    Consult,
}

impl CallType {
    /// Every type, in schema order.
    pub const ALL: [CallType; 5] = [CallType::Unknown, CallType::Internal, CallType::Inbound, CallType::Outbound, CallType::Consult];
}

/// A telephony event on one DN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Telephony {
    pub kind: TEventKind,
    /// ThisDN: the DN the event is reported on.
    pub dn: String,
    pub connid: String,
    pub call_type: CallType,
    /// OtherDN: the other party (a DN or an outside number).
    #[serde(default)]
    pub other_dn: Option<String>,
    /// ThirdPartyDN: for transfers, the party that transferred the call.
    #[serde(default)]
    pub third_party_dn: Option<String>,
    /// For PartyChanged after a two-step transfer: the ConnID the call had before.
    #[serde(default)]
    pub previous_connid: Option<String>,
    /// Released/Abandoned: why the call ended here, when the server says (v3): `busy`,
    /// `failed`, `canceled`, `lost` (docs/sip.md). `None` for a normal hang-up.
    #[serde(default)]
    pub cause: Option<String>,
    /// Released/Abandoned: the party that ended the call (a DN or number), or `server`
    /// (v3).
    #[serde(default)]
    pub released_by: Option<String>,
}

/// Agent state event kinds (EventAgentLogin, EventAgentReady, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AgentEventKind {
    Login,
    Logout,
    Ready,
    NotReady,
    AfterCallWork,
}

impl AgentEventKind {
    /// Every kind, in schema order.
    pub const ALL: [AgentEventKind; 5] =
        [AgentEventKind::Login, AgentEventKind::Logout, AgentEventKind::Ready, AgentEventKind::NotReady, AgentEventKind::AfterCallWork];
}

/// An agent event on the DN the agent is logged in at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub kind: AgentEventKind,
    pub dn: String,
    pub agent_id: String,
    /// Not-ready reason code, if any.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The CTI link to a T-Server came up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkConnected {
    pub endpoint: String,
}

/// The CTI link to a T-Server went down.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkDisconnected {
    pub reason: String,
    /// Events read on the link session that could not be appended (v2; `None` before).
    #[serde(default)]
    pub events_lost: Option<i64>,
}

/// A DN registration change on a link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnAddress {
    pub dn: String,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CallBody {
    LinkConnected(LinkConnected),
    LinkDisconnected(LinkDisconnected),
    DnRegistered(DnAddress),
    DnUnregistered(DnAddress),
    Telephony(Telephony),
    Agent(Agent),
}

/// A value of the `calls` topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEvent {
    pub event_id: String,
    pub tserver: i32,
    /// Monitor that captured the event.
    pub monitor: String,
    /// Link session id: new on every connect.
    pub session: String,
    /// The T-Server's own timestamp, ms since the epoch.
    pub server_time_ms: i64,
    /// The T-Server's sequence number of the event on this link session (CTI `seq`);
    /// `None` for events the monitor made itself and before schema v2.
    pub link_seq: Option<i64>,
    pub body: CallBody,
}

impl Event for CallEvent {
    const KIND: SchemaKind = SchemaKind::Calls;
    const UNION_FIELD: &'static str = "body";

    fn head(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("event_id", Value::String(self.event_id.clone())),
            ("tserver", Value::Int(self.tserver)),
            ("monitor", Value::String(self.monitor.clone())),
            ("session", Value::String(self.session.clone())),
            ("server_time_ms", Value::Long(self.server_time_ms)),
            ("link_seq", optional_long(self.link_seq)),
        ]
    }

    fn member(&self) -> Result<(&'static str, Value), CodecError> {
        match &self.body {
            CallBody::LinkConnected(b) => member("LinkConnected", b),
            CallBody::LinkDisconnected(b) => member("LinkDisconnected", b),
            CallBody::DnRegistered(b) => member("DnRegistered", b),
            CallBody::DnUnregistered(b) => member("DnUnregistered", b),
            CallBody::Telephony(b) => member("Telephony", b),
            CallBody::Agent(b) => member("Agent", b),
        }
    }

    fn from_parts(head: &mut Fields, name: &str, value: &Value) -> Result<Self, CodecError> {
        let body = match name {
            "LinkConnected" => CallBody::LinkConnected(parse(value)?),
            "LinkDisconnected" => CallBody::LinkDisconnected(parse(value)?),
            "DnRegistered" => CallBody::DnRegistered(parse(value)?),
            "DnUnregistered" => CallBody::DnUnregistered(parse(value)?),
            "Telephony" => CallBody::Telephony(parse(value)?),
            "Agent" => CallBody::Agent(parse(value)?),
            other => return Err(unknown_member(Self::KIND, other)),
        };
        Ok(CallEvent {
            event_id: head.string("event_id")?,
            tserver: head.int("tserver")?,
            monitor: head.string("monitor")?,
            session: head.string("session")?,
            server_time_ms: head.long("server_time_ms")?,
            link_seq: head.optional_long("link_seq")?,
            body,
        })
    }
}
