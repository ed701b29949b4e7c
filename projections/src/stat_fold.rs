//! The statistics projection's fold (docs/statistics.md): call and agent events become
//! additive sums ([`Tally`]) per object and bucket, as Stat Server keeps them — arrivals
//! once per call per object at the moment their outcome is known, handling per leg at the
//! leg's end, agent time as status stretches sliced into the buckets they cover.
//!
//! The objects the fold keeps are DNs (`dn:5001`), agents (`agent:a1`) and the T-Server
//! (`tserver`); a group is the sum of its members' rows at read time (membership as
//! configured when asked, so a replay, which may read `config` and `calls` in any
//! interleaving, gives the same rows). Each fact lands in a minute bucket (sliding
//! windows) and a 15-minute interval bucket (intervals, and days as sums of intervals:
//! every time zone's offset is a multiple of 15 minutes).
//!
//! The fold is pure: it reads the rows it needs ([`StatDn`], [`StatCall`]) and returns
//! them changed, with the bucket deltas ([`Deltas`]) a batch adds to the stored buckets.

use std::collections::BTreeMap;

use netwatch_schemas::calls::{CallBody, CallEvent, TEventKind};
use netwatch_schemas::config::{Group, GroupKind};
use serde::{Deserialize, Serialize};

use crate::call_history;
use crate::dn_state;
use crate::rows::{durations, CallRecord, DnState};
use crate::statistics::{slices, Status, Tally};
use crate::store::INTERVAL_MS;

/// Width of a sliding-window bucket.
pub const MINUTE_MS: i64 = 60_000;

/// The T-Server as an object.
pub const TSERVER: &str = "tserver";

/// A DN as an object.
pub fn dn_object(dn: &str) -> String {
    format!("dn:{dn}")
}

/// An agent as an object.
pub fn agent_object(agent: &str) -> String {
    format!("agent:{agent}")
}

/// The bucket widths kept, with the letter their row keys start with.
pub const WIDTHS: [(char, i64); 2] = [('m', MINUTE_MS), ('i', INTERVAL_MS)];

/// Store part of an object's buckets.
pub fn bucket_part(object: &str) -> String {
    format!("b:{object}")
}

/// Store key of a bucket: width letter and start, zero-padded so keys sort by time.
pub fn bucket_key(width: char, start_ms: i64) -> String {
    format!("{width}:{:015}", start_ms.max(0))
}

/// Store part of the DN rows, of the group rows, and of one call's row.
pub const DN_PART: &str = "dn";
pub const GROUP_PART: &str = "group";
pub fn call_part(connid: &str) -> String {
    format!("call:{connid}")
}

/// What a DN is doing since when, and whose time it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stretch {
    /// A `dn_state::status` name.
    pub status: String,
    pub since_ms: i64,
    /// The agent logged in at the DN (its time), if any.
    pub agent: Option<String>,
    /// The not-ready reason (`""` for none) while not ready.
    pub reason: String,
}

/// A DN's row in the statistics projection: its state (the DN-state fold, kept here so
/// that the projection depends on no other) and the status stretch in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatDn {
    pub state: DnState,
    pub stretch: Stretch,
}

impl StatDn {
    /// A DN first seen.
    pub fn new(tserver: i32, dn: &str) -> Self {
        let state = DnState::new(tserver, dn);
        let stretch = stretch_of(&state, 0);
        StatDn { state, stretch }
    }
}

/// The offer of a call to one object: when, and whether its outcome was counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub at_ms: i64,
    pub done: bool,
}

/// A call's row: its record (the call-history fold), the agent of each leg (logged in at
/// the leg's DN when the leg began), and its offers per object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatCall {
    pub record: CallRecord,
    pub leg_agents: Vec<Option<String>>,
    pub offers: BTreeMap<String, Offer>,
}

/// A group as configured (the statistics projection keeps the last configuration).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatGroup {
    pub id: i32,
    pub name: String,
    /// `agent` or `dn`.
    pub kind: String,
    pub members: Vec<String>,
}

impl StatGroup {
    pub fn from_config(g: &Group) -> Self {
        let kind = match g.kind {
            GroupKind::Agent => "agent",
            GroupKind::Dn => "dn",
        };
        StatGroup { id: g.id, name: g.name.clone(), kind: kind.into(), members: g.members.clone() }
    }

    /// The objects whose rows make up the group.
    pub fn objects(&self) -> Vec<String> {
        self.members.iter().map(|m| if self.kind == "agent" { agent_object(m) } else { dn_object(m) }).collect()
    }

