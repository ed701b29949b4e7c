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
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::query::{self, QueryError, Window};
use crate::rows::{CallRecord, DnCall, DnState};
use crate::runner::Projection;
use crate::stat_query::Statistics;
use crate::stat_query::{self, Object, Profile, Settings};
use crate::stats::{CurrentState, IntervalStats};
use crate::store::{current_gen, AnyStore, GenState, Store, StoreError};
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

/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was wrong, in one line.
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
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

/// The document's header; the paths come from the handlers.
#[derive(OpenApi)]
#[openapi(info(
    title = "Netwatch query API",
    version = "1",
    description = "Live DN state, call history and statistics of contact-center telephony, read from Netwatch's \
                   projections (the current generation of each), and the wallboard. Errors are \
                   {\"error\": \"one-line reason\"}: 400 for bad input, 404 for unknown keys, 401 without the bearer \
                   token when one is set (NETWATCH_API_TOKEN; docs/operations.md)."
))]
struct ApiDoc;

/// The routes and the OpenAPI document that describes them, built together: a route is
/// registered with its `#[utoipa::path]`, so the document names every route.
pub fn parts(state: ApiState) -> (Router, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(projections))
        .routes(routes!(dns))
        .routes(routes!(dn))
        .routes(routes!(dn_calls))
        .routes(routes!(dn_current))
        .routes(routes!(dn_intervals))
        .routes(routes!(tserver_current))
        .routes(routes!(tserver_intervals))
        .routes(routes!(call))
        .routes(routes!(statistics))
        .routes(routes!(wallboard::board))
        .routes(routes!(wallboard::events))
        .routes(routes!(wallboard::page))
        .routes(routes!(wallboard::script))
        .routes(routes!(wallboard::style))
        .split_for_parts();
    let router =
        router.fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such path; see /v1/openapi.json".into()) }).with_state(state);
    (router, doc)
}

/// `app` with `GET /v1/openapi.json` serving `doc`.
pub fn with_openapi(app: Router, mut doc: utoipa::openapi::OpenApi) -> Router {
    let openapi = utoipa::openapi::path::PathItem::new(
        utoipa::openapi::HttpMethod::Get,
        utoipa::openapi::path::OperationBuilder::new()
            .summary(Some("This document (OpenAPI 3.1, generated from the handlers)"))
            .response("200", utoipa::openapi::Response::new("The document")),
    );
    doc.paths.paths.insert("/v1/openapi.json".into(), openapi);
    let json = doc.to_pretty_json().unwrap_or_default();
    app.route("/v1/openapi.json", get(move || async move { ([(header::CONTENT_TYPE, "application/json")], json) }))
}

/// The routes, `/v1/openapi.json` among them.
pub fn router(state: ApiState) -> Router {
    let (app, doc) = parts(state);
    with_openapi(app, doc)
}

/// Whether the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok\n"
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

/// Every DN of a T-Server with its live state, by number.
#[utoipa::path(get, path = "/v1/tservers/{tserver}/dns", tag = "dn-state", params(("tserver" = i32, Path, description = "T-Server id")),
    responses((status = 200, description = "The DNs", body = [DnState]), (status = 400, description = "Bad input", body = ErrorBody), (status = 404, description = "Unknown key", body = ErrorBody)))]
async fn dns(State(s): State<ApiState>, Path(tserver): Path<i32>) -> Result<Response, ApiError> {
    Ok(Json(query::dns(&s.store, tserver).await?).into_response())
}

/// One DN's live state: call state, calls at the DN, agent, link.
#[utoipa::path(get, path = "/v1/tservers/{tserver}/dns/{dn}", tag = "dn-state", params(("tserver" = i32, Path, description = "T-Server id"), ("dn" = String, Path, description = "DN number")),
    responses((status = 200, description = "The DN", body = DnState), (status = 400, description = "Bad input", body = ErrorBody), (status = 404, description = "Unknown key", body = ErrorBody)))]
async fn dn(State(s): State<ApiState>, Path((tserver, dn)): Path<(i32, String)>) -> Result<Response, ApiError> {
    Ok(Json(query::dn(&s.store, tserver, &dn).await?).into_response())
}

/// One call by ConnID, with its legs (docs/call-model.md).
#[utoipa::path(get, path = "/v1/tservers/{tserver}/calls/{connid}", tag = "call-history",
    params(("tserver" = i32, Path, description = "T-Server id"), ("connid" = String, Path, description = "ConnID")),
    responses((status = 200, description = "The call", body = CallRecord), (status = 400, description = "Bad input", body = ErrorBody), (status = 404, description = "Unknown key", body = ErrorBody)))]
