//! The monitor: a member of the monitor group on `assignments`. It owns the T-Servers
//! placed in its slots, keeps a CTI link to each, registers their DNs, and appends
//! every event it captures to `calls`.

mod link;
mod session;
mod sip;
mod slots;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use netwatch_eventlog::{
    spawn_group_consumer, spawn_tail, watch_broker, BrokerHealth, ConsumerEvent, GroupOptions, Log, LogError, Stall, StartAt, Topic,
};
use netwatch_schemas::assignments::Assignment;
use netwatch_schemas::config::TServer;
use netwatch_schemas::monitors::{Heartbeat, MonitorBody, MonitorEvent, Started, Stopping};

use crate::cluster::{Cluster, Liveness, Trust};
use netwatch_schemas::{decode, now_ms};
use tokio::sync::watch;
use tracing::{info, warn};

pub use link::{LinkHandle, LinkSettings, LinkStats};
pub use slots::Slots;

/// How long slots may have no live owner (while the broker answers) before a monitor
/// joins its group again.
const REJOIN_PATIENCE: Duration = Duration::from_secs(10);
/// How long a kept link waits to be asked for (with the broker answering) before it is
/// released anyway: longer than a new monitor needs before it trusts its view.
const HANDOVER_WAIT: Duration = Duration::from_secs(15);

/// How long after its view became current a monitor waits for one whose last report
/// (from before) still lists a T-Server it is to connect: past the trust window (two
/// liveness windows, 6 s), within HANDOVER_WAIT so that a handover is not held up.
const SILENT_HOLDER_GRACE: Duration = Duration::from_secs(12);
/// How long a leaving monitor waits for others to ask for its T-Servers (well inside the
/// 14 s a stop may take).
const LEAVE_WAIT: Duration = Duration::from_secs(7);

/// Monitor settings.
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// Monitor id: the client name on CTI links and the key of its heartbeats.
    pub id: String,
    /// Time between heartbeats.
    pub heartbeat: Duration,
    /// Join the group with the cooperative-sticky assignor (only slots that change
    /// hands are revoked). Off by default: on tansu 0.6.0 it handed slots to a new
    /// owner while the old one still held them (docs/broker-notes.md).
    pub cooperative: bool,
    /// How each CTI link runs (events in flight, waits).
    pub link: LinkSettings,
}