    /// Does a DN's stretch (or a leg at it) belong to the group?
    pub fn covers(&self, dn: &str, agent: Option<&str>) -> bool {
        match self.kind.as_str() {
            "agent" => agent.is_some_and(|a| self.members.iter().any(|m| m == a)),
            _ => self.members.iter().any(|m| m == dn),
        }
    }
}

/// The sums a batch adds, per (object, width letter, bucket start).
pub type Deltas = BTreeMap<(String, char, i64), Tally>;

fn delta<'a>(deltas: &'a mut Deltas, object: &str, width: char, at_ms: i64) -> &'a mut Tally {
    let w = WIDTHS.iter().find(|(c, _)| *c == width).map(|(_, w)| *w).unwrap_or(MINUTE_MS);
    deltas.entry((object.to_string(), width, at_ms.div_euclid(w) * w)).or_default()
}

/// Count a fact at `at_ms` for each object, in every width.
fn count(deltas: &mut Deltas, objects: &[String], at_ms: i64, f: impl Fn(&mut Tally)) {
    for object in objects {
        for (width, _) in WIDTHS {
            f(delta(deltas, object, width, at_ms));
        }
    }
}

/// Is an agent logged in in this agent state?
pub fn logged_in(agent_state: Option<&str>) -> bool {
    matches!(agent_state, Some("ready" | "not_ready" | "after_call_work"))
}

/// The stretch a DN state is in, starting at `at_ms` unless the status says otherwise.
fn stretch_of(state: &DnState, at_ms: i64) -> Stretch {
    let (status, _) = dn_state::status(state);
    let agent = if logged_in(state.agent_state.as_deref()) { state.agent_id.clone() } else { None };
    let reason = if status == "not_ready" { state.agent_reason.clone().unwrap_or_default() } else { String::new() };
    Stretch { status: status.to_string(), since_ms: at_ms, agent, reason }
}

/// A status name as a [`Status`].
pub fn status_of(name: &str) -> Status {
    match name {
        "ready" => Status::Ready,
        "not_ready" => Status::NotReady,
        "after_call_work" => Status::AfterCallWork,
        "logged_out" => Status::LoggedOut,
        "ringing" => Status::Ringing,
        "dialing" => Status::Dialing,
        "talking" => Status::Talking,
        "held" => Status::Held,
        "idle" => Status::Idle,
        _ => Status::Unknown,
    }
}

/// The objects a stretch's time goes to.
fn stretch_objects(dn: &str, s: &Stretch) -> Vec<String> {
    let mut objects = vec![dn_object(dn), TSERVER.to_string()];
    if let Some(a) = &s.agent {
        objects.push(agent_object(a));
    }
    objects
}

/// How far back minute buckets are written: sliding windows look at most an hour back,
/// so a long stretch (an agent ready all night) adds its older part to intervals only.
pub const MINUTES_KEPT_MS: i64 = 2 * 60 * MINUTE_MS;

/// Add the part of a stretch in `[from, to)` to every width's buckets (minutes: only its
/// last [`MINUTES_KEPT_MS`]). Time nobody is logged in for, or in a link gap, is no
/// one's.
pub fn add_stretch(deltas: &mut Deltas, dn: &str, s: &Stretch, from_ms: i64, to_ms: i64) {
    let status = status_of(&s.status);
    if status == Status::Unknown || s.agent.is_none() || to_ms <= from_ms {
        return;
    }
    let objects = stretch_objects(dn, s);
    for (width, w) in WIDTHS {
        let from_ms = if width == 'm' { from_ms.max(to_ms - MINUTES_KEPT_MS) } else { from_ms };
        for (bucket, ms) in slices(from_ms, to_ms, w) {
            for object in &objects {
                deltas.entry((object.clone(), width, bucket)).or_default().stretch(status, s.agent.is_some(), &s.reason, ms);
            }
        }
    }
}

/// Add the time of the stretch in progress up to `now_ms` into one [`Tally`], for a
/// reader: only the part after `from_ms`, and only if the stretch belongs to one of
/// `objects`, or is covered by `group`.
pub fn stretch_so_far(tally: &mut Tally, row: &StatDn, objects: &[String], group: Option<&StatGroup>, from_ms: i64, now_ms: i64) {
    let s = &row.stretch;
    let mine = match group {
        Some(g) => g.covers(&row.state.dn, s.agent.as_deref()),
        None => stretch_objects(&row.state.dn, s).iter().any(|o| objects.contains(o)),
    };
    if mine {
        tally.stretch(status_of(&s.status), s.agent.is_some(), &s.reason, now_ms - from_ms.max(s.since_ms));
    }
}