async fn call(State(s): State<ApiState>, Path((tserver, connid)): Path<(i32, String)>) -> Result<Response, ApiError> {
    Ok(Json(query::call(&s.store, tserver, &connid).await?).into_response())
}

/// Query of the calls of a DN.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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

/// A DN's calls, newest first, a page at a time: the `x-next-page` header carries the
/// token of the next page.
#[utoipa::path(get, path = "/v1/tservers/{tserver}/dns/{dn}/calls", tag = "call-history", params(("tserver" = i32, Path, description = "T-Server id"), ("dn" = String, Path, description = "DN number"), CallsQuery),
    responses((status = 200, description = "A page of the DN's calls", body = [DnCall],
        headers(("x-next-page" = String, description = "Token of the next page, if there is one"))), (status = 400, description = "Bad input", body = ErrorBody), (status = 404, description = "Unknown key", body = ErrorBody)))]
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

/// A DN's (and its agent's) status and time in status now.
#[utoipa::path(get, path = "/v1/tservers/{tserver}/dns/{dn}/stats/current", tag = "statistics", params(("tserver" = i32, Path, description = "T-Server id"), ("dn" = String, Path, description = "DN number")),
    responses((status = 200, description = "The DN now", body = CurrentState), (status = 400, description = "Bad input", body = ErrorBody), (status = 404, description = "Unknown key", body = ErrorBody)))]
async fn dn_current(State(s): State<ApiState>, Path((tserver, dn)): Path<(i32, String)>) -> Result<Response, ApiError> {
    let mut rows = query::current(&s.store, tserver, Some(&dn), netwatch_schemas::now_ms()).await?;
    Ok(Json(rows.pop()).into_response())
}

/// Every DN's status and time in status now.
#[utoipa::path(get, path = "/v1/tservers/{tserver}/stats/current", tag = "statistics", params(("tserver" = i32, Path, description = "T-Server id")),
    responses((status = 200, description = "The DNs now", body = [CurrentState]), (status = 400, description = "Bad input", body = ErrorBody), (status = 404, description = "Unknown key", body = ErrorBody)))]
async fn tserver_current(State(s): State<ApiState>, Path(tserver): Path<i32>) -> Result<Response, ApiError> {
    Ok(Json(query::current(&s.store, tserver, None, netwatch_schemas::now_ms()).await?).into_response())
}

/// A DN's 15-minute intervals, from the legs that started in each (docs/call-model.md,
/// "Statistics"); at most 7 days.
#[utoipa::path(get, path = "/v1/tservers/{tserver}/dns/{dn}/stats/intervals", tag = "statistics", params(("tserver" = i32, Path, description = "T-Server id"), ("dn" = String, Path, description = "DN number"), Window),
    responses((status = 200, description = "The intervals, oldest first", body = [IntervalStats]), (status = 400, description = "Bad input", body = ErrorBody), (status = 404, description = "Unknown key", body = ErrorBody)))]
async fn dn_intervals(
    State(s): State<ApiState>,
    Path((tserver, dn)): Path<(i32, String)>,
    Query(w): Query<Window>,
) -> Result<Response, ApiError> {
    Ok(Json(query::intervals(&s.store, tserver, Some(&dn), &w, netwatch_schemas::now_ms()).await?).into_response())
}

/// A T-Server's 15-minute intervals, as for a DN.
#[utoipa::path(get, path = "/v1/tservers/{tserver}/stats/intervals", tag = "statistics", params(("tserver" = i32, Path, description = "T-Server id"), Window),
    responses((status = 200, description = "The intervals, oldest first", body = [IntervalStats]), (status = 400, description = "Bad input", body = ErrorBody), (status = 404, description = "Unknown key", body = ErrorBody)))]
async fn tserver_intervals(State(s): State<ApiState>, Path(tserver): Path<i32>, Query(w): Query<Window>) -> Result<Response, ApiError> {
    Ok(Json(query::intervals(&s.store, tserver, None, &w, netwatch_schemas::now_ms()).await?).into_response())
}

/// The statistics question: which object, over which profile.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatisticsQuery {
    /// `tserver` (default), `dn:NUMBER`, `agent:ID` or `group:ID`.
    pub object: Option<String>,
    /// `growing` (default: since local midnight), `interval` (the 15 minutes now, or the
    /// one at `interval_ms`), `last_1m` … `last_60m`.
    pub profile: Option<String>,
    /// With `profile=interval`: the start of a past interval (ms since the epoch).
    pub interval_ms: Option<i64>,
}