/// Run until `shutdown` turns true.
pub async fn run(log: Log, config: MonitorConfig, mut shutdown: watch::Receiver<bool>) -> Result<(), LogError> {
    let group = format!("{}monitors", log.topics.prefix);
    let join = || {
        spawn_group_consumer(
            &log.kafka,
            GroupOptions {
                group: group.clone(),
                topics: vec![log.topic(Topic::Assignments)],
                start: StartAt::Beginning,
                revoke_timeout: Duration::from_secs(15),
                cooperative: config.cooperative,
            },
        )
    };
    let mut consumer = join()?;
    let health = watch_broker(
        &log.kafka,
        format!("monitor {}", config.id),
        "it keeps its CTI links and queues what they capture until the broker is back",
        shutdown.clone(),
    );
    let mut stall = Stall::new(REJOIN_PATIENCE);
    let dead = log.dead_letter(&group);
    let liveness = Liveness { heartbeat_ms: config.heartbeat.as_millis() as i64, ..Liveness::default() };
    let mut others = spawn_tail(&log.kafka, &log.topic(Topic::Monitors), |_, _, high| high - 2_000)?;
    let mut monitor = Monitor {
        log: log.clone(),
        id: config.id.clone(),
        slots: Slots::default(),
        links: BTreeMap::new(),
        changed: false,
        cluster: {
            let mut c = Cluster::new(liveness);
            c.set_reader(&config.id);
            c
        },
        limbo: BTreeMap::new(),
        deferred: BTreeSet::new(),
        draining: BTreeMap::new(),
        health: health.clone(),
        leaving: false,
        trust: Trust::default(),
        trust_ok: false,
        link: config.link.clone(),
        beat: watch::Sender::new(None),
    };
    monitor.report(MonitorBody::Started(Started { host: hostname(), pid: std::process::id() as i32 })).await;
    let heartbeats = spawn_heartbeats(log.clone(), config.id.clone(), config.heartbeat, monitor.beat.subscribe());
    info!(id = %config.id, %group, "Monitor started.");
    let mut heartbeat = tokio::time::interval(config.heartbeat);
    let mut retry = tokio::time::interval(config.heartbeat);
    let result = loop {
        // Report at once when slots or links changed: the dispatcher waits for a moved
        // T-Server to leave this monitor's report before assigning it elsewhere.
        if std::mem::take(&mut monitor.changed) {
            monitor.heartbeat();
            heartbeat.reset();
        }
        let event = tokio::select! {
            _ = shutdown.changed() => break Ok(()),
            _ = heartbeat.tick() => {
                monitor.drained();
                monitor.release_taken(false).await;
                monitor.heartbeat();
                // Slots without a live owner, with the broker answering and this view current:
                // the group lost members or holds ghosts of them (a broker restart or a long
                // pause, docs/broker-notes.md); joining again makes it form anew.
                let now = netwatch_schemas::now_ms();
                let unowned = (0..log.topics.slots).filter(|s| monitor.cluster.owner_of(*s, now).is_none()).count();
                let trusted = monitor.trusted(now);
                let stalled = health.reachable() && trusted && unowned > 0;
                if stall.due(stalled, tokio::time::Instant::now()) {
                    warn!(unowned, patience_s = REJOIN_PATIENCE.as_secs(), "Slots have had no live owner for a while; rejoining the monitor group.");
                    // The old membership's slots are given up here (its revocations are not
                    // read); their links are kept aside like those of any revoked slot.
                    for slot in monitor.slots.owned() {
                        monitor.keep_aside(slot);
                    }
                    monitor.changed = true;
                    // The old membership leaves in the background: this loop goes on (a
                    // monitor that stopped reporting while it still holds links would be
                    // taken for dead).
                    let old = std::mem::replace(&mut consumer, join()?);
                    tokio::spawn(old.stop());
                }
                continue;
            }
            _ = retry.tick() => {
                if monitor.drained() {
                    monitor.changed = true;
                }
                monitor.retry_deferred().await;
                continue;
            }
            event = others.events.recv() => {
                if let Some(ConsumerEvent::Record(r)) = event {
                    if let Some(Ok(m)) = r.value.as_deref().map(decode::<MonitorEvent>) {
                        monitor.cluster.observe(&m);
                        // A holder that let go is seen here first: connect at once. And a
                        // monitor that now owns the slot of a kept link takes it over.
                        if !monitor.deferred.is_empty() {
                            monitor.retry_deferred().await;
                        }
                        if m.monitor_id != monitor.id {
                            monitor.release_taken(false).await;
                        }
                    }
                }
                continue;
            }
            event = consumer.events.recv() => match event { Some(e) => e, None => break Ok(()) },
        };
        match event {
            ConsumerEvent::Assigned(parts) => {
                for (_, p) in parts {
                    monitor.slots.assign(p);
                }
                monitor.changed = true;
                info!(slots = ?monitor.slots.owned(), kept = monitor.limbo.len(), "Slots assigned; catching up.");
                // With nothing to catch up, what the revoked slots held is settled now.
                monitor.settle_limbo().await;
            }
            ConsumerEvent::Revoked { partitions, ack } => {
                // Keep the links of revoked slots: most come back with the next assignment
                // (an eager rebalance revokes everything). Those that do not are released once
                // the new slots are read; until then this monitor reports them as held, so no
                // other monitor connects them meanwhile.
                for (_, p) in partitions {
                    monitor.keep_aside(p);
                }
                info!(slots = ?monitor.slots.owned(), kept = monitor.limbo.len(), "Slots revoked; keeping their links until the next assignment is read.");
                monitor.changed = true;
                let _ = ack.send(());
            }
            ConsumerEvent::Record(r) => {
                let command = match r.value.as_deref().map(decode::<Assignment>) {
                    None => None,
                    Some(Ok(a)) => Some(a.command),
                    Some(Err(e)) => {
                        if let Err(e) = dead.send(&r, &format!("undecodable assignment: {e}")).await {
                            break Err(e);
                        }
                        continue;
                    }
                };
                if let Some(tserver) = monitor.slots.record(r.partition, &r.key_str(), command) {
                    if monitor.slots.is_caught_up(r.partition) {
                        monitor.reconcile(tserver).await;
                    }
                }
            }
            ConsumerEvent::Eof { partition } => {
                if monitor.slots.mark_caught_up(partition) {
                    for t in monitor.slots.tservers_in(partition) {
                        monitor.reconcile(t).await;
                    }
                    monitor.settle_limbo().await;
                }
            }
            ConsumerEvent::Error(_) | ConsumerEvent::Fatal(_) => {}
        }
    };
    // Hand over: leave the group but keep every link until another live monitor owns its
    // slot (it then waits for this one to let go), so a graceful leave is no blackout.
    for slot in monitor.slots.owned() {
        monitor.keep_aside(slot);
    }
    consumer.stop().await;
    monitor.changed = true;
    if health.reachable() {
        monitor.hand_over(&mut others).await;
    }
    // No heartbeat may follow the Stopping report.
    heartbeats.abort();
    let _ = heartbeats.await;
    monitor.report(MonitorBody::Stopping(Stopping { reason: "shutdown".into() })).await;
    monitor.release_taken(true).await;
    let ids: Vec<i32> = monitor.links.keys().copied().collect();
    monitor.release(ids).await;
    others.stop().await;
    flush_before_exit(&log).await;
    info!(id = %config.id, "Monitor stopped.");
    result
}

