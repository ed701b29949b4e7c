//! Runs the dispatcher core over the log.
//!
//! A member of the dispatcher group on `config`; it also follows `assignments` in full
//! and the recent tail of `monitors`. On every assignment of `config` partitions it
//! refolds those partitions from the start; once `config`, `assignments` and `monitors`
//! are read to their ends it reconciles every T-Server it owns (those whose `config`
//! partition it holds), then reconciles each T-Server as its changes arrive and ticks
//! twice a second for deferred placements and rebalancing. Nothing is committed: the log
//! is the state.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use netwatch_eventlog::{
    spawn_group_consumer, spawn_tail, watch_broker, ConsumerEvent, GroupConsumer, GroupOptions, Log, LogError, Record, StartAt, Topic,
    SESSION_TIMEOUT_MS,
};
use netwatch_schemas::assignments::{Assignment, Command};
use netwatch_schemas::config::ConfigEvent;
use netwatch_schemas::monitors::{DispatcherHeartbeat, MonitorBody, MonitorEvent};
use netwatch_schemas::{decode, now_ms};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::core::{Dispatcher, Emitted, Settings};
use crate::cluster::Trust;

/// Dispatcher settings.
#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    /// Instance id, written into every command (with a per-run suffix).
    pub id: String,
    pub settings: Settings,
}

/// How far back in `monitors` a dispatcher starts: heartbeats are soft state.
const MONITORS_TAIL: i64 = 2_000;

/// Config records folded at most before their T-Servers are reconciled, while more wait.
const RECONCILE_EVERY: usize = 5_000;

struct Sources {
    config: GroupConsumer,
    assignments: GroupConsumer,
    monitors: GroupConsumer,
}

/// Which inputs have been read far enough since the last (re)build.
#[derive(Default)]
struct CatchUp {
    /// `config` partitions not yet read to their end.
    config: BTreeSet<i32>,
    /// `assignments` partition → offset the tail must pass: the end as it was when the
    /// `config` partitions were assigned. A dispatcher that lost them finished writing
    /// before it let the rebalance complete, so this includes all its commands.
    assignments: BTreeMap<i32, i64>,
    /// `monitors` partitions not yet read to their end once.
    monitors: BTreeSet<i32>,
    live: bool,
}

impl CatchUp {
    fn done(&self) -> bool {
        self.config.is_empty() && self.assignments.is_empty() && self.monitors.is_empty()
    }

    /// The tail read `offset` of an `assignments` partition.
    fn read_assignment(&mut self, partition: i32, offset: i64) {
        if self.assignments.get(&partition).is_some_and(|end| offset + 1 >= *end) {
            self.assignments.remove(&partition);
        }
    }
}

