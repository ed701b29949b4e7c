//! One CTI link per watched T-Server: connect, register the desired DNs, forward every
//! event to `calls`, reconnect with backoff and jitter when the link drops.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netwatch_eventlog::{Log, Topic};
use netwatch_producers::cti::{Message, Request};
use netwatch_producers::link::{open, LinkWriter};
use netwatch_schemas::calls::{CallBody, CallEvent, DnAddress, LinkConnected, LinkDisconnected};
use netwatch_schemas::config::TServer;
use netwatch_schemas::now_ms;
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Counters the heartbeat reads.
#[derive(Default)]
pub struct LinkStats {
    connected: AtomicBool,
    registered: AtomicI64,
}

impl LinkStats {
    /// Is the link up?
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
    /// DNs registered on the link now.
    pub fn registered(&self) -> i64 {
        self.registered.load(Ordering::Relaxed)
    }
}

/// A running link task.
pub struct LinkHandle {
    pub tserver: TServer,
    pub stats: Arc<LinkStats>,
    dns: watch::Sender<BTreeSet<String>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl LinkHandle {
    /// Start watching a T-Server.
    pub fn spawn(log: Log, monitor: String, tserver: TServer, dns: BTreeSet<String>, stats: Arc<LinkStats>) -> LinkHandle {
        let (dns_tx, dns_rx) = watch::channel(dns);
        let (stop_tx, stop_rx) = watch::channel(false);
        let emitter = Emitter { log, monitor, tserver: tserver.id, session: String::new() };
        let task = tokio::spawn(link_task(emitter, tserver.clone(), dns_rx, stop_rx, stats.clone()));
        LinkHandle { tserver, stats, dns: dns_tx, stop: stop_tx, task }
    }

    /// Change the DNs to register.
    pub fn set_dns(&self, dns: BTreeSet<String>) {
        self.dns.send_if_modified(|current| {
            let changed = *current != dns;
            *current = dns;
            changed
        });
    }

    /// Unregister every DN, close the link, and wait for the task to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(10), &mut task).await.is_err() {
            warn!(tserver = self.tserver.id, "Link did not stop in time; aborting it.");
            task.abort();
        }
    }
}

/// Appends captured events to `calls`.
struct Emitter {
    log: Log,
    monitor: String,
    tserver: i32,
    session: String,
}

impl Emitter {
    async fn emit(&self, server_time_ms: i64, body: CallBody) {
        let event = CallEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            tserver: self.tserver,
            monitor: self.monitor.clone(),
            session: self.session.clone(),
            server_time_ms,
            body,
        };
        let topic = self.log.topic(Topic::Calls);
        let partition = self.log.topics.tserver_partition(self.tserver);
        if let Err(e) = self.log.producer.send(&topic, &self.tserver.to_string(), Some(partition), &event).await {
            warn!(tserver = self.tserver, error = %e, "Could not append a call event.");
        }
    }
}

/// Why a session ended.
enum End {
    Stopped,
    Lost(String),
}

async fn link_task(
    mut emitter: Emitter,
    tserver: TServer,
    mut dns: watch::Receiver<BTreeSet<String>>,
    mut stop: watch::Receiver<bool>,
    stats: Arc<LinkStats>,
) {
    let endpoint = tserver.endpoint();
    let mut failures: u32 = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let opened = tokio::select! {
            _ = stop.changed() => return,
            opened = open(&endpoint, &emitter.monitor, Duration::from_secs(5)) => opened,
        };
        match opened {
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(20) {
                    warn!(tserver = tserver.id, %endpoint, failures, error = %e, "Cannot open the CTI link; retrying.");
                }
            }
            Ok((mut writer, mut reader, server)) => {
                failures = 0;
                emitter.session = uuid::Uuid::new_v4().to_string();
                stats.connected.store(true, Ordering::Relaxed);
                info!(tserver = tserver.id, %endpoint, %server, session = %emitter.session, "CTI link connected.");
                emitter.emit(now_ms(), CallBody::LinkConnected(LinkConnected { endpoint: endpoint.clone() })).await;
                let mut requested: BTreeSet<String> = BTreeSet::new();
                let end = loop {
                    let want = dns.borrow_and_update().clone();
                    if let Err(e) = sync(&mut writer, &mut requested, &want).await {
                        break End::Lost(e);
                    }
                    let message = tokio::select! {
                        _ = stop.changed() => break End::Stopped,
                        _ = dns.changed() => continue,
                        m = reader.next() => m,
                    };
                    match message {
                        Ok(m) => handle(&emitter, &stats, &requested, m).await,
                        Err(e) => break End::Lost(e.to_string()),
                    }
                };
                let reason = match end {
                    End::Stopped => {
                        release(&emitter, &stats, &mut writer, &mut reader, &mut requested).await;
                        "monitor released the T-Server".to_string()
                    }
                    End::Lost(reason) => reason,
                };
                stats.connected.store(false, Ordering::Relaxed);
                stats.registered.store(0, Ordering::Relaxed);
                info!(tserver = tserver.id, %endpoint, %reason, "CTI link disconnected.");
                emitter.emit(now_ms(), CallBody::LinkDisconnected(LinkDisconnected { reason })).await;
                if *stop.borrow() {
                    return;
                }
            }
        }
        let delay = backoff(failures);
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Exponential backoff from 200 ms to 10 s with ±25 % jitter.
fn backoff(failures: u32) -> Duration {
    let base = 200u64.saturating_mul(1 << failures.min(6)).min(10_000);
    let jitter = rand::rng().random_range(0.75..1.25);
    Duration::from_millis((base as f64 * jitter) as u64)
}

