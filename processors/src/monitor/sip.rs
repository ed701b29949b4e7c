//! One Kamailio per watched server of kind `kamailio` (docs/sip.md): the evapi reader,
//! the resynchronisation over JSON-RPC and the call model of `producers::sip`, appending
//! to `calls` through the same pipelined [`Emitter`] as a CTI link. While the emitter is
//! full, events wait in the evapi reader (bounded; past the bound the connection is
//! dropped and the next one resynchronises).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use netwatch_eventlog::{read_range, Destination, Emitter, Log, LogError, Topic};
use netwatch_producers::sip::event::Decoded;
use netwatch_producers::sip::model::{Model, Output, View};
use netwatch_producers::sip::resync;
use netwatch_producers::sip::rpc::{read_evapi, EvapiConfig, EvapiEnd, RpcClient};
use netwatch_producers::sip::SipError;
use netwatch_schemas::calls::{Agent, AgentEventKind, CallBody, CallEvent, DnAddress, LinkConnected, LinkDisconnected, Telephony};
use netwatch_schemas::config::TServer;
use netwatch_schemas::{decode, encode, now_ms};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::link::{LinkSettings, LinkStats};

/// How long Kamailio has to greet a new evapi client and to answer one JSON-RPC call.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// Records of the server's `calls` partition read back at first when taking it over
/// (more, four times each, until its last connect is found).
const SEED_BACK: i64 = 20_000;
/// Give up looking for the last connect past this many records (then start empty).
const SEED_MAX: i64 = 5_000_000;
/// Reconnect backoff.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(10);

/// Why a connection ended.
enum Ended {
    Stop,
    Lost(String),
}

/// What woke a connected runner.
enum Wake {
    Stop,
    Dns,
    Settled,
    /// Boxed: an evapi event is large next to the other wake-ups.
    Item(Option<Box<Decoded>>),
}

/// The calls and DN state a Netwatch event carries, from one model output.
pub fn bodies(output: &Output) -> Vec<(i64, CallBody)> {
    match output {
        Output::Call(c) => vec![(
            c.time_ms as i64,
            CallBody::Telephony(Telephony {
                kind: c.kind,
                dn: c.dn.clone(),
                connid: c.connid.clone(),
                call_type: c.call_type,
                other_dn: Some(c.other_dn.clone()),
                third_party_dn: None,
                previous_connid: None,
                cause: c.cause().map(str::to_string),
                released_by: c.released_by(),
            }),
        )],
        // A plain SIP server has no ACD: a phone that registers is ready, one that has no
        // registration left is logged out; the agent is the SIP user.
        Output::InService { dn, time_ms } => {
            vec![(
                *time_ms as i64,
                CallBody::Agent(Agent { kind: AgentEventKind::Ready, dn: dn.clone(), agent_id: dn.clone(), reason: None }),
            )]
        }
        Output::OutOfService { dn, time_ms } => {
            vec![(
                *time_ms as i64,
                CallBody::Agent(Agent { kind: AgentEventKind::Logout, dn: dn.clone(), agent_id: dn.clone(), reason: None }),
            )]
        }
    }
}

/// The runner of one Kamailio.
pub(super) struct SipRunner {
    log: Log,
    monitor: String,
    tserver: i32,
    endpoint: String,
    rpc_url: String,
    settings: LinkSettings,
    stats: Arc<LinkStats>,
    emitter: Emitter,
    session_id: String,
    /// Number of the current connection, from 1: the emitter's tag of its records.
    link_no: u64,
    unencodable: u64,
    model: Model,
    /// DNs announced as registered (DnRegistered) on the current connection.
    announced: BTreeSet<String>,
}

