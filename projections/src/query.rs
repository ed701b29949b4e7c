//! The questions the API answers, shared by HTTP and the CLI: input validation with
//! one-line reasons, the current generation, paging.

use std::time::Duration;

use serde::Serialize;

use crate::rows::{CallRecord, DnCall, DnState};
use crate::stats::{self, CurrentState, IntervalStats};
use crate::store::{current_gen, interval_of, CallsPage, Cursor, Store, StoreError, INTERVAL_MS};

/// Why a question has no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Bad input (HTTP 400, exit 2).
    #[error("{0}")]
    Bad(String),
    /// Nothing there (HTTP 404, exit 2).
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn bad(reason: impl Into<String>) -> QueryError {
    QueryError::Bad(reason.into())
}

/// The longest range of intervals one statistics question may cover.
pub const MAX_INTERVALS: i64 = 7 * 24 * 4;

/// A time window given as `since` (a duration before now) and/or `from`/`to` (ms since
/// the epoch, or RFC 3339 times).
#[derive(Clone, Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Window {
    /// A duration before now (`15m`, `2h`, `1d`); wins over `from`.
    pub since: Option<String>,
    /// Ms since the epoch or an RFC 3339 time.
    pub from: Option<String>,
    /// Ms since the epoch or an RFC 3339 time (default: now).
    pub to: Option<String>,
}

fn instant(name: &str, text: &str) -> Result<i64, QueryError> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let t = humantime::parse_rfc3339_weak(text)
        .map_err(|_| bad(format!("{name} {text:?} is neither ms since the epoch nor a time like 2026-11-22T00:00:00Z")))?;
    let d = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| bad(format!("{name} {text:?} is before 1970")))?;
    Ok(d.as_millis() as i64)
}

impl Window {
    /// `[from, to)` in ms; `since` wins over `from`; the defaults are everything / now.
    pub fn resolve(&self, now_ms: i64, default_from: i64) -> Result<(i64, i64), QueryError> {
        let to = match &self.to {
            Some(t) => instant("to", t)?,
            None => i64::MAX,
        };
        let from = match (&self.since, &self.from) {
            (Some(text), _) => {
                let d: Duration =
                    humantime::parse_duration(text).map_err(|e| bad(format!("since {text:?} is not a duration like 15m or 2h: {e}")))?;
                now_ms - d.as_millis() as i64
            }
            (None, Some(f)) => instant("from", f)?,
            (None, None) => default_from,
        };
        if from >= to {
            return Err(bad(format!("the window is empty: from {from} is not before to {to}")));
        }
        Ok((from, to))
    }
}

/// Check a limit: 1..=1000, default 100.
pub fn limit(limit: Option<usize>) -> Result<usize, QueryError> {
    let l = limit.unwrap_or(100);
    if !(1..=1000).contains(&l) {
        return Err(bad(format!("limit must be 1..1000, got {l}")));
    }
    Ok(l)
}

fn key(name: &str, value: &str) -> Result<(), QueryError> {
    if value.is_empty() || value.len() > 128 || value.chars().any(char::is_control) {
        return Err(bad(format!("{name} {value:?} must be 1 to 128 printable characters")));
    }
    Ok(())
}

/// One page of rows and the token of the next page, if there is one.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page: Option<String>,
}

/// One DN's live state.
pub async fn dn<S: Store>(store: &S, tserver: i32, dn: &str) -> Result<DnState, QueryError> {
    key("dn", dn)?;
    let gen = current_gen(store, "dn-state").await?;
    store.dn(gen, tserver, dn).await?.ok_or_else(|| QueryError::NotFound(format!("T-Server {tserver} has no DN {dn} in the projection")))
}

/// Every DN of a T-Server.
pub async fn dns<S: Store>(store: &S, tserver: i32) -> Result<Vec<DnState>, QueryError> {
    let gen = current_gen(store, "dn-state").await?;
    Ok(store.dns(gen, tserver).await?)
}