/// Close the stretch in progress at `at_ms` if the state says the DN is now in another.
fn restretch(deltas: &mut Deltas, row: &mut StatDn, at_ms: i64) {
    let next = stretch_of(&row.state, at_ms);
    let s = &row.stretch;
    if (&next.status, &next.agent, &next.reason) != (&s.status, &s.agent, &s.reason) {
        // A late event (earlier than the stretch's start) ends it at its start: time never
        // runs backwards and no stretch is counted twice.
        let end = at_ms.max(s.since_ms);
        let old = row.stretch.clone();
        add_stretch(deltas, &row.state.dn, &old, old.since_ms, end);
        row.stretch = Stretch { since_ms: end, ..next };
    }
}

/// Fold a call event that concerns one DN (see [`dn_state::target`]): `row` is the DN's
/// row, `call` the row of the event's call (Telephony), `merged` the row of the call it
/// continues (a PartyChanged with another previous ConnID).
pub fn apply_at_dn(
    mut row: StatDn,
    call: Option<StatCall>,
    merged: Option<StatCall>,
    event: &CallEvent,
    deltas: &mut Deltas,
) -> (StatDn, Option<StatCall>, Option<StatCall>) {
    let at = event.server_time_ms;
    // The agent at the DN before the event: the one a leg it opens belongs to.
    let agent_before = if logged_in(row.state.agent_state.as_deref()) { row.state.agent_id.clone() } else { None };
    row.state = dn_state::apply_call(row.state, event);
    restretch(deltas, &mut row, at);
    let CallBody::Telephony(t) = &event.body else { return (row, call, merged) };
    let mut c = call.unwrap_or_default();
    let before = (!c.record.legs.is_empty()).then(|| c.record.clone());
    c.record = call_history::apply(before.clone(), event.tserver, t, at);
    c.leg_agents.resize(c.record.legs.len(), None);
    let i = c.record.legs.iter().rposition(|l| l.dn == t.dn).expect("the fold gives the event's DN a leg");
    let was = before.as_ref().and_then(|b| b.legs.get(i)).cloned();
    if was.is_none() {
        c.leg_agents[i] = agent_before.or_else(|| row.stretch.agent.clone());
    }
    let leg = c.record.legs[i].clone();
    let mut objects = vec![dn_object(&t.dn), TSERVER.to_string()];
    if let Some(a) = &c.leg_agents[i] {
        objects.push(agent_object(a));
    }
    let consult = c.record.call_type == "Consult";
    // Offered: the first Ringing of the call in each object's scope.
    if leg.offered && !was.as_ref().is_some_and(|w| w.offered) && !consult {
        for o in &objects {
            if !c.offers.contains_key(o) {
                c.offers.insert(o.clone(), Offer { at_ms: at, done: false });
                count(deltas, std::slice::from_ref(o), at, |t| t.offered += 1);
            }
        }
    }
    // Answered, or abandoned, where the offer is still open.
    let answered_now = leg.offered && leg.answered_ms.is_some() && was.as_ref().is_none_or(|w| w.answered_ms.is_none());
    let abandoned_now = leg.outcome == "abandoned" && was.as_ref().is_none_or(|w| w.outcome != "abandoned");
    if answered_now || abandoned_now {
        for o in &objects {
            if let Some(offer) = c.offers.get_mut(o).filter(|offer| !offer.done) {
                offer.done = true;
                let wait = (at - offer.at_ms).max(0);
                count(deltas, std::slice::from_ref(o), at, |t| if answered_now { t.answer(wait) } else { t.abandon(wait) });
            }
        }
    }
    // Handled: the leg's end.
    if leg.ended_ms.is_some() && was.as_ref().is_none_or(|w| w.ended_ms.is_none()) {
        handled(deltas, &c, i, at);
    }
    // A completed transfer or conference ends the DN's part in the consultation.
    let merged = match (t.kind, t.previous_connid.as_ref().filter(|p| **p != t.connid), merged) {
        (TEventKind::PartyChanged, Some(_), Some(mut m)) => {
            let open: Vec<usize> =
                m.record.legs.iter().enumerate().filter(|(_, l)| l.dn == t.dn && l.ended_ms.is_none()).map(|(j, _)| j).collect();
            m.record = call_history::merged_away(m.record, &t.dn, &t.connid, at);
            m.leg_agents.resize(m.record.legs.len(), None);
            for j in open {
                if m.record.legs[j].ended_ms.is_some() {
                    handled(deltas, &m, j, at);
                }
            }
            Some(m)
        }
        (_, _, m) => m,
    };
    (row, Some(c), merged)
}

