//! Reading the statistics projection (docs/statistics.md): an object's sums over a time
//! profile (stored buckets plus the status stretches in progress up to now), their
//! figures, the current values, and the wallboard built from them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::query::QueryError;
use crate::stat_fold::{self, StatDn, StatGroup, DN_PART, GROUP_PART, MINUTE_MS, TSERVER};
use crate::statistics::{Colour, Figures, Tally, Threshold, Thresholds};
use crate::store::{current_gen, interval_of, Store, INTERVAL_MS};

fn bad(reason: impl Into<String>) -> QueryError {
    QueryError::Bad(reason.into())
}

/// The end of every key range.
const LAST_KEY: &str = "\u{10FFFF}";

/// What the statistics are about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    Dn(String),
    Agent(String),
    TServer,
    Group(i32),
}

impl Object {
    /// Parse `dn:5001`, `agent:a1`, `tserver` or `group:7`.
    pub fn parse(text: &str) -> Result<Object, QueryError> {
        let valid = |v: &str| !v.is_empty() && v.len() <= 128 && !v.chars().any(char::is_control);
        match text.split_once(':') {
            None if text == TSERVER => Ok(Object::TServer),
            Some(("dn", d)) if valid(d) => Ok(Object::Dn(d.into())),
            Some(("agent", a)) if valid(a) => Ok(Object::Agent(a.into())),
            Some(("group", g)) => g.parse().map(Object::Group).map_err(|_| bad(format!("group {g:?} is not a group id"))),
            _ => Err(bad(format!("object {text:?} is not one of tserver, dn:NUMBER, agent:ID, group:ID"))),
        }
    }

    /// The name it is asked by.
    pub fn name(&self) -> String {
        match self {
            Object::Dn(d) => stat_fold::dn_object(d),
            Object::Agent(a) => stat_fold::agent_object(a),
            Object::TServer => TSERVER.into(),
            Object::Group(g) => format!("group:{g}"),
        }
    }
}

/// A time profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Since local midnight.
    Growing,
    /// The 15-minute interval holding now, or the one starting at the given ms.
    Interval(Option<i64>),
    /// The current minute and the N − 1 before it (N in 1..=60).
    Last(i64),
}

impl Profile {
    /// Parse `growing`, `interval`, `last_15m` (any 1..60 minutes); `interval_ms` names a
    /// past interval.
    pub fn parse(text: Option<&str>, interval_ms: Option<i64>) -> Result<Profile, QueryError> {
        let profile = match text.unwrap_or("growing") {
            "growing" => Profile::Growing,
            "interval" => Profile::Interval(None),
            other => match other.strip_prefix("last_").and_then(|m| m.strip_suffix('m')).and_then(|m| m.parse::<i64>().ok()) {
                Some(n) if (1..=60).contains(&n) => Profile::Last(n),
                _ => return Err(bad(format!("profile {other:?} is not one of growing, interval, last_1m .. last_60m"))),
            },
        };
        match (profile, interval_ms) {
            (_, None) => Ok(profile),
            (Profile::Interval(_), Some(ms)) if ms == interval_of(ms) => Ok(Profile::Interval(Some(ms))),
            (Profile::Interval(_), Some(ms)) => Err(bad(format!("interval_ms {ms} is not the start of a 15-minute interval"))),
            (_, Some(_)) => Err(bad("interval_ms goes with profile=interval")),
        }
    }

    /// The API name.
    pub fn name(&self) -> String {
        match self {
            Profile::Growing => "growing".into(),
            Profile::Interval(_) => "interval".into(),
            Profile::Last(n) => format!("last_{n}m"),
        }
    }
}

/// How statistics are read: the time zone of "since midnight" and the tile thresholds.
#[derive(Clone, Debug)]
pub struct Settings {
    pub time_zone: jiff::tz::TimeZone,
    pub time_zone_name: String,
    pub thresholds: BTreeMap<String, Threshold>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { time_zone: jiff::tz::TimeZone::UTC, time_zone_name: "UTC".into(), thresholds: Thresholds::default().by_name() }
    }
}

impl Settings {
    /// A time zone by IANA name; the error is one line.
    pub fn with_time_zone(mut self, name: &str) -> Result<Self, String> {
        self.time_zone =
            jiff::tz::TimeZone::get(name).map_err(|_| format!("time zone {name:?} is not an IANA time zone name like Europe/Paris"))?;
        self.time_zone_name = name.to_string();
        Ok(self)
    }