/// An object's statistics of docs/statistics.md over a time profile: the sums, the
/// figures computed from them, and the current values. Read from the statistics
/// projection's running sums plus the status stretches in progress up to now; a group is
/// the sum of its members' rows.
#[utoipa::path(get, path = "/v1/tservers/{tserver}/statistics", tag = "statistics", params(("tserver" = i32, Path, description = "T-Server id"), StatisticsQuery),
    responses((status = 200, description = "The statistics", body = Statistics), (status = 400, description = "Bad input", body = ErrorBody), (status = 404, description = "Unknown key", body = ErrorBody)))]
async fn statistics(State(s): State<ApiState>, Path(tserver): Path<i32>, Query(q): Query<StatisticsQuery>) -> Result<Response, ApiError> {
    let object = Object::parse(q.object.as_deref().unwrap_or("tserver"))?;
    let profile = Profile::parse(q.profile.as_deref(), q.interval_ms)?;
    Ok(Json(stat_query::statistics(&s.store, &s.settings, tserver, &object, profile, netwatch_schemas::now_ms()).await?).into_response())
}

/// A projection's generations and the positions its current one has applied.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectionInfo {
    pub projection: String,
    /// The generation queries read.
    pub current: u32,
    pub generations: Vec<GenerationInfo>,
    pub positions: Vec<PositionInfo>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GenerationInfo {
    pub gen: u32,
    /// `building`, `current` or `retired`.
    #[schema(value_type = String)]
    pub state: GenState,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PositionInfo {
    pub topic: String,
    pub partition: i32,
    /// The next offset to apply.
    pub next_offset: i64,
}

/// Every projection: its generations and positions.
#[utoipa::path(get, path = "/v1/projections", tag = "operations",
    responses((status = 200, description = "The projections", body = [ProjectionInfo])))]
async fn projections(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let mut out = Vec::new();
    for p in Projection::ALL {
        let generations = s.store.generations(p.name()).await?;
        let gen = current_gen(&s.store, p.name()).await?;
        let positions = s
            .store
            .positions(p.name(), gen)
            .await?
            .into_iter()
            .map(|((topic, partition), next_offset)| PositionInfo { topic, partition, next_offset })
            .collect();
        let generations = generations.into_iter().map(|(gen, state)| GenerationInfo { gen, state }).collect();
        out.push(ProjectionInfo { projection: p.name().to_string(), current: gen, generations, positions });
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
    fn the_openapi_document_names_every_route_with_its_types() {
        let store = AnyStore::Sqlite(crate::store::SqliteStore::open(tempfile::tempdir().unwrap().path().join("s.db")).unwrap());
        let (_, doc) = parts(ApiState::new(store));
        let doc: serde_json::Value = serde_json::from_str(&doc.to_json().unwrap()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths: Vec<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
        // Registered with the router through routes!, so this is what the router serves.
        let mut want = vec![
            "/healthz",
            "/v1/projections",
            "/v1/tservers/{tserver}/calls/{connid}",
            "/v1/tservers/{tserver}/dns",
            "/v1/tservers/{tserver}/dns/{dn}",
            "/v1/tservers/{tserver}/dns/{dn}/calls",
            "/v1/tservers/{tserver}/dns/{dn}/stats/current",
            "/v1/tservers/{tserver}/dns/{dn}/stats/intervals",
            "/v1/tservers/{tserver}/statistics",
            "/v1/tservers/{tserver}/stats/current",
            "/v1/tservers/{tserver}/stats/intervals",
            "/v1/wallboard",
            "/v1/wallboard/events",
            "/wallboard",
            "/wallboard/wallboard.css",
            "/wallboard/wallboard.js",
        ];
        want.sort();
        let mut got = paths.clone();
        got.sort();
        assert_eq!(got, want);
        // Every answer type is described, field by field.
        let schemas = &doc["components"]["schemas"];
        for (schema, field) in [
            ("DnState", "agent_state"),
            ("CallRecord", "legs"),
            ("CallLeg", "hold_count"),
            ("Statistics", "figures"),
            ("Tally", "not_ready_by_reason_ms"),
            ("Board", "tiles"),
            ("ErrorBody", "error"),
        ] {
            assert!(schemas[schema]["properties"][field].is_object(), "{schema}.{field} in {}", schemas[schema]);
        }
        let calls = &doc["paths"]["/v1/tservers/{tserver}/dns/{dn}/calls"]["get"];
        let params: Vec<&str> = calls["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(params, ["tserver", "dn", "since", "from", "to", "limit", "page"]);
    }
}
