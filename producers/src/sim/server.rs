//! The simulator's TCP server and its two traffic modes.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netwatch_schemas::now_ms;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::model::Action;
use super::model::CallModel;
use super::scenario::{scenario_dns, Step};
use super::switch::{Switch, Wire};
use super::traffic::{Traffic, TrafficConfig};
use crate::cti::{to_line, Message, Request, Status, MAX_LINE};
use crate::link::{open, LinkError};

/// How the simulator makes traffic.
#[derive(Clone, Debug)]
pub enum SimMode {
    /// Seeded random traffic on these DNs.
    Random(TrafficConfig),
    /// Play these steps exactly, `speed` times faster than real time, once every DN
    /// they use is registered. Event timestamps are the scenario's own offsets from its
    /// start, whatever the speed, so durations are exact.
    Script { steps: Vec<Step>, speed: f64 },
    /// No traffic: only registrations (tests of the link itself).
    Idle,
    /// A steady stream of short inbound calls (ring, answer, release: one event each)
    /// over `dns`, `rate` events per second (0: as fast as the links take them), once
    /// every DN is registered; `count` events in all, or without end.
    Stream { dns: Vec<String>, rate: f64, count: Option<u64> },
}

/// A simulated T-Server.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Server name reported in EventServerInfo.
    pub name: String,
    pub mode: SimMode,
    /// First generated ConnID.
    pub connid_base: u64,
    /// Which form of each event to send.
    pub wire: Wire,
    /// Append a line per event written to a link to this file.
    pub sent_log: Option<PathBuf>,
}

/// Lines of the sent log: one per event written to a link (docs/cti-link.md).
#[derive(Clone)]
struct SentLog(Arc<Mutex<std::fs::File>>);

impl SentLog {
    fn open(path: &std::path::Path) -> std::io::Result<SentLog> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(SentLog(Arc::new(Mutex::new(file))))
    }

    fn record(&self, client: &(String, u64), event: &crate::cti::TEvent) {
        let (dn, connid) = match event.body.telephony() {
            Some((_, c)) => (Some(c.dn.as_str()), Some(c.connid.as_str())),
            None => (event.body.dn(), None),
        };
        let line = serde_json::json!({
            "client": client.0, "conn": client.1, "seq": event.seq, "time_ms": event.time_ms,
            "event": crate::cti::event_name(&event.body), "dn": dn, "connid": connid,
        });
        // One write per line: a reader polling the file never sees half a line.
        let line = format!("{line}\n");
        let mut file = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(line.as_bytes()) {
            warn!(error = %e, "Cannot write the sent log.");
        }
    }
}

/// Serve on `listener` until `shutdown` turns true.
pub async fn run(config: SimConfig, listener: TcpListener, shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    let switch = Switch::new(config.wire);
    serve(config, listener, switch, shutdown).await
}

/// Serve on `listener` with `switch` (made with `Switch::new(config.wire)`; the caller
/// keeps a clone to watch registrations) until `shutdown` turns true.
pub async fn serve(config: SimConfig, listener: TcpListener, switch: Switch, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    let sent_log = config.sent_log.as_deref().map(SentLog::open).transpose()?;
    info!(name = %config.name, addr = %listener.local_addr()?, "Simulated T-Server listening.");
    let traffic = tokio::spawn(make_traffic(config.clone(), switch.clone(), shutdown.clone()));
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let (stream, peer) = accepted?;
                tokio::spawn(serve_client(stream, peer, config.name.clone(), switch.clone(), sent_log.clone(), shutdown.clone()));
            }
        }
    }
    traffic.abort();
    Ok(())
}