/// Count leg `i` of a call as ended at `at_ms`.
fn handled(deltas: &mut Deltas, c: &StatCall, i: usize, at_ms: i64) {
    let leg = &c.record.legs[i];
    let (_, talk, hold, _) = durations(leg.started_ms, leg.answered_ms, leg.ended_ms.unwrap_or(at_ms), leg.hold_ms);
    let mut objects = vec![dn_object(&leg.dn), TSERVER.to_string()];
    if let Some(a) = c.leg_agents.get(i).cloned().flatten() {
        objects.push(agent_object(&a));
    }
    let counts = leg.answered_ms.is_some() && c.record.call_type != "Consult";
    count(deltas, &objects, at_ms, |t| {
        if counts {
            t.handled += 1;
        }
        t.talk_ms += talk;
        t.hold_ms += hold;
        t.hold_count += u64::from(leg.hold_count);
    });
}

/// Fold an event that concerns every DN of the T-Server (a link event) into one DN's row.
pub fn apply_to_every_dn(mut row: StatDn, event: &CallEvent, deltas: &mut Deltas) -> StatDn {
    row.state = dn_state::apply_call(row.state, event);
    restretch(deltas, &mut row, event.server_time_ms);
    row
}

/// Merge deltas into stored tallies.
pub fn merge(into: &mut Deltas, from: Deltas) {
    for (k, t) in from {
        into.entry(k).or_default().add(&t);
    }
}

#[cfg(test)]
mod tests {
    //! The worked example of docs/statistics.md, event by event through the fold: every
    //! object's sums over 10:00–10:15 read as a reader does (stored buckets plus the
    //! stretches in progress) equal the document's table, and so do the growing and
    //! sliding-window examples.
    use super::*;
    use crate::dn_state::Target;
    use netwatch_schemas::calls::{Agent, AgentEventKind, CallType, DnAddress, Telephony};

    const S: i64 = 1000;
    /// 2025-03-10T10:00:00Z.
    const TEN: i64 = 1_741_600_800_000;

    /// `hh:mm:ss` on the example's day, in ms.
    fn at(hms: &str) -> i64 {
        let p: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
        TEN + ((p[0] - 10) * 3600 + p[1] * 60 + p[2]) * S
    }

    #[derive(Default)]
    struct Site {
        dns: BTreeMap<String, StatDn>,
        calls: BTreeMap<String, StatCall>,
        deltas: Deltas,
    }

    impl Site {
        fn event(&mut self, time: &str, body: CallBody) {
            let event = CallEvent {
                event_id: "e".into(),
                tserver: 1,
                monitor: "m".into(),
                session: "s".into(),
                server_time_ms: at(time),
                link_seq: None,
                body,
            };
            match dn_state::target(&event) {
                Target::Dn(dn) => {
                    let row = self.dns.remove(&dn).unwrap_or_else(|| StatDn::new(1, &dn));
                    let (call, merged) = match &event.body {
                        CallBody::Telephony(t) => (
                            self.calls.remove(&t.connid),
                            t.previous_connid
                                .as_ref()
                                .filter(|p| **p != t.connid && t.kind == TEventKind::PartyChanged)
                                .and_then(|p| self.calls.remove(p)),
                        ),
                        _ => (None, None),
                    };
                    let (row, call, merged) = apply_at_dn(row, call, merged, &event, &mut self.deltas);
                    self.dns.insert(dn, row);
                    for c in [call, merged].into_iter().flatten() {
                        self.calls.insert(c.record.connid.clone(), c);
                    }
                }
                Target::AllDns => {
                    for row in self.dns.values_mut() {
                        *row = apply_to_every_dn(row.clone(), &event, &mut self.deltas);
                    }
                }
                Target::Nothing => {}
            }
        }

        fn tel(&mut self, time: &str, kind: TEventKind, connid: &str, dn: &str) {
            self.tel_full(time, kind, connid, dn, None);
        }

        fn tel_full(&mut self, time: &str, kind: TEventKind, connid: &str, dn: &str, third: Option<&str>) {
            let body = CallBody::Telephony(Telephony {
                kind,
                dn: dn.into(),
                connid: connid.into(),
                call_type: CallType::Inbound,
                other_dn: Some("+15550100".into()),
                third_party_dn: third.map(str::to_string),
                previous_connid: None,
                cause: None,
                released_by: None,
            });
            self.event(time, body);
        }

