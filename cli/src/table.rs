//! Query answers as tables for people (`--output table`, the default on a terminal), like
//! `kubectl get`: one row per item, the columns people look at first, times as UTC
//! timestamps and durations as `1m 5s`.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use serde_json::{Map, Value};

/// Columns shown first when an item has them, in this order; the rest follow by name.
const FIRST: &[&str] = &[
    "tserver",
    "number",
    "dn",
    "interval_start_ms",
    "connid",
    "call_type",
    "dn_type",
    "call_state",
    "outcome",
    "agent_state",
    "agent_reason",
    "agent_id",
    "other_dn",
    "parties",
    "started_ms",
    "state_since_ms",
    "time_in_state_ms",
];

/// `value` (an answer as the JSON API gives it) as text: a table of the items of an
/// array, or of an object's fields; lists of objects inside an object follow as tables
/// of their own.
pub fn render(value: &Value) -> String {
    match value {
        Value::Array(items) if items.is_empty() => "(none)\n".to_string(),
        Value::Array(items) => rows(items),
        Value::Object(fields) => object(fields),
        Value::Null => "(none)\n".to_string(),
        other => format!("{}\n", cell("", other)),
    }
}

fn new_table() -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
    t
}

/// Items (objects) one per row; columns are the fields any item has that are not lists of
/// objects.
fn rows(items: &[Value]) -> String {
    let fields = || items.iter().filter_map(Value::as_object).flatten();
    let nested: Vec<&str> = fields().filter(|(_, v)| is_nested(v)).map(|(k, _)| k.as_str()).collect();
    let mut names: Vec<&str> = Vec::new();
    for (k, _) in fields() {
        if !nested.contains(&k.as_str()) && !names.contains(&k.as_str()) {
            names.push(k);
        }
    }
    names.sort_by_key(|n| (FIRST.iter().position(|f| f == n).unwrap_or(FIRST.len()), *n));
    let mut t = new_table();
    t.set_header(names.iter().map(|n| header(n)));
    for item in items {
        t.add_row(names.iter().map(|n| item.get(*n).map(|v| cell(n, v)).unwrap_or_default()));
    }
    format!("{t}\n")
}

/// An object's fields one per row, then each list of objects as its own table.
fn object(fields: &Map<String, Value>) -> String {
    let mut names: Vec<&String> = fields.keys().filter(|k| !is_nested(&fields[k.as_str()])).collect();
    names.sort_by_key(|n| (FIRST.iter().position(|f| f == n).unwrap_or(FIRST.len()), n.as_str()));
    let mut t = new_table();
    t.set_header(["field", "value"]);
    for n in names {
        t.add_row([header(n), cell(n, &fields[n.as_str()])]);
    }
    let mut out = format!("{t}\n");
    for (k, v) in fields {
        if let Value::Array(items) = v {
            if is_nested(v) {
                out.push_str(&format!("\n{}:\n{}", header(k), rows(items)));
            }
        }
    }
    out
}

/// A list of objects (shown as a table of its own, not in a cell).
fn is_nested(v: &Value) -> bool {
    matches!(v, Value::Array(items) if items.first().is_some_and(Value::is_object))
}

/// A column name without the unit suffix of times.
fn header(name: &str) -> String {
    name.strip_suffix("_ms").unwrap_or(name).to_string()
}

/// A value as people read it: `*_ms` fields as a UTC time (epoch milliseconds) or a
/// duration, nothing as `-`, lists joined with commas.
fn cell(name: &str, v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
        Value::Number(n) if name.ends_with("_ms") => match n.as_i64() {
            Some(ms) => millis(ms),
            None => n.to_string(),
        },
        Value::Number(n) => n.to_string(),
        Value::Array(items) => items.iter().map(|i| cell("", i)).collect::<Vec<_>>().join(", "),
        Value::Object(_) => v.to_string(),
    }
}

/// Epoch milliseconds (from 2001 on) as a UTC time to the second; anything smaller is a
/// duration.
fn millis(ms: i64) -> String {
    const EPOCH_2001_MS: i64 = 978_307_200_000;
    // humantime prints years up to 9999 (253 402 300 800 000 ms is 10000-01-01).
    const YEAR_10000_MS: i64 = 253_402_300_800_000;
    if ms >= YEAR_10000_MS {
        return ms.to_string();
    }
    if ms >= EPOCH_2001_MS {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
        return humantime::format_rfc3339_seconds(t).to_string().replace('T', " ").replace('Z', "");
    }
    if ms < 0 {
        return ms.to_string();
    }
    // Whole seconds above a minute; humantime would print "1m 5s 120ms".
    let d = if ms >= 60_000 { ms / 1000 * 1000 } else { ms };
    humantime::format_duration(std::time::Duration::from_millis(d as u64)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_become_rows_with_the_first_columns_first_and_times_readable() {
        let out = render(&json!([
            {"agent_state": "ready", "number": "5001", "state_since_ms": 1_764_781_200_000_i64, "talk_ms": 65_120, "legs": [{"dn": "x"}]},
            {"number": "5002", "agent_state": null, "state_since_ms": 1_764_781_201_000_i64, "talk_ms": 4500, "legs": []},
        ]));
        let lines: Vec<&str> = out.lines().collect();
        let header = lines[1];
        assert!(header.find("number").unwrap() < header.find("agent_state").unwrap(), "{out}");
        assert!(header.find("agent_state").unwrap() < header.find("state_since").unwrap(), "{out}");
        assert!(!header.contains("legs") && !header.contains("_ms"), "{out}");
        // 1_764_781_200_000 ms = 2025-12-03 17:00:00 UTC.
        assert!(out.contains("2025-12-03 17:00:00") && out.contains("1m 5s") && out.contains("4s 500ms"), "{out}");
        assert!(out.lines().any(|l| l.contains("5002") && l.contains(" - ")), "null shown as -: {out}");
    }

    #[test]
    fn an_object_is_fields_then_its_lists_as_tables() {
        let out = render(&json!({"connid": "c1", "outcome": "answered", "parties": ["5001", "5002"],
            "legs": [{"dn": "5001", "talk_ms": 1000}, {"dn": "5002", "talk_ms": 2000}]}));
        assert!(out.contains("5001, 5002"), "{out}");
        let legs = out.find("legs:").expect("the legs' table");
        assert!(out[legs..].contains("5002") && out[legs..].contains("2s"), "{out}");
        assert_eq!(render(&json!([])), "(none)\n");
        // A timestamp humantime cannot print is shown as the number, not a panic.
        assert!(render(&json!({"updated_ms": i64::MAX})).contains(&i64::MAX.to_string()));
    }
}