    /// Override thresholds: `stat=amber:red` separated by commas (e.g.
    /// `service_level_pct=85:75,asa_ms=15000:30000`); the error is one line.
    pub fn with_thresholds(mut self, spec: &str) -> Result<Self, String> {
        let names: Vec<String> = self.thresholds.keys().cloned().collect();
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let bad = || format!("threshold {item:?} is not STAT=AMBER:RED with STAT one of {}", names.join(", "));
            let (stat, values) = item.split_once('=').ok_or_else(bad)?;
            let (amber, red) = values.split_once(':').ok_or_else(bad)?;
            let (amber, red): (f64, f64) = (amber.trim().parse().map_err(|_| bad())?, red.trim().parse().map_err(|_| bad())?);
            let t = self.thresholds.get_mut(stat.trim()).ok_or_else(bad)?;
            let ordered = if t.higher_is_worse { red >= amber } else { red <= amber };
            if !ordered || !amber.is_finite() || !red.is_finite() {
                return Err(format!(
                    "threshold {item:?}: red must be {} than amber",
                    if t.higher_is_worse { "no lower" } else { "no higher" }
                ));
            }
            (t.amber, t.red) = (amber, red);
        }
        Ok(self)
    }

    /// Start of the local day holding `now_ms`.
    pub fn midnight(&self, now_ms: i64) -> Result<i64, QueryError> {
        let fail = |e: jiff::Error| bad(format!("no local midnight for {now_ms}: {e}"));
        let t = jiff::Timestamp::from_millisecond(now_ms).map_err(fail)?;
        Ok(t.to_zoned(self.time_zone.clone()).start_of_day().map_err(fail)?.timestamp().as_millisecond())
    }
}

/// The current values of docs/statistics.md ("Current statistics").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Current {
    pub agents_logged_in: u64,
    pub agents_ready: u64,
    pub agents_not_ready: u64,
    pub agents_not_ready_by_reason: BTreeMap<String, u64>,
    pub agents_talking: u64,
    pub agents_ringing: u64,
    pub agents_after_call_work: u64,
    pub agents_unknown: u64,
    pub calls_waiting: u64,
    pub oldest_wait_ms: Option<i64>,
}

/// An object's statistics over a profile.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Statistics {
    pub tserver: i32,
    pub object: String,
    pub profile: String,
    pub time_zone: String,
    /// The profile's window: `[from_ms, to_ms)`.
    pub from_ms: i64,
    pub to_ms: i64,
    pub now_ms: i64,
    pub sums: Tally,
    pub figures: Figures,
    pub current: Current,
}

/// What one question reads: the T-Server's DN rows and the group asked about.
struct Scope {
    gen: u32,
    rows: Vec<StatDn>,
    group: Option<StatGroup>,
    objects: Vec<String>,
}

async fn scope<S: Store>(store: &S, tserver: i32, object: &Object) -> Result<Scope, QueryError> {
    let gen = current_gen(store, "statistics").await?;
    let rows = store
        .stat_range(gen, tserver, DN_PART, "", LAST_KEY)
        .await?
        .into_iter()
        .map(|(_, json)| serde_json::from_str(&json))
        .collect::<Result<Vec<StatDn>, _>>()
        .map_err(crate::store::StoreError::from)?;
    let group = match object {
        Object::Group(id) => match store.stat_row(gen, tserver, GROUP_PART, &id.to_string()).await? {
            Some(json) => serde_json::from_str::<Option<StatGroup>>(&json).map_err(crate::store::StoreError::from)?,
            None => None,
        }
        .map(Some)
        .ok_or_else(|| QueryError::NotFound(format!("T-Server {tserver} has no group {id}")))?,
        _ => None,
    };
    let objects = match &group {
        Some(g) => g.objects(),
        None => vec![object.name()],
    };
    Ok(Scope { gen, rows, group, objects })
}

impl Scope {
    /// The DN rows an object's current values look at.
    fn in_scope<'a>(&'a self, object: &'a Object) -> impl Iterator<Item = &'a StatDn> + 'a {
        self.rows.iter().filter(move |r| match object {
            Object::Dn(d) => r.state.dn == *d,
            Object::Agent(a) => r.stretch.agent.as_deref() == Some(a),
            Object::TServer => true,
            Object::Group(_) => self.group.as_ref().is_some_and(|g| g.covers(&r.state.dn, r.stretch.agent.as_deref())),
        })
    }
}

