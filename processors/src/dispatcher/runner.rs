//! Runs the dispatcher core over the log: a member of the dispatcher group on `config`.
//!
//! On every assignment of `config` partitions it rebuilds from the log: it folds
//! `assignments` in full (what slots were told), folds its `config` partitions from the
//! start to their end, reconciles every T-Server it owns, then reconciles each T-Server
//! as its changes arrive. Nothing is committed: the log is the state.

use std::collections::BTreeSet;
use std::time::Duration;

use netwatch_eventlog::{spawn_group_consumer, ConsumerEvent, GroupOptions, Log, LogError, Record, StartAt, Topic};
use netwatch_schemas::assignments::Assignment;
use netwatch_schemas::config::ConfigEvent;
use netwatch_schemas::{decode, now_ms};
use tokio::sync::watch;
use tracing::{info, warn};

use super::core::{Dispatcher, Emitted};

/// Dispatcher settings.
#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    /// Instance id, written into every command.
    pub id: String,
}

struct Session {
    core: Dispatcher,
    owned: BTreeSet<i32>,
    not_caught_up: BTreeSet<i32>,
}

/// Run until `shutdown` turns true.
pub async fn run(log: Log, config: DispatcherConfig, mut shutdown: watch::Receiver<bool>) -> Result<(), LogError> {
    let group = format!("{}dispatcher", log.topics.prefix);
    let mut consumer = spawn_group_consumer(
        &log.kafka,
        GroupOptions {
            group: group.clone(),
            topics: vec![log.topic(Topic::Config)],
            start: StartAt::Beginning,
            revoke_timeout: Duration::from_secs(10),
            cooperative: false,
        },
    )?;
    let dead = log.dead_letter(&group);
    info!(id = %config.id, %group, "Dispatcher started.");
    let mut session: Option<Session> = None;
    let result = loop {
        let event = tokio::select! {
            _ = shutdown.changed() => break Ok(()),
            event = consumer.events.recv() => match event { Some(e) => e, None => break Ok(()) },
        };
        match event {
            ConsumerEvent::Assigned(parts) => {
                let owned: BTreeSet<i32> = parts.iter().map(|(_, p)| *p).collect();
                info!(partitions = ?owned, "Rebuilding from the log.");
                let mut core = Dispatcher::new(log.topics.slots);
                for r in log.read_all(Topic::Assignments, None).await? {
                    match r.value.as_deref().map(decode::<Assignment>) {
                        Some(Ok(a)) => core.observe(r.partition, &a.command),
                        Some(Err(e)) => {
                            warn!(partition = r.partition, offset = r.offset, error = %e, "Skipping an undecodable assignment (monitors dead-letter it).")
                        }
                        None => {}
                    }
                }
                session = Some(Session { core, not_caught_up: owned.clone(), owned });
            }
            ConsumerEvent::Revoked { ack, .. } => {
                session = None;
                let _ = ack.send(());
            }
            ConsumerEvent::Record(r) => {
                let Some(s) = session.as_mut() else { continue };
                let live = s.not_caught_up.is_empty();
                if let Some(tserver) = fold(s, &r, live.then_some(&dead)).await? {
                    if s.not_caught_up.is_empty() {
                        let commands = s.core.reconcile(tserver);
                        emit(&log, &config.id, commands).await?;
                    }
                }
            }
            ConsumerEvent::Eof { partition } => {
                let Some(s) = session.as_mut() else { continue };
                if s.not_caught_up.remove(&partition) && s.not_caught_up.is_empty() {
                    let topics = &log.topics;
                    let owned = s.owned.clone();
                    let commands = s.core.reconcile_all(|t| owned.contains(&topics.tserver_partition(t)));
                    info!(commands = commands.len(), tservers = s.core.config().tservers.len(), "Caught up with config; reconciled.");
                    emit(&log, &config.id, commands).await?;
                }
            }
            ConsumerEvent::Error(_) | ConsumerEvent::Fatal(_) => {}
        }
    };
    consumer.stop().await;
    info!(id = %config.id, "Dispatcher stopped.");
    result
}

/// Fold one config record; the T-Server it touched, if it applied. A record that
/// cannot apply goes to the dead-letter topic when it is new (`dead` is given), and is
/// only logged when it is re-read during a rebuild, so a rebuild does not report it twice.
async fn fold(s: &mut Session, r: &Record, dead: Option<&netwatch_eventlog::DeadLetter>) -> Result<Option<i32>, LogError> {
    let Some(value) = r.value.as_deref() else { return Ok(None) };
    let reason = match decode::<ConfigEvent>(value) {
        Err(e) => format!("undecodable config event: {e}"),
        Ok(event) => match s.core.apply(&event.change) {
            Ok(()) => return Ok(Some(event.change.tserver_id())),
            Err(e) => format!("config event cannot apply: {e}"),
        },
    };
    match dead {
        Some(dead) => dead.send(r, &reason).await?,
        None => warn!(partition = r.partition, offset = r.offset, %reason, "Skipping a config record during rebuild."),
    }
    Ok(None)
}

async fn emit(log: &Log, dispatcher: &str, commands: Vec<Emitted>) -> Result<(), LogError> {
    let topic = log.topic(Topic::Assignments);
    for (slot, command) in commands {
        let key = command.key();
        let assignment =
            Assignment { command_id: uuid::Uuid::new_v4().to_string(), at_ms: now_ms(), dispatcher: dispatcher.to_string(), command };
        log.producer.send(&topic, &key, Some(slot), &assignment).await?;
        info!(slot, %key, "Command appended.");
    }
    Ok(())
}
