//! The tables of docs/cti-link.md, read from the document itself, and the messages they
//! describe: the conformance suites (`producers/tests/conformance.rs`,
//! `tests/e2e_conformance.rs`) build every message from here, so the code is tested
//! against the document, not against our own simulator.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// The document, as committed.
pub const DOC: &str = include_str!("../../docs/cti-link.md");

/// One row of a message table: its name and attribute names.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    pub required: Vec<String>,
    pub optional: Vec<String>,
}

/// Which attributes a built message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// The required attributes only.
    Required,
    /// Every attribute the row lists.
    All,
    /// Every attribute, and unknown extras (which must be ignored).
    Extras,
}

pub const FORMS: [Form; 3] = [Form::Required, Form::All, Form::Extras];

impl Form {
    pub fn name(self) -> &'static str {
        match self {
            Form::Required => "required",
            Form::All => "all",
            Form::Extras => "extras",
        }
    }
}

/// The rows of the first table under `heading` (a line of the document), each row's
/// cells without the surrounding pipes.
pub fn table(heading: &str) -> Vec<Vec<String>> {
    let start = DOC.find(&format!("\n{heading}\n")).unwrap_or_else(|| panic!("docs/cti-link.md has no heading {heading:?}"));
    let lines = DOC[start..].lines().skip_while(|l| !l.starts_with('|'));
    let rows: Vec<Vec<String>> = lines
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim().trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    assert!(rows.len() > 2, "the table under {heading:?} is empty");
    rows[2..].to_vec()
}

/// The names in backticks in a cell, in order.
pub fn names(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

fn rows(heading: &str) -> Vec<Row> {
    table(heading)
        .into_iter()
        .map(|cells| {
            let name = names(&cells[0]).into_iter().next().unwrap_or_else(|| panic!("no name in {cells:?}"));
            Row { name, required: names(&cells[1]), optional: names(cells.get(2).map(String::as_str).unwrap_or("")) }
        })
        .collect()
}

/// The event table ("Event attributes").
pub fn events() -> Vec<Row> {
    rows("### Event attributes")
}

/// The answer table ("Answers (server → client)").
pub fn answers() -> Vec<Row> {
    rows("## Answers (server → client)")
}

/// Attribute → its example value, from the "Attribute types" table.
pub fn examples() -> BTreeMap<String, Value> {
    table("### Attribute types")
        .into_iter()
        .map(|cells| {
            let name = names(&cells[0]).remove(0);
            let example = names(&cells[2]).into_iter().next().unwrap_or_else(|| panic!("no example for {name}"));
            let value = serde_json::from_str(&example).unwrap_or_else(|e| panic!("example of {name} is not JSON: {e}"));
            (name, value)
        })
        .collect()
}

/// The status object of the document's "Status" section example.
pub fn status_example() -> Value {
    let start = DOC.find("\n## Status\n").expect("a Status section");
    let block = &DOC[start..];
    let open = block.find("```json\n").expect("a JSON example under Status") + 8;
    let close = block[open..].find("```").expect("the example ends") + open;
    serde_json::from_str(&block[open..close]).expect("the Status example is JSON")
}

/// Unknown attributes a server may add; the monitor must ignore them.
pub fn extras() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("x_vendor_attributes".into(), json!({"UserData": {"segment": "gold"}, "list": [1, 2]}));
    m.insert("ReferenceID".into(), json!(77));
    // An attribute of the document that no row lists for most events.
    m.insert("previous_connid".into(), json!("not-for-this-event"));
    m
}

/// An event built from its row: `type`, `seq`, `time_ms`, `event`, then the attributes
/// of `form` with their example values, `overrides` replacing some.
pub fn event_message(row: &Row, form: Form, seq: u64, time_ms: i64, overrides: &[(&str, Value)]) -> Value {
    let examples = examples();
    let mut m = Map::new();
    m.insert("type".into(), json!("Event"));
    m.insert("seq".into(), json!(seq));
    m.insert("time_ms".into(), json!(time_ms));
    m.insert("event".into(), json!(row.name));
    if form == Form::Extras {
        m.extend(extras());
    }
    let optional: &[String] = if form == Form::Required { &[] } else { &row.optional };
    for a in row.required.iter().chain(optional) {
        let value = overrides.iter().find(|(k, _)| k == a).map(|(_, v)| v.clone()).unwrap_or_else(|| examples[a].clone());
        m.insert(a.clone(), value);
    }
    Value::Object(m)
}

/// An answer built from its row with example values.
pub fn answer_message(row: &Row, form: Form) -> Value {
    let examples = examples();
    let mut m = Map::new();
    m.insert("type".into(), json!(row.name));
    if form == Form::Extras {
        m.extend(extras());
    }
    let optional: &[String] = if form == Form::Required { &[] } else { &row.optional };
    for a in row.required.iter().chain(optional) {
        let value = if a == "status" { status_example() } else { examples[a].clone() };
        m.insert(a.clone(), value);
    }
    Value::Object(m)
}
