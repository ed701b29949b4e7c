//! The JSON events Kamailio relays over evapi (`docs/sip-draft.md`, "Event schema").
//!
//! Fields are read by name (Kamailio does not keep `type` first). [`decode`] never fails:
//! an event type this module does not know is [`Decoded::Unknown`] (the caller counts
//! it and goes on), a payload that is not such an event is [`Decoded::Invalid`] with a
//! one-line reason.

use serde::Deserialize;

/// One evapi payload, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Sent to one client at connect (and on request): no `seq`.
    Hello(Hello),
    /// Every other known event.
    Event(Event),
    /// A well-formed event of a type not described in the draft.
    Unknown { type_name: String, seq: Option<u64> },
    /// Not JSON, or a known type with missing or mistyped fields.
    Invalid { reason: String },
}

/// `hello`: the instance and the last `seq` assigned when the client connected.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Hello {
    pub last_seq: u64,
    pub ts_ms: u64,
    pub instance: String,
    #[serde(default)]
    pub version: Option<String>,
}

/// An event with the common fields every event but `hello` carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// +1 per event of this instance, from 1.
    pub seq: u64,
    /// Kamailio's wall clock in milliseconds, non-decreasing with `seq`.
    pub ts_ms: u64,
    /// `<start time>-<random>`, new after every Kamailio restart.
    pub instance: String,
    pub body: Body,
}

#[derive(Deserialize)]
struct Common {
    seq: u64,
    ts_ms: u64,
    instance: String,
}

/// What happened, by `type`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    Offered(Offered),
    Ringing(Ringing),
    Established(Established),
    Hold(HoldChange),
    Retrieve(HoldChange),
    Released(Released),
    Failed(Failed),
    Cancel(Cancel),
    Register(Register),
    Unregister(Unregister),
    RegExpired(RegExpired),
}

/// Event types of [`Body`], as they appear in `type`.
const KNOWN_TYPES: [&str; 11] =
    ["offered", "ringing", "established", "hold", "retrieve", "released", "failed", "cancel", "register", "unregister", "reg_expired"];

/// Initial INVITE received (before the location lookup).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Offered {
    pub call_id: String,
    pub from_tag: String,
    /// From user.
    pub caller: String,
    /// Request-URI user as dialled.
    pub callee: String,
    #[serde(default)]
    pub from_uri: Option<String>,
    #[serde(default)]
    pub request_uri: Option<String>,
    /// `ip:port` the INVITE came from.
    #[serde(default)]
    pub src: Option<String>,
}

/// 18x to the initial INVITE.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Ringing {
    pub call_id: String,
    pub from_tag: String,
    #[serde(default)]
    pub to_tag: Option<String>,
    pub code: u16,
    #[serde(default)]
    pub reason: Option<String>,
    pub caller: String,
    pub callee: String,
}

/// 200 OK to the initial INVITE.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Established {
    pub call_id: String,
    pub from_tag: String,
    #[serde(default)]
    pub to_tag: Option<String>,
    pub code: u16,
    pub caller: String,
    pub callee: String,
    /// Answer time, unix seconds.
    #[serde(default)]
    pub start_ts: Option<u64>,
}

/// A party of the dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    Caller,
    Callee,
}

/// SDP direction of the re-INVITE that changed the hold state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Sendonly,
    Inactive,
    Recvonly,
    Sendrecv,
}

/// `hold` or `retrieve`: 2xx to a re-INVITE that changed what `by` asks for.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct HoldChange {
    pub call_id: String,
    /// The dialog's initial From tag, also when the callee sent the re-INVITE.
    pub from_tag: String,
    #[serde(default)]
    pub to_tag: Option<String>,
    pub direction: Direction,
    /// RFC 2543 hold (`c=0.0.0.0` with `sendrecv`).
    #[serde(default)]
    pub c_zero: bool,
    /// Who sent the re-INVITE: the party holding (or retrieving).
    pub by: Party,
    #[serde(default)]
    pub by_user: Option<String>,
    pub code: u16,
    pub caller: String,
    pub callee: String,
}

/// Who ended an established call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleasedBy {
    Caller,
    Callee,
    /// Dialog timeout or `dlg.end_dlg`: Kamailio sent the BYEs.
    Kamailio,
}