/// A link kept aside after its slot was revoked.
struct Kept {
    link: LinkHandle,
    /// When the new assignment was read without it: from then on it waits to be taken over.
    settled: Option<tokio::time::Instant>,
}

struct Monitor {
    log: Log,
    id: String,
    slots: Slots,
    links: BTreeMap<i32, LinkHandle>,
    /// Slots or links changed since the last heartbeat.
    changed: bool,
    /// The other monitors, from `monitors`.
    cluster: Cluster,
    /// Links of revoked slots, kept aside: adopted again if an owned slot still assigns
    /// their T-Server once the new slots are read, handed over otherwise.
    limbo: BTreeMap<i32, Kept>,
    /// T-Servers this monitor should watch but another live monitor still holds.
    deferred: BTreeSet<i32>,
    /// T-Servers released whose captured events are still on their way to the broker.
    draining: BTreeMap<i32, tokio::task::JoinHandle<()>>,
    /// Does the broker answer?
    health: BrokerHealth,
    /// It is handing its T-Servers over before it stops.
    leaving: bool,
    /// How long its view of the others has been current, and the latest verdict.
    trust: Trust,
    trust_ok: bool,
    link: LinkSettings,
    /// The latest report, sent by the heartbeat task ([`spawn_heartbeats`]).
    beat: watch::Sender<Option<Heartbeat>>,
}

impl Monitor {
    /// Make the link of one T-Server match the desired state of the owned slots.
    async fn reconcile(&mut self, tserver: i32) {
        let desired = self.slots.desired(tserver);
        // A link kept from a revoked slot is this monitor's own: adopt it again.
        if let (Some((t, _)), Some(kept)) = (&desired, self.limbo.get(&tserver)) {
            if kept.link.tserver == *t {
                if let Some(k) = self.limbo.remove(&tserver) {
                    self.links.insert(tserver, k.link);
                }
            }
        }
        let current: Option<&TServer> = self.links.get(&tserver).map(|h| &h.tserver);
        match desired {
            Some((t, dns)) if current == Some(&t) => {
                if let Some(h) = self.links.get(&tserver) {
                    h.set_dns(dns);
                }
            }
            Some((t, dns)) => {
                // Last line of defence against two monitors watching one DN: if another
                // live monitor still reports holding this T-Server (a group or a
                // dispatcher decision raced its release), wait for it to let go.
                let now = netwatch_schemas::now_ms();
                // Only a trusted view can tell: after a broker outage the others' reports come
                // late, and a monitor still holding the T-Server would look dead meanwhile.
                if !self.trusted(now) {
                    if self.deferred.insert(tserver) {
                        info!(tserver, "Waiting for current reports of the other monitors before connecting.");
                    }
                    return;
                }
                let holder = self.cluster.live(now).into_iter().find(|m| m.id != self.id && m.tservers.contains(&tserver));
                // A monitor whose last report, from before this view became current, lists
                // the T-Server may only be late to report again after an outage: it is given
                // SILENT_HOLDER_GRACE from then before it is taken for gone.
                let silent =
                    self.trust.current_since().filter(|since| now - since < SILENT_HOLDER_GRACE.as_millis() as i64).and_then(|since| {
                        self.cluster
                            .all()
                            .find(|m| m.id != self.id && !m.stopped && m.last_seen_ms < since && m.tservers.contains(&tserver))
                    });
                if let Some(other) = holder.or(silent) {
                    if self.deferred.insert(tserver) {
                        warn!(tserver, holder = %other.id, "Another monitor still holds this T-Server; waiting for it to let go.");
                    }
                    return;
                }
                self.deferred.remove(&tserver);
                if let Some(old) = self.links.remove(&tserver) {
                    info!(tserver, endpoint = %t.endpoint(), "T-Server endpoint changed; reconnecting.");
                    self.stopped(tserver, old.stop().await);
                }
                self.changed = true;
                info!(tserver, endpoint = %t.endpoint(), dns = dns.len(), "Watching T-Server.");
                self.links.insert(tserver, LinkHandle::spawn(self.log.clone(), self.id.clone(), t, dns, self.link.clone()));
            }
            None => {
                self.deferred.remove(&tserver);
                if let Some(old) = self.links.remove(&tserver) {
                    info!(tserver, "Releasing T-Server.");
                    let draining = old.stop().await;
                    self.stopped(tserver, draining);
                    self.changed = true;
                }
            }
        }
    }

