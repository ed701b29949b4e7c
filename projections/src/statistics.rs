//! The statistics of docs/statistics.md over a time profile: the additive sums a bucket
//! keeps ([`Tally`]: counts, millisecond sums, maxima), how buckets combine, and the
//! ratios and averages computed from the sums at read time ([`Figures`]), with the
//! document's rules for division by zero (`None`, shown as "—") and rounding. Wallboard
//! tile colours ([`Thresholds`]) are decided on the value as people see it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Answered within this wait counts toward the service level (T, default 20 s).
pub const SERVICE_LEVEL_THRESHOLD_MS: i64 = 20_000;
/// An abandon within this wait is a short abandon (default 5 s).
pub const SHORT_ABANDON_MS: i64 = 5_000;

/// What one object (DN, agent, T-Server, group) accumulated in one bucket (a minute, a
/// 15-minute interval, a day): sums only, so buckets add up to any profile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tally {
    pub offered: u64,
    pub answered: u64,
    pub answered_in_threshold: u64,
    pub abandoned: u64,
    pub short_abandoned: u64,
    /// Σ waits of the answered calls.
    pub answer_wait_ms: i64,
    /// The longest wait of a call answered or abandoned; `None` without one.
    pub longest_wait_ms: Option<i64>,
    pub handled: u64,
    pub talk_ms: i64,
    pub hold_ms: i64,
    pub hold_count: u64,
    pub after_call_work_ms: i64,
    pub logged_in_ms: i64,
    pub not_ready_ms: i64,
    /// Not-ready time by reason (`""`: no reason); zero entries are left out.
    pub not_ready_by_reason_ms: BTreeMap<String, i64>,
    pub busy_ms: i64,
}

impl Tally {
    /// Add another bucket's sums (maxima combine by max).
    pub fn add(&mut self, other: &Tally) {
        self.offered += other.offered;
        self.answered += other.answered;
        self.answered_in_threshold += other.answered_in_threshold;
        self.abandoned += other.abandoned;
        self.short_abandoned += other.short_abandoned;
        self.answer_wait_ms += other.answer_wait_ms;
        self.longest_wait_ms = match (self.longest_wait_ms, other.longest_wait_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.handled += other.handled;
        self.talk_ms += other.talk_ms;
        self.hold_ms += other.hold_ms;
        self.hold_count += other.hold_count;
        self.after_call_work_ms += other.after_call_work_ms;
        self.logged_in_ms += other.logged_in_ms;
        self.not_ready_ms += other.not_ready_ms;
        for (reason, ms) in &other.not_ready_by_reason_ms {
            *self.not_ready_by_reason_ms.entry(reason.clone()).or_default() += ms;
        }
        self.not_ready_by_reason_ms.retain(|_, ms| *ms != 0);
        self.busy_ms += other.busy_ms;
    }

    /// Count an answer after `wait_ms`.
    pub fn answer(&mut self, wait_ms: i64) {
        self.answered += 1;
        self.answer_wait_ms += wait_ms;
        if wait_ms <= SERVICE_LEVEL_THRESHOLD_MS {
            self.answered_in_threshold += 1;
        }
        self.wait(wait_ms);
    }

    /// Count an abandon after `wait_ms`.
    pub fn abandon(&mut self, wait_ms: i64) {
        self.abandoned += 1;
        if wait_ms <= SHORT_ABANDON_MS {
            self.short_abandoned += 1;
        }
        self.wait(wait_ms);
    }

    fn wait(&mut self, wait_ms: i64) {
        self.longest_wait_ms = Some(self.longest_wait_ms.map_or(wait_ms, |w| w.max(wait_ms)));
    }

    /// Count time in not-ready with a reason (`""` for none).
    pub fn not_ready(&mut self, reason: &str, ms: i64) {
        if ms != 0 {
            self.not_ready_ms += ms;
            *self.not_ready_by_reason_ms.entry(reason.to_string()).or_default() += ms;
        }
    }

    /// The ratios and averages of these sums.
    pub fn figures(&self) -> Figures {
        let known = self.answered + self.abandoned;
        Figures {
            abandoned_pct: pct(self.abandoned, known),
            // In threshold ≤ answered and short ≤ abandoned, so never above 100.
            service_level_pct: pct(self.answered_in_threshold, known.saturating_sub(self.short_abandoned)),
            asa_ms: avg(self.answer_wait_ms, self.answered),
            avg_talk_ms: avg(self.talk_ms, self.handled),
            avg_hold_ms: avg(self.hold_ms, self.hold_count),
            aht_ms: avg(self.talk_ms + self.hold_ms + self.after_call_work_ms, self.handled),
            occupancy_pct: {
                let available = self.logged_in_ms - self.not_ready_ms;
                (available > 0).then(|| round1(100.0 * self.busy_ms as f64 / available as f64))
            },
        }
    }
}

/// What a DN (and the agent at it) is doing during a stretch of time: the call state when
/// the DN has a call, else the agent state (docs/statistics.md, "Status").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Idle,
    Ready,
    NotReady,
    AfterCallWork,
    LoggedOut,
    Ringing,
    Dialing,
    Talking,
    Held,
    /// The link was down: nobody's time.
    Unknown,
}

