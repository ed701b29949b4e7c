//! Statistics in the spirit of Genesys Stat Server: current state and time in state per
//! DN and agent; per 15-minute interval, per DN and per T-Server, counts and times of
//! the DN legs of ended calls that started in the interval (docs/call-model.md).

use serde::Serialize;

use crate::dn_state;
use crate::rows::{DnCall, DnState};
use crate::store::INTERVAL_MS;

/// One interval's numbers, for one DN or a whole T-Server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IntervalStats {
    /// Start of the interval (ms since the epoch, a multiple of 15 minutes).
    pub interval_ms: i64,
    pub interval_end_ms: i64,
    /// Legs that rang at a DN.
    pub offered: u64,
    /// Offered legs answered.
    pub answered: u64,
    /// Legs abandoned.
    pub abandoned: u64,
    /// Legs answered, offered or dialled.
    pub handled: u64,
    pub talk_ms: i64,
    pub hold_ms: i64,
    /// (talk + hold) / handled; 0 when nothing was handled.
    pub aht_ms: i64,
    /// Longest ring of an offered leg.
    pub longest_wait_ms: i64,
}

/// Fold the ended legs that started in one interval into its statistics.
pub fn aggregate(interval_ms: i64, legs: &[DnCall]) -> IntervalStats {
    let mut s = IntervalStats { interval_ms, interval_end_ms: interval_ms + INTERVAL_MS, ..Default::default() };
    for leg in legs.iter().filter(|l| l.ended_ms.is_some()) {
        if leg.offered {
            s.offered += 1;
            s.longest_wait_ms = s.longest_wait_ms.max(leg.ring_ms);
            if leg.answered {
                s.answered += 1;
            }
        }
        if leg.outcome == "abandoned" {
            s.abandoned += 1;
        }
        if leg.answered {
            s.handled += 1;
        }
        s.talk_ms += leg.talk_ms;
        s.hold_ms += leg.hold_ms;
    }
    s.aht_ms = if s.handled == 0 { 0 } else { (s.talk_ms + s.hold_ms) / s.handled as i64 };
    s
}

/// A DN's (and its agent's) current state and time in state, as of `now_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CurrentState {
    pub tserver: i32,
    pub dn: String,
    /// Call state if the DN is unknown or has a call, else the agent state, else idle.
    pub status: String,
    pub status_since_ms: i64,
    pub time_in_status_ms: i64,
    pub call_state: String,
    pub time_in_call_state_ms: i64,
    pub calls: usize,
    pub agent_id: Option<String>,
    pub agent_state: Option<String>,
    pub agent_reason: Option<String>,
    pub time_in_agent_state_ms: Option<i64>,
}

