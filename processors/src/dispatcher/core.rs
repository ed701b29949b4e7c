//! The dispatcher's pure decision core.
//!
//! It holds three views: the configuration (folded from `config`), what the slots were
//! told (folded from `assignments`), and the monitors' liveness and load (folded from
//! `monitors`, see [`Cluster`]). [`Dispatcher::reconcile`] returns the commands that
//! bring the slots in line with the configuration; [`Dispatcher::tick`] retries deferred
//! placements and rebalances at a bounded rate. Decisions depend only on the events
//! folded and the times given, in order, so replaying the log gives the same decisions.
//! The load formula and the move protocol are described in `docs/dispatcher.md`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use netwatch_producers::config::{ConfigState, Rejected};
use netwatch_schemas::assignments::Command;
use netwatch_schemas::config::{ConfigChange, Dn, DnRef, TServer, TServerRef};
use netwatch_schemas::monitors::MonitorEvent;

use crate::cluster::{Cluster, Liveness};

/// A command and the slot (partition of `assignments`) it goes to.
pub type Emitted = (i32, Command);

/// Load of one T-Server session, in DN-equivalents.
pub const TSERVER_WEIGHT: i64 = 10;
/// Resident memory worth one DN-equivalent of load.
pub const RSS_BYTES_PER_POINT: i64 = 16 << 20;

/// Tunables.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Number of slots (partitions of `assignments`).
    pub slots: i32,
    pub liveness: Liveness,
    /// At most this many T-Server moves per `move_window_ms`.
    pub max_moves: usize,
    pub move_window_ms: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { slots: 32, liveness: Liveness::default(), max_moves: 2, move_window_ms: 10_000 }
    }
}

/// The decision state.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    settings: Settings,
    config: ConfigState,
    /// T-Server → slot → what that slot's latest command for it says (an assign).
    /// Kept per slot because partitions are read in no order relative to each other:
    /// the per-slot latest command does not depend on that order.
    told_tservers: BTreeMap<i32, BTreeMap<i32, TServer>>,
    /// (T-Server, DN) → slot → the DN as that slot's latest command registers it.
    told_dns: BTreeMap<(i32, String), BTreeMap<i32, Dn>>,
    /// T-Server → (slot, what the slot was told): the lowest slot that assigns it.
    placed: BTreeMap<i32, (i32, TServer)>,
    /// (T-Server, DN) → (slot, what the slot was told): the lowest slot registering it.
    registered: BTreeMap<(i32, String), (i32, Dn)>,
    cluster: Cluster,
    /// T-Servers waiting to be placed until no live monitor holds them, with the slot
    /// chosen for them (a move) if any.
    pending: BTreeMap<i32, Option<i32>>,
    /// When recent moves started, for the rate limit.
    moves: VecDeque<i64>,
    /// Slots holding T-Servers that no live monitor claims, since when.
    orphaned: BTreeMap<i32, i64>,
    /// T-Servers taken out of orphaned slots, since when.
    evacuated: BTreeMap<i32, i64>,
    /// When another dispatcher last revoked a T-Server (one of its moves in flight).
    foreign_revoke_ms: i64,
}

/// Load of one live monitor.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MonitorLoad {
    pub monitor: String,
    pub slots: Vec<i32>,
    pub tservers: Vec<i32>,
    pub dns: i64,
    /// DNs + sessions + memory: what placement compares.
    pub load: i64,
    /// The memory part of `load`; moves compare `load - rss_points`, since memory does
    /// not drop right after a T-Server leaves.
    pub rss_points: i64,
}

impl Dispatcher {
    /// A dispatcher with these settings.
    pub fn new(settings: Settings) -> Self {
        Dispatcher {
            cluster: Cluster::new(settings.liveness),
            settings,
            config: ConfigState::default(),
            told_tservers: BTreeMap::new(),
            told_dns: BTreeMap::new(),
            placed: BTreeMap::new(),
            registered: BTreeMap::new(),
            pending: BTreeMap::new(),
            moves: VecDeque::new(),
            orphaned: BTreeMap::new(),
            evacuated: BTreeMap::new(),
            foreign_revoke_ms: i64::MIN / 2,
        }
    }

