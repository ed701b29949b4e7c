//! One CTI link per watched T-Server (a Kamailio has its own runner, [`SipRunner`]): the
//! runner of a [`Session`]. It moves bytes only —
//! opens the TCP link, writes the requests the session queues, reads and parses lines,
//! and appends the session's events to `calls` through a pipelined [`Emitter`] — and
//! stops reading while the emitter is full, so TCP pushes back on the T-Server.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netwatch_eventlog::{Destination, EmitCounts, Emitter, Log, Topic};
use netwatch_producers::cti::{parse_message, Capture, Message, Request, Unusable};
use netwatch_producers::link::{open, LinkError, LinkReader, LinkWriter};
use netwatch_schemas::calls::{CallBody, CallEvent, LinkDisconnected};
use netwatch_schemas::config::{ServerKind, TServer};
use netwatch_schemas::{encode, now_ms};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::session::{Action, Emitted, Note, Session};
use super::sip::SipRunner;

/// How a link runs.
#[derive(Clone, Debug)]
pub struct LinkSettings {
    /// Events read from the link and not yet acknowledged by the broker, at most.
    pub max_in_flight: usize,
    /// How long a stopping link waits for the broker to acknowledge what it read.
    pub drain_wait: Duration,
}

impl Default for LinkSettings {
    fn default() -> Self {
        LinkSettings { max_in_flight: 20_000, drain_wait: Duration::from_secs(5) }
    }
}

/// Counters the heartbeat and the status read, mirrored in the process's metrics
/// (`netwatch_link_*`, `netwatch_events_*_total`, labelled with the T-Server and the
/// monitor). The gauges are set again at every heartbeat ([`LinkStats::refresh`]): the
/// registry drops a gauge nobody sets for a minute, so a link this monitor no longer holds
/// leaves no series behind.
pub struct LinkStats {
    connected: AtomicBool,
    registered: AtomicI64,
    captured: AtomicU64,
    lost: AtomicU64,
    unusable: AtomicU64,
    series: LinkSeries,
}

/// One link's series in the metrics registry.
struct LinkSeries {
    up: metrics::Gauge,
    connects: metrics::Counter,
    disconnects: metrics::Counter,
    registered: metrics::Gauge,
    captured: metrics::Counter,
    lost: metrics::Counter,
    unusable: metrics::Counter,
}

impl LinkStats {
    /// Counters of `monitor`'s link to `tserver`, all zero.
    pub fn new(tserver: &TServer, monitor: &str) -> Self {
        let labels = [("tserver", tserver.id.to_string()), ("kind", tserver.kind.to_string()), ("monitor", monitor.to_string())];
        LinkStats {
            connected: AtomicBool::new(false),
            registered: AtomicI64::new(0),
            captured: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            unusable: AtomicU64::new(0),
            series: LinkSeries {
                up: metrics::gauge!("netwatch_link_up", &labels),
                connects: metrics::counter!("netwatch_link_connects_total", &labels),
                disconnects: metrics::counter!("netwatch_link_disconnects_total", &labels),
                registered: metrics::gauge!("netwatch_link_dns_registered", &labels),
                captured: metrics::counter!("netwatch_events_captured_total", &labels),
                lost: metrics::counter!("netwatch_events_lost_total", &labels),
                unusable: metrics::counter!("netwatch_link_unusable_messages_total", &labels),
            },
        }
    }

    /// The link went up or down; what it was before.
    pub(super) fn set_connected(&self, up: bool) -> bool {
        let was = self.connected.swap(up, Ordering::Relaxed);
        if was != up {
            self.series.up.set(if up { 1.0 } else { 0.0 });
            if up { &self.series.connects } else { &self.series.disconnects }.increment(1);
        }
        was
    }

    /// Set the gauges again (see the type's note).
    pub fn refresh(&self) {
        self.series.up.set(if self.connected() { 1.0 } else { 0.0 });
        self.series.registered.set(self.registered() as f64);
    }

    pub(super) fn set_registered(&self, dns: i64) {
        self.registered.store(dns, Ordering::Relaxed);
        self.series.registered.set(dns as f64);
    }

    /// The emitter's counts so far (they only grow); the series grow by the difference.
    pub(super) fn publish(&self, counts: EmitCounts) {
        let before = self.captured.swap(counts.appended, Ordering::Relaxed);
        self.series.captured.increment(counts.appended.saturating_sub(before));
        let before = self.lost.swap(counts.failed, Ordering::Relaxed);
        self.series.lost.increment(counts.failed.saturating_sub(before));
    }

