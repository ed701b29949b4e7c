//! The configuration as of a log position, kept between `netwatch config` commands so a
//! command reads only the `config` records appended since the last one instead of the whole
//! topic.
//!
//! A snapshot holds the folded configuration and, per partition of `config`, the next offset
//! to read and the event id of the last record it folded. Loading it reads each partition
//! from that last record on: the record must still be there with the same event id, or the
//! snapshot is stale (the topic was deleted and recreated, truncated, or trimmed by
//! retention) and the whole topic is read instead. A snapshot is only a cache: deleting it,
//! or `NETWATCH_CONFIG_SNAPSHOT=off`, costs one full read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use netwatch_eventlog::{read_range, Log, LogError, Record, Topic};
use netwatch_producers::config::ConfigState;
use netwatch_schemas::config::{ConfigEvent, Dn, Group, TServer};
use netwatch_schemas::decode;
use serde::{Deserialize, Serialize};

/// File format version: a file of another version is ignored.
/// 2: groups (config v3). A snapshot of another version is read again from the log: one
/// an older binary wrote may have stepped over records it could not decode.
const VERSION: u32 = 2;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    /// The next offset to read.
    next: i64,
    /// Event id of the record at `next - 1`, when it decoded.
    last_event_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct File {
    version: u32,
    topic: String,
    positions: BTreeMap<i32, Position>,
    tservers: Vec<TServer>,
    dns: Vec<Dn>,
    /// Groups (`config` v3; absent from older snapshots, which had none to keep).
    #[serde(default)]
    groups: Vec<Group>,
}

/// Where snapshots are kept: `NETWATCH_CONFIG_SNAPSHOT` (a folder, or `off`), by default
/// `data/config-snapshots`; one file per broker list and topic.
fn path(log: &Log, topic: &str) -> Option<PathBuf> {
    let dir = std::env::var("NETWATCH_CONFIG_SNAPSHOT").unwrap_or_else(|_| "data/config-snapshots".into());
    if dir == "off" {
        return None;
    }
    let name: String = format!("{}-{topic}", log.kafka.brokers)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
        .collect();
    Some(Path::new(&dir).join(format!("{name}.json")))
}

fn event_id(r: &Record) -> Option<String> {
    r.value.as_deref().map(decode::<ConfigEvent>).and_then(Result::ok).map(|e| e.event_id)
}

/// Fold records into the state; refused or undecodable records in the log are reported by
/// the dispatcher and projections, here they simply do not change the configuration.
fn fold<'a>(state: &mut ConfigState, positions: &mut BTreeMap<i32, Position>, records: impl IntoIterator<Item = &'a Record>) {
    for r in records {
        let event = r.value.as_deref().map(decode::<ConfigEvent>).and_then(Result::ok);
        if let Some(event) = &event {
            let _ = state.accept(&event.change);
        }
        positions.insert(r.partition, Position { next: r.offset + 1, last_event_id: event.map(|e| e.event_id) });
    }
}

/// The configuration as the log holds it now, read from the snapshot's positions when the
/// snapshot is still valid, and the snapshot brought up to date.
pub async fn current_state(log: &Log) -> Result<ConfigState, LogError> {
    let topic = log.topic(Topic::Config);
    let file = path(log, &topic);
    let saved = file.as_deref().and_then(|p| load(p, &topic));
    let (state, positions) = match saved {
        Some((state, positions)) => {
            let kafka = log.kafka.clone();
            let (t, from) = (topic.clone(), positions.clone());
            let records = tokio::task::spawn_blocking(move || {
                read_range(&kafka, &t, None, |p, low, _| from.get(&p).map_or(low, |pos| (pos.next - 1).max(0)))
            })
            .await
            .map_err(|e| LogError::Task(e.to_string()))??;
            match tail(&positions, &records) {
                Some(tail) => {
                    let (mut state, mut positions) = (state, positions);
                    fold(&mut state, &mut positions, tail);
                    (state, positions)
                }
                None => {
                    tracing::info!(topic, "the configuration snapshot no longer matches the log; reading the whole topic");
                    full(log).await?
                }
            }
        }
        None => full(log).await?,
    };
    if let Some(p) = file {
        if let Err(e) = save(&p, &topic, &state, &positions) {
            tracing::debug!(path = %p.display(), error = %e, "could not save the configuration snapshot");
        }
    }
    Ok(state)
}

async fn full(log: &Log) -> Result<(ConfigState, BTreeMap<i32, Position>), LogError> {
    let records = log.read_all(Topic::Config, None).await?;
    let (mut state, mut positions) = (ConfigState::default(), BTreeMap::new());
    fold(&mut state, &mut positions, &records);
    Ok((state, positions))
}

