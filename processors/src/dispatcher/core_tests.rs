//! Tests of the dispatcher core, including a small model of monitors that report what
//! their slots hold, so placement, release-before-reassign and rebalancing can be
//! checked over arbitrary histories.

use std::collections::BTreeMap;

use netwatch_schemas::assignments::{dn_key, Command};
use netwatch_schemas::config::{ConfigChange, Dn, DnRef, DnType, TServer, TServerRef};
use netwatch_schemas::monitors::{Heartbeat, MonitorBody, MonitorEvent, Stopping};
use proptest::prelude::*;

use super::*;

fn ts(id: i32, port: i32) -> TServer {
    TServer::cti(id, format!("TS{id}"), "127.0.0.1", port)
}

fn dn(t: i32, dbid: i32, n: &str) -> Dn {
    Dn { dbid, tserver: t, number: n.into(), dn_type: DnType::Extension }
}

fn settings() -> Settings {
    Settings { slots: 8, liveness: Liveness { heartbeat_ms: 1_000, missed: 3 }, max_moves: 1, move_window_ms: 5_000 }
}

/// Monitors with fixed slots that hold exactly what their slots assign, as a log replay
/// would tell them: the latest command per key, per slot.
struct Site {
    d: Dispatcher,
    monitors: BTreeMap<String, Vec<i32>>,
    log: BTreeMap<String, (i32, Command)>,
    emitted: Vec<Emitted>,
    now: i64,
}

impl Site {
    fn new(monitors: &[(&str, Vec<i32>)]) -> Site {
        let mut site =
            Site { d: Dispatcher::new(settings()), monitors: BTreeMap::new(), log: BTreeMap::new(), emitted: Vec::new(), now: 1_000 };
        for (id, slots) in monitors {
            site.monitors.insert(id.to_string(), slots.clone());
        }
        site.heartbeats();
        site
    }

    fn record(&mut self, out: Vec<Emitted>) {
        for (slot, cmd) in out {
            self.log.insert(cmd.key(), (slot, cmd.clone()));
            self.emitted.push((slot, cmd));
        }
    }

    /// T-Servers assigned in a monitor's slots.
    fn held(&self, slots: &[i32]) -> Vec<i32> {
        self.log
            .values()
            .filter_map(|(s, c)| match c {
                Command::AssignTServer(t) if slots.contains(s) => Some(t.id),
                _ => None,
            })
            .collect()
    }

    fn heartbeats(&mut self) {
        let events: Vec<MonitorEvent> = self
            .monitors
            .iter()
            .map(|(id, slots)| {
                let held = self.held(slots);
                MonitorEvent {
                    monitor_id: id.clone(),
                    at_ms: self.now,
                    body: MonitorBody::Heartbeat(Heartbeat {
                        slots: slots.clone(),
                        tservers: held.len() as i32,
                        dns: 0,
                        sessions: None,
                        rss_bytes: None,
                        tserver_ids: Some(held),
                        wanted: None,
                    }),
                }
            })
            .collect();
        for e in &events {
            self.d.observe_monitor(e);
        }
    }

    fn change(&mut self, c: ConfigChange) {
        if self.d.apply(&c).is_ok() {
            let out = self.d.reconcile(c.tserver_id(), self.now);
            self.record(out);
        }
    }

    /// Let a second pass: monitors report, the dispatcher ticks.
    fn step(&mut self) {
        self.now += 1_000;
        self.heartbeats();
        let out = self.d.tick(self.now, |_| true);
        self.record(out);
    }

    fn settle(&mut self) {
        for _ in 0..200 {
            self.step();
        }
    }

    /// DNs registered per monitor, from the replayed log.
    fn dns_per_monitor(&self) -> BTreeMap<String, usize> {
        self.monitors
            .iter()
            .map(|(id, slots)| {
                (id.clone(), self.log.values().filter(|(s, c)| slots.contains(s) && matches!(c, Command::RegisterDn(_))).count())
            })
            .collect()
    }
}