    /// Unusable lines so far (they only grow).
    pub(super) fn set_unusable(&self, total: u64) {
        let before = self.unusable.swap(total, Ordering::Relaxed);
        self.series.unusable.increment(total.saturating_sub(before));
    }

    /// Is the link up?
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
    /// DNs registered on the link now.
    pub fn registered(&self) -> i64 {
        self.registered.load(Ordering::Relaxed)
    }
    /// Events appended to `calls` so far.
    pub fn captured(&self) -> u64 {
        self.captured.load(Ordering::Relaxed)
    }
    /// Events read that could not be appended.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
    /// Lines that were not usable messages.
    pub fn unusable(&self) -> u64 {
        self.unusable.load(Ordering::Relaxed)
    }
}

/// A running link task.
pub struct LinkHandle {
    pub tserver: TServer,
    pub stats: Arc<LinkStats>,
    dns: watch::Sender<BTreeSet<String>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Option<JoinHandle<()>>>,
}

impl LinkHandle {
    /// Start watching a T-Server.
    pub fn spawn(log: Log, monitor: String, tserver: TServer, dns: BTreeSet<String>, settings: LinkSettings) -> LinkHandle {
        let stats = Arc::new(LinkStats::new(&tserver, &monitor));
        let (dns_tx, dns_rx) = watch::channel(dns);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = match tserver.kind {
            ServerKind::Cti => tokio::spawn(Runner::new(log, monitor, &tserver, settings, stats.clone()).run(dns_rx, stop_rx)),
            ServerKind::Kamailio => tokio::spawn(SipRunner::new(&log, monitor, &tserver, settings, stats.clone()).run(dns_rx, stop_rx)),
        };
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

    /// Unregister every DN, close the link, and wait for the task to end: at most the
    /// release wait and the drain wait. What the broker has not acknowledged by then keeps
    /// going in the background: the task doing that, if any (the monitor reports the
    /// T-Server as held until it ends, so no other monitor appends before it).
    pub async fn stop(self) -> Option<JoinHandle<()>> {
        let _ = self.stop.send(true);
        let draining = match self.task.await {
            Ok(d) => d,
            Err(e) => {
                warn!(tserver = self.tserver.id, error = %e, "The link task failed.");
                None
            }
        };
        let s = &self.stats;
        info!(
            tserver = self.tserver.id,
            captured = s.captured(),
            lost = s.lost(),
            unusable = s.unusable(),
            "Stopped watching the T-Server."
        );
        draining
    }
}

/// What woke the runner.
enum Wake {
    Stop,
    Dns,
    Settled,
    Opened(Result<(LinkWriter, LinkReader, Option<String>), LinkError>),
    Line(Result<Result<Message, Unusable>, LinkError>),
    WriteFailed(String),
    Tick,
}

type Opening = Pin<Box<dyn Future<Output = Result<(LinkWriter, LinkReader, Option<String>), LinkError>> + Send>>;

struct Runner {
    monitor: String,
    tserver: i32,
    endpoint: String,
    settings: LinkSettings,
    stats: Arc<LinkStats>,
    emitter: Emitter,
    /// Link session id: new on every connect.
    session_id: String,
    /// Number of the current link, from 1: the emitter's tag of its records.
    link_no: u64,
    /// Events of the current link that could not even be encoded.
    unencodable: u64,
    link: Option<(LinkWriter, LinkReader)>,
    opening: Option<Opening>,
}

impl Runner {
    fn new(log: Log, monitor: String, tserver: &TServer, settings: LinkSettings, stats: Arc<LinkStats>) -> Runner {
        let to = Destination {
            topic: log.topic(Topic::Calls),
            partition: log.topics.tserver_partition(tserver.id),
            key: tserver.id.to_string(),
        };
        let emitter = Emitter::new(log.producer.clone(), to, settings.max_in_flight);
        Runner {
            monitor,
            tserver: tserver.id,
            endpoint: tserver.endpoint(),
            settings,
            stats,
            emitter,
            session_id: String::new(),
            link_no: 0,
            unencodable: 0,
            link: None,
            opening: None,
        }
    }

