//! What one T-Server link decides, without I/O: which DNs to register or unregister,
//! when to connect again, what to append to `calls`, what to log. The runner
//! (`link.rs`) feeds it what happened — the link opened or failed, a message arrived, a
//! line was unusable, the wanted DNs changed, the monitor gives the T-Server up, time
//! passed — and carries out the [`Action`]s it returns. docs/cti-link.md ("What the
//! monitor does") describes the same behaviour for T-Server implementers.

use std::collections::BTreeSet;
use std::time::Duration;

use netwatch_producers::cti::{Capture, Message, Unusable};
use netwatch_schemas::calls::{CallBody, DnAddress, LinkConnected, LinkDisconnected};
use tokio::time::Instant;

/// How long a release waits for the T-Server to confirm every unregistration, counted
/// from the last line read: while a T-Server still sends (a backlog TCP held back), the
/// confirmations are behind that data.
pub const RELEASE_WAIT: Duration = Duration::from_secs(2);
/// A release never waits longer than this in all.
pub const RELEASE_MAX: Duration = Duration::from_secs(30);
/// Rate-limited notes (unusable lines, sequence jumps, refusals) are summed up this often.
pub const NOTE_EVERY: Duration = Duration::from_secs(10);
/// A link that stayed up this long resets the backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Something the runner must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open the TCP link and send `RequestOpen`.
    Connect,
    /// Queue `RequestRegisterAddress` for a DN.
    Register(String),
    /// Queue `RequestUnregisterAddress` for a DN.
    Unregister(String),
    /// Append an event to `calls`.
    Emit(Emitted),
    /// Close the TCP link and append `LinkDisconnected` with this reason (and the
    /// session's count of events that could not be appended); `finish`: the session is
    /// over, nothing follows.
    EndLink { reason: String, finish: bool },
    /// Log this.
    Note(Note),
}

/// An event for `calls`, before the runner stamps ids and encodes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emitted {
    pub server_time_ms: i64,
    /// The T-Server's `seq`, for events it sent.
    pub link_seq: Option<i64>,
    pub body: CallBody,
}

/// What deserves a log line (already rate-limited).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// The link opened; the T-Server's name.
    Connected { server: Option<String> },
    /// Opening failed (logged on the first failure and every 20th).
    ConnectFailed { failures: u32, error: String, retry_in: Duration },
    /// Unusable lines since the last note; the latest reason.
    Unusable { count: u64, total: u64, last: String },
    /// `seq` jumped or repeated since the last note: how often, and the latest jump.
    SeqJumps { count: u64, expected: u64, got: u64 },
    /// The T-Server refused requests since the last note; the latest refusal.
    Refused { count: u64, code: i64, text: String },
    /// The T-Server reported its switch link down (with the reason) or up.
    SwitchLink { up: bool, reason: Option<String> },
}

/// Counts a kind of note and says when to log it: the first at once, then a summary at
/// most every [`NOTE_EVERY`].
#[derive(Debug, Default)]
struct Budget {
    unlogged: u64,
    total: u64,
    last_logged: Option<Instant>,
}

impl Budget {
    /// Count one; true if a note is due now.
    fn count(&mut self, now: Instant) -> bool {
        self.unlogged += 1;
        self.total += 1;
        self.due(now)
    }

    fn due(&self, now: Instant) -> bool {
        self.unlogged > 0 && self.last_logged.is_none_or(|t| now >= t + NOTE_EVERY)
    }

    /// Take the unlogged count for a note.
    fn take(&mut self, now: Instant) -> u64 {
        self.last_logged = Some(now);
        std::mem::take(&mut self.unlogged)
    }