/// End of an established dialog.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Released {
    pub call_id: String,
    pub from_tag: String,
    #[serde(default)]
    pub to_tag: Option<String>,
    pub by: ReleasedBy,
    #[serde(default)]
    pub by_user: Option<String>,
    pub caller: String,
    pub callee: String,
    #[serde(default)]
    pub start_ts: Option<u64>,
    /// Whole seconds; use `ts_ms` for talk times.
    #[serde(default)]
    pub duration: Option<u64>,
}

/// Where a failure reply came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Sent by the callee.
    Callee,
    /// Generated by Kamailio (404 no registration, 408 timeout).
    Proxy,
}

/// Final reply ≥ 300 to the initial INVITE.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Failed {
    pub call_id: String,
    pub from_tag: String,
    pub code: u16,
    #[serde(default)]
    pub reason: Option<String>,
    /// The caller sent CANCEL (the code is then 487, or 408).
    pub canceled: bool,
    pub origin: Origin,
    pub caller: String,
    pub callee: String,
}

/// CANCEL from the caller; a `failed` with `canceled: true` follows.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Cancel {
    pub call_id: String,
    pub from_tag: String,
    pub caller: String,
    pub callee: String,
}

/// REGISTER that leaves a binding for this client (also every refresh).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Register {
    /// AoR (user part).
    pub user: String,
    #[serde(default)]
    pub to_uri: Option<String>,
    pub reg_call_id: String,
    pub contact: String,
    /// Seconds left.
    pub expires: u64,
    #[serde(default)]
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub user_agent: Option<String>,
    /// Bindings of the user after this REGISTER.
    pub contacts: u32,
}

/// REGISTER with Expires 0 (or `Contact: *`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Unregister {
    pub user: String,
    #[serde(default)]
    pub to_uri: Option<String>,
    pub reg_call_id: String,
    /// The contact removed, `*` for all.
    pub contact: String,
    pub expires: u64,
    /// Bindings of the user left.
    pub contacts: u32,
}

/// A binding expired (usrloc timer); other bindings of the user may remain.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RegExpired {
    pub user: String,
    pub contact: String,
    pub reg_call_id: String,
    #[serde(default)]
    pub expires_at: Option<u64>,
}

/// Decodes one evapi payload; never fails (see [`Decoded`]).
pub fn decode(payload: &[u8]) -> Decoded {
    let value: serde_json::Value = match serde_json::from_slice(payload) {
        Ok(value) => value,
        Err(error) => return Decoded::Invalid { reason: format!("payload is not JSON: {error}") },
    };
    let Some(type_name) = value.get("type").and_then(|t| t.as_str()) else {
        return Decoded::Invalid { reason: "payload has no string field \"type\"".to_string() };
    };
    if type_name == "hello" {
        return match Hello::deserialize(&value) {
            Ok(hello) => Decoded::Hello(hello),
            Err(error) => Decoded::Invalid { reason: format!("hello event: {error}") },
        };
    }
    if !KNOWN_TYPES.contains(&type_name) {
        return Decoded::Unknown { type_name: type_name.to_string(), seq: value.get("seq").and_then(|s| s.as_u64()) };
    }
    let common = match Common::deserialize(&value) {
        Ok(common) => common,
        Err(error) => return Decoded::Invalid { reason: format!("{type_name} event: {error}") },
    };
    match Body::deserialize(&value) {
        Ok(body) => Decoded::Event(Event { seq: common.seq, ts_ms: common.ts_ms, instance: common.instance, body }),
        Err(error) => Decoded::Invalid { reason: format!("{type_name} event (seq {}): {error}", common.seq) },
    }
}

impl Body {
    /// `call_id` and `from_tag` of a call event, `None` for registrations.
    pub fn call_key(&self) -> Option<(&str, &str)> {
        match self {
            Body::Offered(e) => Some((&e.call_id, &e.from_tag)),
            Body::Ringing(e) => Some((&e.call_id, &e.from_tag)),
            Body::Established(e) => Some((&e.call_id, &e.from_tag)),
            Body::Hold(e) | Body::Retrieve(e) => Some((&e.call_id, &e.from_tag)),
            Body::Released(e) => Some((&e.call_id, &e.from_tag)),
            Body::Failed(e) => Some((&e.call_id, &e.from_tag)),
            Body::Cancel(e) => Some((&e.call_id, &e.from_tag)),
            Body::Register(_) | Body::Unregister(_) | Body::RegExpired(_) => None,
        }
    }
}

