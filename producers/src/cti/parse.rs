//! The monitor's reading of server → client lines: exactly the forms of
//! docs/cti-link.md. Each message reads only the attributes its row lists, so an
//! attribute a row does not list is ignored whatever its value; a listed attribute that
//! is missing (when required) or of the wrong type makes the line unusable, with a reason.

use netwatch_schemas::calls::CallType;
use serde_json::{Map, Value};

use super::{AgentInfo, CallInfo, Message, Status, SwitchLinkInfo, TEvent, TEventBody, EVENT_NAMES, MESSAGE_TYPES};

/// Why a line is not a usable message (docs/cti-link.md, "Framing").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("the line is not UTF-8")]
    NotUtf8,
    #[error("the line is not a JSON object: {0}")]
    NotJson(String),
    #[error("the message has no string `type`")]
    NoType,
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("unknown event {name:?}")]
    UnknownEvent { name: String, seq: Option<u64> },
    #[error("{name}: {reason}")]
    BadAttributes { name: String, reason: String, seq: Option<u64> },
}

impl Unusable {
    /// A short label for counting unusable messages by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Unusable::NotUtf8 | Unusable::NotJson(_) => "not_json",
            Unusable::NoType => "no_type",
            Unusable::UnknownType(_) => "unknown_type",
            Unusable::UnknownEvent { .. } => "unknown_event",
            Unusable::BadAttributes { .. } => "bad_attributes",
        }
    }

    /// The `seq` of an unusable event, if it had a usable one: the event still took its
    /// place in the link's sequence.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Unusable::UnknownEvent { seq, .. } | Unusable::BadAttributes { seq, .. } => *seq,
            _ => None,
        }
    }
}

/// The attributes of one message, read by name.
struct Attrs<'a> {
    map: &'a Map<String, Value>,
    /// The message's name, for reasons.
    name: &'a str,
    seq: Option<u64>,
}

impl Attrs<'_> {
    fn bad(&self, reason: String) -> Unusable {
        Unusable::BadAttributes { name: self.name.to_string(), reason, seq: self.seq }
    }

    /// A listed attribute: `None` when absent or null.
    fn get(&self, a: &str) -> Option<&Value> {
        self.map.get(a).filter(|v| !v.is_null())
    }

    fn required<T>(&self, a: &str, read: impl Fn(&Self, &str) -> Result<Option<T>, Unusable>) -> Result<T, Unusable> {
        read(self, a)?.ok_or_else(|| self.bad(format!("missing required attribute `{a}`")))
    }

    fn string(&self, a: &str) -> Result<Option<String>, Unusable> {
        match self.get(a) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.bad(format!("`{a}` must be a string"))),
        }
    }

    fn int(&self, a: &str) -> Result<Option<i64>, Unusable> {
        match self.get(a) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| self.bad(format!("`{a}` must be an integer"))),
        }
    }

    /// An integer of at least 0 (references and counts).
    fn count(&self, a: &str) -> Result<Option<u64>, Unusable> {
        match self.int(a)? {
            Some(v) if v < 0 => Err(self.bad(format!("`{a}` must not be negative"))),
            v => Ok(v.map(|v| v as u64)),
        }
    }

    fn req_string(&self, a: &str) -> Result<String, Unusable> {
        self.required(a, Self::string)
    }

    fn req_count(&self, a: &str) -> Result<u64, Unusable> {
        self.required(a, Self::count)
    }
}

/// `call_type`: one of five names; any other string reads as `Unknown`.
fn call_type(name: &str) -> CallType {
    match name {
        "Inbound" => CallType::Inbound,
        "Outbound" => CallType::Outbound,
        "Internal" => CallType::Internal,
        "Consult" => CallType::Consult,
        _ => CallType::Unknown,
    }
}