    /// The configuration as folded so far.
    pub fn config(&self) -> &ConfigState {
        &self.config
    }

    /// Judge liveness by this instance's own reports read back ([`Cluster::set_reader`]).
    pub fn set_reader(&mut self, instance: &str) {
        self.cluster.set_reader(instance);
    }

    /// The monitors as reported so far.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Slot a T-Server is placed in.
    pub fn slot_of(&self, tserver: i32) -> Option<i32> {
        self.placed.get(&tserver).map(|(s, _)| *s)
    }

    /// T-Servers waiting for their previous holder to let go.
    pub fn pending(&self) -> impl Iterator<Item = &i32> {
        self.pending.keys()
    }

    /// Another dispatcher revoked a T-Server at `now_ms`: its move is in flight, so the
    /// loads are not final; rebalancing waits until it settles.
    pub fn note_foreign_revoke(&mut self, now_ms: i64) {
        self.foreign_revoke_ms = now_ms;
    }

    /// Drop the work in progress for T-Servers this dispatcher no longer owns (its
    /// `config` partitions changed); their new owner decides about them.
    pub fn forget_unowned(&mut self, owned: impl Fn(i32) -> bool) {
        self.pending.retain(|t, _| owned(*t));
        self.evacuated.retain(|t, _| owned(*t));
        self.moves.clear();
    }

    /// Forget the configuration (before refolding `config` partitions from the start).
    pub fn reset_config(&mut self) {
        self.config = ConfigState::default();
    }

    /// Fold a command read from `assignments` (partition = slot). Commands of one slot
    /// must come in their order; different slots may interleave in any order.
    pub fn observe(&mut self, slot: i32, command: &Command) {
        match command {
            Command::AssignTServer(t) => {
                self.told_tservers.entry(t.id).or_default().insert(slot, t.clone());
                self.pending.remove(&t.id);
                self.refresh_tserver(t.id);
            }
            Command::RevokeTServer(t) => {
                if let Some(slots) = self.told_tservers.get_mut(&t.id) {
                    slots.remove(&slot);
                }
                self.refresh_tserver(t.id);
            }
            Command::RegisterDn(d) => {
                let key = (d.tserver, d.number.clone());
                self.told_dns.entry(key.clone()).or_default().insert(slot, d.clone());
                self.refresh_dn(key);
            }
            Command::UnregisterDn(d) => {
                let key = (d.tserver, d.number.clone());
                if let Some(slots) = self.told_dns.get_mut(&key) {
                    slots.remove(&slot);
                }
                self.refresh_dn(key);
            }
        }
    }

    fn refresh_tserver(&mut self, tserver: i32) {
        match self.told_tservers.get(&tserver).and_then(|m| m.iter().next()) {
            Some((slot, t)) => {
                self.placed.insert(tserver, (*slot, t.clone()));
            }
            None => {
                self.told_tservers.remove(&tserver);
                self.placed.remove(&tserver);
            }
        }
    }

    fn refresh_dn(&mut self, key: (i32, String)) {
        match self.told_dns.get(&key).and_then(|m| m.iter().next()) {
            Some((slot, d)) => {
                self.registered.insert(key, (*slot, d.clone()));
            }
            None => {
                self.told_dns.remove(&key);
                self.registered.remove(&key);
            }
        }
    }

    /// Record a command as told and add it to `out`.
    fn tell(&mut self, out: &mut Vec<Emitted>, slot: i32, command: Command) {
        self.observe(slot, &command);
        out.push((slot, command));
    }

    /// Fold an event read from `monitors`.
    pub fn observe_monitor(&mut self, event: &MonitorEvent) {
        self.cluster.observe(event);
    }

    /// Fold a change read from `config`. A change the configuration refuses (written
    /// by a producer that raced another) is returned as an error and changes nothing.
    pub fn apply(&mut self, change: &ConfigChange) -> Result<(), Rejected> {
        self.config.accept(change)
    }

    /// Every T-Server known to either view.
    pub fn tservers(&self) -> Vec<i32> {
        let ids: BTreeSet<i32> = self.config.tservers.keys().chain(self.placed.keys()).copied().collect();
        ids.into_iter().collect()
    }

