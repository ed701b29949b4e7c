//! Scenario files: JSON lines, each an action at an offset from the scenario's start.
//!
//! ```text
//! {"at_ms": 0,    "op": "call",   "call": "A", "from": "+15550100", "to": "5001"}
//! {"at_ms": 4000, "op": "answer", "call": "A"}
//! ```
//! Blank lines and lines starting with `#` are ignored.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::model::{is_internal, Action};

/// One timed action.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Step {
    /// Offset from the scenario's start, in ms; also the event timestamps' offset.
    pub at_ms: u64,
    #[serde(flatten)]
    pub action: Action,
}

/// Parse a scenario; the error names the line and the reason.
pub fn parse_scenario(text: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut last = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let step: Step = serde_json::from_str(line).map_err(|e| format!("scenario line {}: {e}", i + 1))?;
        if step.at_ms < last {
            return Err(format!("scenario line {}: at_ms {} is earlier than the line before ({last})", i + 1, step.at_ms));
        }
        last = step.at_ms;
        steps.push(step);
    }
    Ok(steps)
}

/// The DNs of this switch a scenario uses: it starts once all of them are registered.
pub fn scenario_dns(steps: &[Step]) -> BTreeSet<String> {
    let mut dns = BTreeSet::new();
    for s in steps {
        match &s.action {
            Action::Call { from, to, .. } | Action::Transfer { from, to, .. } | Action::Consult { from, to, .. } => {
                dns.extend([from, to].into_iter().filter(|n| is_internal(n)).cloned());
            }
            Action::Hold { dn, .. }
            | Action::Retrieve { dn, .. }
            | Action::Login { dn, .. }
            | Action::Logout { dn }
            | Action::Ready { dn }
            | Action::NotReady { dn, .. }
            | Action::AfterCallWork { dn } => {
                dns.insert(dn.clone());
            }
            Action::Answer { .. }
            | Action::Abandon { .. }
            | Action::Release { .. }
            | Action::CompleteTransfer { .. }
            | Action::CompleteConference { .. } => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_steps_and_names_the_bad_line() {
        let text = "# inbound\n{\"at_ms\":0,\"op\":\"call\",\"call\":\"A\",\"from\":\"+1555\",\"to\":\"5001\"}\n\n{\"at_ms\":10,\"op\":\"answer\",\"call\":\"A\"}\n";
        let steps = parse_scenario(text).unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[1], Step { at_ms: 10, action: Action::Answer { call: "A".into() } });
        assert_eq!(scenario_dns(&steps).into_iter().collect::<Vec<_>>(), ["5001"]);
        let err = parse_scenario("{\"at_ms\":0,\"op\":\"answer\"}").unwrap_err();
        assert!(err.starts_with("scenario line 1:"), "{err}");
        let err = parse_scenario("{\"at_ms\":5,\"op\":\"ready\",\"dn\":\"1\"}\n{\"at_ms\":1,\"op\":\"ready\",\"dn\":\"1\"}").unwrap_err();
        assert!(err.contains("earlier"), "{err}");
    }
}
