//! Who is connected, who registered which DN, and delivery of events to them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, Notify};

use crate::cti::{Message, Status, TEvent, TEventBody};

struct Client {
    name: String,
    tx: mpsc::UnboundedSender<Message>,
    seq: u64,
}

#[derive(Default)]
struct State {
    clients: HashMap<u64, Client>,
    next_client: u64,
    registrations: BTreeMap<String, BTreeSet<u64>>,
    overlaps: u64,
    steps_played: u64,
    steps_total: u64,
}

/// The simulated switch's shared state. Cheap to clone.
#[derive(Clone, Default)]
pub struct Switch {
    state: Arc<Mutex<State>>,
    /// Woken whenever registrations change.
    pub registrations_changed: Arc<Notify>,
}

impl Switch {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another task panicked mid-update; the maps stay usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A client connected; returns its id.
    pub fn connect(&self, name: String, tx: mpsc::UnboundedSender<Message>) -> u64 {
        let mut s = self.lock();
        s.next_client += 1;
        let id = s.next_client;
        s.clients.insert(id, Client { name, tx, seq: 0 });
        id
    }

    /// A client disconnected: its registrations end with it.
    pub fn disconnect(&self, id: u64) {
        let mut s = self.lock();
        s.clients.remove(&id);
        for holders in s.registrations.values_mut() {
            holders.remove(&id);
        }
        s.registrations.retain(|_, h| !h.is_empty());
        drop(s);
        self.registrations_changed.notify_waiters();
    }

    /// Register a DN for a client.
    pub fn register(&self, id: u64, dn: &str) {
        let mut s = self.lock();
        let holders = s.registrations.entry(dn.to_string()).or_default();
        let inserted = holders.insert(id);
        let overlap = inserted && holders.len() > 1;
        if overlap {
            s.overlaps += 1;
            tracing::warn!(%dn, "DN registered by a second client while another still has it.");
        }
        drop(s);
        self.registrations_changed.notify_waiters();
    }

    /// Unregister a DN for a client.
    pub fn unregister(&self, id: u64, dn: &str) {
        let mut s = self.lock();
        if let Some(h) = s.registrations.get_mut(dn) {
            h.remove(&id);
            if h.is_empty() {
                s.registrations.remove(dn);
            }
        }
        drop(s);
        self.registrations_changed.notify_waiters();
    }

    /// Are all these DNs registered by some client?
    pub fn all_registered(&self, dns: &BTreeSet<String>) -> bool {
        let s = self.lock();
        dns.iter().all(|d| s.registrations.contains_key(d))
    }

    /// Deliver an event to every client that registered its DN.
    pub fn deliver(&self, time_ms: i64, body: &TEventBody) {
        let mut s = self.lock();
        let holders: Vec<u64> = s.registrations.get(body.dn()).map(|h| h.iter().copied().collect()).unwrap_or_default();
        for id in holders {
            if let Some(c) = s.clients.get_mut(&id) {
                c.seq += 1;
                let _ = c.tx.send(Message::Event(Box::new(TEvent { seq: c.seq, time_ms, body: body.clone() })));
            }
        }
    }

    /// Send a message to every connected client.
    pub fn broadcast(&self, message: Message) {
        let s = self.lock();
        for c in s.clients.values() {
            let _ = c.tx.send(message.clone());
        }
    }

    /// Record scenario progress.
    pub fn set_progress(&self, played: u64, total: u64) {
        let mut s = self.lock();
        s.steps_played = played;
        s.steps_total = total;
    }

    /// A snapshot for status requests.
    pub fn status(&self) -> Status {
        let s = self.lock();
        let name = |id: &u64| s.clients.get(id).map(|c| c.name.clone()).unwrap_or_default();
        Status {
            registrations: s.registrations.iter().map(|(dn, h)| (dn.clone(), h.iter().map(name).collect())).collect(),
            clients: s.clients.values().map(|c| c.name.clone()).collect(),
            overlaps: s.overlaps,
            steps_played: s.steps_played,
            steps_total: s.steps_total,
        }
    }
}
