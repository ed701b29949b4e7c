//! `netwatch status` and `GET /v1/cluster`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use clap::Args;
use netwatch_eventlog::Log;
use netwatch_processors::cluster::Liveness;
use netwatch_processors::status::{cluster_status, ClusterStatus};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{CliError, Ctx};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Heartbeat interval the monitors use (for liveness).
    #[arg(long, default_value = "1s")]
    monitor_heartbeat: humantime::Duration,
    /// Heartbeats a monitor may miss before it counts as dead.
    #[arg(long, default_value_t = 3)]
    missed_heartbeats: i64,
    /// The configuration database of `netwatch cdc postgres`: with it, each CDC source
    /// shows its slot's state and lag in bytes.
    #[arg(long, env = "NETWATCH_CDC_DSN", hide_env_values = true)]
    cdc_dsn: Option<String>,
}

fn table(s: &ClusterStatus) -> String {
    let mut out = String::from("MONITOR                          LIVE  SLOTS  T-SERVERS          DNS  SESSIONS  RSS MiB  LOAD\n");
    for m in &s.monitors {
        let tservers: Vec<String> = m.view.tservers.iter().map(i32::to_string).collect();
        out.push_str(&format!(
            "{:<32} {:<5} {:>5}  {:<15} {:>6} {:>9} {:>8} {:>5}\n",
            m.view.id,
            if m.live { "yes" } else { "no" },
            m.view.slots.len(),
            tservers.join(","),
            m.view.dns,
            m.view.sessions,
            m.view.rss_bytes >> 20,
            m.load.as_ref().map(|l| l.load.to_string()).unwrap_or_else(|| "-".into())
        ));
    }
    if s.gone > 0 {
        out.push_str(&format!("({} monitors not heard of for more than 5 minutes are not listed)\n", s.gone));
    }
    let owned = s.slots as usize - s.unowned_slots.len();
    out.push_str(&format!("slots owned by live monitors: {owned}/{}", s.slots));
    if !s.unowned_slots.is_empty() {
        out.push_str(&format!(" (unowned: {:?})", s.unowned_slots));
    }
    out.push('\n');
    let placements: Vec<String> = s.placements.iter().map(|(t, slot)| format!("{t}→{slot}")).collect();
    out.push_str(&format!("T-Server → slot: {}\n", placements.join(" ")));
    let dispatchers: Vec<String> = s.dispatchers.iter().map(|d| format!("{} (config partitions {:?})", d.instance, d.partitions)).collect();
    out.push_str(&format!("dispatchers: {}\n", if dispatchers.is_empty() { "none".to_string() } else { dispatchers.join(", ") }));
    out
}

/// How far each projection's current generation is behind the log: records of its topics
/// not yet applied, summed over partitions.
async fn projection_lags(ctx: &Ctx, log: &Log) -> Result<Vec<serde_json::Value>, CliError> {
    use netwatch_projections::store::{current_gen, Store as _};
    let store = crate::replay::store(ctx).await?;
    let mut out = Vec::new();
    for p in netwatch_projections::Projection::ALL {
        let gen = current_gen(&store, p.name()).await?;
        let positions = store.positions(p.name(), gen).await?;
        let mut lag = 0;
        for topic in p.topics() {
            let name = log.topic(*topic);
            for (partition, end) in log.high_watermarks(*topic).await? {
                lag += (end - positions.get(&(name.clone(), partition)).copied().unwrap_or(0)).max(0);
            }
        }
        out.push(serde_json::json!({ "projection": p.name(), "generation": gen, "lag": lag }));
    }
    Ok(out)
}

pub async fn run(ctx: &Ctx, args: StatusArgs) -> Result<(), CliError> {
    let liveness =
        Liveness { heartbeat_ms: std::time::Duration::from(args.monitor_heartbeat).as_millis() as i64, missed: args.missed_heartbeats };
    let log = ctx.log()?;
    let status = cluster_status(&log, liveness).await?;
    let projections = projection_lags(ctx, &log).await?;
    let cdc = crate::cdc::sources(&log, args.cdc_dsn.as_deref()).await?;
    if args.json {
        let mut value = serde_json::to_value(&status)?;
        value["projections"] = serde_json::Value::Array(projections);
        value["cdc"] = serde_json::Value::Array(cdc);
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", table(&status));
        for p in &projections {
            println!("projection {} g{}: {} records behind the log", p["projection"].as_str().unwrap_or(""), p["generation"], p["lag"]);
        }
        for c in &cdc {
            let lag = match (&c["lag_bytes"], &c["wal_status"]) {
                (serde_json::Value::Number(n), status) => format!("{n} bytes of WAL behind, slot {}", status.as_str().unwrap_or("?")),
                (_, serde_json::Value::String(s)) => format!("slot {s}"),
                _ => "lag unknown (--cdc-dsn shows it)".to_string(),
            };
            println!(
                "cdc slot {}: {} events, last LSN {}, {lag}",
                c["slot"].as_str().unwrap_or(""),
                c["events"],
                c["last_lsn"].as_str().unwrap_or("-")
            );
        }
    }
    Ok(())
}

/// `GET /v1/cluster`.
pub fn router(log: Log, liveness: Liveness) -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(cluster)).with_state((log, liveness))
}

/// The cluster as `netwatch status --json` prints it: monitors (live, T-Servers, DNs),
/// placements, the dispatcher's view.
#[utoipa::path(get, path = "/v1/cluster", tag = "operations",
    responses((status = 200, description = "The cluster", body = Object),
        (status = 503, description = "The broker did not answer", body = netwatch_projections::http::ErrorBody)))]

async fn cluster(State((log, liveness)): State<(Log, Liveness)>) -> Response {
    match cluster_status(&log, liveness).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "error": e.to_string() }))).into_response(),
    }
}