/// One call by ConnID.
pub async fn call<S: Store>(store: &S, tserver: i32, connid: &str) -> Result<CallRecord, QueryError> {
    key("connid", connid)?;
    let gen = current_gen(store, "call-history").await?;
    store
        .call(gen, tserver, connid)
        .await?
        .ok_or_else(|| QueryError::NotFound(format!("T-Server {tserver} has no call {connid} in the projection")))
}

/// A page of a DN's calls in a window, newest first.
pub async fn dn_calls<S: Store>(
    store: &S,
    tserver: i32,
    dn: &str,
    window: &Window,
    limit_: Option<usize>,
    page: Option<&str>,
    now_ms: i64,
) -> Result<Page<DnCall>, QueryError> {
    key("dn", dn)?;
    let (from_ms, to_ms) = window.resolve(now_ms, i64::MIN)?;
    let limit = limit(limit_)?;
    let after = page.map(Cursor::parse).transpose().map_err(QueryError::Bad)?;
    let gen = current_gen(store, "call-history").await?;
    let mut items = store.dn_calls(gen, tserver, dn, &CallsPage { from_ms, to_ms, after, limit: limit + 1 }).await?;
    let next_page = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|r| Cursor { started_ms: r.started_ms, connid: r.connid.clone() }.token())
    } else {
        None
    };
    Ok(Page { items, next_page })
}

/// Current state and time in state of every DN (and agent) of a T-Server, or one DN.
pub async fn current<S: Store>(store: &S, tserver: i32, dn: Option<&str>, now_ms: i64) -> Result<Vec<CurrentState>, QueryError> {
    let rows = match dn {
        Some(d) => vec![self::dn(store, tserver, d).await?],
        None => dns(store, tserver).await?,
    };
    Ok(rows.iter().map(|r| stats::current(r, now_ms)).collect())
}

/// Interval statistics of a T-Server (or one DN) over a window (default: the last hour),
/// oldest interval first; at most [`MAX_INTERVALS`].
pub async fn intervals<S: Store>(
    store: &S,
    tserver: i32,
    dn: Option<&str>,
    window: &Window,
    now_ms: i64,
) -> Result<Vec<IntervalStats>, QueryError> {
    if let Some(d) = dn {
        key("dn", d)?;
    }
    let (from, to) = window.resolve(now_ms, now_ms - 3_600_000)?;
    let to = to.min(now_ms + INTERVAL_MS);
    let first = interval_of(from);
    let count = (to - first + INTERVAL_MS - 1) / INTERVAL_MS;
    if count > MAX_INTERVALS {
        return Err(bad(format!("the window spans {count} intervals; at most {MAX_INTERVALS} (7 days) per question")));
    }
    let gen = current_gen(store, "call-history").await?;
    let mut out = Vec::new();
    for i in 0..count.max(0) {
        let start = first + i * INTERVAL_MS;
        let legs = store.interval_legs(gen, tserver, start, dn).await?;
        out.push(stats::aggregate(start, &legs));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_limits_are_checked_with_one_line_reasons() {
        let w = |since: Option<&str>, from: Option<&str>, to: Option<&str>| Window {
            since: since.map(str::to_string),
            from: from.map(str::to_string),
            to: to.map(str::to_string),
        };
        assert_eq!(w(Some("1h"), None, None).resolve(10_000_000, 0).unwrap(), (10_000_000 - 3_600_000, i64::MAX));
        assert_eq!(w(None, Some("1000"), Some("2000")).resolve(0, 0).unwrap(), (1000, 2000));
        assert_eq!(w(None, Some("1970-01-01T00:00:01Z"), None).resolve(0, 0).unwrap().0, 1000);
        for bad in [w(Some("yesterday"), None, None), w(None, Some("x"), None), w(None, Some("5"), Some("5"))] {
            let e = bad.resolve(0, 0).unwrap_err().to_string();
            assert!(!e.contains('\n') && !e.is_empty(), "{e}");
        }
        assert!(limit(Some(0)).is_err() && limit(Some(1001)).is_err());
        assert_eq!(limit(None).unwrap(), 100);
        assert!(key("dn", "").is_err() && key("dn", "a\nb").is_err() && key("dn", "5001").is_ok());
    }
}