impl Tally {
    /// Count `ms` of a stretch in `status` with the not-ready `reason` (`""` for none).
    /// Agent time is the time of a logged-in agent: a DN without one (an extension's
    /// call) adds nothing, so occupancy never exceeds 100 %.
    pub fn stretch(&mut self, status: Status, logged_in: bool, reason: &str, ms: i64) {
        if status == Status::Unknown || !logged_in || ms <= 0 {
            return;
        }
        self.logged_in_ms += ms;
        match status {
            Status::NotReady => self.not_ready(reason, ms),
            Status::AfterCallWork => {
                self.after_call_work_ms += ms;
                self.busy_ms += ms;
            }
            Status::Talking | Status::Held | Status::Dialing => self.busy_ms += ms,
            _ => {}
        }
    }
}

/// The parts of `[start_ms, end_ms)` in each bucket of `width_ms` aligned to the epoch
/// (a UTC minute, a quarter hour): (bucket start, ms inside it), in order.
pub fn slices(start_ms: i64, end_ms: i64, width_ms: i64) -> impl Iterator<Item = (i64, i64)> {
    let first = start_ms.div_euclid(width_ms) * width_ms;
    (0..)
        .map(move |i| first + i * width_ms)
        .take_while(move |b| *b < end_ms)
        .map(move |b| (b, end_ms.min(b + width_ms) - start_ms.max(b)))
        .filter(|(_, ms)| *ms > 0)
}

/// Ratios and averages of a [`Tally`]; `None` where the divisor is zero.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Figures {
    /// 100 × abandoned / (answered + abandoned).
    pub abandoned_pct: Option<f64>,
    /// 100 × answered in threshold / (answered + abandoned − short abandons), at most 100.
    pub service_level_pct: Option<f64>,
    /// Average speed of answer: Σ waits / answered.
    pub asa_ms: Option<i64>,
    pub avg_talk_ms: Option<i64>,
    /// Hold time per hold.
    pub avg_hold_ms: Option<i64>,
    /// (talk + hold + after-call work) / handled.
    pub aht_ms: Option<i64>,
    /// 100 × busy / (logged in − not ready).
    pub occupancy_pct: Option<f64>,
}

/// A percentage to one decimal, halves away from zero; `None` over zero.
fn pct(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| round1(100.0 * part as f64 / whole as f64))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// A mean in whole milliseconds, halves away from zero; `None` over zero.
fn avg(sum: i64, n: u64) -> Option<i64> {
    (n > 0).then(|| (sum as f64 / n as f64).round() as i64)
}

/// A wallboard tile's colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Green,
    Amber,
    Red,
    /// No value ("—").
    Grey,
}

/// When a tile turns amber or red. `higher_is_worse`: amber at ≥ `amber`, red at ≥ `red`;
/// otherwise amber below `amber`, red below `red`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    pub amber: f64,
    pub red: f64,
    pub higher_is_worse: bool,
}

