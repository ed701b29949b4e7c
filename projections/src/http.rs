//! The HTTP JSON query API: `/v1/...`, `/healthz`, `/metrics`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::runner::Metrics;
use crate::store::{AnyStore, Store, StoreError};

/// What handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: AnyStore,
    /// Per projection name, when the projections run in this process.
    pub metrics: Vec<(String, Arc<Metrics>)>,
}

/// A one-line error answer.
pub struct ApiError(StatusCode, String);

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

/// The routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/v1/tservers/{tserver}/dns", get(dns))
        .route("/v1/tservers/{tserver}/dns/{dn}", get(dn))
        .route("/v1/tservers/{tserver}/dns/{dn}/calls", get(dn_calls))
        .route("/v1/tservers/{tserver}/calls/{connid}", get(call))
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
    Ok(Json(s.store.dns(tserver).await?).into_response())
}

async fn dn(State(s): State<ApiState>, Path((tserver, dn)): Path<(i32, String)>) -> Result<Response, ApiError> {
    match s.store.dn(tserver, &dn).await? {
        Some(row) => Ok(Json(row).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("T-Server {tserver} has no DN {dn} in the projection"))),
    }
}

async fn call(State(s): State<ApiState>, Path((tserver, connid)): Path<(i32, String)>) -> Result<Response, ApiError> {
    match s.store.call(tserver, &connid).await? {
        Some(row) => Ok(Json(row).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("T-Server {tserver} has no call {connid} in the projection"))),
    }
}

/// Query of the calls of a DN.
#[derive(Debug, Deserialize)]
pub struct CallsQuery {
    /// Only calls that started within this duration before now (`15m`, `2h`, `1d`).
    pub since: Option<String>,
    /// At most this many rows (default 100, at most 1000).
    pub limit: Option<usize>,
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
    let since = since_ms(q.since.as_deref(), netwatch_schemas::now_ms()).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("limit must be 1..1000, got {limit}")));
    }
    Ok(Json(s.store.dn_calls(tserver, &dn, since, limit).await?).into_response())
}

async fn metrics(State(s): State<ApiState>) -> String {
    let mut out = String::from("# TYPE netwatch_events_applied_total counter\n");
    for (name, m) in &s.metrics {
        out.push_str(&format!("netwatch_events_applied_total{{projection=\"{name}\"}} {}\n", m.applied.load(Ordering::Relaxed)));
    }
    out.push_str("# TYPE netwatch_deadlettered_total counter\n");
    for (name, m) in &s.metrics {
        out.push_str(&format!("netwatch_deadlettered_total{{projection=\"{name}\"}} {}\n", m.dead_lettered.load(Ordering::Relaxed)));
    }
    out
}