#[test]
fn tservers_go_to_the_least_loaded_monitor_and_dns_follow_them() {
    let mut site = Site::new(&[("a", vec![0, 1, 2, 3]), ("b", vec![4, 5, 6, 7])]);
    site.change(ConfigChange::TServerCreated(ts(1, 7001)));
    site.change(ConfigChange::DnCreated(dn(1, 10, "5001")));
    site.change(ConfigChange::TServerCreated(ts(2, 7002)));
    assert_eq!(
        site.emitted,
        vec![
            (0, Command::AssignTServer(ts(1, 7001))),
            (0, Command::RegisterDn(dn(1, 10, "5001"))),
            (4, Command::AssignTServer(ts(2, 7002)))
        ]
    );
    assert!(site.d.reconcile_all(site.now, |_| true).is_empty(), "reconciling twice emits nothing");
}

#[test]
fn without_live_monitors_tservers_spread_over_slots() {
    let mut d = Dispatcher::new(settings());
    for t in 1..=3 {
        d.apply(&ConfigChange::TServerCreated(ts(t, 7000 + t))).unwrap();
    }
    let slots: Vec<i32> = d.reconcile_all(0, |_| true).into_iter().map(|(s, _)| s).collect();
    assert_eq!(slots, [0, 1, 2]);
}

#[test]
fn deleting_a_dn_unregisters_it_and_deleting_the_tserver_revokes_it() {
    let mut site = Site::new(&[("a", vec![0, 1, 2, 3, 4, 5, 6, 7])]);
    site.change(ConfigChange::TServerCreated(ts(1, 7001)));
    site.change(ConfigChange::DnCreated(dn(1, 10, "5001")));
    site.emitted.clear();
    site.change(ConfigChange::DnDeleted(DnRef { dbid: 10, tserver: 1, number: "5001".into() }));
    site.change(ConfigChange::TServerUpdated(ts(1, 7009)));
    site.change(ConfigChange::TServerDeleted(TServerRef { id: 1 }));
    assert_eq!(
        site.emitted,
        vec![
            (0, Command::UnregisterDn(DnRef { dbid: 10, tserver: 1, number: "5001".into() })),
            (0, Command::AssignTServer(ts(1, 7009))),
            (0, Command::RevokeTServer(TServerRef { id: 1 })),
        ]
    );
}

#[test]
fn a_joining_monitor_receives_tservers_one_move_at_a_time_after_release() {
    let mut site = Site::new(&[("a", vec![0, 1, 2, 3]), ("b", vec![4, 5, 6, 7])]);
    for t in 1..=4 {
        site.change(ConfigChange::TServerCreated(ts(t, 7000 + t)));
        for i in 0..10 {
            site.change(ConfigChange::DnCreated(dn(t, t * 100 + i, &format!("{t}0{i}"))));
        }
    }
    assert_eq!(site.dns_per_monitor().values().copied().collect::<Vec<_>>(), [20, 20]);
    // c takes over slots 6 and 7 (which hold nothing) from b.
    site.monitors.insert("b".into(), vec![4, 5]);
    site.monitors.insert("c".into(), vec![6, 7]);
    site.emitted.clear();
    let mut steps = 0;
    while !site.emitted.iter().any(|(_, c)| matches!(c, Command::RevokeTServer(_))) {
        site.step();
        steps += 1;
        assert!(steps < 10, "no move: {:?}", site.d.loads(site.now));
    }
    assert!(steps >= 3, "moves wait until slot ownership has been stable for 3 heartbeats");
    // First the revoke in the old slot, nothing assigned yet.
    assert!(site.emitted.iter().all(|(_, c)| matches!(c, Command::RevokeTServer(_) | Command::UnregisterDn(_))), "{:?}", site.emitted);
    let moved = site.emitted.iter().find_map(|(_, c)| if let Command::RevokeTServer(t) = c { Some(t.id) } else { None }).unwrap();
    // The next tick sees the old monitor let go and assigns it to c.
    site.emitted.clear();
    site.step();
    assert!(site.emitted.iter().any(|(s, c)| matches!(c, Command::AssignTServer(t) if t.id == moved) && [6, 7].contains(s)));
    site.settle();
    let per: Vec<usize> = site.dns_per_monitor().values().copied().collect();
    assert_eq!(per.iter().sum::<usize>(), 40);
    assert!(per.iter().max().unwrap() - per.iter().min().unwrap() <= 10, "balanced to one T-Server: {per:?}");
}

