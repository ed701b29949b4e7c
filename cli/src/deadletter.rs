//! `netwatch deadletter ...`: the records consumers could not decode or apply, and
//! re-driving them after a fix.

use std::collections::BTreeSet;

use clap::{Args, Subcommand};
use netwatch_eventlog::{header, identity, read_to_end, Record, Topic};
use serde_json::{json, Value};

use crate::{input, CliError, Ctx};

#[derive(Subcommand, Debug)]
pub enum DeadLetterCmd {
    /// List dead letters, oldest first: id, time, source topic/partition/offset, the
    /// consumer that refused the record, the reason, and the record decoded if possible.
    List(ListArgs),
    /// Append dead-lettered records again to their source topic (same key and partition),
    /// so every consumer of that topic reads them again — after the fix that lets them
    /// apply.
    Replay(ReplayArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only dead letters written within this long before now (15m, 2h, 1d).
    #[arg(long)]
    since: Option<String>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The dead letter to replay, `PARTITION/OFFSET` as `list` shows it; repeatable.
    #[arg(long, required_unless_present = "since")]
    id: Vec<String>,
    /// Every dead letter written within this long before now.
    #[arg(long)]
    since: Option<String>,
}

/// One dead letter.
struct Dead {
    record: Record,
}

impl Dead {
    fn id(&self) -> String {
        format!("{}/{}", self.record.partition, self.record.offset)
    }

    fn header(&self, name: &str) -> &str {
        self.record.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }

    /// The source record's topic, without the prefix.
    fn source_topic(&self, prefix: &str) -> Option<Topic> {
        Topic::from_base_name(self.header(header::SOURCE_TOPIC).strip_prefix(prefix)?)
    }

    fn json(&self, prefix: &str) -> Value {
        let value = match (self.source_topic(prefix), self.record.value.as_deref()) {
            (Some(topic), Some(_)) => {
                let mut source = self.record.clone();
                source.topic = self.header(header::SOURCE_TOPIC).to_string();
                crate::cat::to_json(topic, &source)["value"].clone()
            }
            _ => Value::Null,
        };
        json!({
            "id": self.id(),
            "at_ms": self.record.timestamp_ms,
            "source": {
                "topic": self.header(header::SOURCE_TOPIC),
                "partition": self.header(header::SOURCE_PARTITION).parse::<i64>().ok(),
                "offset": self.header(header::SOURCE_OFFSET).parse::<i64>().ok(),
                "key": self.record.key_str(),
            },
            "consumer": self.header(header::CONSUMER),
            "reason": self.header(header::REASON),
            "value": value,
        })
    }
}

/// Every dead letter written since `since` (a window before now), oldest first, each
/// record once per consumer (a dead letter written twice by racing instances shows once).
async fn read(ctx: &Ctx, since: Option<&str>) -> Result<Vec<Dead>, CliError> {
    let from_ms = match since {
        Some(s) => {
            let d = humantime::parse_duration(s).map_err(|e| input(format!("--since {s:?}: {e}")))?;
            netwatch_schemas::now_ms() - d.as_millis() as i64
        }
        None => i64::MIN,
    };
    let (kafka, topic) = (ctx.kafka.clone(), ctx.topics.name(Topic::DeadLetter));
    let mut records = tokio::task::spawn_blocking(move || read_to_end(&kafka, &topic, None)).await??;
    records.sort_by_key(|r| (r.timestamp_ms.unwrap_or(0), r.partition, r.offset));
    let mut seen = BTreeSet::new();
    Ok(records
        .into_iter()
        .filter(|r| r.timestamp_ms.unwrap_or(0) >= from_ms)
        .filter(|r| identity(r).is_none_or(|id| seen.insert(id)))
        .map(|record| Dead { record })
        .collect())
}

pub async fn run(ctx: &Ctx, cmd: DeadLetterCmd) -> Result<(), CliError> {
    let prefix = ctx.topics.prefix.clone();
    match cmd {
        DeadLetterCmd::List(args) => {
            let dead = read(ctx, args.since.as_deref()).await?;
            if args.json {
                for d in &dead {
                    println!("{}", d.json(&prefix));
                }
                return Ok(());
            }
            println!("{:<10} {:<24} {:<34} {:<36} REASON", "ID", "TIME", "SOURCE", "CONSUMER");
            for d in &dead {
                let j = d.json(&prefix);
                let when = d.record.timestamp_ms.map(format_ms).unwrap_or_default();
                let source =
                    format!("{}/{}@{}", j["source"]["topic"].as_str().unwrap_or(""), j["source"]["partition"], j["source"]["offset"]);
                println!("{:<10} {:<24} {:<34} {:<36} {}", d.id(), when, source, d.header(header::CONSUMER), d.header(header::REASON));
            }
            println!("{} dead letters", dead.len());
            Ok(())
        }
        DeadLetterCmd::Replay(args) => {
            let dead = read(ctx, args.since.as_deref()).await?;
            let mut chosen: Vec<&Dead> = if args.id.is_empty() {
                dead.iter().collect()
            } else {
                let mut chosen = Vec::new();
                for id in &args.id {
                    let d = dead
                        .iter()
                        .find(|d| &d.id() == id)
                        .ok_or_else(|| input(format!("no dead letter {id}; `netwatch deadletter list` shows them")))?;
                    chosen.push(d);
                }
                chosen
            };
            // A record several consumers refused has a dead letter from each: it goes back
            // to its topic once.
            let mut sources = BTreeSet::new();
            chosen.retain(|d| {
                sources.insert((
                    d.header(header::SOURCE_TOPIC).to_string(),
                    d.header(header::SOURCE_PARTITION).to_string(),
                    d.header(header::SOURCE_OFFSET).to_string(),
                ))
            });
            let log = ctx.log()?;
            for d in &chosen {
                let topic = d.header(header::SOURCE_TOPIC);
                if d.source_topic(&prefix).is_none() {
                    return Err(input(format!(
                        "dead letter {} came from {topic:?}, not a topic of prefix {prefix:?}; nothing was appended",
                        d.id()
                    )));
                }
                let partition: i32 = d
                    .header(header::SOURCE_PARTITION)
                    .parse()
                    .map_err(|_| input(format!("dead letter {} has no source partition", d.id())))?;
                let value = d.record.value.as_deref().unwrap_or_default();
                let replay_of = d.id();
                log.producer
                    .send_raw(topic, &d.record.key_str(), Some(partition), value, Some(&[(header::REPLAY_OF, replay_of.as_str())]))
                    .await?;
            }
            println!("re-appended {} records to their source topics", chosen.len());
            Ok(())
        }
    }
}

fn format_ms(ms: i64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64)).to_string()
}
