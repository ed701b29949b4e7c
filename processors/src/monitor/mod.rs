//! The monitor: a member of the monitor group on `assignments`. It owns the T-Servers
//! placed in its slots, keeps a CTI link to each, registers their DNs, and appends
//! every event it captures to `calls`.

mod link;
mod session;
mod slots;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use netwatch_eventlog::{spawn_group_consumer, spawn_tail, ConsumerEvent, GroupOptions, Log, LogError, StartAt, Topic};
use netwatch_schemas::assignments::Assignment;
use netwatch_schemas::config::TServer;
use netwatch_schemas::monitors::{Heartbeat, MonitorBody, MonitorEvent, Started, Stopping};

use crate::cluster::{Cluster, Liveness};
use netwatch_schemas::{decode, now_ms};
use tokio::sync::watch;
use tracing::{info, warn};

pub use link::{LinkHandle, LinkSettings, LinkStats};
pub use slots::Slots;

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
    let mut consumer = spawn_group_consumer(
        &log.kafka,
        GroupOptions {
            group: group.clone(),
            topics: vec![log.topic(Topic::Assignments)],
            start: StartAt::Beginning,
            revoke_timeout: Duration::from_secs(15),
            cooperative: config.cooperative,
        },
    )?;
    let dead = log.dead_letter(&group);
    let liveness = Liveness { heartbeat_ms: config.heartbeat.as_millis() as i64, ..Liveness::default() };
    let mut others = spawn_tail(&log.kafka, &log.topic(Topic::Monitors), |_, _, high| high - 2_000)?;
    let mut monitor = Monitor {
        log: log.clone(),
        id: config.id.clone(),
        slots: Slots::default(),
        links: BTreeMap::new(),
        changed: false,
        cluster: Cluster::new(liveness),
        deferred: BTreeSet::new(),
        draining: BTreeMap::new(),
        link: config.link.clone(),
    };
    monitor.report(MonitorBody::Started(Started { host: hostname(), pid: std::process::id() as i32 })).await;
    info!(id = %config.id, %group, "Monitor started.");
    let mut heartbeat = tokio::time::interval(config.heartbeat);
    let mut retry = tokio::time::interval(config.heartbeat);
    let result = loop {
        // Report at once when slots or links changed: the dispatcher waits for a moved
        // T-Server to leave this monitor's report before assigning it elsewhere.
        if std::mem::take(&mut monitor.changed) {
            monitor.heartbeat().await;
            heartbeat.reset();
        }
        let event = tokio::select! {
            _ = shutdown.changed() => break Ok(()),
            _ = heartbeat.tick() => {
                monitor.drained();
                monitor.heartbeat().await;
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
                info!(slots = ?monitor.slots.owned(), "Slots assigned; catching up.");
            }
            ConsumerEvent::Revoked { partitions, ack } => {
                let mut touched = Vec::new();
                for (_, p) in partitions {
                    touched.extend(monitor.slots.revoke(p));
                }
                // Release them all at once: the rebalance (and this monitor's heartbeats)
                // wait for it, so it must take one link's release time, not their sum.
                monitor.release(touched).await;
                info!(slots = ?monitor.slots.owned(), "Slots revoked; their T-Servers are released.");
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
                }
            }
            ConsumerEvent::Error(_) | ConsumerEvent::Fatal(_) => {}
        }
    };
    monitor.report(MonitorBody::Stopping(Stopping { reason: "shutdown".into() })).await;
    let ids: Vec<i32> = monitor.links.keys().copied().collect();
    monitor.release(ids).await;
    consumer.stop().await;
    others.stop().await;
    flush_before_exit(&log).await;
    info!(id = %config.id, "Monitor stopped.");
    result
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
    /// T-Servers this monitor should watch but another live monitor still holds.
    deferred: BTreeSet<i32>,
    /// T-Servers released whose captured events are still on their way to the broker.
    draining: BTreeMap<i32, tokio::task::JoinHandle<()>>,
    link: LinkSettings,
}

impl Monitor {
    /// Make the link of one T-Server match the desired state of the owned slots.
    async fn reconcile(&mut self, tserver: i32) {
        let desired = self.slots.desired(tserver);
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
                let holder = self.cluster.live(now).into_iter().find(|m| m.id != self.id && m.tservers.contains(&tserver));
                if let Some(other) = holder {
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

    /// T-Servers this monitor holds: a link, or captured events still on their way.
    fn held(&self) -> BTreeSet<i32> {
        self.links.keys().chain(self.draining.keys()).copied().collect()
    }

    async fn heartbeat(&self) {
        let sessions = self.links.values().filter(|h| h.stats.connected()).count() as i32;
        let dns = self.links.values().map(|h| h.stats.registered()).sum::<i64>() as i32;
        let body = MonitorBody::Heartbeat(Heartbeat {
            slots: self.slots.owned(),
            tservers: self.held().len() as i32,
            dns,
            sessions: Some(sessions),
            rss_bytes: rss_bytes(),
            tserver_ids: Some(self.held().into_iter().collect()),
        });
        self.report(body).await;
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