impl SipRunner {
    pub(super) fn new(log: &Log, monitor: String, tserver: &TServer, settings: LinkSettings, stats: Arc<LinkStats>) -> SipRunner {
        let to = Destination {
            topic: log.topic(Topic::Calls),
            partition: log.topics.tserver_partition(tserver.id),
            key: tserver.id.to_string(),
        };
        let emitter = Emitter::new(log.producer.clone(), to, settings.max_in_flight);
        SipRunner {
            log: log.clone(),
            monitor,
            tserver: tserver.id,
            endpoint: tserver.endpoint(),
            rpc_url: tserver.rpc_url(),
            settings,
            stats,
            emitter,
            session_id: String::new(),
            link_no: 0,
            unencodable: 0,
            model: Model::new(BTreeSet::new()),
            announced: BTreeSet::new(),
        }
    }

    pub(super) async fn run(
        mut self,
        mut dns: watch::Receiver<BTreeSet<String>>,
        mut stop: watch::Receiver<bool>,
    ) -> Option<JoinHandle<()>> {
        self.model.set_filter(dns.borrow_and_update().clone());
        let rpc = match RpcClient::new(&self.rpc_url, ANSWER_WITHIN) {
            Ok(rpc) => Some(rpc),
            Err(e) => {
                warn!(tserver = self.tserver, error = %e, "Kamailio's RPC URL is unusable; connecting without resynchronisation is pointless, so nothing is watched.");
                None
            }
        };
        match self.seed().await {
            Ok((calls, registered)) => {
                info!(
                    tserver = self.tserver,
                    calls, registered, "Took over the Kamailio server's calls in progress and registrations from the log."
                )
            }
            Err(e) => {
                warn!(tserver = self.tserver, error = %e, "Could not read the server's calls from the log; calls that ended while no monitor watched stay open.")
            }
        }
        let mut retry = FIRST_RETRY;
        let mut failures = 0u32;
        while let Some(rpc) = rpc.as_ref() {
            if *stop.borrow() {
                break;
            }
            let before = self.link_no;
            let ended = self.connection(rpc, &mut dns, &mut stop).await;
            if self.link_no > before {
                // It was connected: the next try comes soon again.
                (retry, failures) = (FIRST_RETRY, 0);
            }
            match ended {
                Ended::Stop => break,
                Ended::Lost(reason) => {
                    failures += 1;
                    if failures == 1 {
                        warn!(tserver = self.tserver, endpoint = %self.endpoint, %reason, retry_in_ms = retry.as_millis() as u64, "Kamailio connection lost or refused; retrying.");
                    } else {
                        debug!(tserver = self.tserver, %reason, failures, "Kamailio still unreachable.");
                    }
                    self.end_link(reason);
                }
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(LAST_RETRY);
        }
        self.finish().await
    }

    /// Put the calls in progress and the registrations the log has for this server into
    /// the model (see [`Model::seed`]): a monitor taking over from one that died knows what
    /// the log still shows open, and its first resync ends what Kamailio no longer has.
    /// Reads the server's `calls` partition back to the last LinkConnected of the server.
    async fn seed(&mut self) -> Result<(usize, usize), LogError> {
        let topic = self.log.topic(Topic::Calls);
        let partition = self.log.topics.tserver_partition(self.tserver);
        let mut back = SEED_BACK;
        let events = loop {
            let (kafka, topic) = (self.log.kafka.clone(), topic.clone());
            let (records, whole) = tokio::task::spawn_blocking(move || {
                let whole = std::cell::Cell::new(false);
                let records = read_range(&kafka, &topic, Some(&[partition]), |_, low, high| {
                    whole.set(high - back <= low);
                    high - back
                })?;
                Ok::<_, LogError>((records, whole.get()))
            })
            .await
            .map_err(|e| LogError::Task(e.to_string()))??;
            let key = self.tserver.to_string();
            let events: Vec<CallEvent> = records
                .iter()
                .filter(|r| r.key_str() == key)
                .filter_map(|r| r.value.as_deref().and_then(|v| decode::<CallEvent>(v).ok()))
                .filter(|e| e.tserver == self.tserver)
                .collect();
            match events.iter().rposition(|e| matches!(e.body, CallBody::LinkConnected(_))) {
                Some(last) => break events[last..].to_vec(),
                None if whole => break events,
                None if back >= SEED_MAX => {
                    return Err(LogError::Task(format!("no connect of the server in the last {back} records of its partition")))
                }
                None => back *= 4,
            }
        };
        for event in &events {
            self.model.seed(&event.body);
        }
        Ok((self.model.view().calls.len(), self.model.view().registered.len()))
    }

    /// One evapi connection: connect, greet, resynchronise, then follow events until it
    /// is lost or the runner stops.
    async fn connection(
        &mut self,
        rpc: &RpcClient,
        dns: &mut watch::Receiver<BTreeSet<String>>,
        stop: &mut watch::Receiver<bool>,
    ) -> Ended {
        let (tx, mut rx) = mpsc::channel(1024);
        let (cut, cut_rx) = oneshot::channel::<()>();
        let config = EvapiConfig::new(self.endpoint.clone());
        let reader = tokio::spawn(async move {
            read_evapi(&config, tx, async {
                let _ = cut_rx.await;
            })
            .await
        });
        let ended = self.follow(rpc, &mut rx, dns, stop).await;
        let _ = cut.send(());
        drop(rx);
        let reader_end = reader.await;
        match ended {
            Ended::Lost(reason) if reason.is_empty() => Ended::Lost(match reader_end {
                Ok(Ok(EvapiEnd::Closed)) => "Kamailio closed the evapi connection".into(),
                Ok(Ok(_)) => "the evapi reader stopped".into(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("the evapi reader failed: {e}"),
            }),
            other => other,
        }
    }

    async fn follow(
        &mut self,
        rpc: &RpcClient,
        rx: &mut mpsc::Receiver<Decoded>,
        dns: &mut watch::Receiver<BTreeSet<String>>,
        stop: &mut watch::Receiver<bool>,
    ) -> Ended {
        // Kamailio greets every client first.
        let hello = tokio::select! {
            _ = stop.changed() => return Ended::Stop,
            first = tokio::time::timeout(ANSWER_WITHIN, rx.recv()) => match first {
                Ok(Some(Decoded::Hello(h))) => h,
                Ok(Some(other)) => return Ended::Lost(format!("Kamailio did not greet with hello: {other:?}")),
                Ok(None) => return Ended::Lost(String::new()),
                Err(_) => return Ended::Lost(format!("no hello from evapi within {} s", ANSWER_WITHIN.as_secs())),
            },
        };
        self.link_no += 1;
        self.session_id = uuid::Uuid::new_v4().to_string();
        self.unencodable = 0;
        self.stats.set_connected(true);
        let restarted = self.model.on_hello(&hello);
        info!(tserver = self.tserver, endpoint = %self.endpoint, instance = %hello.instance, restarted, session = %self.session_id, "Kamailio evapi connected.");
        self.emit(now_ms() as i64, None, CallBody::LinkConnected(LinkConnected { endpoint: self.endpoint.clone() }));
        if let Err(e) = self.resync(rpc).await {
            return Ended::Lost(e.to_string());
        }
        loop {
            let reading = self.emitter.has_room();
            let wake = tokio::select! {
                _ = stop.changed() => Wake::Stop,
                _ = dns.changed() => Wake::Dns,
                _ = self.emitter.settle() => Wake::Settled,
                item = rx.recv(), if reading => Wake::Item(item.map(Box::new)),
            };
            match wake {
                Wake::Stop => return Ended::Stop,
                Wake::Dns => {
                    self.model.set_filter(dns.borrow_and_update().clone());
                    if let Err(e) = self.resync(rpc).await {
                        return Ended::Lost(e.to_string());
                    }
                }
                Wake::Settled => self.publish_counts(),
                Wake::Item(None) => return Ended::Lost(String::new()),
                Wake::Item(Some(decoded)) => match *decoded {
                    Decoded::Event(event) => {
                        let gaps = self.model.stats().gaps;
                        let mut out = Vec::new();
                        self.model.on_event(&event, &mut out);
                        if self.model.stats().gaps > gaps {
                            warn!(
                                tserver = self.tserver,
                                seq = event.seq,
                                "Kamailio's event sequence jumped on a connected evapi link: events were lost in between."
                            );
                        }
                        for output in &out {
                            for (time, body) in bodies(output) {
                                self.emit(time, Some(event.seq as i64), body);
                            }
                        }
                    }
                    Decoded::Hello(h) => {
                        self.model.on_hello(&h);
                    }
                    Decoded::Unknown { type_name, seq } => {
                        debug!(tserver = self.tserver, %type_name, ?seq, "Kamailio event of a type Netwatch does not use.");
                    }
                    Decoded::Invalid { reason } => {
                        self.stats.set_unusable(self.stats.unusable() + 1);
                        warn!(tserver = self.tserver, %reason, "Unusable Kamailio event skipped (docs/sip.md).");
                    }
                },
            }
        }
    }

    /// Read calls in progress and registrations, and append what brings the log to them:
    /// the DNs this connection announces, the end of every call Kamailio no longer has
    /// (cause `lost`) and of registrations lost, then the whole state of every call in
    /// progress and every registration. Projections forget a DN's calls when its link goes down,
    /// so the state is appended again in full; a call history takes a repeated Dialing or
    /// Established as the same call.
    async fn resync(&mut self, rpc: &RpcClient) -> Result<(), SipError> {
        let (dialogs, ul) = tokio::try_join!(rpc.dlg_list(), rpc.ul_dump())?;
        let now = now_ms() as u64;
        let mut changes = Vec::new();
        self.model.resync(&dialogs, &ul, now, &mut changes);
        let filter = self.model.filter().clone();
        let (_, full) = resync::reconcile(&View::default(), &filter, &dialogs, &ul, now);
        for dn in self.announced.difference(&filter).cloned().collect::<Vec<_>>() {
            self.emit(now as i64, None, CallBody::DnUnregistered(DnAddress { dn }));
        }
        // This monitor speaks for the DNs first: projections take a DN's call events only
        // from the monitor that registered it last (after a takeover, the dead one).
        for dn in &filter {
            self.emit(now as i64, None, CallBody::DnRegistered(DnAddress { dn: dn.clone() }));
        }
        self.announced = filter;
        let ends = changes.iter().filter(|o| match o {
            Output::Call(c) => c.release.is_some(),
            Output::OutOfService { .. } => true,
            Output::InService { .. } => false,
        });
        for output in ends {
            for (time, body) in bodies(output) {
                self.emit(time, None, body);
            }
        }
        for output in &full {
            for (time, body) in bodies(output) {
                self.emit(time, None, body);
            }
        }
        self.stats.set_registered(self.announced.len() as i64);
        info!(
            tserver = self.tserver,
            calls = dialogs.len(),
            dns = self.announced.len(),
            appended = changes.len() + full.len(),
            "Resynchronised with Kamailio."
        );
        Ok(())
    }

    /// The connection is gone: count what it could not append and say so in the log.
    fn end_link(&mut self, reason: String) {
        let was_up = self.stats.set_connected(false);
        self.stats.set_registered(0);
        if !was_up {
            return;
        }
        let lost = self.emitter.failed(self.link_no) + self.unencodable;
        let body = CallBody::LinkDisconnected(LinkDisconnected { reason, events_lost: (lost > 0).then_some(lost as i64) });
        self.emit(now_ms() as i64, None, body);
        self.announced.clear();
    }

    fn emit(&mut self, server_time_ms: i64, link_seq: Option<i64>, body: CallBody) {
        let event = CallEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            tserver: self.tserver,
            monitor: self.monitor.clone(),
            session: self.session_id.clone(),
            server_time_ms,
            link_seq,
            body,
        };
        match encode(&event) {
            Ok(bytes) => self.emitter.push(self.link_no, bytes),
            Err(error) => {
                self.unencodable += 1;
                warn!(tserver = self.tserver, %error, "A captured event could not be encoded.");
            }
        }
    }

    fn publish_counts(&self) {
        self.stats.publish(self.emitter.counts());
    }

    /// Stopped: the DNs are no longer watched; wait a while for the broker, then leave
    /// the rest to a background task, which is returned.
    async fn finish(mut self) -> Option<JoinHandle<()>> {
        if self.stats.connected() {
            let now = now_ms() as i64;
            for dn in std::mem::take(&mut self.announced) {
                self.emit(now, None, CallBody::DnUnregistered(DnAddress { dn }));
            }
            self.end_link("the monitor released the server".into());
        }
        let drained = self.emitter.drain(self.settings.drain_wait).await;
        self.publish_counts();
        if drained.pending > 0 {
            warn!(
                tserver = self.tserver,
                pending = drained.pending,
                "The broker has not acknowledged every captured event yet; they stay queued."
            );
        }
        let stats = self.stats.clone();
        self.emitter.detach(format!("Kamailio {} events", self.tserver), move |counts| stats.publish(counts))
    }
}

#[cfg(test)]
mod tests {
    use netwatch_producers::sip::event::Party;
    use netwatch_producers::sip::model::{CallEvent as SipCall, Outcome, Release, ReleasedBy};
    use netwatch_schemas::calls::{CallType, TEventKind};