/// Two dispatchers share the T-Servers (1–3 and 4–6) and see the same site: at any tick
/// at most one of them starts a move, and the loads settle instead of swinging.
#[test]
fn two_dispatchers_never_move_at_the_same_moment_and_the_loads_settle() {
    let mut site = Site::new(&[("a", vec![0, 1, 2, 3]), ("b", vec![4, 5, 6, 7])]);
    for t in 1..=6 {
        site.change(ConfigChange::TServerCreated(ts(t, 7000 + t)));
        for i in 0..10 {
            site.change(ConfigChange::DnCreated(dn(t, t * 100 + i, &format!("{t}0{i}"))));
        }
    }
    // A second dispatcher with the same view: `site.d` owns T-Servers 1–3, it 4–6. The
    // most loaded monitor, a, holds 1, 3 and 5: both have a candidate there.
    let mut other = Dispatcher::new(settings());
    for t in 1..=6 {
        other.apply(&ConfigChange::TServerCreated(ts(t, 7000 + t))).unwrap();
        for i in 0..10 {
            other.apply(&ConfigChange::DnCreated(dn(t, t * 100 + i, &format!("{t}0{i}")))).unwrap();
        }
    }
    for (slot, cmd) in site.log.values() {
        other.observe(*slot, cmd);
    }
    site.monitors.insert("b".into(), vec![4, 5]);
    site.monitors.insert("c".into(), vec![6, 7]);
    let first_half = |t: i32| t <= 3;
    let mut movers_per_tick = Vec::new();
    for _ in 0..60 {
        site.now += 1_000;
        site.heartbeats();
        let held: Vec<MonitorEvent> = site
            .monitors
            .iter()
            .map(|(id, slots)| {
                let held = site.held(slots);
                MonitorEvent {
                    monitor_id: id.clone(),
                    at_ms: site.now,
                    body: MonitorBody::Heartbeat(Heartbeat {
                        slots: slots.clone(),
                        tservers: held.len() as i32,
                        dns: 0,
                        sessions: None,
                        rss_bytes: None,
                        tserver_ids: Some(held),
                        wanted: None,
                    }),
                }
            })
            .collect();
        held.iter().for_each(|e| other.observe_monitor(e));
        let mine = site.d.tick(site.now, first_half);
        let theirs = other.tick(site.now, |t| !first_half(t));
        let revokes = |out: &[Emitted]| out.iter().filter(|(_, c)| matches!(c, Command::RevokeTServer(_))).count();
        movers_per_tick.push(usize::from(revokes(&mine) > 0) + usize::from(revokes(&theirs) > 0));
        // Each sees the other's commands on the assignments tail.
        for (slot, cmd) in &theirs {
            site.d.observe(*slot, cmd);
        }
        for (slot, cmd) in &mine {
            other.observe(*slot, cmd);
        }
        site.record(mine);
        site.record(theirs);
    }
    assert!(movers_per_tick.iter().all(|m| *m <= 1), "two dispatchers moved at once: {movers_per_tick:?}");
    let per: Vec<usize> = site.dns_per_monitor().values().copied().collect();
    assert_eq!(per, [20, 20, 20], "balanced, two T-Servers each");
    let moves: usize = movers_per_tick.iter().sum();
    assert!(moves <= 2, "{moves} moves for a site two moves balance");
}

