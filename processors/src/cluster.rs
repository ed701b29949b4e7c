//! The live view of monitors, folded from `monitors`: who is alive, which slots and
//! T-Servers each holds, and its load. Pure; time is an input.

use std::collections::{BTreeMap, BTreeSet};

use netwatch_schemas::monitors::{MonitorBody, MonitorEvent};
use serde::Serialize;

/// When a monitor counts as dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Liveness {
    /// Expected time between heartbeats.
    pub heartbeat_ms: i64,
    /// Heartbeats that may be missed before the monitor is dead.
    pub missed: i64,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness { heartbeat_ms: 1_000, missed: 3 }
    }
}

/// Whether a reader may trust its view for decisions that take someone for dead: only
/// after the view has been current (see [`Cluster::is_current`]) for two liveness
/// windows without a break — long enough for every live member's reports, delayed by an
/// outage, to have come in. Pure; time is an input.
#[derive(Clone, Copy, Debug, Default)]
pub struct Trust {
    current_since: Option<i64>,
}

impl Trust {
    /// Note whether the view is current now; true if it may be trusted.
    pub fn update(&mut self, current: bool, liveness: Liveness, now_ms: i64) -> bool {
        if !current {
            self.current_since = None;
            return false;
        }
        let since = *self.current_since.get_or_insert(now_ms);
        now_ms - since >= 2 * liveness.heartbeat_ms * liveness.missed
    }

    /// Since when the view has been current without a break, if it is.
    pub fn current_since(&self) -> Option<i64> {
        self.current_since
    }
}

/// The latest report of one monitor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MonitorView {
    pub id: String,
    pub host: String,
    pub slots: Vec<i32>,
    /// T-Servers it holds (has a link task for).
    pub tservers: BTreeSet<i32>,
    /// T-Servers it waits for: its slots assign them, another monitor still holds them.
    #[serde(default)]
    pub wanted: BTreeSet<i32>,
    pub dns: i32,
    pub sessions: i32,
    pub rss_bytes: i64,
    pub last_seen_ms: i64,
    /// When its slot list last changed.
    pub slots_since_ms: i64,
    /// It announced that it is stopping.
    pub stopped: bool,
}

/// The latest report of one dispatcher instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DispatcherView {
    pub instance: String,
    /// `config` partitions it owns.
    pub partitions: Vec<i32>,
    pub last_seen_ms: i64,
}

/// Every monitor and dispatcher ever heard of, with its latest report.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub liveness: Liveness,
    /// Whose view this is (see [`Cluster::set_reader`]).
    reader: Option<String>,
    monitors: BTreeMap<String, MonitorView>,
    dispatchers: BTreeMap<String, DispatcherView>,
}

impl Cluster {
    /// An empty view with these liveness rules.
    pub fn new(liveness: Liveness) -> Self {
        Cluster { liveness, reader: None, monitors: BTreeMap::new(), dispatchers: BTreeMap::new() }
    }

    /// Judge liveness as `id` (a monitor or dispatcher that reports every heartbeat) sees
    /// it: reports age no further than one heartbeat past the reader's own latest report
    /// read back. When the reader's reports stop coming back (a broker pause, a slow fetch),
    /// so do everyone's, and a live monitor whose last report came in a moment before the
    /// reader's own must not look dead meanwhile; a dead one still ages while the reader's
    /// reports come back.
    pub fn set_reader(&mut self, id: &str) {
        self.reader = Some(id.to_string());
    }

    /// The time liveness is judged at: `now_ms`, but no later than one heartbeat after
    /// the reader's own latest report.
    fn clock(&self, now_ms: i64) -> i64 {
        match self.reader.as_deref().and_then(|me| self.last_seen(me)) {
            Some(at) => now_ms.min(at + self.liveness.heartbeat_ms),
            None => now_ms,
        }
    }

