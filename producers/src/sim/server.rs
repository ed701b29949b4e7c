//! The simulator's TCP server and its two traffic modes.

use std::net::SocketAddr;
use std::time::Duration;

use netwatch_schemas::now_ms;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::model::CallModel;
use super::scenario::{scenario_dns, Step};
use super::switch::Switch;
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
}

/// A simulated T-Server.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Server name reported in EventServerInfo.
    pub name: String,
    pub mode: SimMode,
    /// First generated ConnID.
    pub connid_base: u64,
}

/// Serve on `listener` until `shutdown` turns true.
pub async fn run(config: SimConfig, listener: TcpListener, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    let switch = Switch::default();
    info!(name = %config.name, addr = %listener.local_addr()?, "Simulated T-Server listening.");
    let traffic = tokio::spawn(make_traffic(config.clone(), switch.clone(), shutdown.clone()));
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let (stream, peer) = accepted?;
                tokio::spawn(serve_client(stream, peer, config.name.clone(), switch.clone(), shutdown.clone()));
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
        SimMode::Script { steps, speed } => {
            let dns = scenario_dns(&steps);
            let total = steps.len() as u64;
            switch.set_progress(0, total);
            info!(dns = dns.len(), steps = total, "Scenario waits until its DNs are registered.");
            loop {
                let changed = switch.registrations_changed.notified();
                if switch.all_registered(&dns) {
                    break;
                }
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = changed => {}
                }
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

async fn serve_client(stream: TcpStream, peer: SocketAddr, server: String, switch: Switch, mut shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if w.write_all(to_line(&m).as_bytes()).await.is_err() {
                break;
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
                let _ = tx.send(Message::EventError { ref_id: None, code: 400, text: format!("malformed request: {e}") });
                continue;
            }
        };
        debug!(%peer, ?request, "Request.");
        let answer = match (request, client) {
            (Request::RequestOpen { ref_id, client_name }, None) => {
                client = Some(switch.connect(client_name, tx.clone()));
                Message::EventServerInfo { ref_id, server: server.clone(), time_ms: now_ms() }
            }
            (Request::RequestStatus { ref_id }, _) => Message::EventStatus { ref_id, status: switch.status() },
            (Request::RequestDropLinks { ref_id }, _) => {
                Message::EventLinksDropped { ref_id, dropped: switch.drop_links(client.unwrap_or(0)) }
            }
            (Request::RequestOpen { ref_id, .. }, Some(_)) => {
                Message::EventError { ref_id: Some(ref_id), code: 409, text: "link is already open".into() }
            }
            (Request::RequestRegisterAddress { ref_id, dn }, Some(id)) => {
                switch.register(id, &dn);
                if tx.send(Message::EventRegistered { ref_id, dn: dn.clone(), time_ms: now_ms() }).is_err() {
                    break;
                }
                switch.replay_agent_state(id, &dn);
                continue;
            }
            (Request::RequestUnregisterAddress { ref_id, dn }, Some(id)) => {
                switch.unregister(id, &dn);
                Message::EventUnregistered { ref_id, dn, time_ms: now_ms() }
            }
            (Request::RequestRegisterAddress { ref_id, .. } | Request::RequestUnregisterAddress { ref_id, .. }, None) => {
                Message::EventError { ref_id: Some(ref_id), code: 401, text: "send RequestOpen first".into() }
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
    let want = w.send(request).await?;
    loop {
        let message =
            tokio::time::timeout(Duration::from_secs(5), r.next()).await.map_err(|_| LinkError::ConnectTimeout(endpoint.into()))??;
        if let Some((ref_id, answer)) = pick(message) {
            if ref_id == want {
                return Ok(answer);
            }
        }
    }
}