        fn agent(&mut self, time: &str, kind: AgentEventKind, dn: &str, agent: &str, reason: Option<&str>) {
            let body = CallBody::Agent(Agent { kind, dn: dn.into(), agent_id: agent.into(), reason: reason.map(str::to_string) });
            self.event(time, body);
        }

        /// An object's sums over `[from, to)` of buckets of `width`, read at `to`.
        fn sums(&self, object: &str, width: char, from: i64, to: i64) -> Tally {
            let mut t = Tally::default();
            for ((o, w, b), d) in &self.deltas {
                if o == object && *w == width && *b >= from && *b < to {
                    t.add(d);
                }
            }
            for row in self.dns.values() {
                stretch_so_far(&mut t, row, &[object.to_string()], None, from, to);
            }
            t
        }
    }

    /// The timeline of docs/statistics.md, "The example".
    fn example() -> Site {
        use AgentEventKind::*;
        use TEventKind::*;
        let mut s = Site::default();
        for dn in ["5001", "5002", "5003"] {
            s.event("09:00:00", CallBody::DnRegistered(DnAddress { dn: dn.into() }));
        }
        s.agent("09:58:00", Login, "5001", "a1", None);
        s.agent("09:58:00", Login, "5002", "a2", None);
        s.agent("10:00:00", Ready, "5001", "a1", None);
        s.agent("10:00:00", Ready, "5002", "a2", None);
        s.tel("10:01:00", Ringing, "C1", "5001");
        s.tel("10:01:08", Established, "C1", "5001");
        s.tel("10:02:00", Held, "C1", "5001");
        s.tel("10:02:30", Retrieved, "C1", "5001");
        s.tel("10:03:00", Ringing, "C2", "5002");
        s.tel("10:03:03", Abandoned, "C2", "5002");
        s.tel("10:04:08", Released, "C1", "5001");
        s.agent("10:04:08", AfterCallWork, "5001", "a1", None);
        s.agent("10:04:38", Ready, "5001", "a1", None);
        s.tel("10:05:00", Ringing, "C3", "5002");
        s.tel("10:05:25", Established, "C3", "5002");
        s.tel("10:06:00", Ringing, "C4", "5001");
        s.tel("10:06:12", Abandoned, "C4", "5001");
        s.tel("10:07:25", Released, "C3", "5002");
        s.agent("10:07:25", AfterCallWork, "5002", "a2", None);
        s.agent("10:08:25", Ready, "5002", "a2", None);
        s.agent("10:09:00", NotReady, "5001", "a1", Some("break"));
        s.tel("10:10:00", Ringing, "C5", "5002");
        s.tel("10:10:10", Established, "C5", "5002");
        s.agent("10:12:00", Login, "5003", "a3", None);
        s.agent("10:12:00", NotReady, "5003", "a3", Some("lunch"));
        s.tel("10:13:10", Released, "C5", "5002");
        s.agent("10:13:10", AfterCallWork, "5002", "a2", None);
        s.agent("10:13:40", Ready, "5002", "a2", None);
        s.agent("10:14:00", Ready, "5001", "a1", None);
        s.tel("10:14:05", Ringing, "C6", "5002");
        s.tel("10:14:10", Established, "C6", "5002");
        s.tel("10:14:12", Ringing, "C7", "5001");
        s
    }

    /// One column of the document's table: the sums, then the figures.
    #[allow(clippy::too_many_arguments)]
    fn column(
        t: &Tally,
        arrivals: (u64, u64, u64, u64, u64),
        waits: (Option<i64>, Option<i64>),
        handling: (u64, i64, i64, u64, i64),
        time: (i64, i64, i64),
        ratios: (Option<f64>, Option<f64>, Option<i64>, Option<f64>),
    ) {
        let f = t.figures();
        assert_eq!((t.offered, t.answered, t.answered_in_threshold, t.abandoned, t.short_abandoned), arrivals, "{t:?}");
        assert_eq!((f.asa_ms, t.longest_wait_ms), waits, "{t:?}");
        assert_eq!((t.handled, t.talk_ms, t.hold_ms, t.hold_count, t.after_call_work_ms), handling, "{t:?}");
        assert_eq!((t.logged_in_ms, t.not_ready_ms, t.busy_ms), time, "{t:?}");
        assert_eq!((f.abandoned_pct, f.service_level_pct, f.aht_ms, f.occupancy_pct), ratios, "{t:?}");
    }