/// The records after the snapshot's positions, if every partition still holds the record
/// the snapshot saw last (records come sorted by partition and offset).
fn tail<'a>(positions: &BTreeMap<i32, Position>, records: &'a [Record]) -> Option<Vec<&'a Record>> {
    let mut out = Vec::with_capacity(records.len());
    let mut seen = BTreeMap::new();
    for r in records {
        match positions.get(&r.partition) {
            Some(pos) if pos.next > 0 && r.offset < pos.next - 1 => return None,
            Some(pos) if pos.next > 0 && r.offset == pos.next - 1 => {
                if pos.last_event_id.is_some() && event_id(r) != pos.last_event_id {
                    return None;
                }
                seen.insert(r.partition, ());
            }
            Some(pos) if pos.next > 0 && !seen.contains_key(&r.partition) => return None,
            _ => out.push(r),
        }
    }
    // A partition whose last seen record is gone entirely (truncated or recreated empty).
    if positions.iter().any(|(p, pos)| pos.next > 0 && !seen.contains_key(p)) {
        return None;
    }
    Some(out)
}

fn load(path: &Path, topic: &str) -> Option<(ConfigState, BTreeMap<i32, Position>)> {
    let file: File = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    if file.version != VERSION || file.topic != topic {
        return None;
    }
    let mut state = ConfigState::from_parts(file.tservers, file.dns);
    state.groups = file.groups.into_iter().map(|g| (g.id, g)).collect();
    Some((state, file.positions))
}

/// Written to a temporary file and renamed, so a reader never sees half a snapshot.
fn save(path: &Path, topic: &str, state: &ConfigState, positions: &BTreeMap<i32, Position>) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = File {
        version: VERSION,
        topic: topic.to_string(),
        positions: positions.clone(),
        tservers: state.tservers.values().cloned().collect(),
        dns: state.dns.values().cloned().collect(),
        groups: state.groups.values().cloned().collect(),
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec(&file).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwatch_schemas::config::{ConfigChange, DnType};
    use netwatch_schemas::encode;

    fn record(partition: i32, offset: i64, id: &str) -> Record {
        let dn = Dn {
            tserver: partition,
            dbid: partition * 1000 + offset as i32,
            number: format!("{partition}-{offset}"),
            dn_type: DnType::Extension,
        };
        let event = ConfigEvent { event_id: id.into(), at_ms: 0, source: "test".into(), change: ConfigChange::DnCreated(dn) };
        Record {
            topic: "config".into(),
            partition,
            offset,
            key: None,
            value: Some(encode(&event).unwrap()),
            timestamp_ms: None,
            headers: Vec::new(),
        }
    }

    fn seen(entries: &[(i32, i64, &str)]) -> BTreeMap<i32, Position> {
        entries.iter().map(|&(p, next, id)| (p, Position { next, last_event_id: Some(id.into()) })).collect()
    }

    fn offsets(tail: Option<Vec<&Record>>) -> Option<Vec<(i32, i64)>> {
        tail.map(|t| t.iter().map(|r| (r.partition, r.offset)).collect())
    }

    #[test]
    fn the_tail_is_what_follows_the_last_record_seen_in_each_partition() {
        let positions = seen(&[(0, 2, "a1"), (1, 1, "b0")]);
        // Partition 0 re-read from offset 1, partition 1 from 0, partition 2 is new.
        let records = [record(0, 1, "a1"), record(0, 2, "a2"), record(1, 0, "b0"), record(2, 0, "c0"), record(2, 1, "c1")];
        assert_eq!(offsets(tail(&positions, &records)), Some(vec![(0, 2), (2, 0), (2, 1)]));
        // Nothing appended since.
        assert_eq!(offsets(tail(&positions, &[record(0, 1, "a1"), record(1, 0, "b0")])), Some(vec![]));
    }

    #[test]
    fn a_recreated_topic_with_other_records_at_the_same_offsets_is_stale() {
        let positions = seen(&[(0, 2, "a1")]);
        assert_eq!(offsets(tail(&positions, &[record(0, 1, "x1"), record(0, 2, "x2")])), None);
    }

    #[test]
    fn a_partition_shorter_than_the_snapshot_or_trimmed_past_it_is_stale() {
        let positions = seen(&[(0, 3, "a2"), (1, 1, "b0")]);
        // Partition 0 now ends before offset 2: nothing read there.
        assert_eq!(offsets(tail(&positions, &[record(1, 0, "b0")])), None);
        // Partition 0 trimmed by retention: its first record is past the last one seen.
        assert_eq!(offsets(tail(&positions, &[record(0, 5, "a5"), record(1, 0, "b0")])), None);
    }

    #[test]
    fn a_snapshot_survives_a_save_and_a_load_and_ignores_other_topics() {
        let dir = std::env::temp_dir().join(format!("nw-snapshot-{}", std::process::id()));
        let file = dir.join("s.json");
        let (mut state, mut positions) = (ConfigState::default(), BTreeMap::new());
        let tserver = |id: i32| TServer::cti(id, format!("TS{id}"), "127.0.0.1", 7000 + id);
        state.tservers = [(0, tserver(0)), (3, tserver(3))].into();
        // The DNs of T-Servers 0 and 3, created in partitions 0 and 3.
        let records = [record(0, 0, "a0"), record(3, 0, "d0")];
        fold(&mut state, &mut positions, &records);
        save(&file, "config", &state, &positions).unwrap();
        let (loaded, loaded_positions) = load(&file, "config").unwrap();
        assert_eq!(loaded, state);
        assert_eq!(loaded_positions, positions);
        assert_eq!(loaded.dns.len(), 2);
        assert!(load(&file, "other.config").is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