/// Parse one line (without its `\n`; a trailing `\r` is allowed) into a message.
pub fn parse_message(line: &[u8]) -> Result<Message, Unusable> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|_| Unusable::NotUtf8)?;
    let value: Value = serde_json::from_str(text).map_err(|e| Unusable::NotJson(e.to_string()))?;
    let Value::Object(map) = value else { return Err(Unusable::NotJson("not an object".into())) };
    let Some(kind) = map.get("type").and_then(Value::as_str) else { return Err(Unusable::NoType) };
    if !MESSAGE_TYPES.contains(&kind) {
        return Err(Unusable::UnknownType(kind.to_string()));
    }
    let a = Attrs { map: &map, name: kind, seq: None };
    Ok(match kind {
        "Event" => return event(&map),
        "EventServerInfo" => {
            Message::EventServerInfo { ref_id: a.req_count("ref_id")?, server: a.string("server")?, time_ms: a.int("time_ms")? }
        }
        "EventRegistered" => {
            Message::EventRegistered { ref_id: a.req_count("ref_id")?, dn: a.req_string("dn")?, time_ms: a.int("time_ms")? }
        }
        "EventUnregistered" => {
            Message::EventUnregistered { ref_id: a.req_count("ref_id")?, dn: a.req_string("dn")?, time_ms: a.int("time_ms")? }
        }
        "EventError" => Message::EventError { ref_id: a.count("ref_id")?, code: a.required("code", Attrs::int)?, text: a.string("text")? },
        "EventStatus" => {
            let ref_id = a.req_count("ref_id")?;
            let status = a.required("status", |a, n| Ok(a.get(n).cloned()))?;
            let status: Status = serde_json::from_value(status).map_err(|e| a.bad(format!("`status`: {e}")))?;
            Message::EventStatus { ref_id, status }
        }
        _ => Message::EventLinksDropped { ref_id: a.req_count("ref_id")?, dropped: a.req_count("dropped")? },
    })
}

/// An event: `seq`, `time_ms`, `event`, then the attributes its row lists.
fn event(map: &Map<String, Value>) -> Result<Message, Unusable> {
    let name = map.get("event").and_then(Value::as_str);
    let head = Attrs { map, name: name.unwrap_or("Event"), seq: None };
    let seq = match head.count("seq")? {
        Some(s) if s >= 1 => Some(s),
        _ => None,
    };
    let name =
        name.ok_or_else(|| Unusable::BadAttributes { name: "Event".into(), reason: "missing string attribute `event`".into(), seq })?;
    if !EVENT_NAMES.contains(&name) {
        return Err(Unusable::UnknownEvent { name: name.to_string(), seq });
    }
    let a = Attrs { map, name, seq };
    let seq = match a.required("seq", Attrs::int)? {
        s if s >= 1 => s as u64,
        _ => return Err(a.bad("`seq` must be at least 1".into())),
    };
    let time_ms = a.required("time_ms", Attrs::int)?;
    // Optional attributes per row: third_party_dn, previous_connid (call_type and
    // other_dn are listed for every telephony event).
    let call = |third: bool, previous: bool| -> Result<CallInfo, Unusable> {
        Ok(CallInfo {
            dn: a.req_string("dn")?,
            connid: a.req_string("connid")?,
            call_type: a.string("call_type")?.map(|c| call_type(&c)),
            other_dn: a.string("other_dn")?,
            third_party_dn: if third { a.string("third_party_dn")? } else { None },
            previous_connid: if previous { a.string("previous_connid")? } else { None },
        })
    };
    let agent = |reason: bool| -> Result<AgentInfo, Unusable> {
        Ok(AgentInfo {
            dn: a.req_string("dn")?,
            agent_id: a.req_string("agent_id")?,
            reason: if reason { a.string("reason")? } else { None },
        })
    };
    let body = match name {
        "EventRinging" => TEventBody::EventRinging(call(true, false)?),
        "EventDialing" => TEventBody::EventDialing(call(false, false)?),
        "EventEstablished" => TEventBody::EventEstablished(call(true, false)?),
        "EventHeld" => TEventBody::EventHeld(call(false, false)?),
        "EventRetrieved" => TEventBody::EventRetrieved(call(false, false)?),
        "EventPartyChanged" => TEventBody::EventPartyChanged(call(true, true)?),
        "EventReleased" => TEventBody::EventReleased(call(true, false)?),
        "EventAbandoned" => TEventBody::EventAbandoned(call(false, false)?),
        "EventAgentLogin" => TEventBody::EventAgentLogin(agent(false)?),
        "EventAgentLogout" => TEventBody::EventAgentLogout(agent(false)?),
        "EventAgentReady" => TEventBody::EventAgentReady(agent(false)?),
        "EventAgentNotReady" => TEventBody::EventAgentNotReady(agent(true)?),
        "EventAgentAfterCallWork" => TEventBody::EventAgentAfterCallWork(agent(false)?),
        "EventLinkConnected" => TEventBody::EventLinkConnected(SwitchLinkInfo::default()),
        _ => TEventBody::EventLinkDisconnected(SwitchLinkInfo { reason: a.string("reason")? }),
    };
    Ok(Message::Event(Box::new(TEvent { seq, time_ms, body })))
}
