//! Desired state of the slots a monitor owns, folded from `assignments`. Pure.

use std::collections::{BTreeMap, BTreeSet};

use netwatch_schemas::assignments::{tserver_key, Command};
use netwatch_schemas::config::TServer;

#[derive(Debug, Default)]
struct Slot {
    caught_up: bool,
    /// Latest command per key.
    commands: BTreeMap<String, Command>,
}

/// The owned slots and the latest command per key in each.
#[derive(Debug, Default)]
pub struct Slots {
    slots: BTreeMap<i32, Slot>,
}

impl Slots {
    /// A slot became ours; it is read from its start.
    pub fn assign(&mut self, slot: i32) {
        self.slots.insert(slot, Slot::default());
    }

    /// A slot is no longer ours; the T-Servers it held.
    pub fn revoke(&mut self, slot: i32) -> Vec<i32> {
        let held = self.tservers_in(slot);
        self.slots.remove(&slot);
        held
    }

    /// Slots owned, ascending.
    pub fn owned(&self) -> Vec<i32> {
        self.slots.keys().copied().collect()
    }

    /// Fold a record: `None` is a tombstone. Returns the T-Server the key concerns.
    pub fn record(&mut self, slot: i32, key: &str, command: Option<Command>) -> Option<i32> {
        let s = self.slots.get_mut(&slot)?;
        match command {
            Some(c) => {
                let t = c.tserver_id();
                s.commands.insert(c.key(), c);
                Some(t)
            }
            None => {
                s.commands.remove(key);
                key.split('/').nth(1).and_then(|t| t.parse().ok())
            }
        }
    }

    /// The slot reached the end of its partition; true the first time.
    pub fn mark_caught_up(&mut self, slot: i32) -> bool {
        match self.slots.get_mut(&slot) {
            Some(s) if !s.caught_up => {
                s.caught_up = true;
                true
            }
            _ => false,
        }
    }

    /// Has every owned slot been read to its end once (true with no slots)?
    pub fn all_caught_up(&self) -> bool {
        self.slots.values().all(|s| s.caught_up)
    }

    /// Has the slot been read to its end once?
    pub fn is_caught_up(&self, slot: i32) -> bool {
        self.slots.get(&slot).is_some_and(|s| s.caught_up)
    }

    /// T-Servers assigned in a slot.
    pub fn tservers_in(&self, slot: i32) -> Vec<i32> {
        self.slots
            .get(&slot)
            .map(|s| {
                s.commands
                    .values()
                    .filter_map(|c| match c {
                        Command::AssignTServer(t) => Some(t.id),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What to watch for a T-Server: its endpoint and DNs, if a caught-up slot of ours
    /// assigns it.
    pub fn desired(&self, tserver: i32) -> Option<(TServer, BTreeSet<String>)> {
        let key = tserver_key(tserver);
        self.slots.values().filter(|s| s.caught_up).find_map(|s| match s.commands.get(&key) {
            Some(Command::AssignTServer(t)) => {
                let prefix = format!("dn/{tserver}/");
                let dns = s
                    .commands
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .filter_map(|(_, c)| match c {
                        Command::RegisterDn(d) => Some(d.number.clone()),
                        _ => None,
                    })
                    .collect();
                Some((t.clone(), dns))
            }
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwatch_schemas::config::{Dn, DnRef, DnType, TServerRef};

    fn ts(id: i32) -> TServer {
        TServer::cti(id, "TS", "127.0.0.1", 7000)
    }

    fn reg(t: i32, n: &str) -> Command {
        Command::RegisterDn(Dn { dbid: 1, tserver: t, number: n.into(), dn_type: DnType::Extension })
    }

    #[test]
    fn the_latest_command_per_key_wins_and_only_after_catch_up() {
        let mut s = Slots::default();
        s.assign(3);
        s.record(3, "", Some(Command::AssignTServer(ts(1))));
        s.record(3, "", Some(reg(1, "5001")));
        s.record(3, "", Some(reg(1, "5002")));
        s.record(3, "", Some(reg(12, "9999")));
        s.record(3, "", Some(Command::UnregisterDn(DnRef { dbid: 1, tserver: 1, number: "5001".into() })));
        assert_eq!(s.desired(1), None, "nothing is desired before the slot is caught up");
        assert!(s.mark_caught_up(3));
        assert!(!s.mark_caught_up(3));
        let (t, dns) = s.desired(1).unwrap();
        assert_eq!((t.id, dns.into_iter().collect::<Vec<_>>()), (1, vec!["5002".to_string()]));
        s.record(3, "", Some(Command::RevokeTServer(TServerRef { id: 1 })));
        assert_eq!(s.desired(1), None);
    }

    #[test]
    fn revoking_a_slot_returns_its_tservers_and_forgets_them() {
        let mut s = Slots::default();
        s.assign(0);
        s.record(0, "", Some(Command::AssignTServer(ts(4))));
        s.mark_caught_up(0);
        assert_eq!(s.revoke(0), vec![4]);
        assert_eq!(s.desired(4), None);
        assert_eq!(s.record(0, "", Some(reg(4, "1"))), None, "records of slots not owned are ignored");
    }

    #[test]
    fn a_tombstone_removes_the_key() {
        let mut s = Slots::default();
        s.assign(0);
        s.record(0, "", Some(Command::AssignTServer(ts(2))));
        s.mark_caught_up(0);
        assert_eq!(s.record(0, "tserver/2", None), Some(2));
        assert_eq!(s.desired(2), None);
    }
}
