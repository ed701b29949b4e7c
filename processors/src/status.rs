//! What `netwatch status` and `/v1/cluster` report: live monitors with their slots,
//! load, T-Servers and DNs, where every T-Server is placed, and the dispatchers.

use netwatch_eventlog::{Log, LogError, Topic};
use netwatch_schemas::assignments::Assignment;
use netwatch_schemas::monitors::MonitorEvent;
use netwatch_schemas::{decode, now_ms};
use serde::Serialize;

use crate::cluster::{DispatcherView, Liveness, MonitorView};
use crate::dispatcher::{Dispatcher, MonitorLoad, Settings};

/// One monitor as the cluster sees it.
#[derive(Debug, Serialize)]
pub struct MonitorStatus {
    #[serde(flatten)]
    pub view: MonitorView,
    pub live: bool,
    /// Load by the dispatcher's formula (live monitors with slots only).
    pub load: Option<MonitorLoad>,
}

/// A monitor not heard of for this long is left out of the status (counted as gone).
pub const FORGET_AFTER_MS: i64 = 5 * 60 * 1_000;

/// The whole cluster.
#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    /// Monitors heard of within the last five minutes.
    pub monitors: Vec<MonitorStatus>,
    /// Monitors last heard of longer ago.
    pub gone: usize,
    /// Slots (partitions of `assignments`) and the ones no live monitor reports owning.
    pub slots: i32,
    pub unowned_slots: Vec<i32>,
    /// T-Server → slot, as the dispatchers placed them.
    pub placements: Vec<(i32, i32)>,
    /// Live dispatcher instances and the `config` partitions each owns.
    pub dispatchers: Vec<DispatcherView>,
}

/// Read the logs and describe the cluster.
pub async fn cluster_status(log: &Log, liveness: Liveness) -> Result<ClusterStatus, LogError> {
    let mut core = Dispatcher::new(Settings { slots: log.topics.slots, liveness, ..Settings::default() });
    for r in log.read_all(Topic::Assignments, None).await? {
        if let Some(Ok(a)) = r.value.as_deref().map(decode::<Assignment>) {
            core.observe(r.partition, &a.command);
        }
    }
    for r in log.read_recent(Topic::Monitors, 2_000).await? {
        if let Some(Ok(m)) = r.value.as_deref().map(decode::<MonitorEvent>) {
            core.observe_monitor(&m);
        }
    }
    let now = now_ms();
    let loads = core.loads(now);
    let (recent, gone): (Vec<&MonitorView>, Vec<&MonitorView>) = core.cluster().all().partition(|m| now - m.last_seen_ms < FORGET_AFTER_MS);
    let monitors = recent
        .into_iter()
        .map(|m| MonitorStatus {
            live: core.cluster().is_live(m, now),
            load: loads.iter().find(|l| l.monitor == m.id).cloned(),
            view: m.clone(),
        })
        .collect();
    let unowned_slots = (0..log.topics.slots).filter(|s| core.cluster().owner_of(*s, now).is_none()).collect();
    let placements = core.tservers().into_iter().filter_map(|t| core.slot_of(t).map(|s| (t, s))).collect();
    let dispatchers = core.cluster().live_dispatchers(now).into_iter().cloned().collect();
    Ok(ClusterStatus { monitors, gone: gone.len(), slots: log.topics.slots, unowned_slots, placements, dispatchers })
}