    async fn run(mut self, mut dns: watch::Receiver<BTreeSet<String>>, mut stop: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
        let wanted = dns.borrow_and_update().clone();
        let (mut session, mut actions) = Session::new(&self.endpoint, wanted);
        let mut stopping = false;
        loop {
            for action in std::mem::take(&mut actions) {
                self.act(action);
            }
            if let Some((writer, _)) = self.link.as_mut() {
                if let Err(e) = writer.flush() {
                    actions = session.lost(&e.to_string(), Instant::now());
                    continue;
                }
            }
            self.stats.set_registered(session.registered() as i64);
            self.stats.set_unusable(session.unusable_total());
            if session.is_done() {
                break;
            }
            if !stopping && *stop.borrow() {
                stopping = true;
                self.opening = None;
                actions = session.release(Instant::now());
                continue;
            }
            let deadline = session.next_deadline();
            // While releasing, every line is read: what the T-Server sent before it
            // confirmed must not stay behind in the socket (the release wait bounds it).
            let reading = self.link.is_some() && (self.emitter.has_room() || session.is_releasing());
            let (reader, writer) = match self.link.as_mut() {
                Some((w, r)) => (Some(r), Some(w)),
                None => (None, None),
            };
            let wake = tokio::select! {
                _ = stop.changed(), if !stopping => Wake::Stop,
                _ = dns.changed(), if !stopping => Wake::Dns,
                _ = self.emitter.settle() => Wake::Settled,
                opened = opened(&mut self.opening), if self.opening.is_some() => Wake::Opened(opened),
                line = read(reader), if reading => Wake::Line(line),
                reason = write_failed(writer) => Wake::WriteFailed(reason),
                _ = sleep_until(deadline), if deadline.is_some() => Wake::Tick,
            };
            let now = Instant::now();
            actions = match wake {
                Wake::Stop => Vec::new(),
                Wake::Dns => session.want(dns.borrow_and_update().clone()),
                Wake::Settled => {
                    self.publish_counts();
                    Vec::new()
                }
                Wake::Opened(Ok((writer, reader, server))) => {
                    self.opening = None;
                    self.link = Some((writer, reader));
                    self.session_id = uuid::Uuid::new_v4().to_string();
                    self.link_no += 1;
                    self.unencodable = 0;
                    self.stats.set_connected(true);
                    session.opened(server, now_ms(), now)
                }
                Wake::Opened(Err(e)) => {
                    self.opening = None;
                    session.open_failed(&e.to_string(), now)
                }
                Wake::Line(Ok(Ok(message))) => session.on_message(message, now_ms(), now),
                Wake::Line(Ok(Err(unusable))) => {
                    debug!(tserver = self.tserver, reason = %unusable, "Unusable CTI line.");
                    session.on_unusable(&unusable, now)
                }
                Wake::Line(Err(e)) => session.lost(&e.to_string(), now),
                Wake::WriteFailed(reason) => session.lost(&reason, now),
                Wake::Tick => session.tick(now),
            };
        }
        self.finish().await
    }

    /// Carry out one action of the session.
    fn act(&mut self, action: Action) {
        match action {
            Action::Connect => {
                let (endpoint, monitor) = (self.endpoint.clone(), self.monitor.clone());
                self.opening = Some(Box::pin(async move { open(&endpoint, &monitor, Duration::from_secs(5)).await }));
            }
            Action::Register(dn) => {
                if let Some((w, _)) = self.link.as_mut() {
                    w.queue(|ref_id| Request::RequestRegisterAddress { ref_id, dn });
                }
            }
            Action::Unregister(dn) => {
                if let Some((w, _)) = self.link.as_mut() {
                    w.queue(|ref_id| Request::RequestUnregisterAddress { ref_id, dn });
                }
            }
            Action::Emit(e) => self.emit(e),
            Action::EndLink { reason, finish } => {
                if let Some((_, mut reader)) = self.link.take() {
                    self.salvage(&mut reader);
                }
                self.stats.set_connected(false);
                let lost = self.emitter.failed(self.link_no) + self.unencodable;
                if finish {
                    info!(tserver = self.tserver, endpoint = %self.endpoint, %reason, "CTI link closed.");
                } else {
                    warn!(tserver = self.tserver, endpoint = %self.endpoint, %reason, "CTI link lost; reconnecting.");
                }
                let body = CallBody::LinkDisconnected(LinkDisconnected { reason, events_lost: (lost > 0).then_some(lost as i64) });
                self.emit(Emitted { server_time_ms: now_ms(), link_seq: None, body });
            }
            Action::Note(note) => self.note(note),
        }
    }