/// Current values over DN rows, at `now_ms`.
pub fn current<'a>(rows: impl Iterator<Item = &'a StatDn>, now_ms: i64) -> Current {
    let mut c = Current::default();
    let (mut ringing, mut answered) = (BTreeMap::<&str, i64>::new(), BTreeSet::<&str>::new());
    for r in rows {
        for call in &r.state.calls {
            match call.state.as_str() {
                "ringing" if call.call_type != "Consult" => {
                    let since = ringing.entry(call.connid.as_str()).or_insert(call.since_ms);
                    *since = (*since).min(call.since_ms);
                }
                "talking" | "held" => {
                    answered.insert(call.connid.as_str());
                }
                _ => {}
            }
        }
        if r.stretch.agent.is_none() {
            continue;
        }
        c.agents_logged_in += 1;
        match r.stretch.status.as_str() {
            "ready" => c.agents_ready += 1,
            "not_ready" => {
                c.agents_not_ready += 1;
                *c.agents_not_ready_by_reason.entry(r.stretch.reason.clone()).or_default() += 1;
            }
            "talking" | "held" | "dialing" => c.agents_talking += 1,
            "ringing" => c.agents_ringing += 1,
            "after_call_work" => c.agents_after_call_work += 1,
            _ => c.agents_unknown += 1,
        }
    }
    ringing.retain(|connid, _| !answered.contains(connid));
    c.calls_waiting = ringing.len() as u64;
    c.oldest_wait_ms = ringing.values().min().map(|since| (now_ms - since).max(0));
    c
}

/// An object's statistics over a profile, at `now_ms`.
pub async fn statistics<S: Store>(
    store: &S,
    settings: &Settings,
    tserver: i32,
    object: &Object,
    profile: Profile,
    now_ms: i64,
) -> Result<Statistics, QueryError> {
    let scope = scope(store, tserver, object).await?;
    sums(store, settings, tserver, object, profile, now_ms, &scope).await
}

async fn sums<S: Store>(
    store: &S,
    settings: &Settings,
    tserver: i32,
    object: &Object,
    profile: Profile,
    now_ms: i64,
    scope: &Scope,
) -> Result<Statistics, QueryError> {
    let (width, from_ms, to_ms) = match profile {
        Profile::Growing => ('i', settings.midnight(now_ms)?, now_ms),
        Profile::Interval(None) => ('i', interval_of(now_ms), now_ms),
        Profile::Interval(Some(start)) => ('i', start, (start + INTERVAL_MS).min(now_ms.max(start))),
        Profile::Last(n) => ('m', now_ms.div_euclid(MINUTE_MS) * MINUTE_MS - (n - 1) * MINUTE_MS, now_ms),
    };
    let end_key = match profile {
        Profile::Interval(Some(start)) => stat_fold::bucket_key(width, start + 1),
        _ => stat_fold::bucket_key(width, to_ms + 1),
    };
    let mut sums = Tally::default();
    for o in &scope.objects {
        for (_, json) in
            store.stat_range(scope.gen, tserver, &stat_fold::bucket_part(o), &stat_fold::bucket_key(width, from_ms), &end_key).await?
        {
            sums.add(&serde_json::from_str(&json).map_err(crate::store::StoreError::from)?);
        }
    }
    if now_ms > from_ms {
        for row in &scope.rows {
            stat_fold::stretch_so_far(&mut sums, row, &scope.objects, scope.group.as_ref(), from_ms, to_ms);
        }
    }
    Ok(Statistics {
        tserver,
        object: object.name(),
        profile: profile.name(),
        time_zone: settings.time_zone_name.clone(),
        from_ms,
        to_ms: match profile {
            Profile::Interval(Some(start)) => start + INTERVAL_MS,
            _ => to_ms,
        },
        now_ms,
        figures: sums.figures(),
        sums,
        current: current(scope.in_scope(object), now_ms),
    })
}

/// One wallboard tile.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Tile {
    /// The statistic (docs/statistics.md).
    #[schema(value_type = String)]
    pub stat: &'static str,
    #[schema(value_type = String)]
    pub label: &'static str,
    /// `null`: no sample (shown as "—").
    pub value: Option<f64>,
    /// `pct`, `ms` or `count`.
    #[schema(value_type = String)]
    pub unit: &'static str,
    pub colour: Colour,
}

/// One row of the agent grid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Cell {
    pub dn: String,
    pub agent_id: Option<String>,
    /// The DN's status (docs/statistics.md), or `gone` when it left the board.
    pub status: String,
    pub status_since_ms: i64,
    pub agent_state: Option<String>,
    pub reason: Option<String>,
}