async fn make_traffic(config: SimConfig, switch: Switch, mut shutdown: watch::Receiver<bool>) {
    let mut model = CallModel::new(config.connid_base);
    match config.mode {
        SimMode::Idle => {}
        SimMode::Random(traffic) => {
            let mut traffic = Traffic::new(traffic);
            let start = tokio::time::Instant::now();
            let epoch = now_ms();
            loop {
                let Some((at, actions)) = traffic.next() else { return };
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep_until(start + Duration::from_millis(at)) => {}
                }
                for action in actions {
                    match model.apply(&action) {
                        Ok(events) => events.iter().for_each(|e| switch.deliver(epoch + at as i64, e)),
                        Err(e) => warn!(error = %e, "Generated action refused by the call model."),
                    }
                }
            }
        }
        SimMode::Stream { dns, rate, count } => {
            let wanted = dns.iter().cloned().collect();
            info!(dns = dns.len(), rate, "Stream waits until its DNs are registered.");
            if !registered(&switch, &wanted, &mut shutdown).await {
                return;
            }
            info!("Stream starts.");
            let start = tokio::time::Instant::now();
            let mut i: u64 = 0;
            while count.is_none_or(|c| i < c) {
                if rate > 0.0 {
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)) => {}
                    }
                } else if i.is_multiple_of(256) {
                    tokio::task::yield_now().await;
                }
                let action = stream_step(&dns, i);
                match model.apply(&action) {
                    Ok(events) => events.iter().for_each(|e| switch.deliver(now_ms(), e)),
                    Err(e) => warn!(error = %e, "Stream action refused by the call model."),
                }
                i += 1;
            }
            info!(events = i, "Stream finished.");
        }
        SimMode::Script { steps, speed } => {
            let dns = scenario_dns(&steps);
            let total = steps.len() as u64;
            switch.set_progress(0, total);
            info!(dns = dns.len(), steps = total, "Scenario waits until its DNs are registered.");
            if !registered(&switch, &dns, &mut shutdown).await {
                return;
            }
            info!("Scenario starts.");
            let start = tokio::time::Instant::now();
            let epoch = now_ms();
            for (i, step) in steps.iter().enumerate() {
                let due = start + Duration::from_secs_f64(step.at_ms as f64 / 1000.0 / speed.max(0.001));
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep_until(due) => {}
                }
                match model.apply(&step.action) {
                    Ok(events) => events.iter().for_each(|e| switch.deliver(epoch + step.at_ms as i64, e)),
                    Err(e) => warn!(step = i + 1, error = %e, "Scenario step refused by the call model."),
                }
                switch.set_progress(i as u64 + 1, total);
            }
            info!("Scenario finished.");
        }
    }
}

/// Wait until every DN of `dns` is registered; false if shut down first.
async fn registered(switch: &Switch, dns: &std::collections::BTreeSet<String>, shutdown: &mut watch::Receiver<bool>) -> bool {
    loop {
        let changed = switch.registrations_changed.notified();
        if switch.all_registered(dns) {
            return true;
        }
        tokio::select! {
            _ = shutdown.changed() => return false,
            _ = changed => {}
        }
    }
}

/// Step `i` of the stream: call k = i / 3 rings, is answered, is released, at DN k mod n.
fn stream_step(dns: &[String], i: u64) -> Action {
    let k = i / 3;
    let call = format!("s{k}");
    match i % 3 {
        0 => Action::Call {
            call,
            from: format!("+1555{:07}", k % 10_000_000),
            to: dns[(k % dns.len() as u64) as usize].clone(),
            connid: None,
        },
        1 => Action::Answer { call },
        _ => Action::Release { call, dn: None },
    }
}

