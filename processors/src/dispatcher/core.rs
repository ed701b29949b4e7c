//! The dispatcher's pure decision core.
//!
//! It holds two views: the configuration (folded from `config`) and what the slots
//! were told (folded from `assignments`). [`Dispatcher::reconcile`] returns the commands
//! that bring the second in line with the first, and records them as told. Decisions
//! depend only on the events folded, in order, so replaying the log gives the same
//! decisions.

use std::collections::BTreeMap;

use netwatch_producers::config::{ConfigState, Rejected};
use netwatch_schemas::assignments::Command;
use netwatch_schemas::config::{ConfigChange, Dn, DnRef, TServer, TServerRef};

/// A command and the slot (partition of `assignments`) it goes to.
pub type Emitted = (i32, Command);

/// The decision state.
#[derive(Clone, Debug, Default)]
pub struct Dispatcher {
    slots: i32,
    config: ConfigState,
    /// T-Server → (slot, what the slot was told).
    placed: BTreeMap<i32, (i32, TServer)>,
    /// (T-Server, DN) → (slot, what the slot was told).
    registered: BTreeMap<(i32, String), (i32, Dn)>,
}

impl Dispatcher {
    /// A dispatcher over `slots` slots.
    pub fn new(slots: i32) -> Self {
        Dispatcher { slots: slots.max(1), ..Default::default() }
    }

    /// The configuration as folded so far.
    pub fn config(&self) -> &ConfigState {
        &self.config
    }

    /// Slot a T-Server is placed in.
    pub fn slot_of(&self, tserver: i32) -> Option<i32> {
        self.placed.get(&tserver).map(|(s, _)| *s)
    }

    /// Fold a command read from `assignments` (partition = slot).
    pub fn observe(&mut self, slot: i32, command: &Command) {
        match command {
            Command::AssignTServer(t) => {
                self.placed.insert(t.id, (slot, t.clone()));
            }
            Command::RevokeTServer(t) => {
                if self.slot_of(t.id) == Some(slot) {
                    self.placed.remove(&t.id);
                }
            }
            Command::RegisterDn(d) => {
                self.registered.insert((d.tserver, d.number.clone()), (slot, d.clone()));
            }
            Command::UnregisterDn(d) => {
                let key = (d.tserver, d.number.clone());
                if self.registered.get(&key).map(|(s, _)| *s) == Some(slot) {
                    self.registered.remove(&key);
                }
            }
        }
    }

    /// Fold a change read from `config`. A change the configuration refuses (written
    /// by a producer that raced another) is returned as an error and changes nothing.
    pub fn apply(&mut self, change: &ConfigChange) -> Result<(), Rejected> {
        self.config.accept(change)
    }

    /// Every T-Server known to either view.
    pub fn tservers(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = self.config.tservers.keys().chain(self.placed.keys()).copied().collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Commands that make the slots' view of one T-Server match the configuration.
    pub fn reconcile(&mut self, tserver: i32) -> Vec<Emitted> {
        let mut out = Vec::new();
        let wanted = self.config.tservers.get(&tserver).cloned();
        let current = self.placed.get(&tserver).cloned();
        let slot = match (&wanted, &current) {
            (None, _) => None,
            (Some(_), Some((slot, _))) => Some(*slot),
            (Some(_), None) => Some(self.least_loaded_slot()),
        };
        // DNs the slot was told about that it should no longer have.
        let told: Vec<((i32, String), (i32, Dn))> = self
            .registered
            .range((tserver, String::new())..)
            .take_while(|((t, _), _)| *t == tserver)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, (at, dn)) in told {
            let keep = Some(at) == slot && self.config.dns.contains_key(&key);
            if !keep {
                self.registered.remove(&key);
                out.push((at, Command::UnregisterDn(DnRef { dbid: dn.dbid, tserver, number: dn.number })));
            }
        }
        match (wanted, slot) {
            (Some(t), Some(slot)) => {
                if current.as_ref().map(|(_, told)| told) != Some(&t) {
                    self.placed.insert(tserver, (slot, t.clone()));
                    out.push((slot, Command::AssignTServer(t)));
                }
                let dns: Vec<Dn> = self.config.dns_of(tserver).cloned().collect();
                for dn in dns {
                    let key = (tserver, dn.number.clone());
                    if self.registered.get(&key) != Some(&(slot, dn.clone())) {
                        self.registered.insert(key, (slot, dn.clone()));
                        out.push((slot, Command::RegisterDn(dn)));
                    }
                }
            }
            _ => {
                if let Some((at, _)) = current {
                    self.placed.remove(&tserver);
                    out.push((at, Command::RevokeTServer(TServerRef { id: tserver })));
                }
            }
        }
        out
    }