/// Real events captured in `docs/sip-draft.md`, shared by the tests of this module.
#[cfg(test)]
pub(crate) mod samples {
    use super::{decode, Decoded, Event};

    pub const INSTANCE: &str = "1796283378-516903812";

    /// (a) answered, hold and retrieve by the caller, caller hangs up.
    pub const HOLD_CALL: [&str; 6] = [
        r#"{"type":"offered","call_id":"1-6035@127.0.0.1","from_tag":"6035SIPpTag001","caller":"5001","callee":"5002","from_uri":"sip:5001@127.0.0.1:5070","request_uri":"sip:5002@127.0.0.1:5070","src":"127.0.0.1:5091","seq":12,"ts_ms":1796283419705,"instance":"1796283378-516903812"}"#,
        r#"{"type":"ringing","call_id":"1-6035@127.0.0.1","from_tag":"6035SIPpTag001","to_tag":"6030SIPpTag011","code":180,"reason":"Ringing","caller":"5001","callee":"5002","seq":13,"ts_ms":1796283419705,"instance":"1796283378-516903812"}"#,
        r#"{"type":"established","call_id":"1-6035@127.0.0.1","from_tag":"6035SIPpTag001","to_tag":"6030SIPpTag011","code":200,"caller":"5001","callee":"5002","start_ts":1796283421,"seq":14,"ts_ms":1796283421709,"instance":"1796283378-516903812"}"#,
        r#"{"type":"hold","call_id":"1-6035@127.0.0.1","from_tag":"6035SIPpTag001","to_tag":"6030SIPpTag011","direction":"sendonly","by":"caller","by_user":"5001","code":200,"caller":"5001","callee":"5002","seq":15,"ts_ms":1796283424713,"instance":"1796283378-516903812"}"#,
        r#"{"type":"retrieve","call_id":"1-6035@127.0.0.1","from_tag":"6035SIPpTag001","to_tag":"6030SIPpTag011","direction":"sendrecv","by":"caller","by_user":"5001","code":200,"caller":"5001","callee":"5002","seq":16,"ts_ms":1796283426717,"instance":"1796283378-516903812"}"#,
        r#"{"type":"released","call_id":"1-6035@127.0.0.1","from_tag":"6035SIPpTag001","to_tag":"6030SIPpTag011","by":"caller","by_user":"5001","caller":"5001","callee":"5002","start_ts":1796283421,"duration":8,"seq":17,"ts_ms":1796283429720,"instance":"1796283378-516903812"}"#,
    ];

    /// (a') hold and retrieve by the callee.
    pub const HELD_BY_CALLEE: [&str; 2] = [
        r#"{"type":"hold","call_id":"1-5289@127.0.0.1","from_tag":"5289SIPpTag001","to_tag":"5285SIPpTag011","direction":"sendonly","by":"callee","by_user":"5002","code":200,"caller":"5001","callee":"5002","seq":9,"ts_ms":1796283407345,"instance":"1796283378-516903812"}"#,
        r#"{"type":"retrieve","call_id":"1-5289@127.0.0.1","from_tag":"5289SIPpTag001","to_tag":"5285SIPpTag011","direction":"sendrecv","by":"callee","by_user":"5002","code":200,"caller":"5001","callee":"5002","seq":10,"ts_ms":1796283409353,"instance":"1796283378-516903812"}"#,
    ];

    /// (b) busy.
    pub const BUSY: [&str; 2] = [
        r#"{"type":"offered","call_id":"1-6661@127.0.0.1","from_tag":"6661SIPpTag001","caller":"5001","callee":"5002","from_uri":"sip:5001@127.0.0.1:5070","request_uri":"sip:5002@127.0.0.1:5070","src":"127.0.0.1:5091","seq":18,"ts_ms":1796283431157,"instance":"1796283378-516903812"}"#,
        r#"{"type":"failed","call_id":"1-6661@127.0.0.1","from_tag":"6661SIPpTag001","code":486,"reason":"Busy Here","canceled":false,"origin":"callee","caller":"5001","callee":"5002","seq":19,"ts_ms":1796283431158,"instance":"1796283378-516903812"}"#,
    ];