    #[test]
    fn the_example_interval_for_every_object() {
        let s = example();
        let (from, to) = (TEN, at("10:15:00"));
        for object in ["dn:5001", "agent:a1"] {
            column(
                &s.sums(object, 'i', from, to),
                (3, 1, 1, 1, 0),
                (Some(8 * S), Some(12 * S)),
                (1, 150 * S, 30 * S, 1, 30 * S),
                (900 * S, 300 * S, 210 * S),
                (Some(50.0), Some(50.0), Some(210 * S), Some(35.0)),
            );
        }
        for object in ["dn:5002", "agent:a2"] {
            column(
                &s.sums(object, 'i', from, to),
                (4, 3, 2, 1, 1),
                (Some(13_333), Some(25 * S)),
                (2, 300 * S, 0, 0, 90 * S),
                (900 * S, 0, 440 * S),
                (Some(25.0), Some(66.7), Some(195 * S), Some(48.9)),
            );
        }
        for object in ["dn:5003", "agent:a3"] {
            column(
                &s.sums(object, 'i', from, to),
                (0, 0, 0, 0, 0),
                (None, None),
                (0, 0, 0, 0, 0),
                (180 * S, 180 * S, 0),
                (None, None, None, None),
            );
        }
        let t = s.sums(TSERVER, 'i', from, to);
        column(
            &t,
            (7, 4, 3, 2, 1),
            (Some(12 * S), Some(25 * S)),
            (3, 450 * S, 30 * S, 1, 120 * S),
            (1_980 * S, 480 * S, 650 * S),
            (Some(33.3), Some(60.0), Some(200 * S), Some(43.3)),
        );
        assert_eq!(t.not_ready_by_reason_ms, BTreeMap::from([("break".to_string(), 300 * S), ("lunch".to_string(), 180 * S)]));
        // The group Sales = {a1, a2, a3} is the sum of its members' rows: here the
        // T-Server's, as the document says.
        let mut sales = Tally::default();
        for a in ["agent:a1", "agent:a2", "agent:a3"] {
            sales.add(&s.sums(a, 'i', from, to));
        }
        assert_eq!(sales, t);
    }

    #[test]
    fn the_example_growing_and_sliding_window() {
        let s = example();
        // Growing in Europe/Paris at 10:15Z: from local midnight (23:00Z the day before),
        // the interval plus a1's and a2's 09:58–10:00 not-ready stretches.
        let t = s.sums(TSERVER, 'i', TEN - 11 * 3600 * S, at("10:15:00"));
        assert_eq!((t.logged_in_ms, t.not_ready_ms, t.busy_ms), (2_220 * S, 720 * S, 650 * S));
        assert_eq!(t.not_ready_by_reason_ms.get(""), Some(&(240 * S)));
        assert_eq!(t.figures().occupancy_pct, Some(43.3));
        // last_15m at 10:16:40: minute buckets 10:02 … 10:16 (C1's offer at 10:01 left).
        let t = s.sums(TSERVER, 'm', at("10:02:00"), at("10:16:40"));
        assert_eq!((t.offered, t.answered, t.answered_in_threshold, t.abandoned, t.short_abandoned), (6, 3, 2, 2, 1));
        assert_eq!((t.figures().service_level_pct, t.figures().asa_ms), (Some(50.0), Some(13_333)));
    }

    #[test]
    fn a_call_transferred_inside_the_tserver_is_offered_to_it_once() {
        use TEventKind::*;
        let mut s = example();
        // C8: rings at 5001 at 10:20:00, answered 10:20:05, transferred single-step to
        // 5002 (Released with ThirdPartyDN, Ringing at 5002 at 10:21:00), answered 10:21:04.
        s.tel("10:20:00", Ringing, "C8", "5001");
        s.tel("10:20:05", Established, "C8", "5001");
        s.tel_full("10:21:00", Released, "C8", "5001", Some("5002"));
        s.tel("10:21:00", Ringing, "C8", "5002");
        s.tel("10:21:04", Established, "C8", "5002");
        s.tel("10:22:00", Released, "C8", "5002");
        let (from, to) = (at("10:15:00"), at("10:30:00"));
        let d1 = s.sums("dn:5001", 'i', from, to);
        let d2 = s.sums("dn:5002", 'i', from, to);
        let ts = s.sums(TSERVER, 'i', from, to);
        assert_eq!((d1.offered, d1.answered, d1.answer_wait_ms), (1, 1, 5 * S));
        assert_eq!((d2.offered, d2.answered, d2.answer_wait_ms), (1, 1, 4 * S));
        // C6 was answered in the interval before and goes on, C7 still rings: neither is
        // counted here. C8 is offered and answered once, from its first offer (5 s), and
        // handled twice (a leg at each DN: talk 55 s + 56 s).
        assert_eq!((ts.offered, ts.answered, ts.answer_wait_ms, ts.handled, ts.talk_ms), (1, 1, 5 * S, 2, 111 * S), "{ts:?}");
    }