    use super::*;

    fn released(party: Party, dn: &str, other: &str, outcome: Outcome, by: ReleasedBy) -> Output {
        Output::Call(SipCall {
            kind: TEventKind::Released,
            dn: dn.into(),
            connid: "c;t".into(),
            call_type: CallType::Internal,
            other_dn: other.into(),
            time_ms: 7,
            release: Some(Release { outcome, by }),
            party,
        })
    }

    fn telephony(output: &Output) -> Telephony {
        match bodies(output).pop() {
            Some((7, CallBody::Telephony(t))) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn who_released_is_the_party_that_sent_the_bye_as_seen_from_either_side() {
        // 5001 called 5002; 5002 hung up
        let at_caller = telephony(&released(Party::Caller, "5001", "5002", Outcome::Completed, ReleasedBy::Callee));
        let at_callee = telephony(&released(Party::Callee, "5002", "5001", Outcome::Completed, ReleasedBy::Callee));
        assert_eq!((at_caller.released_by.as_deref(), at_caller.cause), (Some("5002"), None));
        assert_eq!((at_callee.released_by.as_deref(), at_callee.other_dn.as_deref()), (Some("5002"), Some("5001")));
        let timeout = telephony(&released(Party::Caller, "5001", "5002", Outcome::Failed { code: 408 }, ReleasedBy::Server));
        assert_eq!((timeout.released_by.as_deref(), timeout.cause.as_deref()), (Some("server"), Some("failed")));
    }

    #[test]
    fn causes_name_the_sip_outcome() {
        let cause = |outcome| telephony(&released(Party::Caller, "5001", "5002", outcome, ReleasedBy::Callee)).cause;
        assert_eq!(
            [Outcome::Busy, Outcome::Abandoned, Outcome::Failed { code: 404 }, Outcome::Lost].map(cause),
            [Some("busy".to_string()), Some("canceled".into()), Some("failed".into()), Some("lost".into())]
        );
    }

    #[test]
    fn registrations_are_ready_and_logged_out_agents() {
        let ready = bodies(&Output::InService { dn: "5002".into(), time_ms: 3 });
        let gone = bodies(&Output::OutOfService { dn: "5002".into(), time_ms: 4 });
        let agent = |kind| CallBody::Agent(Agent { kind, dn: "5002".into(), agent_id: "5002".into(), reason: None });
        assert_eq!(ready, vec![(3, agent(AgentEventKind::Ready))]);
        assert_eq!(gone, vec![(4, agent(AgentEventKind::Logout))]);
    }
}
