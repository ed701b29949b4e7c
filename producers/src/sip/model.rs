//! Per-server state machine: evapi events of one Kamailio in, Netwatch call events out.
//!
//! Mapping (issue 10, `docs/sip-draft.md`):
//!
//! | evapi | output |
//! |---|---|
//! | `offered` (INVITE) | Dialing at the caller |
//! | `ringing` (18x) | Ringing at the callee |
//! | `established` (200) | Established at the caller and the callee |
//! | `hold` / `retrieve` | Held / Retrieved at the party that sent the re-INVITE (`by`) |
//! | `released` (BYE) | Released at both, the party that hung up first, outcome Completed |
//! | `failed`, `canceled` | Released at the caller, Abandoned at the callee if it was ringing; outcome Abandoned |
//! | `failed`, other | Released at the caller and, if it was ringing, the callee; Busy (486/600/603) or Failed{code} |
//! | `register` / `unregister`, `reg_expired` | InService / OutOfService when the DN gains its first / loses its last binding |
//!
//! Only DNs of the filter get outputs; the other party still appears as `other_dn`.
//! Events of a call the model has not seen start with the outputs it missed (Dialing,
//! then Established where the event implies an answer), so every call downstream starts
//! with Dialing. Duplicates are dropped by `seq` (per `instance`) and by state: a
//! repeated or late event (a `ringing` after `established`) changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use netwatch_schemas::calls::{AgentEventKind, CallBody, CallType, TEventKind};

use super::event::{self, Body, Event, Hello, Party};
use super::resync::{self, Dialog, UlDump};

/// The contact of a registration known from the log only (see [`Model::seed`]).
const SEEDED_CONTACT: &str = "(from the log)";

/// Calls remembered after their end so late events of them are ignored.
const ENDED_MEMORY: usize = 16 * 1024;

/// The call identifier of Netwatch: SIP Call-ID and the caller's From tag.
///
/// A Call-ID has no `;` (RFC 3261 `word`), so the pair is unambiguous.
pub fn connid(call_id: &str, from_tag: &str) -> String {
    format!("{call_id};{from_tag}")
}

/// Who ended a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleasedBy {
    Caller,
    Callee,
    /// Kamailio: dialog timeout, `dlg.end_dlg`, its own 404/408, or a call lost in a resync.
    Server,
}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered, then hung up.
    Completed,
    /// 486, 600 or 603.
    Busy,
    /// Cancelled by the caller before the answer.
    Abandoned,
    /// Any other final reply ≥ 300 (404, 408, 480, ...).
    Failed { code: u16 },
    /// Kamailio no longer has the call and sent no event for its end (see
    /// [`resync::reconcile`]).
    Lost,
}

/// End of a call as seen by one party.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Release {
    pub outcome: Outcome,
    pub by: ReleasedBy,
}

/// A telephony event at one DN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallEvent {
    pub kind: TEventKind,
    /// ThisDN.
    pub dn: String,
    /// See [`connid`].
    pub connid: String,
    /// Internal when both parties are configured DNs, Inbound when only the callee is,
    /// Outbound when only the caller is.
    pub call_type: CallType,
    pub other_dn: String,
    /// Kamailio's clock (`ts_ms`), or the resync time.
    pub time_ms: u64,
    /// Set for Released and Abandoned.
    pub release: Option<Release>,
    /// Which party of the call `dn` is.
    pub party: Party,
}

impl CallEvent {
    /// For Released and Abandoned: the party that ended the call (its DN or SIP user), or
    /// `server`.
    pub fn released_by(&self) -> Option<String> {
        self.release.map(|r| match (r.by, self.party) {
            (ReleasedBy::Server, _) => "server".to_string(),
            (ReleasedBy::Caller, Party::Caller) | (ReleasedBy::Callee, Party::Callee) => self.dn.clone(),
            _ => self.other_dn.clone(),
        })
    }

    /// For Released and Abandoned: why the call ended, when not a normal hang-up.
    pub fn cause(&self) -> Option<&'static str> {
        match self.release?.outcome {
            Outcome::Completed => None,
            Outcome::Busy => Some("busy"),
            Outcome::Abandoned => Some("canceled"),
            Outcome::Failed { .. } => Some("failed"),
            Outcome::Lost => Some("lost"),
        }
    }
}