/// Run until `shutdown` turns true.
pub async fn run(log: Log, config: DispatcherConfig, mut shutdown: watch::Receiver<bool>) -> Result<(), LogError> {
    let group = format!("{}dispatcher", log.topics.prefix);
    let instance = format!("{}/{}", config.id, &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let join = || {
        spawn_group_consumer(
            &log.kafka,
            GroupOptions {
                group: group.clone(),
                topics: vec![log.topic(Topic::Config)],
                start: StartAt::Beginning,
                revoke_timeout: Duration::from_secs(60),
                cooperative: false,
            },
        )
    };
    let mut sources = Sources {
        assignments: spawn_tail(&log.kafka, &log.topic(Topic::Assignments), |_, low, _| low)?,
        monitors: spawn_tail(&log.kafka, &log.topic(Topic::Monitors), |_, _, high| high - MONITORS_TAIL)?,
        config: join()?,
    };
    let mut orphans = Orphans::default();
    let mut trust = Trust::default();
    let dead = log.dead_letter(&group);
    let health = watch_broker(
        &log.kafka,
        format!("dispatcher {instance}"),
        "it places nothing until the broker is back; monitors keep what they were told",
        shutdown.clone(),
    );
    info!(%instance, %group, "Dispatcher started.");
    let mut core = Dispatcher::new(config.settings.clone());
    core.set_reader(&instance);
    let mut owned: BTreeSet<i32> = BTreeSet::new();
    let mut catch_up = CatchUp { monitors: (0..log.topics.partitions(Topic::Monitors)).collect(), ..Default::default() };
    // How far the assignments tail has read, per partition.
    let mut tail_read: BTreeMap<i32, i64> = BTreeMap::new();
    // T-Servers changed by `config` records folded since the last reconcile.
    let mut dirty: BTreeSet<i32> = BTreeSet::new();
    let mut dirty_records = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut beat = tokio::time::interval(Duration::from_millis(config.settings.liveness.heartbeat_ms.max(100) as u64));
    let result = loop {
        tokio::select! {
            _ = shutdown.changed() => break Ok(()),
            _ = beat.tick() => {
                heartbeat(&log, &instance, &owned).await;
                // Only while the broker answers: cut off, nobody can own anything.
                if health.reachable() && orphans.should_rejoin(&core, log.topics.event_partitions, &config.settings, now_ms()) {
                    warn!("Config partitions are owned by no live dispatcher; rejoining the group to get them reassigned.");
                    std::mem::replace(&mut sources.config, join()?).stop().await;
                    owned.clear();
                    catch_up.live = false;
                }
            }
            _ = tick.tick() => {
                // Liveness decisions (evacuation, placement, moves) need a current view of the
                // monitors: after a broker outage their reports arrive late.
                let now = now_ms();
                let current = core.cluster().is_current(&instance, now);
                if catch_up.live && trust.update(current, config.settings.liveness, now) {
                    let topics = &log.topics;
                    let commands = core.tick(now_ms(), |t| owned.contains(&topics.tserver_partition(t)));
                    if let Err(e) = emit(&log, &instance, commands).await { break Err(e) }
                }
            }
            event = sources.assignments.events.recv() => match event {
                Some(ConsumerEvent::Record(r)) => {
                    tail_read.insert(r.partition, r.offset);
                    catch_up.read_assignment(r.partition, r.offset);
                    match r.value.as_deref().map(decode::<Assignment>) {
                        // Our own commands are already in the core, and their echo may
                        // arrive after later decisions about the same key.
                        Some(Ok(a)) if a.dispatcher != instance => {
                            if matches!(a.command, netwatch_schemas::assignments::Command::RevokeTServer(_)) {
                                core.note_foreign_revoke(now_ms());
                            }
                            core.observe(r.partition, &a.command);
                        }
                        Some(Err(e)) => {
                            if let Err(e) = dead.send(&r, &format!("undecodable assignment: {e}")).await { break Err(e) }
                        }
                        _ => {}
                    }
                }
                Some(_) => {}
                None => break Ok(()),
            },
            event = sources.monitors.events.recv() => match event {
                Some(ConsumerEvent::Record(r)) => {
                    match r.value.as_deref().map(decode::<MonitorEvent>) {
                        Some(Ok(m)) => core.observe_monitor(&m),
                        Some(Err(e)) => {
                            if let Err(e) = dead.send(&r, &format!("undecodable monitor event: {e}")).await { break Err(e) }
                        }
                        None => {}
                    }
                }
                Some(ConsumerEvent::Eof { partition }) => { catch_up.monitors.remove(&partition); }
                Some(_) => {}
                None => break Ok(()),
            },
            event = sources.config.events.recv() => match event {
                Some(ConsumerEvent::Assigned(parts)) => {
                    owned = parts.iter().map(|(_, p)| *p).collect();
                    let topics = &log.topics;
                    core.forget_unowned(|t| owned.contains(&topics.tserver_partition(t)));
                    heartbeat(&log, &instance, &owned).await;
                    info!(partitions = ?owned, "Rebuilding the configuration from the log.");
                    core.reset_config();
                    // Reconciled with every other T-Server once caught up.
                    dirty.clear();
                    catch_up.config = owned.clone();
                    catch_up.live = false;
                    match log.high_watermarks(Topic::Assignments).await {
                        Ok(ends) => {
                            catch_up.assignments = ends.into_iter().filter(|(_, end)| *end > 0).collect();
                            for (p, offset) in &tail_read {
                                catch_up.read_assignment(*p, *offset);
                            }
                        }
                        Err(e) => break Err(e),
                    }
                }
                Some(ConsumerEvent::Revoked { ack, .. }) => {
                    // What was folded is placed before the partitions go.
                    let commands = reconcile_dirty(&mut core, &mut dirty, &mut dirty_records);
                    if let Err(e) = emit(&log, &instance, commands).await { break Err(e) }
                    owned.clear();
                    core.forget_unowned(|_| false);
                    catch_up.live = false;
                    let _ = ack.send(());
                }
                Some(ConsumerEvent::Record(r)) => {
                    let tserver = match fold(&mut core, &r, &dead).await {
                        Ok(t) => t,
                        Err(e) => break Err(e),
                    };
                    if let (true, Some(t)) = (catch_up.live, tserver) {
                        dirty.insert(t);
                        dirty_records += 1;
                    }
                }
                Some(ConsumerEvent::Eof { partition }) => { catch_up.config.remove(&partition); }
                Some(_) => {}
                None => break Ok(()),
            },
        }
        // Changes are reconciled once the records already read are folded (or every
        // `RECONCILE_EVERY` records), and their commands appended together: an import of
        // 100k DNs costs a few broker round trips, not one per DN.
        if !dirty.is_empty() && (sources.config.events.is_empty() || dirty_records >= RECONCILE_EVERY) {
            let commands = reconcile_dirty(&mut core, &mut dirty, &mut dirty_records);
            if let Err(e) = emit(&log, &instance, commands).await {
                break Err(e);
            }
        }
        if !catch_up.live && !owned.is_empty() && catch_up.done() {
            catch_up.live = true;
            let topics = &log.topics;
            let commands = core.reconcile_all(now_ms(), |t| owned.contains(&topics.tserver_partition(t)));
            info!(commands = commands.len(), tservers = core.config().tservers.len(), "Caught up with the log; reconciled.");
            if let Err(e) = emit(&log, &instance, commands).await {
                break Err(e);
            }
        }
    };
    sources.config.stop().await;
    sources.assignments.stop().await;
    sources.monitors.stop().await;
    info!(%instance, "Dispatcher stopped.");
    result
}

/// Reconcile the T-Servers changed since the last time.
fn reconcile_dirty(core: &mut Dispatcher, dirty: &mut BTreeSet<i32>, records: &mut usize) -> Vec<Emitted> {
    let now = now_ms();
    *records = 0;
    std::mem::take(dirty).into_iter().flat_map(|t| core.reconcile(t, now)).collect()
}

/// Fold one config record; the T-Server it touched, if it applied. A record that
/// cannot apply goes to the dead-letter topic (once: a rebuild that reads it again finds
/// its dead letter there).
async fn fold(core: &mut Dispatcher, r: &Record, dead: &netwatch_eventlog::DeadLetter) -> Result<Option<i32>, LogError> {
    let Some(value) = r.value.as_deref() else { return Ok(None) };
    let reason = match decode::<ConfigEvent>(value) {
        Err(e) => format!("undecodable config event: {e}"),
        Ok(event) => match core.apply(&event.change) {
            Ok(()) => return Ok(Some(event.change.tserver_id())),
            Err(e) => format!("config event cannot apply: {e}"),
        },
    };
    dead.send(r, &reason).await?;
    Ok(None)
}

/// Watches for `config` partitions that no live dispatcher reports owning. The group
/// should hand a dead member's partitions to the others after the session timeout; a
/// broker that tells only some members about the rebalance (docs/broker-notes.md) leaves
/// them orphaned, and leaving and rejoining the group makes it form again.
#[derive(Default)]
struct Orphans {
    since: Option<i64>,
    last_rejoin: i64,
}

impl Orphans {
    fn should_rejoin(&mut self, core: &Dispatcher, partitions: i32, settings: &Settings, now: i64) -> bool {
        let claimed: BTreeSet<i32> = core.cluster().live_dispatchers(now).iter().flat_map(|d| d.partitions.iter().copied()).collect();
        if (0..partitions).all(|p| claimed.contains(&p)) {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert(now);
        let window = settings.liveness.heartbeat_ms * settings.liveness.missed;
        let due = now - since >= SESSION_TIMEOUT_MS + window && now - self.last_rejoin >= 2 * SESSION_TIMEOUT_MS;
        if due {
            self.since = None;
            self.last_rejoin = now;
        }
        due
    }
}

/// Tell `monitors` this instance is alive and which `config` partitions it owns (what
/// `netwatch status` lists as the dispatchers).
async fn heartbeat(log: &Log, instance: &str, owned: &BTreeSet<i32>) {
    let event = MonitorEvent {
        monitor_id: instance.to_string(),
        at_ms: now_ms(),
        body: MonitorBody::DispatcherHeartbeat(DispatcherHeartbeat { partitions: owned.iter().copied().collect() }),
    };
    // Soft state: never wait for the broker for it.
    if let Err(e) = log.producer.send_detached(&log.topic(Topic::Monitors), instance, None, &event) {
        warn!(error = %e, "Could not append a dispatcher heartbeat.");
    }
}

/// Append commands, pipelined (in order per slot), and wait for all of them.
async fn emit(log: &Log, instance: &str, commands: Vec<Emitted>) -> Result<(), LogError> {
    if commands.is_empty() {
        return Ok(());
    }
    let topic = log.topic(Topic::Assignments);
    let mut records = Vec::with_capacity(commands.len());
    let mut kinds = [0u64; 4];
    for (slot, command) in commands {
        kinds[match command {
            Command::AssignTServer(_) => 0,
            Command::RevokeTServer(_) => 1,
            Command::RegisterDn(_) => 2,
            Command::UnregisterDn(_) => 3,
        }] += 1;
        let key = command.key();
        let assignment =
            Assignment { command_id: uuid::Uuid::new_v4().to_string(), at_ms: now_ms(), dispatcher: instance.to_string(), command };
        records.push((topic.clone(), key, slot, netwatch_schemas::encode(&assignment)?));
    }
    log.producer.send_all(&records).await?;
    for (kind, n) in ["assign_tserver", "revoke_tserver", "register_dn", "unregister_dn"].into_iter().zip(kinds) {
        if n > 0 {
            metrics::counter!("netwatch_dispatcher_commands_total", "command" => kind).increment(n);
        }
    }
    // One line per T-Server command; DN commands only in the count (and at debug).
    for (_, key, slot, _) in records.iter().filter(|r| !r.1.starts_with("dn/")) {
        info!(slot, %key, "Command appended.");
    }
    debug!(commands = records.len(), "Commands appended.");
    Ok(())
}