impl Threshold {
    /// The colour of `value` as displayed: percentages to one decimal, times in whole
    /// seconds (`value` in ms; halves up), red tested first.
    pub fn colour(&self, value: Option<f64>, is_time_ms: bool) -> Colour {
        let Some(v) = value else { return Colour::Grey };
        let shown = if is_time_ms { (v / 1000.0).round() * 1000.0 } else { round1(v) };
        let (red, amber) =
            if self.higher_is_worse { (shown >= self.red, shown >= self.amber) } else { (shown < self.red, shown < self.amber) };
        if red {
            Colour::Red
        } else if amber {
            Colour::Amber
        } else {
            Colour::Green
        }
    }
}

/// The default thresholds of docs/statistics.md ("Thresholds").
pub struct Thresholds {
    pub service_level_pct: Threshold,
    pub calls_waiting: Threshold,
    pub oldest_wait_ms: Threshold,
    pub abandoned_pct: Threshold,
    pub asa_ms: Threshold,
}

impl Thresholds {
    /// The thresholds by statistic name (the names of the settings and tiles).
    pub fn by_name(&self) -> BTreeMap<String, Threshold> {
        [
            ("service_level_pct", self.service_level_pct),
            ("calls_waiting", self.calls_waiting),
            ("oldest_wait_ms", self.oldest_wait_ms),
            ("abandoned_pct", self.abandoned_pct),
            ("asa_ms", self.asa_ms),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect()
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            service_level_pct: Threshold { amber: 80.0, red: 70.0, higher_is_worse: false },
            calls_waiting: Threshold { amber: 5.0, red: 10.0, higher_is_worse: true },
            oldest_wait_ms: Threshold { amber: 30_000.0, red: 60_000.0, higher_is_worse: true },
            abandoned_pct: Threshold { amber: 5.0, red: 10.0, higher_is_worse: true },
            asa_ms: Threshold { amber: 20_000.0, red: 40_000.0, higher_is_worse: true },
        }
    }
}

#[cfg(test)]
mod tests {
    //! The worked example of docs/statistics.md (T-Server 1, interval 10:00–10:15): each
    //! object's sums from the timeline, then every ratio of the document's table.
    use super::*;

    const S: i64 = 1000;

    /// a1 at 5001: C1 answered after 8 s (talk 150 s, one 30 s hold), C4 abandoned after
    /// 12 s, C7 still ringing; ACW 10:04:08–10:04:38; break 10:09–10:14.
    fn a1() -> Tally {
        let mut t = Tally { offered: 3, handled: 1, talk_ms: 150 * S, hold_ms: 30 * S, hold_count: 1, ..Tally::default() };
        t.answer(8 * S);
        t.abandon(12 * S);
        t.after_call_work_ms = 30 * S;
        t.logged_in_ms = 900 * S;
        t.not_ready("break", 300 * S);
        t.busy_ms = (150 + 30 + 30) * S;
        t
    }

    /// a2 at 5002: C2 abandoned after 3 s, C3 answered after 25 s (talk 120 s), C5 after
    /// 10 s (talk 180 s), C6 after 5 s (in progress: 50 s busy by 10:15); ACW 60 s + 30 s.
    fn a2() -> Tally {
        let mut t = Tally { offered: 4, handled: 2, talk_ms: 300 * S, ..Tally::default() };
        t.abandon(3 * S);
        t.answer(25 * S);
        t.answer(10 * S);
        t.answer(5 * S);
        t.after_call_work_ms = 90 * S;
        t.logged_in_ms = 900 * S;
        t.busy_ms = (120 + 180 + 50 + 90) * S;
        t
    }

    /// a3 at 5003: logged in 10:12 and not ready (lunch) since.
    fn a3() -> Tally {
        let mut t = Tally { logged_in_ms: 180 * S, ..Tally::default() };
        t.not_ready("lunch", 180 * S);
        t
    }

