//! `netwatch cat`: any topic as JSON lines.

use std::io::Write;

use clap::Args;
use netwatch_eventlog::{scan, Record, Topic};
use netwatch_schemas::assignments::Assignment;
use netwatch_schemas::calls::CallEvent;
use netwatch_schemas::config::ConfigEvent;
use netwatch_schemas::monitors::MonitorEvent;
use netwatch_schemas::{decode, Event};
use serde::Serialize;
use serde_json::{json, Value};

use crate::{input, CliError, Ctx};

#[derive(Args, Debug)]
pub struct CatArgs {
    /// config, calls, monitors, assignments or deadletter.
    topic: String,
    /// Start at the first record instead of the end.
    #[arg(long)]
    from_beginning: bool,
    /// Keep printing new records until interrupted.
    #[arg(long)]
    follow: bool,
}

fn decoded<E: Event + Serialize>(bytes: &[u8]) -> Value {
    match decode::<E>(bytes) {
        Ok(e) => serde_json::to_value(e).unwrap_or(Value::Null),
        Err(e) => json!({ "undecodable": e.to_string() }),
    }
}

/// One record as a JSON object.
pub fn to_json(topic: Topic, r: &Record) -> Value {
    let value = match (topic, r.value.as_deref()) {
        (_, None) => Value::Null,
        (Topic::Config, Some(b)) => decoded::<ConfigEvent>(b),
        (Topic::Calls, Some(b)) => decoded::<CallEvent>(b),
        (Topic::Monitors, Some(b)) => decoded::<MonitorEvent>(b),
        (Topic::Assignments, Some(b)) => decoded::<Assignment>(b),
        (Topic::DeadLetter, Some(b)) => json!({ "bytes_hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>() }),
    };
    let headers: serde_json::Map<String, Value> = r.headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    json!({
        "partition": r.partition,
        "offset": r.offset,
        "key": r.key_str(),
        "timestamp_ms": r.timestamp_ms,
        "headers": headers,
        "value": value,
    })
}

pub async fn run(ctx: &Ctx, args: CatArgs) -> Result<(), CliError> {
    let topic = Topic::from_base_name(&args.topic)
        .ok_or_else(|| input(format!("unknown topic {:?} (expected config, calls, monitors, assignments or deadletter)", args.topic)))?;
    let name = ctx.topics.name(topic);
    let kafka = ctx.kafka.clone();
    tokio::task::spawn_blocking(move || {
        let stdout = std::io::stdout();
        scan(&kafka, &name, args.from_beginning, args.follow, |r| {
            let mut out = stdout.lock();
            writeln!(out, "{}", to_json(topic, &r)).is_ok() && out.flush().is_ok()
        })
    })
    .await??;
    Ok(())
}