    /// A slot is no longer ours: keep the links of its T-Servers aside (still held).
    fn keep_aside(&mut self, slot: i32) {
        for t in self.slots.revoke(slot) {
            if let Some(link) = self.links.remove(&t) {
                self.limbo.insert(t, Kept { link, settled: None });
            }
        }
    }

    /// Once every owned slot is read, the kept links no slot took back are to be handed
    /// over: each is released as soon as another live monitor owns its slot.
    async fn settle_limbo(&mut self) {
        if !self.slots.all_caught_up() {
            return;
        }
        let now = tokio::time::Instant::now();
        let settling: Vec<i32> = self
            .limbo
            .iter_mut()
            .filter(|(_, k)| k.settled.is_none())
            .map(|(t, k)| {
                k.settled = Some(now);
                *t
            })
            .collect();
        if !settling.is_empty() {
            info!(tservers = ?settling, "The new assignment moved these T-Servers elsewhere; handing them over.");
        }
        self.release_taken(false).await;
    }

    /// Release the settled kept links that another live monitor waits for (its heartbeat
    /// lists the T-Server as wanted: it connects as soon as this monitor's heartbeat no
    /// longer lists the T-Server) and, as a last resort, those settled longer than
    /// HANDOVER_WAIT ago (LEAVE_WAIT when leaving) with the broker answering all along;
    /// with `all`, every kept link.
    async fn release_taken(&mut self, all: bool) {
        let (now, now_ms) = (tokio::time::Instant::now(), now_ms());
        // Cut off from the broker (or reading its own reports late), nobody can take a slot
        // over: keep every link, and let the wait start again once the view is current.
        if !(all || self.health.reachable() && self.cluster.is_current(&self.id, now_ms)) {
            for k in self.limbo.values_mut() {
                if k.settled.is_some() {
                    k.settled = Some(now);
                }
            }
            return;
        }
        let live = self.cluster.live(now_ms);
        let wanted_elsewhere = |t: i32| live.iter().any(|m| m.id != self.id && m.wanted.contains(&t));
        let wait = if self.leaving { LEAVE_WAIT } else { HANDOVER_WAIT };
        let taken: Vec<i32> = self
            .limbo
            .iter()
            .filter(|(t, k)| all || k.settled.is_some_and(|at| wanted_elsewhere(**t) || now >= at + wait))
            .map(|(t, _)| *t)
            .collect();
        if taken.is_empty() {
            return;
        }
        for t in &taken {
            if let Some(k) = self.limbo.remove(t) {
                self.links.insert(*t, k.link);
            }
        }
        self.release(taken).await;
    }

    /// Leaving: every link is handed over as another monitor asks for it, for at most
    /// LEAVE_WAIT; then what is left is released.
    async fn hand_over(&mut self, others: &mut netwatch_eventlog::GroupConsumer) {
        self.leaving = true;
        let deadline = tokio::time::Instant::now() + LEAVE_WAIT;
        for k in self.limbo.values_mut() {
            k.settled.get_or_insert(tokio::time::Instant::now());
        }
        let mut beat = tokio::time::interval(Duration::from_millis(self.cluster.liveness.heartbeat_ms.max(100) as u64));
        info!(tservers = self.limbo.len(), "Leaving: each T-Server is released once another monitor asks for it.");
        while !self.limbo.is_empty() {
            if std::mem::take(&mut self.changed) {
                self.heartbeat();
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = beat.tick() => self.heartbeat(),
                event = others.events.recv() => match event {
                    Some(ConsumerEvent::Record(r)) => {
                        if let Some(Ok(m)) = r.value.as_deref().map(decode::<MonitorEvent>) {
                            self.cluster.observe(&m);
                        }
                    }
                    Some(_) => {}
                    None => break,
                },
            }
            self.release_taken(false).await;
        }
    }

