//! Prometheus metrics of the long-running roles: one recorder per process, rendered on
//! `/metrics` by the role's HTTP server (the API's under `serve` and `up`; a small one of
//! its own under `dispatcher`, `monitor` and `projections run`, see `--metrics-listen`).
//! docs/operations.md lists the series with example alert rules.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::header;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use netwatch_eventlog::Log;
use netwatch_projections::http::{guarded, serve, Token};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{input, CliError};

/// Histogram buckets, in seconds: 1 ms to 10 s.
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How often histograms are folded and the producer's queue is sampled.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// A gauge nobody set for this long is dropped: the lag of a consumer that stopped, the
/// link of a T-Server another monitor took. Live gauges are set at least every 5 s.
const GAUGE_IDLE: Duration = Duration::from_secs(60);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed by the first call (before any series is created:
/// a series made before it counts nowhere).
fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .map(|b| b.idle_timeout(metrics_util::MetricKindMask::GAUGE, Some(GAUGE_IDLE)))
                .and_then(|b| b.install_recorder());
            match installed {
                Ok(handle) => Some(handle),
                Err(e) => {
                    warn!(error = %e, "Metrics are off: the recorder could not be installed.");
                    None
                }
            }
        })
        .as_ref()
}

/// Install the recorder and keep it tidy: histograms folded and the producer's queue
/// depth (`netwatch_produce_queue_depth`) sampled every few seconds. Call at a role's
/// start.
pub fn start(log: Option<&Log>) {
    let Some(handle) = handle() else { return };
    let producer = log.map(|l| (l.producer.clone(), metrics::gauge!("netwatch_produce_queue_depth")));
    let build = metrics::gauge!("netwatch_build_info", "version" => env!("CARGO_PKG_VERSION"));
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            every.tick().await;
            build.set(1.0);
            if let Some((p, depth)) = &producer {
                depth.set(p.in_flight() as f64);
            }
            handle.run_upkeep();
        }
    });
}

/// `GET /metrics`: the text exposition format.
pub fn router() -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// This process's series in the Prometheus text format (docs/operations.md lists them).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "The series", body = String, content_type = "text/plain; version=0.0.4")))]
async fn metrics() -> impl axum::response::IntoResponse {
    let body = handle().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// Serve `/metrics` and `/healthz` on `listen` until `shutdown` (the roles without an API
/// of their own). A port of 0 takes a free one; the address is logged either way.
pub async fn serve_alone(
    listen: &str,
    token: Option<Token>,
    role: &'static str,
    shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, CliError> {
    let listener = TcpListener::bind(listen).await.map_err(|e| input(format!("cannot listen on {listen} for metrics: {e}")))?;
    let addr = listener.local_addr()?;
    info!(role, url = %format!("http://{addr}/metrics"), "Metrics served.");
    let (metrics, _) = router().split_for_parts();
    let app = guarded(metrics.route("/healthz", get(|| async { "ok\n" })), token);
    Ok(tokio::spawn(async move {
        if let Err(e) = serve(listener, app, shutdown).await {
            warn!(error = %e, "The metrics server stopped.");
        }
    }))
}
