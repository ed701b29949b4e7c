//! Seeded random contact-center traffic: agents log in and get ready, inbound calls
//! arrive at random, ring, are answered or abandoned, are held, transferred, released,
//! followed by after-call work; some agents place outbound calls.
//!
//! The generator is a discrete-event schedule: the same seed and DNs give the same
//! actions at the same offsets.

use std::collections::{BTreeMap, HashMap};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::model::Action;

/// Traffic shape.
#[derive(Clone, Debug)]
pub struct TrafficConfig {
    pub seed: u64,
    /// Agent DNs of the switch.
    pub dns: Vec<String>,
    /// New calls per minute over the whole switch.
    pub calls_per_minute: f64,
}

#[derive(Clone, Debug)]
enum Plan {
    Start { dn: String },
    Arrival,
    Answer { call: String },
    Abandon { call: String, dn: String },
    Hold { call: String, dn: String },
    Retrieve { call: String, dn: String },
    Transfer { call: String, from: String },
    Release { call: String },
    AcwEnd { dn: String },
}

#[derive(Clone, Debug)]
struct Live {
    /// Internal DNs on the call now.
    dns: Vec<String>,
}

/// The generator state.
pub struct Traffic {
    rng: StdRng,
    config: TrafficConfig,
    schedule: BTreeMap<(u64, u64), Plan>,
    seq: u64,
    idle: Vec<String>,
    calls: HashMap<String, Live>,
    next_call: u64,
}

impl Traffic {
    /// A generator starting at offset 0.
    pub fn new(config: TrafficConfig) -> Self {
        let mut t = Traffic {
            rng: StdRng::seed_from_u64(config.seed),
            schedule: BTreeMap::new(),
            seq: 0,
            idle: Vec::new(),
            calls: HashMap::new(),
            next_call: 0,
            config,
        };
        for (i, dn) in t.config.dns.clone().into_iter().enumerate() {
            t.at(i as u64 * 50, Plan::Start { dn });
        }
        t.at(2_000, Plan::Arrival);
        t
    }

    fn at(&mut self, when: u64, plan: Plan) {
        self.seq += 1;
        self.schedule.insert((when, self.seq), plan);
    }

    fn between(&mut self, lo_ms: u64, hi_ms: u64) -> u64 {
        self.rng.random_range(lo_ms..=hi_ms)
    }