    /// (c) cancelled while ringing.
    pub const CANCEL: [&str; 4] = [
        r#"{"type":"offered","call_id":"1-6809@127.0.0.1","from_tag":"6809SIPpTag001","caller":"5001","callee":"5002","from_uri":"sip:5001@127.0.0.1:5070","request_uri":"sip:5002@127.0.0.1:5070","src":"127.0.0.1:5091","seq":20,"ts_ms":1796283432088,"instance":"1796283378-516903812"}"#,
        r#"{"type":"ringing","call_id":"1-6809@127.0.0.1","from_tag":"6809SIPpTag001","to_tag":"6790SIPpTag011","code":180,"reason":"Ringing","caller":"5001","callee":"5002","seq":21,"ts_ms":1796283432090,"instance":"1796283378-516903812"}"#,
        r#"{"type":"cancel","call_id":"1-6809@127.0.0.1","from_tag":"6809SIPpTag001","caller":"5001","callee":"5002","seq":22,"ts_ms":1796283434096,"instance":"1796283378-516903812"}"#,
        r#"{"type":"failed","call_id":"1-6809@127.0.0.1","from_tag":"6809SIPpTag001","code":487,"reason":"Request Terminated","canceled":true,"origin":"callee","caller":"5001","callee":"5002","seq":23,"ts_ms":1796283434098,"instance":"1796283378-516903812"}"#,
    ];

    /// Cancelled, the callee never answered the CANCEL: 408 from Kamailio (other instance).
    pub const CANCEL_TIMEOUT: &str = r#"{"type":"failed","call_id":"1-32008@127.0.0.1","from_tag":"32008SIPpTag001","code":408,"reason":"Request Timeout","canceled":true,"origin":"proxy","caller":"5001","callee":"5002","seq":19,"ts_ms":1796283046208,"instance":"1796282963-1717088796"}"#;

    /// (d) released by the callee.
    pub const CALLEE_BYE: [&str; 2] = [
        r#"{"type":"established","call_id":"1-6859@127.0.0.1","from_tag":"6859SIPpTag001","to_tag":"6839SIPpTag011","code":200,"caller":"5001","callee":"5002","start_ts":1796283437,"seq":26,"ts_ms":1796283437028,"instance":"1796283378-516903812"}"#,
        r#"{"type":"released","call_id":"1-6859@127.0.0.1","from_tag":"6859SIPpTag001","to_tag":"6839SIPpTag011","by":"callee","by_user":"5002","caller":"5001","callee":"5002","start_ts":1796283437,"duration":3,"seq":27,"ts_ms":1796283440033,"instance":"1796283378-516903812"}"#,
    ];

    /// Callee not registered (404) and registered but not answering (408).
    pub const REJECTS: [&str; 2] = [
        r#"{"type":"failed","call_id":"1-7176@127.0.0.1","from_tag":"7176SIPpTag001","code":404,"reason":"Not Found","canceled":false,"origin":"proxy","caller":"5001","callee":"5099","seq":29,"ts_ms":1796283441153,"instance":"1796283378-516903812"}"#,
        r#"{"type":"failed","call_id":"1-7192@127.0.0.1","from_tag":"7192SIPpTag001","code":408,"reason":"Request Timeout","canceled":false,"origin":"proxy","caller":"5001","callee":"5002","seq":35,"ts_ms":1796283447603,"instance":"1796283378-516903812"}"#,
    ];

    /// Call ended over JSON-RPC.
    pub const RELEASED_BY_KAMAILIO: &str = r#"{"type":"released","call_id":"1-4903@127.0.0.1","from_tag":"4903SIPpTag001","to_tag":"4895SIPpTag011","by":"kamailio","caller":"5001","callee":"5002","start_ts":1796283380,"duration":1,"seq":5,"ts_ms":1796283381769,"instance":"1796283378-516903812"}"#;