    /// Commands that make the slots' view of one T-Server match the configuration.
    pub fn reconcile(&mut self, tserver: i32, now_ms: i64) -> Vec<Emitted> {
        let mut out = Vec::new();
        let wanted = self.config.tservers.get(&tserver).cloned();
        let current = self.placed.get(&tserver).cloned();
        let slot = match (&wanted, &current) {
            (None, _) => None,
            (Some(_), Some((slot, _))) => Some(*slot),
            (Some(_), None) => {
                if self.cluster.holder_of(tserver, now_ms).is_some() || self.evacuation_unsettled(tserver, now_ms) {
                    // Its previous monitor still holds it: placing it now could have two
                    // monitors watch its DNs. Wait for the release (see `tick`).
                    self.pending.entry(tserver).or_insert(None);
                    None
                } else {
                    let target = self.pending.remove(&tserver).flatten().filter(|s| self.cluster.owner_of(*s, now_ms).is_some());
                    Some(target.unwrap_or_else(|| self.choose_slot(now_ms)))
                }
            }
        };
        // Every slot other than the chosen one lets go of the T-Server and its DNs (a
        // move, a deletion, or two dispatchers that placed it twice).
        let told_dns: Vec<(i32, Dn)> = self
            .told_dns
            .range((tserver, String::new())..)
            .take_while(|((t, _), _)| *t == tserver)
            .flat_map(|((_, n), slots)| slots.iter().map(move |(s, d)| (*s, Dn { number: n.clone(), ..d.clone() })))
            .collect();
        for (at, dn) in told_dns {
            if Some(at) != slot || !self.config.dns.contains_key(&(tserver, dn.number.clone())) {
                self.tell(&mut out, at, Command::UnregisterDn(DnRef { dbid: dn.dbid, tserver, number: dn.number }));
            }
        }
        let told_slots: Vec<i32> = self.told_tservers.get(&tserver).map(|m| m.keys().copied().collect()).unwrap_or_default();
        for at in told_slots {
            if Some(at) != slot && (wanted.is_none() || slot.is_some()) {
                self.tell(&mut out, at, Command::RevokeTServer(TServerRef { id: tserver }));
            }
        }
        match (wanted, slot) {
            (Some(t), Some(slot)) => {
                // The DNs first, then the T-Server: a monitor connects when it reads the
                // assignment, and then registers every DN at once instead of one by one
                // as their commands arrive.
                let dns: Vec<Dn> = self.config.dns_of(tserver).cloned().collect();
                for dn in dns {
                    let key = (tserver, dn.number.clone());
                    if self.told_dns.get(&key).and_then(|m| m.get(&slot)) != Some(&dn) {
                        self.tell(&mut out, slot, Command::RegisterDn(dn));
                    }
                }
                if self.told_tservers.get(&tserver).and_then(|m| m.get(&slot)) != Some(&t) {
                    self.tell(&mut out, slot, Command::AssignTServer(t));
                }
            }
            (None, _) => {
                self.pending.remove(&tserver);
            }
            (Some(_), None) => {}
        }
        out
    }

    /// Reconcile every T-Server for which `owned` is true.
    pub fn reconcile_all(&mut self, now_ms: i64, owned: impl Fn(i32) -> bool) -> Vec<Emitted> {
        self.tservers().into_iter().filter(|t| owned(*t)).flat_map(|t| self.reconcile(t, now_ms)).collect()
    }

    /// Periodic work: evacuate slots that no live monitor has claimed for a while, place
    /// deferred T-Servers whose holder let go, then start at most one rebalancing move if
    /// the rate limit allows.
    pub fn tick(&mut self, now_ms: i64, owned: impl Fn(i32) -> bool) -> Vec<Emitted> {
        let mut out = self.evacuate_orphans(now_ms, &owned);
        let waiting: Vec<i32> = self.pending.keys().copied().filter(|t| owned(*t)).collect();
        out.extend(waiting.into_iter().flat_map(|t| self.reconcile(t, now_ms)));
        if !self.pending.keys().any(|t| owned(*t)) {
            out.extend(self.rebalance(now_ms, &owned));
        }
        out
    }