    #[test]
    fn each_agent_and_dn_of_the_example() {
        let f = a1().figures();
        assert_eq!((a1().answered, a1().answered_in_threshold, a1().abandoned, a1().short_abandoned), (1, 1, 1, 0));
        assert_eq!((f.abandoned_pct, f.service_level_pct), (Some(50.0), Some(50.0)));
        assert_eq!((f.asa_ms, a1().longest_wait_ms), (Some(8000), Some(12000)));
        // AHT = (150 + 30 + 30) s / 1; occupancy = 210 / (900 − 300).
        assert_eq!((f.aht_ms, f.occupancy_pct, f.avg_hold_ms), (Some(210_000), Some(35.0), Some(30_000)));

        let f = a2().figures();
        assert_eq!((a2().answered, a2().answered_in_threshold, a2().abandoned, a2().short_abandoned), (3, 2, 1, 1));
        // SL = 2 / (3 + 1 − 1) = 66.67 → 66.7; ASA = 40 s / 3 = 13 333.3 → 13 333.
        assert_eq!((f.abandoned_pct, f.service_level_pct), (Some(25.0), Some(66.7)));
        assert_eq!((f.asa_ms, a2().longest_wait_ms), (Some(13_333), Some(25_000)));
        // AHT = (300 + 0 + 90) s / 2 = 195 s; occupancy = 440 / 900 = 48.89 → 48.9.
        assert_eq!((f.aht_ms, f.occupancy_pct, f.avg_hold_ms), (Some(195_000), Some(48.9), None));

        // Nothing offered or handled, and no time available for work: every ratio "—".
        let f = a3().figures();
        assert_eq!(f, Figures::default());
        assert_eq!(a3().not_ready_by_reason_ms, BTreeMap::from([("lunch".to_string(), 180_000)]));
    }

    #[test]
    fn the_group_is_the_sum_of_its_members() {
        let mut sales = Tally::default();
        for t in [a1(), a2(), a3()] {
            sales.add(&t);
        }
        assert_eq!((sales.offered, sales.answered, sales.answered_in_threshold), (7, 4, 3));
        assert_eq!((sales.abandoned, sales.short_abandoned, sales.longest_wait_ms), (2, 1, Some(25_000)));
        assert_eq!((sales.handled, sales.talk_ms, sales.hold_ms, sales.hold_count), (3, 450_000, 30_000, 1));
        assert_eq!(
            (sales.after_call_work_ms, sales.logged_in_ms, sales.not_ready_ms, sales.busy_ms),
            (120_000, 1_980_000, 480_000, 650_000)
        );
        assert_eq!(sales.not_ready_by_reason_ms, BTreeMap::from([("break".to_string(), 300_000), ("lunch".to_string(), 180_000)]));
        let f = sales.figures();
        // 2 / 6; 3 / (4 + 2 − 1); 48 s / 4; (450 + 30 + 120) s / 3; 650 / (1980 − 480).
        assert_eq!((f.abandoned_pct, f.service_level_pct, f.asa_ms), (Some(33.3), Some(60.0), Some(12_000)));
        assert_eq!((f.aht_ms, f.avg_talk_ms, f.avg_hold_ms, f.occupancy_pct), (Some(200_000), Some(150_000), Some(30_000), Some(43.3)));
    }

    #[test]
    fn adding_is_associative_and_an_empty_bucket_changes_nothing() {
        let (mut left, mut right) = (a1(), a2());
        left.add(&a2());
        left.add(&a3());
        right.add(&a3());
        let mut grouped = a1();
        grouped.add(&right);
        assert_eq!(left, grouped);
        let before = left.clone();
        left.add(&Tally::default());
        assert_eq!(left, before);
    }

    #[test]
    fn service_level_never_exceeds_100_and_zero_divisors_give_none() {
        // Everything short-abandoned but one call answered in time: 1 / (1 + 2 − 2).
        let mut t = Tally::default();
        t.answer(1000);
        t.abandon(1000);
        t.abandon(2000);
        assert_eq!(t.figures().service_level_pct, Some(100.0));
        let mut only_short = Tally::default();
        only_short.abandon(1000);
        assert_eq!(only_short.figures().service_level_pct, None, "1 − 1 short abandon leaves no calls to judge");
        assert_eq!(only_short.figures().abandoned_pct, Some(100.0));
    }

    /// 2025-03-10 at h:m:s UTC, in ms.
    fn at(h: i64, m: i64, s: i64) -> i64 {
        1_741_564_800_000 + ((h * 60 + m) * 60 + s) * S
    }

