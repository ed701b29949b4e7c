//! Who is connected, who registered which DN, and delivery of events to them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, watch, Notify};

use crate::cti::{CallInfo, Message, Status, SwitchLinkInfo, TEvent, TEventBody};

/// Which form of each event the simulator sends (docs/cti-link.md, "Attribute types").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wire {
    /// `call_type` and `other_dn` only where a call appears at a DN or its party changes.
    #[default]
    Minimal,
    /// Every attribute the simulator knows, on every event.
    Full,
}

impl Wire {
    /// The event as this form sends it.
    pub fn shape(self, body: &TEventBody) -> TEventBody {
        let bare = |c: &CallInfo, third: bool| CallInfo {
            dn: c.dn.clone(),
            connid: c.connid.clone(),
            third_party_dn: c.third_party_dn.clone().filter(|_| third),
            ..Default::default()
        };
        match (self, body) {
            (Wire::Full, _) => body.clone(),
            (Wire::Minimal, TEventBody::EventHeld(c)) => TEventBody::EventHeld(bare(c, false)),
            (Wire::Minimal, TEventBody::EventRetrieved(c)) => TEventBody::EventRetrieved(bare(c, false)),
            (Wire::Minimal, TEventBody::EventAbandoned(c)) => TEventBody::EventAbandoned(bare(c, false)),
            (Wire::Minimal, TEventBody::EventReleased(c)) => TEventBody::EventReleased(bare(c, true)),
            (Wire::Minimal, other) => other.clone(),
        }
    }
}

struct Client {
    name: String,
    /// This client name's connection number on this simulator, from 1.
    conn: u64,
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
    /// Last agent event per DN, with its time: replayed to a client that registers the DN.
    agents: HashMap<String, (i64, TEventBody)>,
    /// Connections so far per client name.
    conns: HashMap<String, u64>,
    /// Is the switch link down?
    switch_down: bool,
    wire: Wire,
}

fn is_agent_event(body: &TEventBody) -> bool {
    matches!(
        body,
        TEventBody::EventAgentLogin(_)
            | TEventBody::EventAgentLogout(_)
            | TEventBody::EventAgentReady(_)
            | TEventBody::EventAgentNotReady(_)
            | TEventBody::EventAgentAfterCallWork(_)
    )
}

/// The simulated switch's shared state. Cheap to clone.
#[derive(Clone)]
pub struct Switch {
    state: Arc<Mutex<State>>,
    /// Woken whenever registrations change.
    pub registrations_changed: Arc<Notify>,
    /// Bumped to close every link but the requester's: (generation, client spared).
    drops: Arc<watch::Sender<(u64, u64)>>,
}

impl Default for Switch {
    fn default() -> Self {
        Switch { state: Arc::default(), registrations_changed: Arc::default(), drops: Arc::new(watch::channel((0, 0)).0) }
    }
}