    #[test]
    fn a_link_gap_is_nobodys_time_and_a_late_event_does_not_count_twice() {
        use AgentEventKind::*;
        let mut s = Site::default();
        s.event("09:00:00", CallBody::DnRegistered(DnAddress { dn: "5001".into() }));
        s.agent("10:00:00", Login, "5001", "a1", None);
        s.agent("10:00:00", Ready, "5001", "a1", None);
        s.event(
            "10:05:00",
            CallBody::LinkDisconnected(netwatch_schemas::calls::LinkDisconnected { reason: "test".into(), events_lost: None }),
        );
        s.event("10:07:00", CallBody::DnRegistered(DnAddress { dn: "5001".into() }));
        // A late agent event, stamped before the stretch it would end began.
        s.agent("10:06:00", NotReady, "5001", "a1", Some("late"));
        let t = s.sums("agent:a1", 'i', TEN, at("10:10:00"));
        // Ready 10:00–10:05, then unknown until 10:07 (nobody's), then not ready from
        // 10:07 (the late event's time is clamped to the stretch's start) to 10:10.
        assert_eq!((t.logged_in_ms, t.not_ready_ms), (480 * S, 180 * S), "{t:?}");
    }

    mod history {
        //! The consistency check of docs/statistics.md ("Rules"): for random calls, the
        //! interval buckets (and the minute buckets summed over each interval) equal the
        //! same facts recounted from the call history's legs.
        use super::*;
        use crate::call_history;
        use crate::store::interval_of;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        struct Planned {
            start: i64,
            dn: usize,
            ring: i64,
            /// None: abandoned; Some: answered.
            answer: Option<Answered>,
            ends: bool,
        }

        /// Talk, a hold (after, length), a single-step transfer (to, ring, talk there).
        type Answered = (i64, Option<(i64, i64)>, Option<(usize, i64, i64)>);

        fn planned() -> impl Strategy<Value = Planned> {
            let transfer = proptest::option::of((0usize..4, 0i64..60_000, 0i64..600_000));
            let answer = proptest::option::of((0i64..900_000, proptest::option::of((0i64..60_000, 0i64..120_000)), transfer));
            (0i64..3 * INTERVAL_MS, 0usize..4, 0i64..120_000, answer, proptest::bool::weighted(0.9))
                .prop_map(|(start, dn, ring, answer, ends)| Planned { start, dn, ring, answer, ends })
        }

        fn dn(i: usize) -> String {
            format!("50{i:02}")
        }

        /// The events of the planned calls, in time order (a call's own in its order).
        fn events(calls: &[Planned]) -> Vec<CallEvent> {
            use TEventKind::*;
            let mut out: Vec<(i64, usize, CallEvent)> = Vec::new();
            let mut seq = 0;
            let mut push = |at: i64, kind: TEventKind, connid: &str, d: &str, third: Option<String>| {
                seq += 1;
                let t = Telephony {
                    kind,
                    dn: d.to_string(),
                    connid: connid.into(),
                    call_type: CallType::Inbound,
                    other_dn: Some("+15550100".into()),
                    third_party_dn: third,
                    previous_connid: None,
                    cause: None,
                    released_by: None,
                };
                let e = CallEvent {
                    event_id: format!("e{seq}"),
                    tserver: 1,
                    monitor: "m".into(),
                    session: "s".into(),
                    server_time_ms: TEN + at,
                    link_seq: None,
                    body: CallBody::Telephony(t),
                };
                out.push((TEN + at, seq, e));
            };
            for (i, c) in calls.iter().enumerate() {
                let connid = format!("C{i}");
                let a = dn(c.dn);
                push(c.start, Ringing, &connid, &a, None);
                let answered = c.start + c.ring;
                match &c.answer {
                    None if c.ends => push(answered, Abandoned, &connid, &a, None),
                    None => {}
                    Some((talk, hold, transfer)) => {
                        push(answered, Established, &connid, &a, None);
                        if let Some((after, length)) = hold {
                            push(answered + after.min(talk), Held, &connid, &a, None);
                            push(answered + (after + length).min(*talk), Retrieved, &connid, &a, None);
                        }
                        let end = answered + talk;
                        match transfer {
                            Some((to, ring2, talk2)) if *to != c.dn => {
                                let b = dn(*to);
                                push(end, Released, &connid, &a, Some(b.clone()));
                                push(end, Ringing, &connid, &b, None);
                                push(end + ring2, Established, &connid, &b, None);
                                if c.ends {
                                    push(end + ring2 + talk2, Released, &connid, &b, None);
                                }
                            }
                            _ if c.ends => push(end, Released, &connid, &a, None),
                            _ => {}
                        }
                    }
                }
            }
            out.sort_by_key(|(at, seq, _)| (*at, *seq));
            out.into_iter().map(|(_, _, e)| e).collect()
        }

