//! The HTTP JSON query API: `/v1/...`, `/healthz`; and the layers every HTTP server of
//! the roles wears: request metrics ([`track`]) and the optional bearer token
//! ([`require_token`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::query::{self, QueryError, Window};
use crate::runner::Projection;
use crate::stat_query::{self, Object, Profile, Settings};
use crate::store::{current_gen, AnyStore, Store, StoreError};
use crate::wallboard::{self, Hub};

/// What handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: AnyStore,
    /// Time zone and thresholds of the statistics.
    pub settings: Arc<Settings>,
    /// The wallboard streams.
    pub hub: Hub,
}

impl ApiState {
    /// Handlers over `store` with the default statistics settings and stream bound.
    pub fn new(store: AnyStore) -> Self {
        ApiState { store, settings: Arc::new(Settings::default()), hub: Hub::new(crate::wallboard::DEFAULT_MAX_CLIENTS) }
    }
}

/// A one-line error answer.
pub struct ApiError(StatusCode, String);

impl ApiError {
    pub fn new(status: StatusCode, reason: String) -> Self {
        ApiError(status, reason)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Bad(reason) => ApiError(StatusCode::BAD_REQUEST, reason),
            QueryError::NotFound(reason) => ApiError(StatusCode::NOT_FOUND, reason),
            QueryError::Store(e) => e.into(),
        }
    }
}

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .route("/v1/projections", get(projections))
        .route("/v1/tservers/{tserver}/dns", get(dns))
        .route("/v1/tservers/{tserver}/dns/{dn}", get(dn))
        .route("/v1/tservers/{tserver}/dns/{dn}/calls", get(dn_calls))
        .route("/v1/tservers/{tserver}/dns/{dn}/stats/current", get(dn_current))
        .route("/v1/tservers/{tserver}/dns/{dn}/stats/intervals", get(dn_intervals))
        .route("/v1/tservers/{tserver}/stats/current", get(tserver_current))
        .route("/v1/tservers/{tserver}/stats/intervals", get(tserver_intervals))
        .route("/v1/tservers/{tserver}/calls/{connid}", get(call))
        .route("/v1/tservers/{tserver}/statistics", get(statistics))
        .route("/v1/wallboard", get(wallboard::board))
        .route("/v1/wallboard/events", get(wallboard::events))
        .route("/wallboard", get(wallboard::page))
        .route("/wallboard/wallboard.js", get(wallboard::script))
        .route("/wallboard/wallboard.css", get(wallboard::style))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such path; see /v1/openapi.json".into()) })
        .with_state(state)
}

/// Serve `app` (this crate's [`router`], possibly merged with other routes) until
/// `shutdown` turns true.
pub async fn serve(listener: TcpListener, app: Router, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await
}

async fn dns(State(s): State<ApiState>, Path(tserver): Path<i32>) -> Result<Response, ApiError> {
    Ok(Json(query::dns(&s.store, tserver).await?).into_response())
}

async fn dn(State(s): State<ApiState>, Path((tserver, dn)): Path<(i32, String)>) -> Result<Response, ApiError> {
    Ok(Json(query::dn(&s.store, tserver, &dn).await?).into_response())
}

async fn call(State(s): State<ApiState>, Path((tserver, connid)): Path<(i32, String)>) -> Result<Response, ApiError> {
    Ok(Json(query::call(&s.store, tserver, &connid).await?).into_response())
}

/// Query of the calls of a DN.
#[derive(Debug, Deserialize)]
pub struct CallsQuery {
    /// Only calls that started within this duration before now (`15m`, `2h`, `1d`).
    pub since: Option<String>,
    /// Only calls that started at or after this time (ms since the epoch or RFC 3339).
    pub from: Option<String>,
    /// Only calls that started before this time.
    pub to: Option<String>,
    /// At most this many rows (default 100, at most 1000).
    pub limit: Option<String>,
    /// The `x-next-page` token of the previous page.
    pub page: Option<String>,
}

/// Parse an optional number parameter; the error is one line.
fn number(name: &str, text: Option<&str>) -> Result<Option<usize>, ApiError> {
    text.map(|t| t.parse().map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("{name} {t:?} is not a whole number")))).transpose()
}

/// Parse a `since` duration into a lower bound on start time; the error is one line.
pub fn since_ms(since: Option<&str>, now_ms: i64) -> Result<i64, String> {
    match since {
        None => Ok(0),
        Some(text) => {
            let d: Duration =
                humantime::parse_duration(text).map_err(|e| format!("since {text:?} is not a duration like 15m or 2h: {e}"))?;
            Ok(now_ms - d.as_millis() as i64)
        }
    }
}

async fn dn_calls(
    State(s): State<ApiState>,
    Path((tserver, dn)): Path<(i32, String)>,
    Query(q): Query<CallsQuery>,
) -> Result<Response, ApiError> {
    let window = Window { since: q.since, from: q.from, to: q.to };
    let limit = number("limit", q.limit.as_deref())?;
    let page = query::dn_calls(&s.store, tserver, &dn, &window, limit, q.page.as_deref(), netwatch_schemas::now_ms()).await?;
    let mut response = Json(page.items).into_response();
    if let Some(token) = page.next_page.and_then(|t| HeaderValue::from_str(&t).ok()) {
        response.headers_mut().insert("x-next-page", token);
    }
    Ok(response)
}

async fn dn_current(State(s): State<ApiState>, Path((tserver, dn)): Path<(i32, String)>) -> Result<Response, ApiError> {
    let mut rows = query::current(&s.store, tserver, Some(&dn), netwatch_schemas::now_ms()).await?;
    Ok(Json(rows.pop()).into_response())
}

