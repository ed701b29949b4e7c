//! Is the broker answering? Every long-running role watches it, says in one line when it
//! is cut off and when it is back, and uses the answer to tell a stalled consumer group
//! (rejoin) from an absent broker (wait).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::KafkaConfig;

/// How often the broker is asked.
const EVERY: Duration = Duration::from_secs(2);
/// A broker silent this long counts as gone.
const SILENT: Duration = Duration::from_secs(6);

/// The latest answer about the broker. Cheap to clone.
#[derive(Clone, Default)]
pub struct BrokerHealth {
    reachable: Arc<AtomicBool>,
    /// When the broker last answered (ms since the epoch), 0 before the first answer.
    last_answer_ms: Arc<AtomicI64>,
}

impl BrokerHealth {
    /// Did the broker answer recently?
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// Since when the broker has not answered (ms since the epoch), if it is gone.
    pub fn cut_off_since_ms(&self) -> Option<i64> {
        (!self.reachable()).then(|| self.last_answer_ms.load(Ordering::Relaxed))
    }
}

/// Ask the broker for metadata every 2 s until `shutdown`; a silence of 6 s makes `role`
/// log that it is cut off (and what it does meanwhile, `meanwhile`), the next answer that
/// it is back.
pub fn watch_broker(kafka: &KafkaConfig, role: String, meanwhile: &'static str, mut shutdown: watch::Receiver<bool>) -> BrokerHealth {
    let health = BrokerHealth::default();
    health.reachable.store(true, Ordering::Relaxed);
    health.last_answer_ms.store(netwatch_schemas::now_ms(), Ordering::Relaxed);
    let state = health.clone();
    let kafka = kafka.clone();
    tokio::spawn(async move {
        let client: Option<BaseConsumer> = kafka.client().set("log_level", "0").create().ok();
        let Some(client) = client.map(Arc::new) else { return };
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            let c = client.clone();
            let answered =
                tokio::task::spawn_blocking(move || c.fetch_metadata(None, Duration::from_millis(1_500)).is_ok()).await.unwrap_or(false);
            let now = netwatch_schemas::now_ms();
            let last = state.last_answer_ms.load(Ordering::Relaxed);
            if answered {
                state.last_answer_ms.store(now, Ordering::Relaxed);
                if !state.reachable.swap(true, Ordering::Relaxed) {
                    info!(%role, after_s = (now - last) / 1000, "The broker answers again.");
                }
            } else if now - last >= SILENT.as_millis() as i64 && state.reachable.swap(false, Ordering::Relaxed) {
                warn!(%role, brokers = %kafka.brokers, silent_s = (now - last) / 1000, "Cut off from the broker: {meanwhile}.");
            }
        }
    });
    health
}

/// Notices a consumer group member that stays without work it should have (no slots while
/// slots are unowned, no progress while there is lag) while the broker answers: then
/// leaving and joining the group again is what helps (a broker that lost the group's
/// state after a restart or a pause, docs/broker-notes.md). Pure; time is an input.
#[derive(Debug)]
pub struct Stall {
    patience: Duration,
    since: Option<tokio::time::Instant>,
    last_rejoin: Option<tokio::time::Instant>,
}

impl Stall {
    /// Rejoin after `patience` of uninterrupted stall, and not more often than that.
    pub fn new(patience: Duration) -> Self {
        Stall { patience, since: None, last_rejoin: None }
    }

    /// Is the member stalled now (only counted while the broker answers)? True when it
    /// should rejoin.
    pub fn due(&mut self, stalled: bool, now: tokio::time::Instant) -> bool {
        if !stalled {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert(now);
        let rested = self.last_rejoin.is_none_or(|t| now >= t + self.patience * 2);
        if now >= since + self.patience && rested {
            self.since = None;
            self.last_rejoin = Some(now);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn a_stall_is_due_after_patience_and_not_again_before_twice_that() {
        let mut s = Stall::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(!s.due(true, t0));
        assert!(!s.due(true, t0 + Duration::from_secs(9)));
        assert!(s.due(true, t0 + Duration::from_secs(10)));
        assert!(!s.due(true, t0 + Duration::from_secs(25)), "rested only 15 s; the count starts again here");
        assert!(!s.due(true, t0 + Duration::from_secs(31)), "rested enough, but stalled only 6 s since");
        assert!(s.due(true, t0 + Duration::from_secs(35)));
        assert!(!s.due(false, t0 + Duration::from_secs(60)), "an interruption starts the count again");
        assert!(!s.due(true, t0 + Duration::from_secs(61)));
        assert!(s.due(true, t0 + Duration::from_secs(71)));
    }
}