        /// Recount from the call history: per (object, interval), the arrival and
        /// handling sums.
        fn recount(events: &[CallEvent]) -> BTreeMap<(String, i64), Tally> {
            let mut calls: BTreeMap<String, CallRecord> = BTreeMap::new();
            for e in events {
                let CallBody::Telephony(t) = &e.body else { continue };
                let c = call_history::apply(calls.remove(&t.connid), 1, t, e.server_time_ms);
                calls.insert(t.connid.clone(), c);
            }
            fn at<'a>(out: &'a mut BTreeMap<(String, i64), Tally>, o: &str, ms: i64) -> &'a mut Tally {
                out.entry((o.to_string(), interval_of(ms))).or_default()
            }
            let mut out: BTreeMap<(String, i64), Tally> = BTreeMap::new();
            for c in calls.values() {
                // The T-Server: once per call, from the first offer.
                let first = c.legs.iter().filter(|l| l.offered).map(|l| l.started_ms).min();
                if let Some(offer) = first {
                    at(&mut out, TSERVER, offer).offered += 1;
                    let answer = c.legs.iter().filter(|l| l.offered).filter_map(|l| l.answered_ms).min();
                    let abandon = c.legs.iter().filter(|l| l.outcome == "abandoned").filter_map(|l| l.ended_ms).min();
                    match (answer, abandon) {
                        (Some(a), _) => at(&mut out, TSERVER, a).answer(a - offer),
                        (None, Some(b)) => at(&mut out, TSERVER, b).abandon(b - offer),
                        _ => {}
                    }
                }
                for l in &c.legs {
                    let o = dn_object(&l.dn);
                    if l.offered {
                        at(&mut out, &o, l.started_ms).offered += 1;
                        if let Some(a) = l.answered_ms {
                            at(&mut out, &o, a).answer(a - l.started_ms);
                        }
                    }
                    if let (Some(end), "abandoned") = (l.ended_ms, l.outcome.as_str()) {
                        at(&mut out, &o, end).abandon(end - l.started_ms);
                    }
                    if let Some(end) = l.ended_ms {
                        let (_, talk, hold, _) = durations(l.started_ms, l.answered_ms, end, l.hold_ms);
                        for object in [o.as_str(), TSERVER] {
                            let t = at(&mut out, object, end);
                            t.handled += u64::from(l.answered_ms.is_some());
                            t.talk_ms += talk;
                            t.hold_ms += hold;
                            t.hold_count += u64::from(l.hold_count);
                        }
                    }
                }
            }
            out.retain(|_, t| *t != Tally::default());
            out
        }

        proptest! {
            #[test]
            fn interval_and_minute_sums_equal_the_history(calls in proptest::collection::vec(planned(), 1..25)) {
                let events = events(&calls);
                let mut s = Site::default();
                for e in &events {
                    let CallBody::Telephony(t) = &e.body else { continue };
                    if !s.dns.contains_key(&t.dn) {
                        s.event("09:00:00", CallBody::DnRegistered(DnAddress { dn: t.dn.clone() }));
                    }
                    let row = s.dns.remove(&t.dn).unwrap();
                    let call = s.calls.remove(&t.connid);
                    let (row, call, _) = apply_at_dn(row, call, None, e, &mut s.deltas);
                    s.dns.insert(t.dn.clone(), row);
                    s.calls.insert(t.connid.clone(), call.unwrap());
                }
                let mut intervals: BTreeMap<(String, i64), Tally> = BTreeMap::new();
                let mut minutes: BTreeMap<(String, i64), Tally> = BTreeMap::new();
                for ((o, w, b), t) in &s.deltas {
                    let into = if *w == 'i' { &mut intervals } else { &mut minutes };
                    into.entry((o.clone(), interval_of(*b))).or_default().add(t);
                }
                intervals.retain(|_, t| *t != Tally::default());
                minutes.retain(|_, t| *t != Tally::default());
                let want = recount(&events);
                prop_assert_eq!(&intervals, &want);
                prop_assert_eq!(&minutes, &want);
            }
        }
    }
}