/// Send register/unregister requests so that `requested` becomes `want`.
async fn sync(writer: &mut LinkWriter, requested: &mut BTreeSet<String>, want: &BTreeSet<String>) -> Result<(), String> {
    for dn in want.difference(&requested.clone()) {
        writer.send(|ref_id| Request::RequestRegisterAddress { ref_id, dn: dn.clone() }).await.map_err(|e| e.to_string())?;
        requested.insert(dn.clone());
    }
    for dn in requested.clone().difference(want) {
        writer.send(|ref_id| Request::RequestUnregisterAddress { ref_id, dn: dn.clone() }).await.map_err(|e| e.to_string())?;
        requested.remove(dn);
    }
    Ok(())
}

async fn handle(emitter: &Emitter, stats: &LinkStats, requested: &BTreeSet<String>, message: Message) {
    match message {
        Message::EventRegistered { dn, time_ms, .. } => {
            if requested.contains(&dn) {
                stats.registered.fetch_add(1, Ordering::Relaxed);
            }
            emitter.emit(time_ms, CallBody::DnRegistered(DnAddress { dn })).await;
        }
        Message::EventUnregistered { dn, time_ms, .. } => {
            stats.registered.fetch_sub(1, Ordering::Relaxed);
            emitter.emit(time_ms, CallBody::DnUnregistered(DnAddress { dn })).await;
        }
        Message::Event(event) => emitter.emit(event.time_ms, event.body.to_call_body()).await,
        Message::EventLinkConnected { time_ms } => {
            emitter.emit(time_ms, CallBody::LinkConnected(LinkConnected { endpoint: "switch".into() })).await;
        }
        Message::EventLinkDisconnected { time_ms, reason } => {
            emitter.emit(time_ms, CallBody::LinkDisconnected(LinkDisconnected { reason: format!("switch: {reason}") })).await;
        }
        Message::EventError { ref_id, code, text } => warn!(?ref_id, code, %text, "T-Server refused a request."),
        Message::EventServerInfo { .. } | Message::EventStatus { .. } | Message::EventLinksDropped { .. } => {}
    }
}

/// Unregister every DN and wait (briefly) for the confirmations.
async fn release(
    emitter: &Emitter,
    stats: &LinkStats,
    writer: &mut LinkWriter,
    reader: &mut netwatch_producers::link::LinkReader,
    requested: &mut BTreeSet<String>,
) {
    let mut pending = requested.clone();
    if sync(writer, requested, &BTreeSet::new()).await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !pending.is_empty() {
        match tokio::time::timeout_at(deadline, reader.next()).await {
            Ok(Ok(Message::EventUnregistered { dn, time_ms, .. })) => {
                pending.remove(&dn);
                stats.registered.fetch_sub(1, Ordering::Relaxed);
                emitter.emit(time_ms, CallBody::DnUnregistered(DnAddress { dn })).await;
            }
            Ok(Ok(m)) => handle(emitter, stats, requested, m).await,
            Ok(Err(_)) | Err(_) => break,
        }
    }
}