    /// When a held-back summary is due.
    fn deadline(&self) -> Option<Instant> {
        match self.last_logged {
            Some(t) if self.unlogged > 0 => Some(t + NOTE_EVERY),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// No link; connect at `retry_at`.
    Waiting { retry_at: Instant },
    /// The runner is opening the link.
    Connecting,
    /// The link is open since `since`.
    Open { since: Instant },
    /// Unregistrations sent at `since`; waiting for their answers until `deadline`.
    Releasing { pending: BTreeSet<String>, since: Instant, deadline: Instant },
    /// Over.
    Done,
}

/// One T-Server link's state.
#[derive(Debug)]
pub struct Session {
    endpoint: String,
    state: State,
    /// DNs the monitor's slots assign to this T-Server.
    wanted: BTreeSet<String>,
    /// DNs requested on the current link (registered or on the way).
    requested: BTreeSet<String>,
    /// DNs the T-Server confirmed (and whose switch link is up).
    registered: BTreeSet<String>,
    /// Consecutive failures to open a link that stayed up.
    failures: u32,
    /// `seq` expected next on this link.
    next_seq: Option<u64>,
    unusable: Budget,
    last_unusable: String,
    seq_jumps: Budget,
    last_jump: (u64, u64),
    refused: Budget,
    last_refusal: (i64, String),
}

impl Session {
    /// A session for the T-Server at `endpoint`, wanting `dns`; its first action is to connect.
    pub fn new(endpoint: &str, dns: BTreeSet<String>) -> (Session, Vec<Action>) {
        let session = Session {
            endpoint: endpoint.to_string(),
            state: State::Connecting,
            wanted: dns,
            requested: BTreeSet::new(),
            registered: BTreeSet::new(),
            failures: 0,
            next_seq: None,
            unusable: Budget::default(),
            last_unusable: String::new(),
            seq_jumps: Budget::default(),
            last_jump: (0, 0),
            refused: Budget::default(),
            last_refusal: (0, String::new()),
        };
        (session, vec![Action::Connect])
    }

    /// Is the session giving its T-Server up (waiting for unregistrations)? Then every
    /// line is read, whatever the emitter holds: what the T-Server sent before it confirmed
    /// must not stay behind in the socket.
    pub fn is_releasing(&self) -> bool {
        matches!(self.state, State::Releasing { .. })
    }

    /// Is the session over?
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// DNs the T-Server confirmed on the current link.
    pub fn registered(&self) -> usize {
        self.registered.len()
    }

    /// Unusable lines on every link of this session so far.
    pub fn unusable_total(&self) -> u64 {
        self.unusable.total
    }

    /// When [`Session::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let state = match &self.state {
            State::Waiting { retry_at } => Some(*retry_at),
            State::Releasing { deadline, .. } => Some(*deadline),
            _ => None,
        };
        [state, self.unusable.deadline(), self.seq_jumps.deadline(), self.refused.deadline()].into_iter().flatten().min()
    }

    /// The DNs to watch changed.
    pub fn want(&mut self, dns: BTreeSet<String>) -> Vec<Action> {
        self.wanted = dns;
        match self.state {
            State::Open { .. } => self.sync(),
            _ => Vec::new(),
        }
    }

    /// Register what is wanted and not requested; unregister the reverse.
    fn sync(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        for dn in self.wanted.difference(&self.requested) {
            out.push(Action::Register(dn.clone()));
        }
        for dn in self.requested.difference(&self.wanted) {
            out.push(Action::Unregister(dn.clone()));
            self.registered.remove(dn);
        }
        self.requested = self.wanted.clone();
        out
    }

    /// The link opened; `now_ms` is the monitor's clock for its `LinkConnected`.
    pub fn opened(&mut self, server: Option<String>, now_ms: i64, now: Instant) -> Vec<Action> {
        self.state = State::Open { since: now };
        self.requested.clear();
        self.registered.clear();
        // Every link numbers its events from 1.
        self.next_seq = Some(1);
        let mut out = vec![
            Action::Note(Note::Connected { server }),
            Action::Emit(Emitted {
                server_time_ms: now_ms,
                link_seq: None,
                body: CallBody::LinkConnected(LinkConnected { endpoint: self.endpoint.clone() }),
            }),
        ];
        out.extend(self.sync());
        out
    }