    /// The consumer group normally hands a dead monitor's slots to survivors; when it
    /// does not within the liveness window (a broker that keeps a dead member in the group),
    /// the dispatcher moves the T-Servers of those slots to live monitors itself. A dead
    /// monitor holds nothing (its links closed with it), so this cannot watch a DN twice.
    fn evacuate_orphans(&mut self, now_ms: i64, owned: &impl Fn(i32) -> bool) -> Vec<Emitted> {
        let occupied: BTreeSet<i32> = self.placed.values().map(|(s, _)| *s).collect();
        // While slots move between monitors (an ordinary rebalance), unclaimed slots are
        // expected: only a slot still unclaimed once ownership settled is orphaned.
        let settle_ms = 3 * self.settings.liveness.heartbeat_ms;
        let any_live = self.cluster.live(now_ms).iter().any(|m| !m.slots.is_empty())
            && !self.cluster.unsettled(self.settings.slots, now_ms, settle_ms);
        self.orphaned.retain(|s, _| occupied.contains(s));
        for slot in occupied {
            if !any_live || self.cluster.owner_of(slot, now_ms).is_some() {
                self.orphaned.remove(&slot);
            } else {
                self.orphaned.entry(slot).or_insert(now_ms);
            }
        }
        // A slot whose last owner died is evacuated at once: nobody else reported it, and a
        // broker that keeps dead members in the group would never hand it on. Any other
        // unclaimed slot waits the liveness window (it may be moving through the group).
        let window = self.settings.liveness.heartbeat_ms * self.settings.liveness.missed;
        let expired: BTreeSet<i32> = self
            .orphaned
            .iter()
            .filter(|(slot, since)| {
                let grace = if self.cluster.dead_owner(**slot, now_ms).is_some() { 0 } else { window };
                now_ms - **since >= grace
            })
            .map(|(s, _)| *s)
            .collect();
        let evacuate: Vec<i32> = self.placed.iter().filter(|(t, (s, _))| expired.contains(s) && owned(**t)).map(|(t, _)| *t).collect();
        let mut out = Vec::new();
        for tserver in evacuate {
            self.evacuated.insert(tserver, now_ms);
            metrics::counter!("netwatch_dispatcher_moves_total", "reason" => "evacuation").increment(1);
            out.extend(self.revoke(tserver, None));
        }
        out
    }

    /// An evacuated T-Server is placed again one heartbeat after its revoke: a monitor
    /// the group gave its old slot to in the meantime has then reported holding it (and
    /// the placement waits for its release) or read the revoke.
    fn evacuation_unsettled(&mut self, tserver: i32, now_ms: i64) -> bool {
        let Some(since) = self.evacuated.get(&tserver).copied() else { return false };
        if now_ms - since < self.settings.liveness.heartbeat_ms {
            return true;
        }
        self.evacuated.remove(&tserver);
        false
    }

    /// Unregister a T-Server's DNs and revoke it in its slot; it is placed again (in
    /// `target` if given) once no live monitor holds it.
    fn revoke(&mut self, tserver: i32, target: Option<i32>) -> Vec<Emitted> {
        let mut out: Vec<Emitted> = Vec::new();
        let told_dns: Vec<(i32, DnRef)> = self
            .told_dns
            .range((tserver, String::new())..)
            .take_while(|((t, _), _)| *t == tserver)
            .flat_map(|((_, n), slots)| slots.iter().map(move |(s, d)| (*s, DnRef { dbid: d.dbid, tserver, number: n.clone() })))
            .collect();
        for (slot, dn) in told_dns {
            self.tell(&mut out, slot, Command::UnregisterDn(dn));
        }
        let told_slots: Vec<i32> = self.told_tservers.get(&tserver).map(|m| m.keys().copied().collect()).unwrap_or_default();
        for slot in told_slots {
            self.tell(&mut out, slot, Command::RevokeTServer(TServerRef { id: tserver }));
        }
        self.pending.insert(tserver, target);
        out
    }