/// What the model outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Call(CallEvent),
    /// The DN has a registration again.
    InService {
        dn: String,
        time_ms: u64,
    },
    /// The DN's last registration ended.
    OutOfService {
        dn: String,
        time_ms: u64,
    },
}

/// How far a call got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Dialing,
    Ringing,
    Established,
}

/// A call in progress as the model knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallView {
    pub call_id: String,
    pub from_tag: String,
    pub caller: String,
    pub callee: String,
    pub phase: Phase,
    /// The callee got an output (Ringing or Established), so its end is reported too.
    pub callee_alerted: bool,
    pub held_by_caller: bool,
    pub held_by_callee: bool,
}

/// Everything the model holds about the server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// Calls in progress by [`connid`].
    pub calls: BTreeMap<String, CallView>,
    /// Configured DNs with at least one binding → their contact URIs.
    pub registered: BTreeMap<String, BTreeSet<String>>,
}

/// Counters for the runner's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events with a `seq` already applied.
    pub duplicates: u64,
    /// Times `seq` jumped (events relayed while not connected).
    pub gaps: u64,
    /// Events that changed nothing (late, repeated, or of an ended call).
    pub ignored: u64,
}

/// The state machine of one Kamailio.
#[derive(Debug)]
pub struct Model {
    filter: BTreeSet<String>,
    view: View,
    instance: Option<String>,
    last_seq: u64,
    ended: HashSet<String>,
    ended_order: VecDeque<String>,
    stats: Stats,
}

impl CallView {
    /// DN of a party.
    pub fn dn(&self, party: Party) -> &str {
        match party {
            Party::Caller => &self.caller,
            Party::Callee => &self.callee,
        }
    }

    /// The call event at `party`, `None` when its DN is not configured.
    pub(crate) fn output(
        &self,
        filter: &BTreeSet<String>,
        party: Party,
        kind: TEventKind,
        time_ms: u64,
        release: Option<Release>,
    ) -> Option<Output> {
        let (dn, other) = match party {
            Party::Caller => (&self.caller, &self.callee),
            Party::Callee => (&self.callee, &self.caller),
        };
        if !filter.contains(dn) {
            return None;
        }
        let call_type = match (filter.contains(&self.caller), filter.contains(&self.callee)) {
            (true, true) => CallType::Internal,
            (false, true) => CallType::Inbound,
            (true, false) => CallType::Outbound,
            (false, false) => CallType::Unknown,
        };
        Some(Output::Call(CallEvent {
            kind,
            dn: dn.clone(),
            connid: connid(&self.call_id, &self.from_tag),
            call_type,
            other_dn: other.clone(),
            time_ms,
            release,
            party,
        }))
    }
}

/// Parties ordered with `first` first.
pub(crate) fn parties_from(first: Party) -> [Party; 2] {
    match first {
        Party::Caller => [Party::Caller, Party::Callee],
        Party::Callee => [Party::Callee, Party::Caller],
    }
}