    /// Register, unregister, short register, expiry.
    pub const REGISTRATIONS: [&str; 4] = [
        r#"{"user":"5002","to_uri":"sip:5002@127.0.0.1","reg_call_id":"1-4891@127.0.0.1","contact":"sip:5002@127.0.0.1:5092","expires_at":1796286978,"expires":3600,"user_agent":"netwatch-sipp-register","type":"register","contacts":1,"seq":1,"ts_ms":1796283378537,"instance":"1796283378-516903812"}"#,
        r#"{"user":"5002","to_uri":"sip:5002@127.0.0.1","reg_call_id":"1-7187@127.0.0.1","type":"unregister","contact":"sip:5002@127.0.0.1:5092","expires":0,"contacts":0,"seq":30,"ts_ms":1796283441782,"instance":"1796283378-516903812"}"#,
        r#"{"user":"5002","to_uri":"sip:5002@127.0.0.1","reg_call_id":"1-7190@127.0.0.1","contact":"sip:5002@127.0.0.1:5092","expires_at":1796283447,"expires":5,"user_agent":"netwatch-sipp-register","type":"register","contacts":1,"seq":33,"ts_ms":1796283442510,"instance":"1796283378-516903812"}"#,
        r#"{"type":"reg_expired","user":"5002","contact":"sip:5002@127.0.0.1:5092","reg_call_id":"1-7190@127.0.0.1","expires_at":1796283447,"seq":36,"ts_ms":1796283448039,"instance":"1796283378-516903812"}"#,
    ];