    #[test]
    fn stretches_are_sliced_into_the_buckets_they_cross() {
        const QUARTER: i64 = 15 * 60 * S;
        // a1 logs in at 09:58 and is not ready (no reason) until 10:00: 09:45 interval only.
        assert_eq!(slices(at(9, 58, 0), at(10, 0, 0), QUARTER).collect::<Vec<_>>(), [(at(9, 45, 0), 120 * S)]);
        // a3's lunch from 10:12, read at 10:16:40: 3 min in 10:00, 1 min 40 s in 10:15.
        assert_eq!(slices(at(10, 12, 0), at(10, 16, 40), QUARTER).collect::<Vec<_>>(), [(at(10, 0, 0), 180 * S), (at(10, 15, 0), 100 * S)]);
        // Per minute: C1's hold 10:02:00–10:02:30 is half of one bucket; an empty
        // stretch is in none.
        assert_eq!(slices(at(10, 2, 0), at(10, 2, 30), 60 * S).collect::<Vec<_>>(), [(at(10, 2, 0), 30 * S)]);
        assert_eq!(slices(at(10, 2, 0), at(10, 2, 0), 60 * S).count(), 0);
        // a1 in the interval: ready, talking, held, ACW, not ready — the a1 tally above.
        let mut t = Tally::default();
        for (status, reason, from, to) in [
            (Status::Ready, "", at(10, 0, 0), at(10, 1, 0)),
            (Status::Ringing, "", at(10, 1, 0), at(10, 1, 8)),
            (Status::Talking, "", at(10, 1, 8), at(10, 2, 0)),
            (Status::Held, "", at(10, 2, 0), at(10, 2, 30)),
            (Status::Talking, "", at(10, 2, 30), at(10, 4, 8)),
            (Status::AfterCallWork, "", at(10, 4, 8), at(10, 4, 38)),
            (Status::Ready, "", at(10, 4, 38), at(10, 6, 0)),
            (Status::Ringing, "", at(10, 6, 0), at(10, 6, 12)),
            (Status::Ready, "", at(10, 6, 12), at(10, 9, 0)),
            (Status::NotReady, "break", at(10, 9, 0), at(10, 14, 0)),
            (Status::Ready, "", at(10, 14, 0), at(10, 14, 12)),
            (Status::Ringing, "", at(10, 14, 12), at(10, 15, 0)),
        ] {
            t.stretch(status, true, reason, to - from);
        }
        t.stretch(Status::Unknown, true, "", 60 * S);
        t.stretch(Status::Talking, false, "", 60 * S);
        assert_eq!((t.logged_in_ms, t.not_ready_ms, t.busy_ms, t.after_call_work_ms), (900 * S, 300 * S, 210 * S, 30 * S));
        assert_eq!(
            (a1().logged_in_ms, a1().not_ready_ms, a1().busy_ms, a1().after_call_work_ms),
            (t.logged_in_ms, t.not_ready_ms, t.busy_ms, t.after_call_work_ms)
        );
    }

    #[test]
    fn tiles_are_coloured_on_the_value_as_shown() {
        let th = Thresholds::default();
        // The document's examples: SL 60.0 red, 1 waiting green, 18 s green, 33.3 red,
        // ASA 12 s green and 19 600 ms (shown as 20 s) amber.
        assert_eq!(th.service_level_pct.colour(Some(60.0), false), Colour::Red);
        assert_eq!(th.service_level_pct.colour(Some(79.96), false), Colour::Green, "shown as 80.0");
        assert_eq!(th.service_level_pct.colour(Some(75.0), false), Colour::Amber);
        assert_eq!(th.calls_waiting.colour(Some(1.0), false), Colour::Green);
        assert_eq!(th.calls_waiting.colour(Some(10.0), false), Colour::Red);
        assert_eq!(th.oldest_wait_ms.colour(Some(18_000.0), true), Colour::Green);
        assert_eq!(th.abandoned_pct.colour(Some(33.3), false), Colour::Red);
        assert_eq!(th.asa_ms.colour(Some(12_000.0), true), Colour::Green);
        assert_eq!(th.asa_ms.colour(Some(19_600.0), true), Colour::Amber);
        assert_eq!(th.asa_ms.colour(None, true), Colour::Grey);
    }
}