    /// Encode an event and hand it to the emitter.
    fn emit(&mut self, e: Emitted) {
        let event = CallEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            tserver: self.tserver,
            monitor: self.monitor.clone(),
            session: self.session_id.clone(),
            server_time_ms: e.server_time_ms,
            link_seq: e.link_seq,
            body: e.body,
        };
        match encode(&event) {
            Ok(bytes) => self.emitter.push(self.link_no, bytes),
            Err(error) => {
                // Our own event types always encode; count it rather than crash if not.
                self.unencodable += 1;
                warn!(tserver = self.tserver, %error, "A captured event could not be encoded.");
            }
        }
    }

    /// The link is given up with complete lines still in its read buffer (a release
    /// that timed out, a failed write): append the events among them rather than drop
    /// them; they were sent while the link was up.
    fn salvage(&mut self, reader: &mut LinkReader) {
        for line in reader.drain_buffered() {
            let Ok(Message::Event(event)) = parse_message(&line) else { continue };
            if let Capture::Dn(body) = event.body.capture() {
                self.emit(Emitted { server_time_ms: event.time_ms, link_seq: Some(event.seq as i64), body });
            }
        }
    }

    fn note(&self, note: Note) {
        let t = self.tserver;
        let endpoint = &self.endpoint;
        match note {
            Note::Connected { server } => {
                info!(tserver = t, %endpoint, server = server.as_deref().unwrap_or("?"), session = %self.session_id, "CTI link connected.")
            }
            Note::ConnectFailed { failures, error, retry_in } => {
                warn!(tserver = t, %endpoint, failures, %error, retry_in_ms = retry_in.as_millis() as u64, "Cannot open the CTI link; retrying.")
            }
            Note::Unusable { count, total, last } => {
                warn!(tserver = t, %endpoint, count, total, last = %last, "Unusable CTI messages were skipped (docs/cti-link.md).")
            }
            Note::SeqJumps { count, expected, got } => {
                warn!(tserver = t, %endpoint, count, expected, got, "The T-Server's event sequence numbers jumped: it skipped or repeated events.")
            }
            Note::Refused { count, code, text } => warn!(tserver = t, %endpoint, count, code, %text, "The T-Server refused requests."),
            Note::SwitchLink { up: false, reason } => {
                let reason = reason.as_deref().unwrap_or("none given");
                warn!(tserver = t, %endpoint, reason, "The T-Server lost its switch link; its DNs are unknown until it is back.")
            }
            Note::SwitchLink { up: true, .. } => {
                info!(tserver = t, %endpoint, "The T-Server's switch link is back; registering every DN again.")
            }
        }
    }

    fn publish_counts(&self) {
        self.stats.publish(self.emitter.counts());
    }

    /// The session is over: wait a while for the broker to take what was read, then
    /// leave the rest to a background task, which is returned.
    async fn finish(mut self) -> Option<JoinHandle<()>> {
        self.stats.set_connected(false);
        self.stats.set_registered(0);
        let drained = self.emitter.drain(self.settings.drain_wait).await;
        self.publish_counts();
        if drained.pending > 0 {
            warn!(
                tserver = self.tserver,
                pending = drained.pending,
                "The broker has not acknowledged every captured event yet; they stay queued."
            );
        }
        // What the broker settles later still counts in the link's series.
        let stats = self.stats.clone();
        self.emitter.detach(format!("T-Server {} events", self.tserver), move |counts| stats.publish(counts))
    }
}

/// The link being opened, once it is (never ready when none is).
async fn opened(opening: &mut Option<Opening>) -> Result<(LinkWriter, LinkReader, Option<String>), LinkError> {
    match opening {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// The reason writing to the link failed (never ready without a link).
async fn write_failed(writer: Option<&mut LinkWriter>) -> String {
    match writer {
        Some(w) => w.failed().await,
        None => std::future::pending().await,
    }
}

/// The next parsed line of the link (never ready without a link).
async fn read(reader: Option<&mut LinkReader>) -> Result<Result<Message, Unusable>, LinkError> {
    match reader {
        Some(r) => r.next_line().await.map(parse_message),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