    /// Fold one event of `monitors`.
    pub fn observe(&mut self, event: &MonitorEvent) {
        if let MonitorBody::DispatcherHeartbeat(d) = &event.body {
            let view = DispatcherView { instance: event.monitor_id.clone(), partitions: d.partitions.clone(), last_seen_ms: event.at_ms };
            self.dispatchers.insert(event.monitor_id.clone(), view);
            return;
        }
        let m = self
            .monitors
            .entry(event.monitor_id.clone())
            .or_insert_with(|| MonitorView { id: event.monitor_id.clone(), ..Default::default() });
        if event.at_ms < m.last_seen_ms {
            return;
        }
        m.last_seen_ms = event.at_ms;
        match &event.body {
            MonitorBody::Started(s) => {
                *m = MonitorView { id: event.monitor_id.clone(), host: s.host.clone(), last_seen_ms: event.at_ms, ..Default::default() };
            }
            MonitorBody::Heartbeat(h) => {
                m.stopped = false;
                if m.slots != h.slots {
                    m.slots = h.slots.clone();
                    m.slots_since_ms = event.at_ms;
                }
                m.dns = h.dns;
                m.sessions = h.sessions.unwrap_or(h.tservers);
                m.rss_bytes = h.rss_bytes.unwrap_or(0);
                // A v1/v2 heartbeat does not say which T-Servers it holds, before v5 which it waits for.
                m.tservers = h.tserver_ids.clone().unwrap_or_default().into_iter().collect();
                m.wanted = h.wanted.clone().unwrap_or_default().into_iter().collect();
            }
            MonitorBody::Stopping(_) => {
                m.stopped = true;
                m.slots.clear();
                m.tservers.clear();
                m.wanted.clear();
            }
            MonitorBody::DispatcherHeartbeat(_) => {}
        }
    }

    /// Is this monitor alive at `now_ms`?
    pub fn is_live(&self, m: &MonitorView, now_ms: i64) -> bool {
        !m.stopped && self.clock(now_ms) - m.last_seen_ms <= self.liveness.heartbeat_ms * self.liveness.missed
    }

    /// Dispatchers that reported within the liveness window, by instance.
    pub fn live_dispatchers(&self, now_ms: i64) -> Vec<&DispatcherView> {
        let (window, now_ms) = (self.liveness.heartbeat_ms * self.liveness.missed, self.clock(now_ms));
        self.dispatchers.values().filter(|d| now_ms - d.last_seen_ms <= window).collect()
    }

    /// Live monitors, by id.
    pub fn live(&self, now_ms: i64) -> Vec<&MonitorView> {
        self.monitors.values().filter(|m| self.is_live(m, now_ms)).collect()
    }

    /// When this monitor or dispatcher was last heard of (its own clock), if ever.
    pub fn last_seen(&self, id: &str) -> Option<i64> {
        self.monitors.get(id).map(|m| m.last_seen_ms).or_else(|| self.dispatchers.get(id).map(|d| d.last_seen_ms))
    }

    /// Is this view current? Only if the reader has read back its own report of the last
    /// liveness window (`me` reports every heartbeat): after a broker outage the reports
    /// of the others arrive late, and until then a live monitor would look dead.
    pub fn is_current(&self, me: &str, now_ms: i64) -> bool {
        self.last_seen(me).is_some_and(|at| now_ms - at <= self.liveness.heartbeat_ms * self.liveness.missed)
    }

    /// Every monitor heard of, by id.
    pub fn all(&self) -> impl Iterator<Item = &MonitorView> {
        self.monitors.values()
    }

    /// A live monitor that still holds this T-Server, if any.
    pub fn holder_of(&self, tserver: i32, now_ms: i64) -> Option<&MonitorView> {
        self.live(now_ms).into_iter().find(|m| m.tservers.contains(&tserver))
    }