/// The most rows an agent grid shows.
pub const MAX_CELLS: usize = 1000;

/// A wallboard: tiles of a group or T-Server and its agent grid.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Board {
    pub tserver: i32,
    pub object: String,
    pub title: String,
    pub profile: String,
    pub time_zone: String,
    pub now_ms: i64,
    pub tiles: Vec<Tile>,
    pub agents: Vec<Cell>,
}

/// The grid cell of a DN row.
pub fn cell(row: &StatDn) -> Cell {
    Cell {
        dn: row.state.dn.clone(),
        agent_id: row.stretch.agent.clone().or_else(|| row.state.agent_id.clone()),
        status: row.stretch.status.clone(),
        status_since_ms: row.stretch.since_ms,
        agent_state: row.state.agent_state.clone(),
        reason: row.state.agent_reason.clone().filter(|_| row.state.agent_state.as_deref() == Some("not_ready")),
    }
}

/// The wallboard of a T-Server (`group` None) or one of its groups.
pub async fn board<S: Store>(
    store: &S,
    settings: &Settings,
    tserver: i32,
    group: Option<i32>,
    profile: Profile,
    now_ms: i64,
) -> Result<Board, QueryError> {
    let object = group.map(Object::Group).unwrap_or(Object::TServer);
    let scope = scope(store, tserver, &object).await?;
    let s = sums(store, settings, tserver, &object, profile, now_ms, &scope).await?;
    let t = |stat: &str| settings.thresholds.get(stat);
    let tile = |stat: &'static str, label: &'static str, unit: &'static str, value: Option<f64>| Tile {
        stat,
        label,
        value,
        unit,
        colour: match t(stat) {
            Some(th) => th.colour(value, unit == "ms"),
            None if value.is_none() => Colour::Grey,
            None => Colour::Green,
        },
    };
    let (f, c, sums) = (&s.figures, &s.current, &s.sums);
    let n = |v: u64| Some(v as f64);
    let ms = |v: Option<i64>| v.map(|v| v as f64);
    let tiles = vec![
        tile("service_level_pct", "Service level", "pct", f.service_level_pct),
        tile("calls_waiting", "Calls waiting", "count", n(c.calls_waiting)),
        tile("oldest_wait_ms", "Longest waiting", "ms", ms(c.oldest_wait_ms)),
        tile("abandoned_pct", "Abandoned", "pct", f.abandoned_pct),
        tile("asa_ms", "ASA", "ms", ms(f.asa_ms)),
        tile("aht_ms", "AHT", "ms", ms(f.aht_ms)),
        tile("offered", "Offered", "count", n(sums.offered)),
        tile("answered", "Answered", "count", n(sums.answered)),
        tile("abandoned", "Abandoned calls", "count", n(sums.abandoned)),
        tile("agents_logged_in", "Logged in", "count", n(c.agents_logged_in)),
        tile("agents_ready", "Ready", "count", n(c.agents_ready)),
        tile("agents_talking", "Talking", "count", n(c.agents_talking)),
        tile("agents_after_call_work", "After-call work", "count", n(c.agents_after_call_work)),
        tile("agents_not_ready", "Not ready", "count", n(c.agents_not_ready)),
        tile("occupancy_pct", "Occupancy", "pct", f.occupancy_pct),
    ];
    let title = match &scope.group {
        Some(g) => format!("{} \u{2014} T-Server {tserver}", g.name),
        None => format!("T-Server {tserver}"),
    };
    let agents = grid(&scope, &object);
    Ok(Board { tserver, object: object.name(), title, profile: s.profile, time_zone: s.time_zone, now_ms, tiles, agents })
}

/// The grid rows: for an agent group its agents' DNs, for a DN group its DNs, for a
/// T-Server every DN with an agent logged in or a call (at most [`MAX_CELLS`]).
fn grid(scope: &Scope, object: &Object) -> Vec<Cell> {
    scope
        .rows
        .iter()
        .filter(|r| match (object, &scope.group) {
            (Object::Group(_), Some(g)) if g.kind == "dn" => g.covers(&r.state.dn, None),
            (Object::Group(_), Some(g)) => g.covers(&r.state.dn, r.stretch.agent.as_deref()),
            _ => r.stretch.agent.is_some() || !r.state.calls.is_empty(),
        })
        .take(MAX_CELLS)
        .map(cell)
        .collect()
}