#[test]
fn a_tserver_held_by_a_live_monitor_waits_and_a_dead_one_does_not_block() {
    let mut d = Dispatcher::new(settings());
    let holding = MonitorEvent {
        monitor_id: "old".into(),
        at_ms: 1_000,
        body: MonitorBody::Heartbeat(Heartbeat {
            slots: vec![3],
            tservers: 1,
            dns: 0,
            sessions: None,
            rss_bytes: None,
            tserver_ids: Some(vec![1]),
            wanted: None,
        }),
    };
    d.observe_monitor(&holding);
    d.apply(&ConfigChange::TServerCreated(ts(1, 7001))).unwrap();
    assert!(d.reconcile(1, 2_000).is_empty(), "held by a live monitor: wait");
    assert_eq!(d.pending().copied().collect::<Vec<_>>(), [1]);
    assert!(d.tick(3_000, |_| true).is_empty());
    // 3 missed heartbeats later the holder is dead; the T-Server is placed.
    assert_eq!(d.tick(4_001, |_| true), vec![(0, Command::AssignTServer(ts(1, 7001)))]);
    // A stopping monitor holds nothing either.
    let mut d = Dispatcher::new(settings());
    d.observe_monitor(&holding);
    d.observe_monitor(&MonitorEvent {
        monitor_id: "old".into(),
        at_ms: 1_500,
        body: MonitorBody::Stopping(Stopping { reason: "bye".into() }),
    });
    d.apply(&ConfigChange::TServerCreated(ts(1, 7001))).unwrap();
    assert_eq!(d.reconcile(1, 2_000).len(), 1);
}

#[test]
fn slots_of_a_dead_monitor_that_nobody_takes_over_are_evacuated() {
    let mut site = Site::new(&[("a", vec![0, 1, 2, 3]), ("b", vec![4, 5, 6, 7])]);
    for t in 1..=4 {
        site.change(ConfigChange::TServerCreated(ts(t, 7000 + t)));
        site.change(ConfigChange::DnCreated(dn(t, t, &format!("{t}001"))));
    }
    // a dies; the group never gives its slots to b (as a broker that keeps a dead member
    // in the group would do).
    site.monitors.remove("a");
    site.emitted.clear();
    let mut steps = 0;
    while site.dns_per_monitor()["b"] < 4 {
        site.step();
        steps += 1;
        assert!(steps < 20, "not evacuated: {:?}", site.emitted);
    }
    // a reported last at 1 s: at 5 s it is dead (more than 3 missed 1-s heartbeats); its
    // slots' last owner is dead, so they are evacuated at once (revoke at 5 s) and placed on
    // b one heartbeat later (6 s): five steps of 1 s.
    assert_eq!(steps, 5, "evacuated after {steps} s");
    let first_assign = site.emitted.iter().position(|(_, c)| matches!(c, Command::AssignTServer(_))).unwrap();
    let last_revoke = site.emitted.iter().rposition(|(_, c)| matches!(c, Command::RevokeTServer(_))).unwrap();
    assert!(last_revoke < first_assign, "revoked in the dead slots before assigned elsewhere: {:?}", site.emitted);
}

