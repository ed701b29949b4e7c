//! The wallboard: a page (plain HTML, JS and CSS, no build step) and its live feed.
//!
//! `GET /wallboard?tserver=1&group=7` is the page; it reads
//! `GET /v1/wallboard/events?...`, Server-Sent Events: a `snapshot` of the whole board,
//! then `tiles` when a tile changes and `agent` for each grid row that changed. The feed
//! is pushed from the statistics projection's changes: one watcher per process looks at
//! the projection's stored positions (one small read every [`WATCH_EVERY`]) and wakes the
//! streams when they moved; each stream then rebuilds its board and sends only what
//! differs from what it sent. Tiles whose values grow with time (the stretch in
//! progress, the oldest wait) are refreshed every [`REFRESH_EVERY`] as well; the page
//! counts time in state itself.
//!
//! The page and its two files carry no data and need no token; the feed and the JSON do.
//! The page passes the token in the `Authorization` header (it reads it from the URL's
//! fragment, which browsers never send), so it reads the stream with `fetch`, not
//! `EventSource`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tokio::sync::{mpsc, watch, OnceCell};

use crate::http::{ApiError, ApiState, ErrorBody};
use crate::query::QueryError;
use crate::stat_query::{self, Board, Cell, Profile, Settings};
use crate::store::{current_gen, AnyStore, Store};

const PAGE: &str = include_str!("wallboard/index.html");
const SCRIPT: &str = include_str!("wallboard/wallboard.js");
const STYLE: &str = include_str!("wallboard/wallboard.css");

/// The paths of the page's files: served without the token (they hold no data).
pub const PUBLIC: [&str; 3] = ["/wallboard", "/wallboard/wallboard.js", "/wallboard/wallboard.css"];

/// How often the watcher reads the statistics projection's positions.
pub const WATCH_EVERY: Duration = Duration::from_millis(250);
/// How often a stream rebuilds its board without a change (values that grow with time).
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// Streams open at once, by default.
pub const DEFAULT_MAX_CLIENTS: usize = 64;

/// The wallboard page (its script and style at `/wallboard/wallboard.js` and
/// `/wallboard/wallboard.css`). It holds no data, so it needs no token: open
/// `/wallboard?tserver=1&group=7#token=...` and the page sends the token from the fragment.
#[utoipa::path(get, path = "/wallboard", tag = "wallboard",
    params(("tserver" = i32, Query, description = "T-Server id"), ("group" = Option<i32>, Query, description = "Group id (default: the whole T-Server)"),
        ("profile" = Option<String>, Query, description = "Profile of the tiles (default growing)")),
    responses((status = 200, description = "The page", body = String, content_type = "text/html")))]
pub async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], PAGE).into_response()
}

/// The wallboard's script.
#[utoipa::path(get, path = "/wallboard/wallboard.js", tag = "wallboard",
    responses((status = 200, description = "The script", body = String, content_type = "text/javascript")))]
pub async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], SCRIPT).into_response()
}

/// The wallboard's style sheet.
#[utoipa::path(get, path = "/wallboard/wallboard.css", tag = "wallboard",
    responses((status = 200, description = "The style sheet", body = String, content_type = "text/css")))]
pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], STYLE).into_response()
}

/// The streams of one process and the watcher that wakes them.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    max_clients: usize,
    clients: AtomicUsize,
    /// Bumped whenever the statistics projection wrote; started with the first stream.
    changes: OnceCell<watch::Receiver<u64>>,
}

impl Hub {
    /// A hub that allows `max_clients` streams at once.
    pub fn new(max_clients: usize) -> Self {
        Hub { inner: Arc::new(HubInner { max_clients, clients: AtomicUsize::new(0), changes: OnceCell::new() }) }
    }

    /// The change signal, starting the watcher on first use.
    async fn changes(&self, store: &AnyStore) -> watch::Receiver<u64> {
        self.inner
            .changes
            .get_or_init(|| async {
                let (tx, rx) = watch::channel(0u64);
                let store = store.clone();
                tokio::spawn(async move {
                    let mut last = None;
                    let mut tick = tokio::time::interval(WATCH_EVERY);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        let Ok(gen) = current_gen(&store, "statistics").await else { continue };
                        let Ok(positions) = store.positions("statistics", gen).await else { continue };
                        let now = Some((gen, positions));
                        if now != last {
                            last = now;
                            tx.send_modify(|n| *n += 1);
                        }
                    }
                });
                rx
            })
            .await
            .clone()
    }

    /// Count a stream in, if there is room; the guard counts it out.
    fn admit(&self) -> Option<ClientGuard> {
        let inner = self.inner.clone();
        let admitted = inner.clients.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < inner.max_clients).then_some(n + 1)).is_ok();
        admitted.then(|| {
            metrics::gauge!("netwatch_sse_clients").increment(1.0);
            ClientGuard(inner)
        })
    }
}

struct ClientGuard(Arc<HubInner>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("netwatch_sse_clients").decrement(1.0);
    }
}