    /// Loads of the live monitors that own slots, least loaded first.
    pub fn loads(&self, now_ms: i64) -> Vec<MonitorLoad> {
        let mut loads: BTreeMap<String, MonitorLoad> = BTreeMap::new();
        for m in self.cluster.live(now_ms) {
            if !m.slots.is_empty() {
                let rss_points = m.rss_bytes / RSS_BYTES_PER_POINT;
                let load =
                    MonitorLoad { monitor: m.id.clone(), slots: Vec::new(), tservers: Vec::new(), dns: 0, load: rss_points, rss_points };
                loads.insert(m.id.clone(), load);
            }
        }
        for slot in 0..self.settings.slots {
            let Some(owner) = self.cluster.owner_of(slot, now_ms) else { continue };
            let Some(l) = loads.get_mut(&owner.id) else { continue };
            l.slots.push(slot);
            for (t, (s, _)) in &self.placed {
                if *s == slot {
                    let dns = self.dns_of(*t);
                    l.tservers.push(*t);
                    l.dns += dns;
                    l.load += dns + TSERVER_WEIGHT;
                }
            }
        }
        let mut loads: Vec<MonitorLoad> = loads.into_values().collect();
        loads.sort_by(|a, b| (a.load, &a.monitor).cmp(&(b.load, &b.monitor)));
        loads
    }

    pub(crate) fn dns_of(&self, tserver: i32) -> i64 {
        self.registered.range((tserver, String::new())..).take_while(|((t, _), _)| *t == tserver).count() as i64
    }

    fn tservers_in(&self, slot: i32) -> usize {
        self.placed.values().filter(|(s, _)| *s == slot).count()
    }

    /// The emptiest slot of the least-loaded live monitor; without live monitors, the
    /// emptiest slot of all (lowest index on ties).
    fn choose_slot(&self, now_ms: i64) -> i32 {
        let candidates: Vec<i32> = match self.loads(now_ms).into_iter().next() {
            Some(least) if !least.slots.is_empty() => least.slots,
            _ => (0..self.settings.slots).collect(),
        };
        candidates.into_iter().min_by_key(|s| (self.tservers_in(*s), *s)).unwrap_or(0)
    }

    /// Move one T-Server from the most to the least loaded monitor if that narrows the
    /// gap by more than a tenth of the T-Server's own weight (so loads that differ by
    /// about one T-Server do not flap). Revokes now; the placement follows in a later
    /// tick once the old monitor reports it let go.
    fn rebalance(&mut self, now_ms: i64, owned: &impl Fn(i32) -> bool) -> Vec<Emitted> {
        while self.moves.front().is_some_and(|t| now_ms - *t >= self.settings.move_window_ms) {
            self.moves.pop_front();
        }
        if self.moves.len() >= self.settings.max_moves {
            return Vec::new();
        }
        // Slots are moving between monitors (a join, a death): loads are not known yet.
        let settle_ms = 3 * self.settings.liveness.heartbeat_ms;
        if !self.orphaned.is_empty()
            || self.cluster.unsettled(self.settings.slots, now_ms, settle_ms)
            || now_ms - self.foreign_revoke_ms < settle_ms
        {
            return Vec::new();
        }
        let mut loads = self.loads(now_ms);
        loads.sort_by(|a, b| (a.load - a.rss_points, &a.monitor).cmp(&(b.load - b.rss_points, &b.monitor)));
        let (Some(lo), Some(hi)) = (loads.first(), loads.last()) else { return Vec::new() };
        let gap = (hi.load - hi.rss_points) - (lo.load - lo.rss_points);
        // The candidate is chosen among every T-Server on the most loaded monitor, not
        // only this dispatcher's: all dispatchers see the same loads and pick the same
        // one, and only its owner moves it. Two dispatchers each moving one of their own
        // at the same moment would overshoot and move them back, forever.
        let candidate = hi
            .tservers
            .iter()
            .map(|t| (*t, self.dns_of(*t) + TSERVER_WEIGHT))
            .filter(|(_, w)| *w + *w / 10 < gap)
            .min_by_key(|(t, w)| ((2 * w - gap).abs(), *t));
        let Some((tserver, _)) = candidate.filter(|(t, _)| owned(*t)) else { return Vec::new() };
        let Some(target) = lo.slots.iter().copied().min_by_key(|s| (self.tservers_in(*s), *s)) else { return Vec::new() };
        self.moves.push_back(now_ms);
        metrics::counter!("netwatch_dispatcher_moves_total", "reason" => "rebalance").increment(1);
        self.revoke(tserver, Some(target))
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