impl Model {
    /// A model that outputs events of the DNs in `filter` only.
    pub fn new(filter: BTreeSet<String>) -> Self {
        Model {
            filter,
            view: View::default(),
            instance: None,
            last_seq: 0,
            ended: HashSet::new(),
            ended_order: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// Folds an event a monitor appended earlier for this server into the view, so that a
    /// monitor taking the server over knows the calls in progress and the registrations
    /// the log has, and its first resync ends those Kamailio no longer has. Fold the events
    /// from the last LinkConnected of the server on: the resync after a connect appends
    /// the whole state.
    pub fn seed(&mut self, body: &CallBody) {
        match body {
            CallBody::Telephony(t) => {
                let Some((call_id, from_tag)) = t.connid.split_once(';') else { return };
                if matches!(t.kind, TEventKind::Released | TEventKind::Abandoned) {
                    self.view.calls.remove(&t.connid);
                    return;
                }
                let other = t.other_dn.clone().unwrap_or_default();
                let call = self.view.calls.entry(t.connid.clone()).or_insert_with(|| {
                    // A call starts with Dialing at its caller when the caller is configured;
                    // otherwise (Inbound) the first event is at the callee.
                    let (caller, callee) = if t.kind == TEventKind::Dialing || t.call_type == CallType::Outbound {
                        (t.dn.clone(), other.clone())
                    } else {
                        (other.clone(), t.dn.clone())
                    };
                    CallView {
                        call_id: call_id.to_string(),
                        from_tag: from_tag.to_string(),
                        caller,
                        callee,
                        phase: Phase::Dialing,
                        callee_alerted: false,
                        held_by_caller: false,
                        held_by_callee: false,
                    }
                });
                let at_callee = t.dn == call.callee;
                match t.kind {
                    TEventKind::Ringing => {
                        call.phase = call.phase.max(Phase::Ringing);
                        call.callee_alerted = true;
                    }
                    TEventKind::Established => {
                        call.phase = Phase::Established;
                        call.callee_alerted |= at_callee;
                    }
                    TEventKind::Held | TEventKind::Retrieved => {
                        let held = if at_callee { &mut call.held_by_callee } else { &mut call.held_by_caller };
                        *held = t.kind == TEventKind::Held;
                    }
                    _ => {}
                }
            }
            CallBody::Agent(a) if self.filter.contains(&a.dn) => match a.kind {
                AgentEventKind::Ready => {
                    // The contacts are not in the log; the resync takes Kamailio's.
                    self.view.registered.entry(a.dn.clone()).or_default().insert(SEEDED_CONTACT.to_string());
                }
                AgentEventKind::Logout => {
                    self.view.registered.remove(&a.dn);
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// Changes the DNs that get outputs. The view keeps what it holds; a resync (see
    /// [`Model::resync`]) brings the newly configured DNs' calls and registrations.
    pub fn set_filter(&mut self, filter: BTreeSet<String>) {
        self.view.registered.retain(|dn, _| filter.contains(dn));
        self.filter = filter;
    }

    /// The configured DNs.
    pub fn filter(&self) -> &BTreeSet<String> {
        &self.filter
    }

    /// Calls and registrations as the model knows them.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Counters since the model was built.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The Kamailio instance of the last hello or event.
    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// Takes a `hello`; true when it names a new instance (Kamailio restarted, or the
    /// first connect): the runner must resynchronise (see [`Model::resync`]).
    ///
    /// `last_seq` is only a hint (queued events with a lower seq may follow), so the
    /// duplicate filter is not moved by it.
    pub fn on_hello(&mut self, hello: &Hello) -> bool {
        if self.instance.as_deref() == Some(hello.instance.as_str()) {
            return false;
        }
        self.instance = Some(hello.instance.clone());
        self.last_seq = 0;
        true
    }

    /// Applies one event and appends its outputs to `out`.
    pub fn on_event(&mut self, event: &Event, out: &mut Vec<Output>) {
        if self.instance.as_deref() != Some(event.instance.as_str()) {
            self.instance = Some(event.instance.clone());
            self.last_seq = 0;
        }
        if event.seq <= self.last_seq {
            self.stats.duplicates += 1;
            return;
        }
        if self.last_seq != 0 && event.seq > self.last_seq + 1 {
            self.stats.gaps += 1;
        }
        self.last_seq = event.seq;
        let before = out.len();
        let time = event.ts_ms;
        match &event.body {
            Body::Offered(e) => {
                call_entry(&mut self.view.calls, &self.ended, &self.filter, [&e.call_id, &e.from_tag, &e.caller, &e.callee], time, out);
            }
            Body::Ringing(e) => {
                if let Some(call) =
                    call_entry(&mut self.view.calls, &self.ended, &self.filter, [&e.call_id, &e.from_tag, &e.caller, &e.callee], time, out)
                {
                    if call.phase == Phase::Dialing {
                        call.phase = Phase::Ringing;
                        call.callee_alerted = true;
                        out.extend(call.output(&self.filter, Party::Callee, TEventKind::Ringing, time, None));
                    }
                }
            }
            Body::Established(e) => {
                if let Some(call) =
                    call_entry(&mut self.view.calls, &self.ended, &self.filter, [&e.call_id, &e.from_tag, &e.caller, &e.callee], time, out)
                {
                    establish(call, &self.filter, time, out);
                }
            }
            Body::Hold(e) | Body::Retrieve(e) => {
                let hold = matches!(event.body, Body::Hold(_));
                if let Some(call) =
                    call_entry(&mut self.view.calls, &self.ended, &self.filter, [&e.call_id, &e.from_tag, &e.caller, &e.callee], time, out)
                {
                    establish(call, &self.filter, time, out);
                    let held = match e.by {
                        Party::Caller => &mut call.held_by_caller,
                        Party::Callee => &mut call.held_by_callee,
                    };
                    if *held != hold {
                        *held = hold;
                        let kind = if hold { TEventKind::Held } else { TEventKind::Retrieved };
                        out.extend(call.output(&self.filter, e.by, kind, time, None));
                    }
                }
            }
            Body::Released(e) => {
                if let Some(call) =
                    call_entry(&mut self.view.calls, &self.ended, &self.filter, [&e.call_id, &e.from_tag, &e.caller, &e.callee], time, out)
                {
                    establish(call, &self.filter, time, out);
                    let (first, by) = match e.by {
                        event::ReleasedBy::Caller => (Party::Caller, ReleasedBy::Caller),
                        event::ReleasedBy::Callee => (Party::Callee, ReleasedBy::Callee),
                        event::ReleasedBy::Kamailio => (Party::Caller, ReleasedBy::Server),
                    };
                    let release = Release { outcome: Outcome::Completed, by };
                    for party in parties_from(first) {
                        out.extend(call.output(&self.filter, party, TEventKind::Released, time, Some(release)));
                    }
                    self.end(&e.call_id, &e.from_tag);
                }
            }
            Body::Failed(e) => {
                if let Some(call) =
                    call_entry(&mut self.view.calls, &self.ended, &self.filter, [&e.call_id, &e.from_tag, &e.caller, &e.callee], time, out)
                {
                    // a failure reply concerns the initial INVITE only: never an answered call
                    if call.phase != Phase::Established {
                        let (outcome, by) = if e.canceled {
                            (Outcome::Abandoned, ReleasedBy::Caller)
                        } else {
                            let outcome = match e.code {
                                486 | 600 | 603 => Outcome::Busy,
                                code => Outcome::Failed { code },
                            };
                            let by = match e.origin {
                                event::Origin::Callee => ReleasedBy::Callee,
                                event::Origin::Proxy => ReleasedBy::Server,
                            };
                            (outcome, by)
                        };
                        let first = if by == ReleasedBy::Callee { Party::Callee } else { Party::Caller };
                        let release = Some(Release { outcome, by });
                        for party in parties_from(first) {
                            let kind = match party {
                                Party::Caller => TEventKind::Released,
                                Party::Callee if !call.callee_alerted => continue,
                                Party::Callee if e.canceled => TEventKind::Abandoned,
                                Party::Callee => TEventKind::Released,
                            };
                            out.extend(call.output(&self.filter, party, kind, time, release));
                        }
                        self.end(&e.call_id, &e.from_tag);
                    }
                }
            }
            // a `failed` with `canceled: true` follows and ends the call
            Body::Cancel(_) => {}
            Body::Register(e) => {
                if self.filter.contains(&e.user) {
                    let contacts = self.view.registered.entry(e.user.clone()).or_default();
                    let first = contacts.is_empty();
                    contacts.insert(e.contact.clone());
                    if first {
                        out.push(Output::InService { dn: e.user.clone(), time_ms: time });
                    }
                }
            }
            Body::Unregister(e) => {
                let all = e.contacts == 0 || e.contact == "*";
                self.unbind(&e.user, &e.contact, all, time, out);
            }
            Body::RegExpired(e) => self.unbind(&e.user, &e.contact, false, time, out),
        }
        if out.len() == before {
            self.stats.ignored += 1;
        }
    }

    /// Makes the model match Kamailio's `dlg.list` and `ul.dump` (see
    /// [`resync::reconcile`]), appending the outputs that bring it there.
    pub fn resync(&mut self, dialogs: &[Dialog], ul: &UlDump, now_ms: u64, out: &mut Vec<Output>) {
        let (view, outputs) = resync::reconcile(&self.view, &self.filter, dialogs, ul, now_ms);
        let lost: Vec<(String, String)> = self
            .view
            .calls
            .iter()
            .filter(|(connid, _)| !view.calls.contains_key(*connid))
            .map(|(_, call)| (call.call_id.clone(), call.from_tag.clone()))
            .collect();
        for (call_id, from_tag) in lost {
            self.end(&call_id, &from_tag);
        }
        self.view = view;
        out.extend(outputs);
    }

    /// Forgets a call and remembers that it ended.
    fn end(&mut self, call_id: &str, from_tag: &str) {
        let key = connid(call_id, from_tag);
        self.view.calls.remove(&key);
        if self.ended.insert(key.clone()) {
            self.ended_order.push_back(key);
            if self.ended_order.len() > ENDED_MEMORY {
                if let Some(old) = self.ended_order.pop_front() {
                    self.ended.remove(&old);
                }
            }
        }
    }

    /// Removes a binding (or all) of a DN; OutOfService when it had some and has none left.
    fn unbind(&mut self, user: &str, contact: &str, all: bool, time: u64, out: &mut Vec<Output>) {
        let Some(contacts) = self.view.registered.get_mut(user) else { return };
        if all {
            contacts.clear();
        } else {
            contacts.remove(contact);
        }
        if contacts.is_empty() {
            self.view.registered.remove(user);
            out.push(Output::OutOfService { dn: user.to_string(), time_ms: time });
        }
    }
}

/// The call `[call_id, from_tag, caller, callee]` in progress, created with its Dialing
/// output when new; `None` when it has already ended.
fn call_entry<'a>(
    calls: &'a mut BTreeMap<String, CallView>,
    ended: &HashSet<String>,
    filter: &BTreeSet<String>,
    [call_id, from_tag, caller, callee]: [&str; 4],
    time: u64,
    out: &mut Vec<Output>,
) -> Option<&'a mut CallView> {
    let key = connid(call_id, from_tag);
    if ended.contains(&key) {
        return None;
    }
    let call = calls.entry(key).or_insert_with(|| {
        let call = CallView {
            call_id: call_id.to_string(),
            from_tag: from_tag.to_string(),
            caller: caller.to_string(),
            callee: callee.to_string(),
            phase: Phase::Dialing,
            callee_alerted: false,
            held_by_caller: false,
            held_by_callee: false,
        };
        out.extend(call.output(filter, Party::Caller, TEventKind::Dialing, time, None));
        call
    });
    Some(call)
}

/// Moves a call to Established (once), with the outputs at both parties.
fn establish(call: &mut CallView, filter: &BTreeSet<String>, time: u64, out: &mut Vec<Output>) {
    if call.phase == Phase::Established {
        return;
    }
    call.phase = Phase::Established;
    call.callee_alerted = true;
    for party in [Party::Caller, Party::Callee] {
        out.extend(call.output(filter, party, TEventKind::Established, time, None));
    }
}

#[cfg(test)]
mod tests {
    use super::super::event::samples::*;
    use super::*;

    fn filter(dns: &[&str]) -> BTreeSet<String> {
        dns.iter().map(|dn| dn.to_string()).collect()
    }

    fn run(model: &mut Model, samples: &[&str]) -> Vec<Output> {
        let mut out = Vec::new();
        for json in samples {
            model.on_event(&event(json), &mut out);
        }
        out
    }

    fn call(kind: TEventKind, dn: &str, other: &str, connid: &str, call_type: CallType, time_ms: u64, release: Option<Release>) -> Output {
        // the samples' caller is 5001
        let party = if dn == "5001" { Party::Caller } else { Party::Callee };
        Output::Call(CallEvent { kind, dn: dn.into(), connid: connid.into(), call_type, other_dn: other.into(), time_ms, release, party })
    }

    #[test]
    fn answered_call_with_hold_by_the_caller() {
        let mut model = Model::new(filter(&["5001", "5002"]));
        let out = run(&mut model, &HOLD_CALL);
        let id = "1-6035@127.0.0.1;6035SIPpTag001";
        let internal = CallType::Internal;
        let completed = Some(Release { outcome: Outcome::Completed, by: ReleasedBy::Caller });
        assert_eq!(
            out,
            vec![
                call(TEventKind::Dialing, "5001", "5002", id, internal, 1_796_283_419_705, None),
                call(TEventKind::Ringing, "5002", "5001", id, internal, 1_796_283_419_705, None),
                call(TEventKind::Established, "5001", "5002", id, internal, 1_796_283_421_709, None),
                call(TEventKind::Established, "5002", "5001", id, internal, 1_796_283_421_709, None),
                // by: caller, so the caller holds: Held and Retrieved at 5001
                call(TEventKind::Held, "5001", "5002", id, internal, 1_796_283_424_713, None),
                call(TEventKind::Retrieved, "5001", "5002", id, internal, 1_796_283_426_717, None),
                call(TEventKind::Released, "5001", "5002", id, internal, 1_796_283_429_720, completed),
                call(TEventKind::Released, "5002", "5001", id, internal, 1_796_283_429_720, completed),
            ]
        );
        assert!(model.view().calls.is_empty());
        assert_eq!(model.stats(), Stats::default());
    }

    #[test]
    fn filter_keeps_the_other_party_as_other_dn() {
        let mut model = Model::new(filter(&["5002"]));
        let out = run(&mut model, &HOLD_CALL);
        let kinds: Vec<(TEventKind, &str, &str, CallType)> = out
            .iter()
            .map(|o| match o {
                Output::Call(c) => (c.kind, c.dn.as_str(), c.other_dn.as_str(), c.call_type),
                other => panic!("{other:?}"),
            })
            .collect();
        // the hold was by the caller (not configured): nothing at 5002 for it
        assert_eq!(
            kinds,
            vec![
                (TEventKind::Ringing, "5002", "5001", CallType::Inbound),
                (TEventKind::Established, "5002", "5001", CallType::Inbound),
                (TEventKind::Released, "5002", "5001", CallType::Inbound),
            ]
        );
        let mut model = Model::new(filter(&["5003"]));
        assert_eq!(run(&mut model, &HOLD_CALL), vec![]);
        assert_eq!(model.stats().ignored, 6, "nothing configured: every event changes no output");
    }

    #[test]
    fn hold_by_the_callee_is_reported_at_the_callee() {
        let mut model = Model::new(filter(&["5001", "5002"]));
        let out = run(&mut model, &HELD_BY_CALLEE);
        let id = "1-5289@127.0.0.1;5289SIPpTag001";
        let t = 1_796_283_407_345;
        // a call first seen at its hold: the outputs it missed come first
        assert_eq!(
            out,
            vec![
                call(TEventKind::Dialing, "5001", "5002", id, CallType::Internal, t, None),
                call(TEventKind::Established, "5001", "5002", id, CallType::Internal, t, None),
                call(TEventKind::Established, "5002", "5001", id, CallType::Internal, t, None),
                call(TEventKind::Held, "5002", "5001", id, CallType::Internal, t, None),
                call(TEventKind::Retrieved, "5002", "5001", id, CallType::Internal, 1_796_283_409_353, None),
            ]
        );
        let held = &model.view().calls[id];
        assert!(!held.held_by_callee && !held.held_by_caller);
    }

    #[test]
    fn busy_releases_the_caller_only() {
        // the callee never rang (486 at once): it never saw the call
        let mut model = Model::new(filter(&["5001", "5002"]));
        let out = run(&mut model, &BUSY);
        let id = "1-6661@127.0.0.1;6661SIPpTag001";
        assert_eq!(
            out,
            vec![
                call(TEventKind::Dialing, "5001", "5002", id, CallType::Internal, 1_796_283_431_157, None),
                call(
                    TEventKind::Released,
                    "5001",
                    "5002",
                    id,
                    CallType::Internal,
                    1_796_283_431_158,
                    Some(Release { outcome: Outcome::Busy, by: ReleasedBy::Callee })
                ),
            ]
        );
    }

    #[test]
    fn cancel_while_ringing_abandons_at_the_callee() {
        let mut model = Model::new(filter(&["5001", "5002"]));
        let out = run(&mut model, &CANCEL);
        let id = "1-6809@127.0.0.1;6809SIPpTag001";
        let abandoned = Some(Release { outcome: Outcome::Abandoned, by: ReleasedBy::Caller });
        assert_eq!(
            out,
            vec![
                call(TEventKind::Dialing, "5001", "5002", id, CallType::Internal, 1_796_283_432_088, None),
                call(TEventKind::Ringing, "5002", "5001", id, CallType::Internal, 1_796_283_432_090, None),
                call(TEventKind::Released, "5001", "5002", id, CallType::Internal, 1_796_283_434_098, abandoned),
                call(TEventKind::Abandoned, "5002", "5001", id, CallType::Internal, 1_796_283_434_098, abandoned),
            ]
        );
        // the 408 of a CANCEL the callee never answered is abandoned too
        let mut model = Model::new(filter(&["5001"]));
        let out = run(&mut model, &[CANCEL_TIMEOUT]);
        let Some(Output::Call(last)) = out.last() else { panic!("{out:?}") };
        assert_eq!((last.kind, last.release), (TEventKind::Released, abandoned));
    }

    #[test]
    fn callee_bye_and_server_release() {
        let mut model = Model::new(filter(&["5001", "5002"]));
        let out = run(&mut model, &CALLEE_BYE);
        let released: Vec<(&str, Option<Release>)> = out
            .iter()
            .filter_map(|o| match o {
                Output::Call(c) if c.kind == TEventKind::Released => Some((c.dn.as_str(), c.release)),
                _ => None,
            })
            .collect();
        let by_callee = Some(Release { outcome: Outcome::Completed, by: ReleasedBy::Callee });
        assert_eq!(released, vec![("5002", by_callee), ("5001", by_callee)], "the party that hung up first");

        let mut model = Model::new(filter(&["5001", "5002"]));
        let out = run(&mut model, &[RELEASED_BY_KAMAILIO]);
        let Some(Output::Call(last)) = out.last() else { panic!("{out:?}") };
        assert_eq!(last.release, Some(Release { outcome: Outcome::Completed, by: ReleasedBy::Server }));
    }

    #[test]
    fn rejects_by_the_proxy_are_failures_with_the_code() {
        let mut model = Model::new(filter(&["5001", "5002", "5099"]));
        let out = run(&mut model, &REJECTS);
        let releases: Vec<(&str, Option<Release>)> = out
            .iter()
            .filter_map(|o| match o {
                Output::Call(c) if c.kind == TEventKind::Released => Some((c.connid.as_str(), c.release)),
                _ => None,
            })
            .collect();
        assert_eq!(
            releases,
            vec![
                ("1-7176@127.0.0.1;7176SIPpTag001", Some(Release { outcome: Outcome::Failed { code: 404 }, by: ReleasedBy::Server })),
                ("1-7192@127.0.0.1;7192SIPpTag001", Some(Release { outcome: Outcome::Failed { code: 408 }, by: ReleasedBy::Server })),
            ]
        );
        assert_eq!(model.stats().gaps, 1, "seq 29 then 35");
    }

    #[test]
    fn duplicates_and_late_events_give_no_output() {
        let mut model = Model::new(filter(&["5001", "5002"]));
        let first = run(&mut model, &HOLD_CALL[..3]);
        assert_eq!(first.len(), 4);
        // the same events again (a replay) and an older one
        assert_eq!(run(&mut model, &HOLD_CALL[..3]), vec![]);
        assert_eq!(model.stats().duplicates, 3);
        // a 183 after the 200 with a new seq: tolerated, ignored
        let late = HOLD_CALL[1].replace("\"seq\":13", "\"seq\":18").replace("180", "183");
        assert_eq!(run(&mut model, &[&late]), vec![]);
        // a hold repeated with a new seq (2xx retransmission reported twice) is one Held
        let hold = HOLD_CALL[3];
        let hold_again = hold.replace("\"seq\":15", "\"seq\":20");
        let late_hold = hold.replace("\"seq\":15", "\"seq\":19");
        assert_eq!(run(&mut model, &[&late_hold, &hold_again]).len(), 1);
        // events of a call after its end are ignored, even with a new seq
        let released = HOLD_CALL[5].replace("\"seq\":17", "\"seq\":21");
        assert_eq!(run(&mut model, &[&released]).len(), 2);
        let again = HOLD_CALL[5].replace("\"seq\":17", "\"seq\":22");
        let ringing = HOLD_CALL[1].replace("\"seq\":13", "\"seq\":23");
        assert_eq!(run(&mut model, &[&again, &ringing]), vec![]);
        assert!(model.view().calls.is_empty());
    }

    #[test]
    fn new_instance_starts_seq_again() {
        let mut model = Model::new(filter(&["5001", "5002"]));
        run(&mut model, &BUSY);
        let hello = Hello { last_seq: 0, ts_ms: 1, instance: "1796290000-1".into(), version: None };
        assert!(model.on_hello(&hello));
        assert!(!model.on_hello(&hello), "the same instance again is no restart");
        let restarted =
            BUSY.map(|json| json.replace(INSTANCE, "1796290000-1").replace("\"seq\":18", "\"seq\":1").replace("\"seq\":19", "\"seq\":2"));
        let restarted: Vec<&str> = restarted.iter().map(String::as_str).collect();
        // a different Call-ID, or the ended-call memory would (rightly) ignore it
        let restarted: Vec<String> = restarted.iter().map(|json| json.replace("1-6661@", "2-6661@")).collect();
        let out = run(&mut model, &restarted.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(model.stats().duplicates, 0);
    }

    #[test]
    fn registrations_switch_service() {
        let mut model = Model::new(filter(&["5002"]));
        let out = run(&mut model, &REGISTRATIONS);
        assert_eq!(
            out,
            vec![
                Output::InService { dn: "5002".into(), time_ms: 1_796_283_378_537 },
                Output::OutOfService { dn: "5002".into(), time_ms: 1_796_283_441_782 },
                Output::InService { dn: "5002".into(), time_ms: 1_796_283_442_510 },
                Output::OutOfService { dn: "5002".into(), time_ms: 1_796_283_448_039 },
            ]
        );
        // a refresh of a binding is no new service
        let mut model = Model::new(filter(&["5002"]));
        let refresh = REGISTRATIONS[0].replace("\"seq\":1,", "\"seq\":2,");
        assert_eq!(run(&mut model, &[REGISTRATIONS[0], &refresh]).len(), 1);
        // a second phone of the DN keeps it in service when the first expires
        let second = REGISTRATIONS[2].replace("5092", "5095").replace("\"seq\":33", "\"seq\":3");
        let expired = REGISTRATIONS[3].replace("\"seq\":36", "\"seq\":4");
        assert_eq!(run(&mut model, &[&second, &expired]), vec![]);
        assert_eq!(model.view().registered["5002"], BTreeSet::from(["sip:5002@127.0.0.1:5095".to_string()]));
        // not configured: nothing
        let mut model = Model::new(filter(&["5001"]));
        assert_eq!(run(&mut model, &REGISTRATIONS), vec![]);
    }

    fn seeded(kind: TEventKind, dn: &str, other: &str, connid: &str) -> CallBody {
        CallBody::Telephony(netwatch_schemas::calls::Telephony {
            kind,
            dn: dn.into(),
            connid: connid.into(),
            call_type: CallType::Internal,
            other_dn: Some(other.into()),
            third_party_dn: None,
            previous_connid: None,
            cause: None,
            released_by: None,
        })
    }

    #[test]
    fn a_model_seeded_from_the_log_ends_what_kamailio_no_longer_has() {
        use TEventKind::*;
        let mut model = Model::new(filter(&["5001", "5002"]));
        // what a monitor that died had appended: one call held and open, one ended, 5002 ready
        for body in [
            seeded(Dialing, "5001", "5002", "a@h;t1"),
            seeded(Ringing, "5002", "5001", "a@h;t1"),
            seeded(Established, "5001", "5002", "a@h;t1"),
            seeded(Established, "5002", "5001", "a@h;t1"),
            seeded(Held, "5001", "5002", "a@h;t1"),
            seeded(Dialing, "5001", "5002", "b@h;t2"),
            seeded(Released, "5001", "5002", "b@h;t2"),
            CallBody::Agent(netwatch_schemas::calls::Agent {
                kind: AgentEventKind::Ready,
                dn: "5002".into(),
                agent_id: "5002".into(),
                reason: None,
            }),
        ] {
            model.seed(&body);
        }
        let open = &model.view().calls["a@h;t1"];
        assert_eq!(
            (open.caller.as_str(), open.callee.as_str(), open.phase, open.callee_alerted, open.held_by_caller, open.held_by_callee),
            ("5001", "5002", Phase::Established, true, true, false)
        );
        assert_eq!(model.view().calls.len(), 1);
        // Kamailio has neither the call nor the registration any more
        let ul: UlDump =
            serde_json::from_value(serde_json::from_str::<serde_json::Value>(resync::samples::UL_DUMP_EMPTY).unwrap()["result"].clone())
                .unwrap();
        let mut out = Vec::new();
        model.resync(&[], &ul, 9, &mut out);
        let lost = Some(Release { outcome: Outcome::Lost, by: ReleasedBy::Server });
        let released = |dn: &str, other: &str| call(Released, dn, other, "a@h;t1", CallType::Internal, 9, lost);
        assert_eq!(out, vec![released("5001", "5002"), released("5002", "5001"), Output::OutOfService { dn: "5002".into(), time_ms: 9 }]);
    }
}