    /// Decodes a sample that must be a known event.
    pub fn event(json: &str) -> Event {
        match decode(json.as_bytes()) {
            Decoded::Event(event) => event,
            other => panic!("sample {json} decoded to {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::samples::*;
    use super::*;

    #[test]
    fn hello_of_the_draft() {
        let json = r#"{"type":"hello","last_seq":0,"ts_ms":1796283378350,"instance":"1796283378-516903812","version":"kamailio 5.6.3 (x86_64/linux) "}"#;
        assert_eq!(
            decode(json.as_bytes()),
            Decoded::Hello(Hello {
                last_seq: 0,
                ts_ms: 1_796_283_378_350,
                instance: INSTANCE.to_string(),
                version: Some("kamailio 5.6.3 (x86_64/linux) ".to_string()),
            })
        );
    }

    #[test]
    fn every_sample_of_the_draft_decodes() {
        let all = HOLD_CALL
            .iter()
            .chain(&HELD_BY_CALLEE)
            .chain(&BUSY)
            .chain(&CANCEL)
            .chain(&CALLEE_BYE)
            .chain(&REJECTS)
            .chain(&REGISTRATIONS)
            .chain([&CANCEL_TIMEOUT, &RELEASED_BY_KAMAILIO]);
        for json in all {
            let event = event(json);
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(Some(event.seq), value["seq"].as_u64(), "{json}");
            assert_eq!(Some(event.ts_ms), value["ts_ms"].as_u64(), "{json}");
            assert_eq!(Some(event.instance.as_str()), value["instance"].as_str(), "{json}");
            if let Some(call_id) = value["call_id"].as_str() {
                assert_eq!(event.body.call_key(), Some((call_id, value["from_tag"].as_str().unwrap())), "{json}");
            } else {
                assert_eq!(event.body.call_key(), None, "registration events have no call: {json}");
            }
        }
    }

    #[test]
    fn hold_by_callee_keeps_the_callers_from_tag() {
        let hold = event(HELD_BY_CALLEE[0]);
        let Body::Hold(change) = hold.body else { panic!("not a hold: {hold:?}") };
        assert_eq!(change.by, Party::Callee);
        assert_eq!(change.by_user.as_deref(), Some("5002"));
        assert_eq!(change.from_tag, "5289SIPpTag001");
        assert_eq!(change.direction, Direction::Sendonly);
        assert!(!change.c_zero);
        assert!(matches!(
            event(HELD_BY_CALLEE[1]).body,
            Body::Retrieve(HoldChange { direction: Direction::Sendrecv, by: Party::Callee, .. })
        ));
    }

    #[test]
    fn released_by_and_failures() {
        let Body::Released(by_kamailio) = event(RELEASED_BY_KAMAILIO).body else { panic!() };
        assert_eq!(by_kamailio.by, ReleasedBy::Kamailio);
        assert_eq!(by_kamailio.by_user, None, "no by_user when Kamailio ends the call");
        let Body::Released(by_callee) = event(CALLEE_BYE[1]).body else { panic!() };
        assert_eq!((by_callee.by, by_callee.duration), (ReleasedBy::Callee, Some(3)));

        let Body::Failed(busy) = event(BUSY[1]).body else { panic!() };
        assert_eq!((busy.code, busy.canceled, busy.origin), (486, false, Origin::Callee));
        let Body::Failed(timeout) = event(CANCEL_TIMEOUT).body else { panic!() };
        assert_eq!((timeout.code, timeout.canceled, timeout.origin), (408, true, Origin::Proxy));
        assert!(matches!(event(CANCEL[2]).body, Body::Cancel(Cancel { ref caller, .. }) if caller == "5001"));
    }

    #[test]
    fn registrations() {
        let Body::Register(register) = event(REGISTRATIONS[0]).body else { panic!() };
        assert_eq!((register.user.as_str(), register.expires, register.contacts), ("5002", 3600, 1));
        assert_eq!(register.expires_at, Some(1_796_286_978));
        let Body::Unregister(unregister) = event(REGISTRATIONS[1]).body else { panic!() };
        assert_eq!((unregister.expires, unregister.contacts), (0, 0));
        let Body::RegExpired(expired) = event(REGISTRATIONS[3]).body else { panic!() };
        assert_eq!((expired.contact.as_str(), expired.reg_call_id.as_str()), ("sip:5002@127.0.0.1:5092", "1-7190@127.0.0.1"));
    }

    #[test]
    fn unknown_types_are_counted_not_fatal() {
        let json = r#"{"type":"transfer","seq":40,"ts_ms":1,"instance":"x","refer_to":"5003"}"#;
        assert_eq!(decode(json.as_bytes()), Decoded::Unknown { type_name: "transfer".to_string(), seq: Some(40) });
    }

    #[test]
    fn invalid_payloads_give_a_one_line_reason() {
        let cases: [(&[u8], &str); 6] = [
            (b"{\"type\":", "payload is not JSON"),
            (b"[1,2]", "no string field \"type\""),
            (b"{\"type\":7}", "no string field \"type\""),
            // a known type without its common fields
            (br#"{"type":"offered","call_id":"c","from_tag":"t","caller":"1","callee":"2"}"#, "offered event: missing field `seq`"),
            // a known type with a mistyped field
            (br#"{"type":"failed","call_id":"c","from_tag":"t","code":"486","canceled":false,"origin":"callee","caller":"1","callee":"2","seq":1,"ts_ms":1,"instance":"i"}"#, "failed event (seq 1)"),
            (br#"{"type":"released","call_id":"c","from_tag":"t","by":"operator","caller":"1","callee":"2","seq":2,"ts_ms":1,"instance":"i"}"#, "released event (seq 2)"),
        ];
        for (payload, expected) in cases {
            match decode(payload) {
                Decoded::Invalid { reason } => {
                    assert!(reason.contains(expected), "{reason:?} should contain {expected:?}");
                    assert!(!reason.contains('\n'), "{reason:?} is not one line");
                }
                other => panic!("{} decoded to {other:?}", String::from_utf8_lossy(payload)),
            }
        }
    }

    #[test]
    fn key_order_does_not_matter_and_extra_fields_are_ignored() {
        let json =
            r#"{"instance":"i","ts_ms":5,"seq":3,"caller":"1","callee":"2","from_tag":"t","call_id":"c","type":"cancel","new_field":[1]}"#;
        assert_eq!(
            decode(json.as_bytes()),
            Decoded::Event(Event {
                seq: 3,
                ts_ms: 5,
                instance: "i".to_string(),
                body: Body::Cancel(Cancel { call_id: "c".into(), from_tag: "t".into(), caller: "1".into(), callee: "2".into() }),
            })
        );
    }
}