    /// Reconcile every T-Server for which `owned` is true.
    pub fn reconcile_all(&mut self, owned: impl Fn(i32) -> bool) -> Vec<Emitted> {
        self.tservers().into_iter().filter(|t| owned(*t)).flat_map(|t| self.reconcile(t)).collect()
    }

    /// The slot with the fewest T-Servers (lowest index on ties).
    fn least_loaded_slot(&self) -> i32 {
        let mut load = vec![0usize; self.slots as usize];
        for (slot, _) in self.placed.values() {
            if let Some(l) = load.get_mut(*slot as usize) {
                *l += 1;
            }
        }
        (0..self.slots).min_by_key(|s| (load[*s as usize], *s)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwatch_schemas::config::DnType;
    use proptest::prelude::*;

    fn ts(id: i32, port: i32) -> TServer {
        TServer { id, name: format!("TS{id}"), host: "127.0.0.1".into(), port }
    }

    fn dn(t: i32, dbid: i32, n: &str) -> Dn {
        Dn { dbid, tserver: t, number: n.into(), dn_type: DnType::Extension }
    }

    #[test]
    fn tservers_spread_over_slots_and_dns_follow_their_tserver() {
        let mut d = Dispatcher::new(4);
        d.apply(&ConfigChange::TServerCreated(ts(1, 7001))).unwrap();
        d.apply(&ConfigChange::TServerCreated(ts(2, 7002))).unwrap();
        d.apply(&ConfigChange::DnCreated(dn(2, 10, "5001"))).unwrap();
        let out = d.reconcile_all(|_| true);
        assert_eq!(
            out,
            vec![
                (0, Command::AssignTServer(ts(1, 7001))),
                (1, Command::AssignTServer(ts(2, 7002))),
                (1, Command::RegisterDn(dn(2, 10, "5001")))
            ]
        );
        assert!(d.reconcile_all(|_| true).is_empty(), "reconciling twice emits nothing");
    }

    #[test]
    fn deleting_a_dn_unregisters_it_in_its_slot() {
        let mut d = Dispatcher::new(4);
        d.apply(&ConfigChange::TServerCreated(ts(1, 7001))).unwrap();
        d.apply(&ConfigChange::DnCreated(dn(1, 10, "5001"))).unwrap();
        d.reconcile(1);
        d.apply(&ConfigChange::DnDeleted(DnRef { dbid: 10, tserver: 1, number: "5001".into() })).unwrap();
        assert_eq!(d.reconcile(1), vec![(0, Command::UnregisterDn(DnRef { dbid: 10, tserver: 1, number: "5001".into() }))]);
    }

    #[test]
    fn an_endpoint_change_reassigns_in_the_same_slot_and_deletion_revokes() {
        let mut d = Dispatcher::new(4);
        d.apply(&ConfigChange::TServerCreated(ts(1, 7001))).unwrap();
        d.reconcile(1);
        d.apply(&ConfigChange::TServerUpdated(ts(1, 7009))).unwrap();
        assert_eq!(d.reconcile(1), vec![(0, Command::AssignTServer(ts(1, 7009)))]);
        d.apply(&ConfigChange::TServerDeleted(TServerRef { id: 1 })).unwrap();
        assert_eq!(d.reconcile(1), vec![(0, Command::RevokeTServer(TServerRef { id: 1 }))]);
    }

    #[test]
    fn a_restarted_dispatcher_emits_nothing_for_what_was_already_told() {
        let mut first = Dispatcher::new(8);
        let changes = vec![
            ConfigChange::TServerCreated(ts(1, 7001)),
            ConfigChange::DnCreated(dn(1, 1, "5001")),
            ConfigChange::DnCreated(dn(1, 2, "5002")),
            ConfigChange::DnDeleted(DnRef { dbid: 1, tserver: 1, number: "5001".into() }),
        ];
        let mut log = Vec::new();
        for c in &changes {
            first.apply(c).unwrap();
            log.extend(first.reconcile(c.tserver_id()));
        }
        let mut second = Dispatcher::new(8);
        for (slot, cmd) in &log {
            second.observe(*slot, cmd);
        }
        for c in &changes {
            second.apply(c).unwrap();
        }
        assert!(second.reconcile_all(|_| true).is_empty());
    }

    fn change() -> impl Strategy<Value = ConfigChange> {
        let t = 1..4i32;
        let n = prop::sample::select(vec!["5001", "5002", "5003"]);
        prop_oneof![
            (t.clone(), 7000..7003i32).prop_map(|(id, p)| ConfigChange::TServerCreated(ts(id, p))),
            (t.clone(), 7000..7003i32).prop_map(|(id, p)| ConfigChange::TServerUpdated(ts(id, p))),
            t.clone().prop_map(|id| ConfigChange::TServerDeleted(TServerRef { id })),
            (t.clone(), 1..6i32, n.clone()).prop_map(|(t, dbid, n)| ConfigChange::DnCreated(dn(t, dbid, n))),
            (t, 1..6i32, n).prop_map(|(t, dbid, n)| ConfigChange::DnDeleted(DnRef { dbid, tserver: t, number: n.into() })),
        ]
    }

    proptest! {
        /// Whatever the sequence of changes, after reconciling, the slots were told
        /// exactly the configuration: each T-Server in one slot, each DN with it; and a
        /// dispatcher rebuilt from both logs decides nothing more.
        #[test]
        fn the_slots_always_converge_to_the_configuration(changes in prop::collection::vec(change(), 0..40)) {
            let mut d = Dispatcher::new(4);
            let mut log: Vec<Emitted> = Vec::new();
            let mut accepted = Vec::new();
            for c in &changes {
                if d.apply(c).is_ok() {
                    accepted.push(c.clone());
                    log.extend(d.reconcile(c.tserver_id()));
                }
            }
            // Replay the assignment log as a monitor would: latest command per key.
            let mut slots: BTreeMap<String, (i32, Command)> = BTreeMap::new();
            for (slot, cmd) in &log {
                slots.insert(cmd.key(), (*slot, cmd.clone()));
            }
            for t in d.config().tservers.values() {
                let assigned: Vec<_> = slots.values().filter(|(_, c)| matches!(c, Command::AssignTServer(x) if x == t)).collect();
                prop_assert_eq!(assigned.len(), 1);
                for dn in d.config().dns_of(t.id) {
                    let entry = slots.get(&netwatch_schemas::assignments::dn_key(t.id, &dn.number));
                    prop_assert_eq!(entry, Some(&(assigned[0].0, Command::RegisterDn(dn.clone()))));
                }
            }
            let live_registrations = slots.values().filter(|(_, c)| matches!(c, Command::RegisterDn(_))).count();
            prop_assert_eq!(live_registrations, d.config().dns.len());
            let mut rebuilt = Dispatcher::new(4);
            for (slot, cmd) in &log {
                rebuilt.observe(*slot, cmd);
            }
            for c in &accepted {
                rebuilt.apply(c).unwrap();
            }
            prop_assert!(rebuilt.reconcile_all(|_| true).is_empty());
        }
    }
}