/// The board asked for.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BoardQuery {
    /// T-Server id (required).
    pub tserver: Option<String>,
    /// Group id (default: the whole T-Server).
    pub group: Option<String>,
    /// Profile of the tiles: `growing` (default), `interval`, `last_1m` … `last_60m`.
    pub profile: Option<String>,
}

/// Which board: T-Server, group, profile; the error is one line.
fn which(q: &BoardQuery) -> Result<(i32, Option<i32>, Profile), QueryError> {
    let tserver = match q.tserver.as_deref() {
        Some(t) => t.parse().map_err(|_| QueryError::Bad(format!("tserver {t:?} is not a T-Server id")))?,
        None => return Err(QueryError::Bad("tserver is required (?tserver=ID)".into())),
    };
    let group = match q.group.as_deref().filter(|g| !g.is_empty()) {
        Some(g) => Some(g.parse().map_err(|_| QueryError::Bad(format!("group {g:?} is not a group id")))?),
        None => None,
    };
    Ok((tserver, group, Profile::parse(q.profile.as_deref(), None)?))
}

/// A wallboard as JSON: KPI tiles (with their threshold colours) and the agent grid.
#[utoipa::path(get, path = "/v1/wallboard", tag = "wallboard", params(BoardQuery),
    responses((status = 200, description = "The board", body = Board), (status = 400, description = "Bad input", body = ErrorBody), (status = 404, description = "Unknown group", body = ErrorBody)))]
pub async fn board(State(s): State<ApiState>, Query(q): Query<BoardQuery>) -> Result<Response, ApiError> {
    let (tserver, group, profile) = which(&q)?;
    Ok(Json(stat_query::board(&s.store, &s.settings, tserver, group, profile, netwatch_schemas::now_ms()).await?).into_response())
}

/// A wallboard's live feed (Server-Sent Events): `snapshot` (data: the board), then
/// `tiles` (data: `{now_ms, tiles}`) when a tile changes and `agent` (data: `{now_ms,
/// agent}`; status `gone` removes the row) for each grid row that changed, pushed when
/// the statistics projection writes.
#[utoipa::path(get, path = "/v1/wallboard/events", tag = "wallboard", params(BoardQuery),
    responses((status = 200, description = "The event stream", body = String, content_type = "text/event-stream"), (status = 400, description = "Bad input", body = ErrorBody), (status = 404, description = "Unknown group", body = ErrorBody),
        (status = 503, description = "As many streams are open as --max-wallboard-streams allows", body = ErrorBody)))]
pub async fn events(State(s): State<ApiState>, Query(q): Query<BoardQuery>) -> Result<Response, ApiError> {
    let (tserver, group, profile) = which(&q)?;
    // Ask once before answering, so that a bad group is a 404, not a stream of errors.
    let first = stat_query::board(&s.store, &s.settings, tserver, group, profile, netwatch_schemas::now_ms()).await?;
    let Some(guard) = s.hub.admit() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("at most {} wallboard streams at once", s.hub.inner.max_clients),
        ));
    };
    let changes = s.hub.changes(&s.store).await;
    let (tx, rx) = mpsc::channel::<Event>(16);
    tokio::spawn(feed(s.store.clone(), s.settings.clone(), (tserver, group, profile), first, changes, tx, guard));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx)) });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

fn event(name: &str, data: &impl serde::Serialize) -> Option<Event> {
    Event::default().event(name).json_data(data).ok()
}

/// Send one stream's events until its client goes away.
async fn feed(
    store: AnyStore,
    settings: Arc<Settings>,
    (tserver, group, profile): (i32, Option<i32>, Profile),
    first: Board,
    mut changes: watch::Receiver<u64>,
    tx: mpsc::Sender<Event>,
    _guard: ClientGuard,
) {
    let Some(e) = event("snapshot", &first) else { return };
    if tx.send(e).await.is_err() {
        return;
    }
    let mut tiles = first.tiles;
    let mut cells: BTreeMap<String, Cell> = first.agents.into_iter().map(|c| (c.dn.clone(), c)).collect();
    changes.mark_unchanged();
    let mut refresh = tokio::time::interval(REFRESH_EVERY);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    refresh.tick().await;
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = refresh.tick() => {},
            _ = tx.closed() => return,
        }
        let now = netwatch_schemas::now_ms();
        let Ok(board) = stat_query::board(&store, &settings, tserver, group, profile, now).await else { continue };
        let mut out = Vec::new();
        if board.tiles != tiles {
            tiles = board.tiles;
            out.extend(event("tiles", &serde_json::json!({ "now_ms": now, "tiles": tiles })));
        }
        let mut seen = BTreeMap::new();
        for cell in board.agents {
            if cells.get(&cell.dn) != Some(&cell) {
                out.extend(event("agent", &serde_json::json!({ "now_ms": now, "agent": cell })));
            }
            seen.insert(cell.dn.clone(), cell);
        }
        for (dn, old) in &cells {
            if !seen.contains_key(dn) {
                let gone = Cell { status: "gone".into(), ..old.clone() };
                out.extend(event("agent", &serde_json::json!({ "now_ms": now, "agent": gone })));
            }
        }
        cells = seen;
        for e in out {
            if tx.send(e).await.is_err() {
                return;
            }
        }
    }
}