    /// Has any live monitor's slot list changed within `settle_ms`, or is a slot claimed
    /// by two live monitors? Then slots are moving between monitors through the consumer
    /// group, and decisions based on ownership should wait.
    pub fn unsettled(&self, slots: i32, now_ms: i64, settle_ms: i64) -> bool {
        let live = self.live(now_ms);
        live.iter().any(|m| now_ms - m.slots_since_ms < settle_ms)
            || (0..slots).any(|s| live.iter().filter(|m| m.slots.contains(&s)).count() > 1)
    }

    /// The monitor that last reported owning this slot, if it is dead (it stopped
    /// reporting without saying so: killed, or cut off). Its slot will not be handed on by
    /// a broker that keeps dead members in the group (docs/broker-notes.md).
    pub fn dead_owner(&self, slot: i32, now_ms: i64) -> Option<&MonitorView> {
        let last = self.monitors.values().filter(|m| m.slots.contains(&slot)).max_by_key(|m| m.last_seen_ms)?;
        (!last.stopped && !self.is_live(last, now_ms)).then_some(last)
    }

    /// The live monitor that reports owning this slot (the latest report wins).
    pub fn owner_of(&self, slot: i32, now_ms: i64) -> Option<&MonitorView> {
        self.live(now_ms).into_iter().filter(|m| m.slots.contains(&slot)).max_by_key(|m| m.last_seen_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwatch_schemas::monitors::{Heartbeat, Stopping};

    fn hb(id: &str, at: i64, slots: Vec<i32>, held: Vec<i32>) -> MonitorEvent {
        MonitorEvent {
            monitor_id: id.into(),
            at_ms: at,
            body: MonitorBody::Heartbeat(Heartbeat {
                slots,
                tservers: held.len() as i32,
                dns: 0,
                sessions: None,
                rss_bytes: None,
                tserver_ids: Some(held),
                wanted: None,
            }),
        }
    }

    #[test]
    fn a_monitor_dies_after_missed_heartbeats_or_when_it_says_so() {
        let mut c = Cluster::new(Liveness { heartbeat_ms: 1_000, missed: 3 });
        c.observe(&hb("a", 10_000, vec![0, 1], vec![7]));
        c.observe(&hb("b", 10_000, vec![2], vec![]));
        assert_eq!(c.live(13_000).len(), 2);
        assert_eq!(c.holder_of(7, 13_000).map(|m| m.id.as_str()), Some("a"));
        assert_eq!(c.owner_of(1, 13_000).map(|m| m.id.as_str()), Some("a"));
        assert_eq!(c.live(13_001).len(), 0, "3 missed heartbeats");
        assert_eq!(c.holder_of(7, 13_001), None, "a dead monitor holds nothing");
        c.observe(&MonitorEvent { monitor_id: "b".into(), at_ms: 11_000, body: MonitorBody::Stopping(Stopping { reason: "x".into() }) });
        assert_eq!(c.live(11_000).iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn a_live_monitor_does_not_look_dead_while_the_readers_own_reports_stop_coming_back() {
        let mut c = Cluster::new(Liveness { heartbeat_ms: 1_000, missed: 3 });
        c.set_reader("me");
        // The broker stops answering: b's last report came in at 9.2 s, the reader's own at 10 s.
        c.observe(&hb("b", 9_200, vec![2], vec![7]));
        c.observe(&hb("me", 10_000, vec![1], vec![]));
        // At 12.5 s the reader's view is still current (its own report is 2.5 s old) while
        // b's is 3.3 s old: judged by the reader's reports, b is 1.8 s behind and alive.
        assert!(c.is_current("me", 12_500));
        assert_eq!(c.holder_of(7, 12_500).map(|m| m.id.as_str()), Some("b"));
        assert_eq!(c.holder_of(7, 60_000).map(|m| m.id.as_str()), Some("b"), "nobody ages while nothing comes back");
        // Without a reader, wall-clock time alone decides (`netwatch status`).
        let mut plain = Cluster::new(Liveness { heartbeat_ms: 1_000, missed: 3 });
        plain.observe(&hb("b", 9_200, vec![2], vec![7]));
        assert_eq!(plain.holder_of(7, 12_500), None);
        // The reader's reports come back and b's do not: b dies 3 s after its last report.
        c.observe(&hb("me", 11_000, vec![1], vec![]));
        c.observe(&hb("me", 12_000, vec![1], vec![]));
        assert_eq!(c.holder_of(7, 12_200).map(|m| m.id.as_str()), Some("b"));
        assert_eq!(c.holder_of(7, 12_201), None);
    }

    #[test]
    fn ownership_is_unsettled_while_slots_move_or_are_claimed_twice() {
        let mut c = Cluster::new(Liveness { heartbeat_ms: 1_000, missed: 3 });
        c.observe(&hb("a", 1_000, vec![0, 1], vec![]));
        c.observe(&hb("b", 1_000, vec![2], vec![]));
        assert!(c.unsettled(3, 2_000, 2_000), "the slots were just assigned");
        c.observe(&hb("a", 2_500, vec![0, 1], vec![]));
        c.observe(&hb("b", 2_500, vec![2], vec![]));
        assert!(!c.unsettled(3, 3_000, 2_000));
        c.observe(&hb("a", 6_000, vec![0, 1], vec![]));
        c.observe(&hb("b", 3_500, vec![1, 2], vec![]));
        assert!(c.unsettled(3, 6_000, 2_000), "slot 1 is claimed twice");
    }

    #[test]
    fn a_slot_whose_last_owner_died_has_a_dead_owner_and_a_stopped_one_does_not() {
        let mut c = Cluster::new(Liveness { heartbeat_ms: 1_000, missed: 3 });
        c.observe(&hb("a", 1_000, vec![0], vec![7]));
        c.observe(&hb("b", 1_000, vec![1], vec![]));
        assert!(c.dead_owner(0, 3_000).is_none(), "alive");
        assert_eq!(c.dead_owner(0, 4_001).map(|m| m.id.as_str()), Some("a"));
        c.observe(&MonitorEvent { monitor_id: "b".into(), at_ms: 2_000, body: MonitorBody::Stopping(Stopping { reason: "x".into() }) });
        assert!(c.dead_owner(1, 9_000).is_none(), "a monitor that stopped gave its slots back to the group");
        c.observe(&hb("c", 9_000, vec![0], vec![]));
        assert!(c.dead_owner(0, 9_000).is_none(), "a live monitor owns it now");
    }

    #[test]
    fn a_view_is_current_only_with_the_readers_own_recent_report() {
        let mut c = Cluster::new(Liveness { heartbeat_ms: 1_000, missed: 3 });
        assert!(!c.is_current("me", 5_000), "nothing read back yet");
        c.observe(&hb("me", 5_000, vec![0], vec![]));
        assert!(c.is_current("me", 7_000));
        assert!(!c.is_current("me", 8_001), "its own reports stopped arriving: the view is stale");
    }

    #[test]
    fn a_view_is_trusted_after_two_liveness_windows_of_being_current() {
        let l = Liveness { heartbeat_ms: 1_000, missed: 3 };
        let mut t = Trust::default();
        assert!(!t.update(true, l, 10_000));
        assert!(!t.update(true, l, 15_999));
        assert!(t.update(true, l, 16_000));
        assert!(!t.update(false, l, 17_000), "a break (an outage) starts it again");
        assert!(!t.update(true, l, 18_000));
        assert!(t.update(true, l, 24_000));
        assert_eq!(t.current_since(), Some(18_000), "current again since the break ended");
        t.update(false, l, 25_000);
        assert_eq!(t.current_since(), None);
    }

    #[test]
    fn older_reports_do_not_overwrite_newer_ones() {
        let mut c = Cluster::new(Liveness::default());
        c.observe(&hb("a", 2_000, vec![1], vec![]));
        c.observe(&hb("a", 1_000, vec![9], vec![3]));
        assert_eq!(c.owner_of(1, 2_000).map(|m| m.id.as_str()), Some("a"));
        assert_eq!(c.holder_of(3, 2_000), None);
    }
}