    fn take_idle(&mut self) -> Option<String> {
        if self.idle.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..self.idle.len());
        Some(self.idle.swap_remove(i))
    }

    fn outside_number(&mut self) -> String {
        format!("+1555{:07}", self.rng.random_range(0..10_000_000u32))
    }

    fn run(&mut self, now: u64, plan: Plan) -> Vec<Action> {
        match plan {
            Plan::Start { dn } => {
                self.idle.push(dn.clone());
                vec![Action::Login { dn: dn.clone(), agent: format!("agent-{dn}") }, Action::Ready { dn }]
            }
            Plan::Arrival => {
                let mean_gap = 60_000.0 / self.config.calls_per_minute.max(0.1);
                let u: f64 = self.rng.random_range(0.0001..1.0);
                let gap = (-u.ln() * mean_gap) as u64;
                self.at(now + gap.max(50), Plan::Arrival);
                let Some(dn) = self.take_idle() else { return Vec::new() };
                self.next_call += 1;
                let call = format!("g{}", self.next_call);
                let outside = self.outside_number();
                let outbound = self.rng.random_bool(0.15);
                let (from, to) = if outbound { (dn.clone(), outside) } else { (outside, dn.clone()) };
                let ring = self.between(2_000, 8_000);
                if self.rng.random_bool(0.1) {
                    self.at(now + ring, Plan::Abandon { call: call.clone(), dn: dn.clone() });
                } else {
                    self.at(now + ring, Plan::Answer { call: call.clone() });
                }
                self.calls.insert(call.clone(), Live { dns: vec![dn] });
                vec![Action::Call { call, from, to, connid: None }]
            }
            Plan::Answer { call } => {
                let Some(dn) = self.calls.get(&call).and_then(|c| c.dns.first().cloned()) else { return Vec::new() };
                let talk = self.between(10_000, 60_000);
                let roll: f64 = self.rng.random_range(0.0..1.0);
                if roll < 0.3 {
                    let before = self.between(2_000, talk / 2);
                    self.at(now + before, Plan::Hold { call: call.clone(), dn });
                } else if roll < 0.4 {
                    self.at(now + talk / 2, Plan::Transfer { call: call.clone(), from: dn });
                } else {
                    self.at(now + talk, Plan::Release { call: call.clone() });
                }
                vec![Action::Answer { call }]
            }
            Plan::Abandon { call, dn } => {
                self.calls.remove(&call);
                self.idle.push(dn);
                vec![Action::Abandon { call }]
            }
            Plan::Hold { call, dn } => {
                let hold = self.between(3_000, 15_000);
                self.at(now + hold, Plan::Retrieve { call: call.clone(), dn: dn.clone() });
                vec![Action::Hold { call, dn }]
            }
            Plan::Retrieve { call, dn } => {
                let rest = self.between(3_000, 20_000);
                self.at(now + rest, Plan::Release { call: call.clone() });
                vec![Action::Retrieve { call, dn }]
            }
            Plan::Transfer { call, from } => {
                let Some(to) = self.take_idle() else {
                    self.at(now + 1_000, Plan::Release { call: call.clone() });
                    return Vec::new();
                };
                if let Some(c) = self.calls.get_mut(&call) {
                    c.dns = vec![to.clone()];
                }
                let acw = self.between(3_000, 10_000);
                self.at(now + acw, Plan::AcwEnd { dn: from.clone() });
                let ring = self.between(2_000, 5_000);
                self.at(now + ring, Plan::Answer { call: call.clone() });
                vec![Action::Transfer { call, from: from.clone(), to }, Action::AfterCallWork { dn: from }]
            }
            Plan::Release { call } => {
                let Some(live) = self.calls.remove(&call) else { return Vec::new() };
                let mut actions = vec![Action::Release { call, dn: None }];
                for dn in live.dns {
                    let acw = self.between(3_000, 10_000);
                    self.at(now + acw, Plan::AcwEnd { dn: dn.clone() });
                    actions.push(Action::AfterCallWork { dn });
                }
                actions
            }
            Plan::AcwEnd { dn } => {
                self.idle.push(dn.clone());
                vec![Action::Ready { dn }]
            }
        }
    }
}

/// The actions in time order: their offset in ms and what happens. Never ends (the
/// arrival process always schedules the next arrival).
impl Iterator for Traffic {
    type Item = (u64, Vec<Action>);

    fn next(&mut self) -> Option<Self::Item> {
        let ((now, _), plan) = self.schedule.pop_first()?;
        let actions = self.run(now, plan);
        Some((now, actions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::model::CallModel;

    fn config(seed: u64) -> TrafficConfig {
        TrafficConfig { seed, dns: (1..=10).map(|i| format!("50{i:02}")).collect(), calls_per_minute: 30.0 }
    }

    #[test]
    fn the_same_seed_gives_the_same_traffic() {
        let run = |seed| Traffic::new(config(seed)).take(300).map(|step| format!("{step:?}")).collect::<Vec<_>>();
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    /// Every generated action is possible in the call model: the generator never asks
    /// the switch for something a real switch would refuse.
    #[test]
    fn generated_actions_are_always_valid() {
        for seed in 0..20 {
            let mut t = Traffic::new(config(seed));
            let mut model = CallModel::new(0);
            let mut last = 0;
            let mut kinds = std::collections::BTreeSet::new();
            for _ in 0..2_000 {
                let (at, actions) = t.next().expect("traffic never ends");
                assert!(at >= last, "time goes forward");
                last = at;
                for a in actions {
                    kinds.insert(serde_json::to_value(&a).unwrap()["op"].as_str().unwrap().to_string());
                    model.apply(&a).unwrap_or_else(|e| panic!("seed {seed}: {a:?}: {e}"));
                }
            }
            for k in ["call", "answer", "release", "hold", "retrieve", "login", "ready", "after_call_work"] {
                assert!(kinds.contains(k), "seed {seed} never generated {k}");
            }
        }
    }
}