/// Current state of a DN row.
pub fn current(row: &DnState, now_ms: i64) -> CurrentState {
    let (status, since) = dn_state::status(row);
    CurrentState {
        tserver: row.tserver,
        dn: row.dn.clone(),
        status: status.to_string(),
        status_since_ms: since,
        time_in_status_ms: (now_ms - since).max(0),
        call_state: row.call_state.clone(),
        time_in_call_state_ms: (now_ms - row.state_since_ms).max(0),
        calls: row.calls.len(),
        agent_id: row.agent_id.clone(),
        agent_state: row.agent_state.clone(),
        agent_reason: row.agent_reason.clone(),
        time_in_agent_state_ms: row.agent_state.as_ref().map(|_| (now_ms - row.agent_since_ms).max(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call_history;
    use crate::store::interval_of;
    use netwatch_schemas::calls::{CallType, TEventKind, Telephony};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    struct PlannedCall {
        start: i64,
        dn: usize,
        inbound: bool,
        ring: i64,
        answered: bool,
        hold: Option<(i64, i64)>,
        talk: i64,
        transfer_to: Option<usize>,
    }

    fn planned() -> impl Strategy<Value = PlannedCall> {
        (
            0i64..3 * INTERVAL_MS,
            0usize..4,
            any::<bool>(),
            0i64..120_000,
            any::<bool>(),
            proptest::option::of((0i64..30_000, 0i64..60_000)),
            0i64..600_000,
            proptest::option::of(0usize..4),
        )
            .prop_map(|(start, dn, inbound, ring, answered, hold, talk, transfer_to)| PlannedCall {
                start,
                dn,
                inbound,
                ring,
                answered,
                hold,
                talk,
                transfer_to,
            })
    }

    fn tel(kind: TEventKind, dn: &str, connid: &str, inbound: bool, third: Option<String>) -> Telephony {
        Telephony {
            kind,
            dn: dn.into(),
            connid: connid.into(),
            call_type: if inbound { CallType::Inbound } else { CallType::Outbound },
            other_dn: Some("+15550000".into()),
            third_party_dn: third,
            previous_connid: None,
            cause: None,
            released_by: None,
        }
    }

    /// The T-Library events of a planned call, with their times.
    fn events(c: &PlannedCall, connid: &str) -> Vec<(i64, Telephony)> {
        use TEventKind::*;
        let dn = format!("50{:02}", c.dn);
        let first = if c.inbound { Ringing } else { Dialing };
        let mut out = vec![(c.start, tel(first, &dn, connid, c.inbound, None))];
        let answer = c.start + c.ring;
        if !c.answered {
            out.push((answer, tel(if c.inbound { Abandoned } else { Released }, &dn, connid, c.inbound, None)));
            return out;
        }
        out.push((answer, tel(Established, &dn, connid, c.inbound, None)));
        let mut t = answer;
        if let Some((before, length)) = c.hold {
            out.push((t + before, tel(Held, &dn, connid, c.inbound, None)));
            out.push((t + before + length, tel(Retrieved, &dn, connid, c.inbound, None)));
            t += before + length;
        }
        t += c.talk;
        match c.transfer_to.filter(|to| *to != c.dn) {
            Some(to) => {
                let to = format!("50{to:02}");
                out.push((t, tel(Released, &dn, connid, c.inbound, Some(to.clone()))));
                out.push((t, tel(Ringing, &to, connid, c.inbound, Some(dn.clone()))));
                out.push((t + 3_000, tel(Established, &to, connid, c.inbound, None)));
                out.push((t + 40_000, tel(Released, &to, connid, c.inbound, None)));
            }
            None => out.push((t, tel(Released, &dn, connid, c.inbound, None))),
        }
        out
    }

    proptest! {
        /// For every DN and interval, and for the T-Server, the interval statistics equal
        /// sums over the per-DN call history rows whose start lies in that window.
        #[test]
        fn interval_statistics_sum_to_the_history(calls in proptest::collection::vec(planned(), 1..30)) {
            let mut records = Vec::new();
            for (i, c) in calls.iter().enumerate() {
                let connid = format!("c{i}");
                let call = events(c, &connid).into_iter().fold(None, |acc, (at, e)| Some(call_history::apply(acc, 1, &e, at)));
                records.push(call.unwrap());
            }
            let history: Vec<DnCall> = records.iter().flat_map(|r| r.dn_calls()).collect();
            // What the store keeps per (T-Server, interval): the ended legs by start.
            let mut by_interval: BTreeMap<i64, Vec<DnCall>> = BTreeMap::new();
            for leg in history.iter().filter(|l| l.ended_ms.is_some()) {
                by_interval.entry(interval_of(leg.started_ms)).or_default().push(leg.clone());
            }
            let mut total = IntervalStats::default();
            for (interval, legs) in &by_interval {
                let s = aggregate(*interval, legs);
                let window: Vec<&DnCall> =
                    history.iter().filter(|l| l.started_ms >= *interval && l.started_ms < interval + INTERVAL_MS).collect();
                prop_assert_eq!(s.offered, window.iter().filter(|l| l.offered).count() as u64);
                prop_assert_eq!(s.answered, window.iter().filter(|l| l.offered && l.answered).count() as u64);
                prop_assert_eq!(s.abandoned, window.iter().filter(|l| l.outcome == "abandoned").count() as u64);
                prop_assert_eq!(s.talk_ms, window.iter().map(|l| l.talk_ms).sum::<i64>());
                prop_assert_eq!(s.hold_ms, window.iter().map(|l| l.hold_ms).sum::<i64>());
                prop_assert_eq!(s.longest_wait_ms, window.iter().filter(|l| l.offered).map(|l| l.ring_ms).max().unwrap_or(0));
                // Per DN too: the DN's numbers are the DN's rows.
                for dn in window.iter().map(|l| l.dn.clone()).collect::<std::collections::BTreeSet<_>>() {
                    let mine: Vec<DnCall> = legs.iter().filter(|l| l.dn == dn).cloned().collect();
                    let d = aggregate(*interval, &mine);
                    prop_assert_eq!(d.talk_ms, window.iter().filter(|l| l.dn == dn).map(|l| l.talk_ms).sum::<i64>());
                    prop_assert_eq!(d.offered, window.iter().filter(|l| l.dn == dn && l.offered).count() as u64);
                }
                total.offered += s.offered;
                total.talk_ms += s.talk_ms;
                total.hold_ms += s.hold_ms;
            }
            // Over the whole window, intervals add up to the history: every ended leg
            // in exactly one interval.
            prop_assert_eq!(total.offered, history.iter().filter(|l| l.offered).count() as u64);
            prop_assert_eq!(total.talk_ms + total.hold_ms, history.iter().map(|l| l.talk_ms + l.hold_ms).sum::<i64>());
            // Each planned call's durations add up: ring + talk + hold = total.
            for r in &records {
                prop_assert_eq!(r.ring_ms + r.talk_ms + r.hold_ms, r.total_ms);
            }
        }
    }

    #[test]
    fn aht_is_talk_and_hold_per_handled_leg() {
        let leg = |offered, answered, talk, hold, outcome: &str| DnCall {
            offered,
            answered,
            talk_ms: talk,
            hold_ms: hold,
            ring_ms: 5_000,
            ended_ms: Some(1),
            outcome: outcome.into(),
            ..Default::default()
        };
        let s = aggregate(
            0,
            &[leg(true, true, 60_000, 10_000, "answered"), leg(false, true, 20_000, 0, "answered"), leg(true, false, 0, 0, "abandoned")],
        );
        assert_eq!((s.offered, s.answered, s.abandoned, s.handled, s.aht_ms, s.longest_wait_ms), (2, 1, 1, 2, 45_000, 5_000));
    }
}