impl Switch {
    /// A switch sending events in this form.
    pub fn new(wire: Wire) -> Self {
        let switch = Switch::default();
        switch.lock().wire = wire;
        switch
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another task panicked mid-update; the maps stay usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A client connected; returns its id and its connection number under its name.
    pub fn connect(&self, name: String, tx: mpsc::UnboundedSender<Message>) -> (u64, u64) {
        let mut s = self.lock();
        s.next_client += 1;
        let id = s.next_client;
        let conn = {
            let n = s.conns.entry(name.clone()).or_default();
            *n += 1;
            *n
        };
        s.clients.insert(id, Client { name, conn, tx, seq: 0 });
        (id, conn)
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
        self.register_and_answer(id, dn, None);
    }

    /// Register a DN for a client and, in the same step, queue `answer` to it and then the
    /// agent state at the DN: no event of the DN can come before its `EventRegistered`.
    pub fn register_and_answer(&self, id: u64, dn: &str, answer: Option<Message>) {
        let mut s = self.lock();
        let holders = s.registrations.entry(dn.to_string()).or_default();
        let inserted = holders.insert(id);
        let overlap = inserted && holders.len() > 1;
        if overlap {
            s.overlaps += 1;
            tracing::warn!(%dn, "DN registered by a second client while another still has it.");
        }
        if let Some(answer) = answer {
            let agent = if s.switch_down { None } else { s.agents.get(dn).cloned() };
            if let Some(c) = s.clients.get_mut(&id) {
                let _ = c.tx.send(answer);
                if let Some((time_ms, body)) = agent {
                    c.seq += 1;
                    let _ = c.tx.send(Message::Event(Box::new(TEvent { seq: c.seq, time_ms, body })));
                }
            }
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

    /// How many DNs some client has registered.
    pub fn registered_count(&self) -> usize {
        self.lock().registrations.len()
    }

    /// Are all these DNs registered by some client?
    pub fn all_registered(&self, dns: &BTreeSet<String>) -> bool {
        let s = self.lock();
        dns.iter().all(|d| s.registrations.contains_key(d))
    }

    /// Deliver an event to every client that registered its DN (none while the switch
    /// link is down; the agent state is kept all the same).
    pub fn deliver(&self, time_ms: i64, body: &TEventBody) {
        let mut s = self.lock();
        let Some(dn) = body.dn() else { return };
        if is_agent_event(body) {
            s.agents.insert(dn.to_string(), (time_ms, body.clone()));
        }
        if s.switch_down {
            return;
        }
        let holders: Vec<u64> = s.registrations.get(dn).map(|h| h.iter().copied().collect()).unwrap_or_default();
        if holders.is_empty() {
            return;
        }
        let body = s.wire.shape(body);
        for id in holders {
            if let Some(c) = s.clients.get_mut(&id) {
                c.seq += 1;
                let _ = c.tx.send(Message::Event(Box::new(TEvent { seq: c.seq, time_ms, body: body.clone() })));
            }
        }
    }

    /// Take the switch link down or up: every client gets `EventLinkDisconnected` or
    /// `EventLinkConnected`. True if it changed.
    pub fn set_switch_link(&self, up: bool, time_ms: i64) -> bool {
        let mut s = self.lock();
        if s.switch_down != up {
            return false;
        }
        s.switch_down = !up;
        let body = if up {
            TEventBody::EventLinkConnected(SwitchLinkInfo::default())
        } else {
            TEventBody::EventLinkDisconnected(SwitchLinkInfo { reason: Some("simulated switch link failure".into()) })
        };
        for c in s.clients.values_mut() {
            c.seq += 1;
            let _ = c.tx.send(Message::Event(Box::new(TEvent { seq: c.seq, time_ms, body: body.clone() })));
        }
        true
    }

    /// The name and connection number of a client.
    pub fn client(&self, id: u64) -> Option<(String, u64)> {
        self.lock().clients.get(&id).map(|c| (c.name.clone(), c.conn))
    }

    /// Close every link but `spare`'s; how many were closed.
    pub fn drop_links(&self, spare: u64) -> u64 {
        let others = self.lock().clients.keys().filter(|id| **id != spare).count() as u64;
        self.drops.send_modify(|(generation, spared)| {
            *generation += 1;
            *spared = spare;
        });
        others
    }

    /// Signals link drops; see [`Switch::drop_links`].
    pub fn drops(&self) -> watch::Receiver<(u64, u64)> {
        self.drops.subscribe()
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
            switch_link: !s.switch_down,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cti::AgentInfo;

    fn login(dn: &str) -> TEventBody {
        TEventBody::EventAgentLogin(AgentInfo { dn: dn.into(), agent_id: "a1".into(), reason: None })
    }

    #[test]
    fn events_reach_only_the_clients_that_registered_the_dn() {
        let switch = Switch::default();
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        let (c1, _) = switch.connect("m1".into(), tx1);
        let _c2 = switch.connect("m2".into(), tx2);
        switch.register(c1, "5001");
        switch.deliver(7, &login("5001"));
        switch.deliver(8, &login("5002"));
        let Ok(Message::Event(e)) = rx1.try_recv() else { panic!("m1 gets the 5001 event") };
        assert_eq!((e.seq, e.time_ms, e.body.dn()), (1, 7, Some("5001")));
        assert!(rx1.try_recv().is_err(), "m1 did not register 5002");
        assert!(rx2.try_recv().is_err(), "m2 registered nothing");
        assert_eq!(switch.status().overlaps, 0);
    }

    #[test]
    fn a_late_registration_learns_the_agent_state_and_overlaps_are_counted() {
        let switch = Switch::default();
        switch.deliver(5, &login("5001"));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (c, _) = switch.connect("m1".into(), tx);
        switch.register_and_answer(c, "5001", Some(Message::EventRegistered { ref_id: 1, dn: "5001".into(), time_ms: None }));
        assert!(matches!(rx.try_recv(), Ok(Message::EventRegistered { .. })), "the answer comes first");
        let Ok(Message::Event(e)) = rx.try_recv() else { panic!("the agent state is replayed") };
        assert_eq!((e.time_ms, e.body.clone()), (5, login("5001")));
        let (tx2, _rx2) = mpsc::unbounded_channel();
        let (c2, _) = switch.connect("m2".into(), tx2);
        switch.register(c2, "5001");
        let status = switch.status();
        assert_eq!((status.overlaps, status.registrations["5001"].clone()), (1, vec!["m1".to_string(), "m2".to_string()]));
        switch.disconnect(c);
        assert_eq!(switch.status().registrations["5001"], vec!["m2".to_string()]);
    }

    #[test]
    fn a_switch_link_outage_reaches_every_client_and_stops_events_until_it_is_back() {
        let switch = Switch::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (c, conn) = switch.connect("m1".into(), tx);
        assert_eq!(conn, 1);
        switch.register(c, "5001");
        assert!(switch.set_switch_link(false, 10));
        assert!(!switch.set_switch_link(false, 11), "already down");
        switch.deliver(12, &login("5001"));
        assert!(switch.set_switch_link(true, 13));
        let mut got = Vec::new();
        while let Ok(Message::Event(e)) = rx.try_recv() {
            got.push((e.seq, crate::cti::event_name(&e.body)));
        }
        assert_eq!(got, [(1, "EventLinkDisconnected"), (2, "EventLinkConnected")], "nothing is delivered while the link is down");
        let (tx2, _rx2) = mpsc::unbounded_channel();
        assert_eq!(switch.connect("m1".into(), tx2).1, 2, "the second connection of a name");
    }

    #[test]
    fn the_minimal_form_leaves_out_what_the_document_lets_a_server_leave_out() {
        let info = CallInfo {
            dn: "5001".into(),
            connid: "c1".into(),
            call_type: Some(netwatch_schemas::calls::CallType::Inbound),
            other_dn: Some("+1555".into()),
            third_party_dn: Some("5002".into()),
            previous_connid: None,
        };
        let TEventBody::EventReleased(r) = Wire::Minimal.shape(&TEventBody::EventReleased(info.clone())) else { panic!() };
        assert_eq!((r.call_type, r.other_dn, r.third_party_dn.as_deref()), (None, None, Some("5002")));
        let TEventBody::EventHeld(h) = Wire::Minimal.shape(&TEventBody::EventHeld(info.clone())) else { panic!() };
        assert_eq!((h.call_type, h.other_dn, h.third_party_dn), (None, None, None));
        assert_eq!(Wire::Minimal.shape(&TEventBody::EventRinging(info.clone())), TEventBody::EventRinging(info.clone()));
        assert_eq!(Wire::Full.shape(&TEventBody::EventHeld(info.clone())), TEventBody::EventHeld(info));
    }
}