    /// Stop the links of T-Servers no owned slot wants any more, concurrently.
    async fn release(&mut self, tservers: Vec<i32>) {
        let mut stopping = tokio::task::JoinSet::new();
        for t in tservers {
            self.deferred.remove(&t);
            if self.slots.desired(t).is_none() {
                if let Some(h) = self.links.remove(&t) {
                    info!(tserver = t, "Releasing T-Server.");
                    stopping.spawn(async move { (t, h.stop().await) });
                    self.changed = true;
                }
            }
        }
        while let Some(done) = stopping.join_next().await {
            if let Ok((t, draining)) = done {
                self.stopped(t, draining);
            }
        }
    }

    /// A link stopped; if its events are still on their way to the broker, the T-Server
    /// counts as held until they are appended, so no other monitor appends before them.
    fn stopped(&mut self, tserver: i32, draining: Option<tokio::task::JoinHandle<()>>) {
        if let Some(d) = draining {
            self.draining.insert(tserver, d);
        }
    }

    /// Forget drains that finished; true if any did (the heartbeat says so at once).
    fn drained(&mut self) -> bool {
        let before = self.draining.len();
        self.draining.retain(|_, d| !d.is_finished());
        self.draining.len() != before
    }

    /// Try again the T-Servers that waited for another monitor to let go.
    async fn retry_deferred(&mut self) {
        let waiting: Vec<i32> = self.deferred.iter().copied().collect();
        for t in waiting {
            self.reconcile(t).await;
        }
    }

    /// May this monitor take another for dead? See [`Trust`].
    fn trusted(&mut self, now: i64) -> bool {
        let current = self.cluster.is_current(&self.id, now);
        self.trust_ok = self.trust.update(current, self.cluster.liveness, now);
        self.trust_ok
    }

    /// T-Servers this monitor holds: a link, or captured events still on their way.
    fn held(&self) -> BTreeSet<i32> {
        self.links.keys().chain(self.limbo.keys()).chain(self.draining.keys()).copied().collect()
    }

    fn heartbeat(&self) {
        for link in self.links.values() {
            link.stats.refresh();
        }
        let sessions = self.links.values().filter(|h| h.stats.connected()).count() as i32;
        let dns = self.links.values().map(|h| h.stats.registered()).sum::<i64>() as i32;
        let body = Heartbeat {
            slots: self.slots.owned(),
            tservers: self.held().len() as i32,
            dns,
            sessions: Some(sessions),
            rss_bytes: rss_bytes(),
            tserver_ids: Some(self.held().into_iter().collect()),
            // Only a monitor ready to connect asks: the holder lets go as soon as it reads this.
            wanted: Some(if self.trust_ok { self.deferred.iter().copied().collect() } else { Vec::new() }),
        };
        self.beat.send_replace(Some(body));
    }

    /// Append to `monitors` without waiting for the broker: a heartbeat must not hold the
    /// monitor up while the broker is away.
    async fn report(&self, body: MonitorBody) {
        let event = MonitorEvent { monitor_id: self.id.clone(), at_ms: now_ms(), body };
        if let Err(e) = self.log.producer.send_detached(&self.log.topic(Topic::Monitors), &self.id, None, &event) {
            warn!(error = %e, "Could not append to monitors.");
        }
    }
}

/// Heartbeats come from their own task, every `every` and at once when the monitor publishes
/// a new report: whatever the monitor's loop is waiting for (a link draining, a consumer
/// leaving its group), the others keep hearing that it is alive and what it holds, so none of
/// them takes it for dead and connects a T-Server it still holds.
fn spawn_heartbeats(log: Log, id: String, every: Duration, mut latest: watch::Receiver<Option<Heartbeat>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                changed = latest.changed() => if changed.is_err() { break },
                _ = tick.tick() => {}
            }
            let Some(mut heartbeat) = latest.borrow_and_update().clone() else { continue };
            heartbeat.rss_bytes = rss_bytes();
            let event = MonitorEvent { monitor_id: id.clone(), at_ms: now_ms(), body: MonitorBody::Heartbeat(heartbeat) };
            if let Err(e) = log.producer.send_detached(&log.topic(Topic::Monitors), &id, None, &event) {
                warn!(error = %e, "Could not append to monitors.");
            }
            tick.reset();
        }
    })
}

/// Give the producer a few seconds to deliver what is queued; say how much it could not.
async fn flush_before_exit(log: &Log) {
    let producer = log.producer.clone();
    let within = Duration::from_secs(5);
    let _ = tokio::task::spawn_blocking(move || producer.flush(within)).await;
    let left = log.producer.in_flight();
    if left > 0 {
        warn!(records = left, "The broker did not acknowledge these records before the monitor stopped; they are not appended.");
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}

/// Resident memory of this process, from /proc (Linux); `None` elsewhere.
fn rss_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