async fn tserver_current(State(s): State<ApiState>, Path(tserver): Path<i32>) -> Result<Response, ApiError> {
    Ok(Json(query::current(&s.store, tserver, None, netwatch_schemas::now_ms()).await?).into_response())
}

async fn dn_intervals(
    State(s): State<ApiState>,
    Path((tserver, dn)): Path<(i32, String)>,
    Query(w): Query<Window>,
) -> Result<Response, ApiError> {
    Ok(Json(query::intervals(&s.store, tserver, Some(&dn), &w, netwatch_schemas::now_ms()).await?).into_response())
}

async fn tserver_intervals(State(s): State<ApiState>, Path(tserver): Path<i32>, Query(w): Query<Window>) -> Result<Response, ApiError> {
    Ok(Json(query::intervals(&s.store, tserver, None, &w, netwatch_schemas::now_ms()).await?).into_response())
}

/// The statistics question: which object, over which profile.
#[derive(Debug, Default, Deserialize)]
pub struct StatisticsQuery {
    pub object: Option<String>,
    pub profile: Option<String>,
    pub interval_ms: Option<i64>,
}

async fn statistics(State(s): State<ApiState>, Path(tserver): Path<i32>, Query(q): Query<StatisticsQuery>) -> Result<Response, ApiError> {
    let object = Object::parse(q.object.as_deref().unwrap_or("tserver"))?;
    let profile = Profile::parse(q.profile.as_deref(), q.interval_ms)?;
    Ok(Json(stat_query::statistics(&s.store, &s.settings, tserver, &object, profile, netwatch_schemas::now_ms()).await?).into_response())
}

async fn projections(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let mut out = Vec::new();
    for p in Projection::ALL {
        let generations = s.store.generations(p.name()).await?;
        let gen = current_gen(&s.store, p.name()).await?;
        let positions: Vec<_> = s
            .store
            .positions(p.name(), gen)
            .await?
            .into_iter()
            .map(|((topic, partition), next)| serde_json::json!({ "topic": topic, "partition": partition, "next_offset": next }))
            .collect();
        let generations: Vec<_> = generations.into_iter().map(|(g, st)| serde_json::json!({ "gen": g, "state": st })).collect();
        out.push(serde_json::json!({ "projection": p.name(), "current": gen, "generations": generations, "positions": positions }));
    }
    Ok(Json(out).into_response())
}

/// Middleware: `netwatch_http_request_duration_seconds` by route (the pattern, not the
/// path: `/v1/tservers/{tserver}/dns`), method and status.
pub async fn track(request: Request, next: Next) -> Response {
    let route = match request.extensions().get::<MatchedPath>() {
        Some(m) => m.as_str().to_string(),
        None => "unmatched".to_string(),
    };
    // The standard methods by name, anything else as one value (a client must not be able
    // to add series).
    let method: &'static str = match request.method().as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("netwatch_http_request_duration_seconds", "route" => route, "method" => method, "status" => status)
        .record(start.elapsed().as_secs_f64());
    response
}

/// The bearer token every request but `/healthz` must carry, if one is set.
#[derive(Clone)]
pub struct Token(pub Arc<str>);

/// Middleware: without the token (header `Authorization: Bearer T`, the scheme in any
/// case), 401. Compared in constant time: the time depends on the configured token's
/// length only, not on what was given.
pub async fn require_token(State(token): State<Token>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path == "/healthz" || wallboard::PUBLIC.contains(&path) || token_matches(&token, &request) {
        return next.run(request).await;
    }
    let mut response = ApiError(StatusCode::UNAUTHORIZED, "a bearer token is required (Authorization: Bearer ...)".into()).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"netwatch\""));
    response
}

fn token_matches(token: &Token, request: &Request) -> bool {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().as_bytes())
        .unwrap_or_default();
    same(given, token.0.as_bytes())
}

/// `given == expected` in time that depends on `expected.len()` only.
fn same(given: &[u8], expected: &[u8]) -> bool {
    let mut equal = (given.len() as u64).ct_eq(&(expected.len() as u64));
    for (i, e) in expected.iter().enumerate() {
        equal &= given.get(i).copied().unwrap_or(0).ct_eq(e);
    }
    bool::from(equal)
}

/// Wear the layers of every role's HTTP server: the token if set, inside the request
/// metrics (so refused requests are counted too).
pub fn guarded(app: Router, token: Option<Token>) -> Router {
    let app = match token {
        Some(token) => app.layer(axum::middleware::from_fn_with_state(token, require_token)),
        None => app,
    };
    app.layer(axum::middleware::from_fn(track))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal_whatever_their_lengths() {
        assert!(same(b"s3cret", b"s3cret"));
        assert!(!same(b"s3cre", b"s3cret"));
        assert!(!same(b"s3crett", b"s3cret"));
        assert!(!same(b"s3cres", b"s3cret"));
        assert!(!same(b"", b"s3cret"));
        // A prefix padded with what `same` fills in beyond the given bytes is no match.
        assert!(!same(b"s3cre\0", b"s3cret"));
    }

    #[test]
    fn the_openapi_document_describes_every_query_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        for path in [
            "/v1/tservers/{tserver}/dns",
            "/v1/tservers/{tserver}/dns/{dn}",
            "/v1/tservers/{tserver}/dns/{dn}/calls",
            "/v1/tservers/{tserver}/dns/{dn}/stats/current",
            "/v1/tservers/{tserver}/dns/{dn}/stats/intervals",
            "/v1/tservers/{tserver}/stats/current",
            "/v1/tservers/{tserver}/stats/intervals",
            "/v1/tservers/{tserver}/calls/{connid}",
            "/v1/projections",
        ] {
            assert!(doc["paths"][path]["get"].is_object(), "{path} is not in openapi.json");
        }
    }
}