async fn serve_client(
    stream: TcpStream,
    peer: SocketAddr,
    server: String,
    switch: Switch,
    sent_log: Option<SentLog>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    // Who the client is, once it opened: for the sent log.
    let who: Arc<Mutex<Option<(String, u64)>>> = Arc::default();
    let writer_who = who.clone();
    let writer = tokio::spawn(async move {
        // Write what is queued in one go (up to 64 KiB); an event counts as sent once the
        // write that carried it succeeded.
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut events = Vec::new();
        while let Some(first) = rx.recv().await {
            buf.clear();
            events.clear();
            let mut next = Some(first);
            while let Some(m) = next.take() {
                buf.extend_from_slice(to_line(&m).as_bytes());
                if let (Some(_), Message::Event(e)) = (&sent_log, m) {
                    events.push(e);
                }
                if buf.len() < 64 * 1024 {
                    next = rx.try_recv().ok();
                }
            }
            if w.write_all(&buf).await.is_err() {
                break;
            }
            if let Some(log) = &sent_log {
                if let Some(client) = writer_who.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                    events.iter().for_each(|e| log.record(client, e));
                }
            }
        }
    });
    let mut reader = BufReader::new(r);
    let mut line = String::new();
    let mut client: Option<u64> = None;
    let mut drops = switch.drops();
    drops.mark_unchanged();
    loop {
        line.clear();
        let mut limited = tokio::io::AsyncReadExt::take(&mut reader, MAX_LINE as u64 + 1);
        let read = tokio::select! {
            _ = shutdown.changed() => break,
            _ = drops.changed() => {
                if drops.borrow_and_update().1 != client.unwrap_or(0) {
                    info!(%peer, "Dropping the link on request.");
                    break;
                }
                continue;
            }
            read = limited.read_line(&mut line) => read,
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) if n > MAX_LINE => {
                warn!(%peer, "Line too long; closing the link.");
                break;
            }
            Ok(_) => {}
        }
        let request = match serde_json::from_str::<Request>(line.trim_end()) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Message::EventError { ref_id: None, code: 400, text: Some(format!("malformed request: {e}")) });
                continue;
            }
        };
        debug!(%peer, ?request, "Request.");
        let answer = match (request, client) {
            (Request::RequestOpen { ref_id, client_name }, None) => {
                let (id, conn) = switch.connect(client_name.clone(), tx.clone());
                client = Some(id);
                *who.lock().unwrap_or_else(|p| p.into_inner()) = Some((client_name, conn));
                Message::EventServerInfo { ref_id, server: Some(server.clone()), time_ms: Some(now_ms()) }
            }
            (Request::RequestSwitchLink { ref_id, connected }, _) => {
                switch.set_switch_link(connected, now_ms());
                Message::EventStatus { ref_id, status: switch.status() }
            }
            (Request::RequestStatus { ref_id }, _) => Message::EventStatus { ref_id, status: switch.status() },
            (Request::RequestDropLinks { ref_id }, _) => {
                Message::EventLinksDropped { ref_id, dropped: switch.drop_links(client.unwrap_or(0)) }
            }
            (Request::RequestOpen { ref_id, .. }, Some(_)) => {
                Message::EventError { ref_id: Some(ref_id), code: 409, text: Some("link is already open".into()) }
            }
            (Request::RequestRegisterAddress { ref_id, dn }, Some(id)) => {
                let answer = Message::EventRegistered { ref_id, dn: dn.clone(), time_ms: Some(now_ms()) };
                switch.register_and_answer(id, &dn, Some(answer));
                continue;
            }
            (Request::RequestUnregisterAddress { ref_id, dn }, Some(id)) => {
                switch.unregister(id, &dn);
                Message::EventUnregistered { ref_id, dn, time_ms: Some(now_ms()) }
            }
            (Request::RequestRegisterAddress { ref_id, .. } | Request::RequestUnregisterAddress { ref_id, .. }, None) => {
                Message::EventError { ref_id: Some(ref_id), code: 401, text: Some("send RequestOpen first".into()) }
            }
        };
        if tx.send(answer).is_err() {
            break;
        }
    }
    if let Some(id) = client {
        switch.disconnect(id);
    }
    drop(tx);
    let _ = writer.await;
}

/// Ask a simulator to close every monitor's link; how many it closed.
pub async fn drop_links(endpoint: &str) -> Result<u64, LinkError> {
    ask(
        endpoint,
        "drop-links",
        |ref_id| Request::RequestDropLinks { ref_id },
        |m| match m {
            Message::EventLinksDropped { ref_id, dropped } => Some((ref_id, dropped)),
            _ => None,
        },
    )
    .await
}

/// Take a simulator's switch link down or up; its status afterwards.
pub async fn switch_link(endpoint: &str, connected: bool) -> Result<Status, LinkError> {
    ask(
        endpoint,
        "switch-link",
        |ref_id| Request::RequestSwitchLink { ref_id, connected },
        |m| match m {
            Message::EventStatus { ref_id, status } => Some((ref_id, status)),
            _ => None,
        },
    )
    .await
}

/// Ask a simulator which DNs are registered by whom.
pub async fn query_status(endpoint: &str) -> Result<Status, LinkError> {
    ask(
        endpoint,
        "status-query",
        |ref_id| Request::RequestStatus { ref_id },
        |m| match m {
            Message::EventStatus { ref_id, status } => Some((ref_id, status)),
            _ => None,
        },
    )
    .await
}

/// Open a link as `client`, send one request, and wait for the answer `pick` extracts.
async fn ask<T>(
    endpoint: &str,
    client: &str,
    request: impl FnOnce(u64) -> Request,
    pick: impl Fn(Message) -> Option<(u64, T)>,
) -> Result<T, LinkError> {
    let (mut w, mut r, _) = open(endpoint, client, Duration::from_secs(5)).await?;
    let want = w.send(request)?;
    loop {
        let line =
            tokio::time::timeout(Duration::from_secs(5), r.next_line()).await.map_err(|_| LinkError::ConnectTimeout(endpoint.into()))??;
        if let Some((ref_id, answer)) = crate::cti::parse_message(line).ok().and_then(&pick) {
            if ref_id == want {
                return Ok(answer);
            }
        }
    }
}