    /// Opening the link failed.
    pub fn open_failed(&mut self, error: &str, now: Instant) -> Vec<Action> {
        self.failures += 1;
        let retry_in = backoff(self.failures);
        self.state = State::Waiting { retry_at: now + retry_in };
        if self.failures == 1 || self.failures.is_multiple_of(20) {
            vec![Action::Note(Note::ConnectFailed { failures: self.failures, error: error.to_string(), retry_in })]
        } else {
            Vec::new()
        }
    }

    /// The open link was lost (closed by the T-Server, framing lost, I/O error).
    pub fn lost(&mut self, reason: &str, now: Instant) -> Vec<Action> {
        let finish = matches!(self.state, State::Releasing { .. });
        if let State::Open { since } = self.state {
            self.failures = if now >= since + STABLE_AFTER { 0 } else { self.failures + 1 };
        }
        self.requested.clear();
        self.registered.clear();
        self.state = if finish { State::Done } else { State::Waiting { retry_at: now + backoff(self.failures) } };
        vec![Action::EndLink { reason: reason.to_string(), finish }]
    }

    /// The monitor gives the T-Server up: unregister every DN and close the link once
    /// the T-Server confirmed (or [`RELEASE_WAIT`] passed).
    pub fn release(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            State::Open { .. } => {
                let pending = std::mem::take(&mut self.requested);
                if pending.is_empty() {
                    self.state = State::Done;
                    return vec![Action::EndLink { reason: "monitor released the T-Server".into(), finish: true }];
                }
                let out = pending.iter().map(|dn| Action::Unregister(dn.clone())).collect();
                self.state = State::Releasing { pending, since: now, deadline: now + RELEASE_WAIT };
                out
            }
            State::Releasing { .. } | State::Done => Vec::new(),
            // No link: nothing to release, and the last link's end is already recorded.
            State::Waiting { .. } | State::Connecting => {
                self.state = State::Done;
                Vec::new()
            }
        }
    }

    /// Time passed: retry, give up waiting for unregistrations, log held-back notes.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match &self.state {
            State::Waiting { retry_at } if now >= *retry_at => {
                self.state = State::Connecting;
                out.push(Action::Connect);
            }
            State::Releasing { pending, deadline, .. } if now >= *deadline => {
                let reason = format!("monitor released the T-Server ({} DNs not confirmed unregistered)", pending.len());
                self.registered.clear();
                self.state = State::Done;
                out.push(Action::EndLink { reason, finish: true });
            }
            _ => {}
        }
        self.notes(now, &mut out);
        out
    }

    /// Summaries of rate-limited notes that are due.
    fn notes(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.unusable.due(now) {
            let count = self.unusable.take(now);
            out.push(Action::Note(Note::Unusable { count, total: self.unusable.total, last: self.last_unusable.clone() }));
        }
        if self.seq_jumps.due(now) {
            let count = self.seq_jumps.take(now);
            out.push(Action::Note(Note::SeqJumps { count, expected: self.last_jump.0, got: self.last_jump.1 }));
        }
        if self.refused.due(now) {
            let count = self.refused.take(now);
            out.push(Action::Note(Note::Refused { count, code: self.last_refusal.0, text: self.last_refusal.1.clone() }));
        }
    }

    /// A line arrived: a release waits on while the T-Server still sends.
    fn heard(&mut self, now: Instant) {
        if let State::Releasing { since, deadline, .. } = &mut self.state {
            *deadline = (now + RELEASE_WAIT).min(*since + RELEASE_MAX);
        }
    }

    /// A line that is not a usable message. An unusable event still took its place in
    /// the link's sequence: the next event is expected after it.
    pub fn on_unusable(&mut self, why: &Unusable, now: Instant) -> Vec<Action> {
        self.heard(now);
        let mut out = Vec::new();
        if let Some(seq) = why.seq() {
            self.sequence(seq, now, &mut out);
        }
        self.last_unusable = why.to_string();
        if self.unusable.count(now) {
            self.notes(now, &mut out);
        }
        out
    }

    /// Check an event's `seq` against the one expected; note a jump or a repeat.
    fn sequence(&mut self, seq: u64, now: Instant, out: &mut Vec<Action>) {
        if let Some(expected) = self.next_seq.filter(|e| *e != seq) {
            self.last_jump = (expected, seq);
            if self.seq_jumps.count(now) {
                self.notes(now, out);
            }
        }
        self.next_seq = Some(seq + 1);
    }

    /// A message from the T-Server. `now_ms` stamps answers that carry no time.
    pub fn on_message(&mut self, message: Message, now_ms: i64, now: Instant) -> Vec<Action> {
        self.heard(now);
        let mut out = Vec::new();
        match message {
            Message::EventRegistered { dn, time_ms, .. } => {
                if self.requested.contains(&dn) {
                    self.registered.insert(dn.clone());
                }
                out.push(emit(time_ms.unwrap_or(now_ms), None, CallBody::DnRegistered(DnAddress { dn })));
            }
            Message::EventUnregistered { dn, time_ms, .. } => {
                self.registered.remove(&dn);
                out.push(emit(time_ms.unwrap_or(now_ms), None, CallBody::DnUnregistered(DnAddress { dn: dn.clone() })));
                if let State::Releasing { pending, .. } = &mut self.state {
                    pending.remove(&dn);
                    if pending.is_empty() {
                        self.state = State::Done;
                        out.push(Action::EndLink { reason: "monitor released the T-Server".into(), finish: true });
                    }
                }
            }
            Message::Event(event) => {
                self.sequence(event.seq, now, &mut out);
                // The parser keeps seq within 1..=i64::MAX.
                let seq = Some(event.seq as i64);
                match event.body.capture() {
                    Capture::Dn(body) => out.push(emit(event.time_ms, seq, body)),
                    Capture::SwitchDown(given) => {
                        let reason = format!("switch: {}", given.as_deref().unwrap_or("link lost"));
                        self.registered.clear();
                        out.push(Action::Note(Note::SwitchLink { up: false, reason: given }));
                        out.push(emit(event.time_ms, seq, CallBody::LinkDisconnected(LinkDisconnected { reason, events_lost: None })));
                    }
                    Capture::SwitchUp => {
                        out.push(Action::Note(Note::SwitchLink { up: true, reason: None }));
                        out.push(emit(event.time_ms, seq, CallBody::LinkConnected(LinkConnected { endpoint: "switch".into() })));
                        // Re-register every DN: the answers make each known again.
                        if matches!(self.state, State::Open { .. }) {
                            out.extend(self.requested.iter().map(|dn| Action::Register(dn.clone())));
                        }
                    }
                }
            }
            Message::EventError { code, text, .. } => {
                self.last_refusal = (code, text.unwrap_or_default());
                if self.refused.count(now) {
                    self.notes(now, &mut out);
                }
            }
            Message::EventServerInfo { .. } => out.extend(self.on_unusable(&not_for_a_monitor("EventServerInfo after the open"), now)),
            Message::EventStatus { .. } => out.extend(self.on_unusable(&not_for_a_monitor("EventStatus"), now)),
            Message::EventLinksDropped { .. } => out.extend(self.on_unusable(&not_for_a_monitor("EventLinksDropped"), now)),
        }
        out
    }
}

fn not_for_a_monitor(what: &str) -> Unusable {
    Unusable::BadAttributes { name: what.to_string(), reason: "an answer to a request the monitor never sends".into(), seq: None }
}

fn emit(server_time_ms: i64, link_seq: Option<i64>, body: CallBody) -> Action {
    Action::Emit(Emitted { server_time_ms, link_seq, body })
}

/// Exponential backoff from 200 ms to 10 s with ±25 % jitter.
pub fn backoff(failures: u32) -> Duration {
    use rand::Rng;
    let base = 200u64.saturating_mul(1 << failures.min(6)).min(10_000);
    let jitter = rand::rng().random_range(0.75..1.25);
    Duration::from_millis((base as f64 * jitter) as u64)
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