#[test]
fn the_slot_view_does_not_depend_on_the_order_partitions_are_read_in() {
    // T moved from slot 2 to slot 5: slot 2 holds Assign, Revoke; slot 5 holds Assign.
    let slot2 = [Command::AssignTServer(ts(1, 7001)), Command::RevokeTServer(TServerRef { id: 1 })];
    let slot5 = [Command::AssignTServer(ts(1, 7001)), Command::RegisterDn(dn(1, 10, "5001"))];
    for five_first in [true, false] {
        let mut d = Dispatcher::new(settings());
        let in_two = slot2.iter().map(|c| (2, c));
        let in_five = slot5.iter().map(|c| (5, c));
        let order: Vec<(i32, &Command)> = if five_first { in_five.chain(in_two).collect() } else { in_two.chain(in_five).collect() };
        for (slot, c) in order {
            d.observe(slot, c);
        }
        assert_eq!(d.slot_of(1), Some(5), "five first: {five_first}");
        d.apply(&ConfigChange::TServerCreated(ts(1, 7001))).unwrap();
        d.apply(&ConfigChange::DnCreated(dn(1, 10, "5001"))).unwrap();
        assert!(d.reconcile(1, 0).is_empty(), "nothing to change, five first: {five_first}");
    }
}

#[test]
fn a_tserver_assigned_in_two_slots_is_revoked_in_the_extra_one() {
    let mut d = Dispatcher::new(settings());
    d.observe(3, &Command::AssignTServer(ts(1, 7001)));
    d.observe(6, &Command::AssignTServer(ts(1, 7001)));
    d.observe(6, &Command::RegisterDn(dn(1, 10, "5001")));
    d.apply(&ConfigChange::TServerCreated(ts(1, 7001))).unwrap();
    d.apply(&ConfigChange::DnCreated(dn(1, 10, "5001"))).unwrap();
    assert_eq!(
        d.reconcile(1, 0),
        vec![
            (6, Command::UnregisterDn(DnRef { dbid: 10, tserver: 1, number: "5001".into() })),
            (6, Command::RevokeTServer(TServerRef { id: 1 })),
            (3, Command::RegisterDn(dn(1, 10, "5001"))),
        ]
    );
}

#[test]
fn moves_respect_the_rate_limit() {
    let mut site = Site::new(&[("a", vec![0, 1, 2, 3, 4, 5, 6, 7])]);
    for t in 1..=6 {
        site.change(ConfigChange::TServerCreated(ts(t, 7000 + t)));
    }
    // b takes the two empty slots: three moves are needed to balance 6 against 0.
    site.monitors.insert("a".into(), vec![0, 1, 2, 3, 4, 5]);
    site.monitors.insert("b".into(), vec![6, 7]);
    let mut revokes_at = Vec::new();
    for _ in 0..30 {
        site.emitted.clear();
        site.step();
        if site.emitted.iter().any(|(_, c)| matches!(c, Command::RevokeTServer(_))) {
            revokes_at.push(site.now);
        }
    }
    assert_eq!(revokes_at.len(), 3, "{revokes_at:?}");
    assert!(revokes_at.windows(2).all(|w| w[1] - w[0] >= 5_000), "at most one move per 5 s: {revokes_at:?}");
}

fn change() -> impl Strategy<Value = ConfigChange> {
    let t = 1..5i32;
    let n = prop::sample::select(vec!["5001", "5002", "5003"]);
    prop_oneof![
        (t.clone(), 7000..7003i32).prop_map(|(id, p)| ConfigChange::TServerCreated(ts(id, p))),
        (t.clone(), 7000..7003i32).prop_map(|(id, p)| ConfigChange::TServerUpdated(ts(id, p))),
        t.clone().prop_map(|id| ConfigChange::TServerDeleted(TServerRef { id })),
        (t.clone(), 1..9i32, n.clone()).prop_map(|(t, dbid, n)| ConfigChange::DnCreated(dn(t, dbid, n))),
        (t, 1..9i32, n).prop_map(|(t, dbid, n)| ConfigChange::DnDeleted(DnRef { dbid, tserver: t, number: n.into() })),
    ]
}

#[derive(Clone, Debug)]
enum Input {
    Config(ConfigChange),
    /// Monitors own these slot splits from now on (a join, a leave, a rebalance).
    Split(usize),
    Step,
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![6 => change().prop_map(Input::Config), 1 => (0usize..4).prop_map(Input::Split), 2 => Just(Input::Step)]
}

