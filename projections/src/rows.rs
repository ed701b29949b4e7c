//! The rows projections write and queries return.

use serde::{Deserialize, Serialize};

/// Live state of one DN.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DnState {
    pub tserver: i32,
    pub dn: String,
    /// Is the DN in the configuration now?
    pub configured: bool,
    pub dbid: Option<i32>,
    pub dn_type: Option<String>,
    /// Monitor that has the DN registered, if any.
    pub registered_by: Option<String>,
    /// CTI link state as last seen for this DN: up, down, unknown.
    pub link: String,
    /// idle, dialing, ringing, talking, held, or unknown (link down or never seen).
    pub call_state: String,
    pub connid: Option<String>,
    pub other_dn: Option<String>,
    pub agent_id: Option<String>,
    /// logged_out, not_ready, ready, after_call_work (None: never seen an agent).
    pub agent_state: Option<String>,
    pub agent_reason: Option<String>,
    /// When the call state last changed (T-Server time, ms).
    pub state_since_ms: i64,
    /// When the agent state (or not-ready reason) last changed (T-Server time, ms).
    #[serde(default)]
    pub agent_since_ms: i64,
    /// Every call at the DN now (a DN can hold one call and consult on another, or
    /// have a second call ringing), oldest first. `connid`/`other_dn`/`call_state`
    /// describe the active one of these (docs/call-model.md).
    #[serde(default)]
    pub calls: Vec<DnCallState>,
    /// When anything in the row last changed (event time, ms).
    pub updated_ms: i64,
}

impl DnState {
    /// A DN first seen now.
    pub fn new(tserver: i32, dn: &str) -> Self {
        DnState { tserver, dn: dn.to_string(), link: "unknown".into(), call_state: "unknown".into(), ..Default::default() }
    }
}

/// One call at a DN, as the DN state sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DnCallState {
    pub connid: String,
    /// dialing, ringing, talking, held.
    pub state: String,
    pub call_type: String,
    pub other_dn: Option<String>,
    /// When this call entered its state at the DN (T-Server time, ms).
    pub since_ms: i64,
}

/// One DN's part in a call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallLeg {
    pub dn: String,
    pub other_dn: Option<String>,
    pub started_ms: i64,
    pub answered_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    /// Held time so far (closed hold periods).
    pub hold_ms: i64,
    /// Start of the hold in progress, if any.
    pub held_since_ms: Option<i64>,
    /// Hold periods begun (each Held while not already on hold).
    #[serde(default)]
    pub hold_count: u32,
    /// in_progress, answered, abandoned, busy, transferred, failed, merged (a consultation
    /// merged into another call before it was answered), unknown (first seen released:
    /// what happened before is not known).
    pub outcome: String,
    /// Was the call offered to this DN (it rang here), rather than dialled from it?
    #[serde(default)]
    pub offered: bool,
}

/// A call (one ConnID on one T-Server) with its legs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallRecord {
    pub tserver: i32,
    pub connid: String,
    /// Inbound, Outbound, Internal, Consult, Unknown.
    pub call_type: String,
    /// Every party in order of appearance: DNs and outside numbers.
    pub parties: Vec<String>,
    pub started_ms: i64,
    pub answered_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    /// Durations; final once the call ended.
    pub ring_ms: i64,
    pub talk_ms: i64,
    pub hold_ms: i64,
    pub total_ms: i64,
    /// in_progress, answered, abandoned, busy, transferred, failed, unknown.
    pub outcome: String,
    /// The party that ended the call (a DN or number) or `server`, when the server
    /// says (a SIP server does, docs/sip.md).
    #[serde(default)]
    pub released_by: Option<String>,
    pub transferred: bool,
    /// Were three or more parties talking on it at once?
    #[serde(default)]
    pub conference: bool,
    /// The ConnID this call continued (two-step transfer or conference completion).
    #[serde(default)]
    pub previous_connid: Option<String>,
    /// For a consultation: the ConnID it was merged into when the transfer or
    /// conference completed.
    #[serde(default)]
    pub merged_into: Option<String>,
    pub legs: Vec<CallLeg>,
}

/// A call as seen from one DN: the per-DN history row.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DnCall {
    pub tserver: i32,
    pub dn: String,
    pub connid: String,
    pub call_type: String,
    pub other_dn: Option<String>,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub ring_ms: i64,
    pub talk_ms: i64,
    pub hold_ms: i64,
    pub total_ms: i64,
    pub outcome: String,
    /// It rang at this DN (offered), rather than being dialled from it.
    #[serde(default)]
    pub offered: bool,
    /// It was answered at this DN.
    #[serde(default)]
    pub answered: bool,
    /// Who ended the call, when the server says (see [`CallRecord::released_by`]).
    #[serde(default)]
    pub released_by: Option<String>,
}

/// Ring, talk, hold and total time of a stretch from `start` to `end` answered at
/// `answer`, with `hold` ms on hold: clamped so that ring + talk + hold = total and none
/// is negative, whatever order the T-Server's clock put the timestamps in.
pub fn durations(start: i64, answer: Option<i64>, end: i64, hold: i64) -> (i64, i64, i64, i64) {
    let end = end.max(start);
    let total = end - start;
    match answer {
        Some(a) => {
            let a = a.clamp(start, end);
            let rest = end - a;
            let hold = hold.clamp(0, rest);
            (a - start, rest - hold, hold, total)
        }
        None => (total, 0, 0, total),
    }
}

impl CallRecord {
    /// The per-DN rows of this call, one per leg.
    pub fn dn_calls(&self) -> Vec<DnCall> {
        self.legs
            .iter()
            .map(|leg| {
                let end = leg.ended_ms;
                let (ring, talk, hold, total) = match end {
                    Some(e) => durations(leg.started_ms, leg.answered_ms, e, leg.hold_ms),
                    None => (leg.answered_ms.map(|a| a - leg.started_ms).unwrap_or(0).max(0), 0, 0, 0),
                };
                DnCall {
                    tserver: self.tserver,
                    dn: leg.dn.clone(),
                    connid: self.connid.clone(),
                    call_type: self.call_type.clone(),
                    other_dn: leg.other_dn.clone(),
                    started_ms: leg.started_ms,
                    ended_ms: end,
                    ring_ms: ring,
                    talk_ms: talk,
                    hold_ms: hold,
                    total_ms: total,
                    outcome: leg.outcome.clone(),
                    offered: leg.offered,
                    answered: leg.answered_ms.is_some(),
                    released_by: self.released_by.clone(),
                }
            })
            .collect()
    }
}