fn split(k: usize) -> Vec<(&'static str, Vec<i32>)> {
    match k {
        0 => vec![("a", (0..8).collect())],
        1 => vec![("a", vec![0, 1, 2, 3]), ("b", vec![4, 5, 6, 7])],
        2 => vec![("a", vec![0, 1, 2]), ("b", vec![3, 4, 5]), ("c", vec![6, 7])],
        _ => vec![("a", vec![0, 1]), ("b", vec![2, 3]), ("c", vec![4, 5]), ("d", vec![6, 7])],
    }
}

fn run(inputs: &[Input]) -> Site {
    let mut site = Site::new(&split(1));
    for i in inputs {
        match i {
            Input::Config(c) => site.change(c.clone()),
            Input::Split(k) => {
                site.monitors = split(*k).into_iter().map(|(id, s)| (id.to_string(), s)).collect();
            }
            Input::Step => site.step(),
        }
    }
    site
}

proptest! {
    /// For any history of configuration changes, monitor joins and leaves, once things
    /// settle every configured T-Server is in exactly one slot with all its DNs, no
    /// deleted one is anywhere, rebalancing has stopped, and the loads are within one
    /// T-Server of each other.
    #[test]
    fn every_history_settles_to_exactly_the_configuration(inputs in prop::collection::vec(input(), 0..60)) {
        let mut site = run(&inputs);
        site.settle();
        site.emitted.clear();
        for _ in 0..20 {
            site.step();
        }
        prop_assert!(site.emitted.is_empty(), "rebalancing terminates: {:?}", site.emitted);
        let assigned: Vec<(i32, TServer)> = site.log.values().filter_map(|(s, c)| match c { Command::AssignTServer(t) => Some((*s, t.clone())), _ => None }).collect();
        prop_assert_eq!(assigned.len(), site.d.config().tservers.len());
        for (slot, t) in &assigned {
            prop_assert_eq!(site.d.config().tservers.get(&t.id), Some(t));
            for d in site.d.config().dns_of(t.id) {
                prop_assert_eq!(site.log.get(&dn_key(t.id, &d.number)), Some(&(*slot, Command::RegisterDn(d.clone()))));
            }
        }
        let registered = site.log.values().filter(|(_, c)| matches!(c, Command::RegisterDn(_))).count();
        prop_assert_eq!(registered, site.d.config().dns.len());
        let loads = site.d.loads(site.now);
        if let (Some(lo), Some(hi)) = (loads.first(), loads.last()) {
            let heaviest = site.d.config().tservers.keys().map(|t| site.d.dns_of(*t) + TSERVER_WEIGHT).max().unwrap_or(0);
            prop_assert!(hi.load - lo.load <= heaviest + heaviest / 10, "{:?}", loads);
        }
    }

    /// The same inputs give the same decisions.
    #[test]
    fn replaying_the_same_log_gives_the_same_decisions(inputs in prop::collection::vec(input(), 0..40)) {
        prop_assert_eq!(run(&inputs).emitted, run(&inputs).emitted);
    }

    /// A dispatcher rebuilt from the logs decides nothing new.
    #[test]
    fn a_rebuilt_dispatcher_emits_nothing_for_what_was_told(changes in prop::collection::vec(change(), 0..40)) {
        let mut site = Site::new(&split(2));
        let mut accepted = Vec::new();
        for c in changes {
            if site.d.apply(&c).is_ok() {
                accepted.push(c.clone());
                let out = site.d.reconcile(c.tserver_id(), site.now);
                site.record(out);
            }
        }
        let mut rebuilt = Dispatcher::new(settings());
        for (slot, cmd) in &site.emitted {
            rebuilt.observe(*slot, cmd);
        }
        for c in &accepted {
            rebuilt.apply(c).unwrap();
        }
        prop_assert!(rebuilt.reconcile_all(site.now, |_| true).is_empty());
    }
}
