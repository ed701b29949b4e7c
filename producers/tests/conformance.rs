//! Conformance of the monitor's parser with docs/cti-link.md: every message is built from
//! the document's own tables — required attributes only, every attribute, every attribute
//! plus unknown extras — and must parse and carry exactly the attributes its row lists.
//! Then the reverse: dropping any required attribute makes a message unusable. A bounded
//! fuzz run (proptest) feeds the line parser and the framing arbitrary bytes.

#[path = "../../tests/harness/cti_doc.rs"]
mod cti_doc;

use cti_doc::{answer_message, answers, event_message, events, examples, Form, Row, FORMS};
use netwatch_producers::cti::{parse_message, Capture, Message, Unusable, EVENT_NAMES, MESSAGE_TYPES};
use netwatch_producers::link::LineReader;
use netwatch_schemas::calls::{CallBody, CallType};
use proptest::prelude::*;
use serde_json::{json, Value};

fn parse(v: &Value) -> Result<Message, Unusable> {
    parse_message(serde_json::to_string(v).unwrap().as_bytes())
}

fn example_str(name: &str) -> String {
    examples()[name].as_str().unwrap().to_string()
}

#[test]
fn the_document_and_the_parser_name_the_same_events_and_types() {
    let documented: Vec<String> = events().into_iter().map(|r| r.name).collect();
    assert_eq!(documented, EVENT_NAMES.to_vec(), "the event table and the parser list the same events");
    let mut types: Vec<String> = answers().into_iter().map(|r| r.name).collect();
    types.push("Event".into());
    assert_eq!(types, MESSAGE_TYPES.to_vec());
}

#[test]
fn every_attribute_of_every_table_has_a_type_and_an_example() {
    let examples = examples();
    for row in events().iter().chain(answers().iter()) {
        for a in row.required.iter().chain(&row.optional) {
            assert!(examples.contains_key(a), "{}: attribute {a} is not in the Attribute types table", row.name);
        }
    }
}

/// What a telephony or agent event must carry into `calls`, checked attribute by
/// attribute against the row.
fn check_capture(row: &Row, form: Form, message: Message) {
    let Message::Event(event) = message else { panic!("{}: not an event", row.name) };
    assert_eq!((event.seq, event.time_ms), (7, 1_795_305_491_000));
    let given = |a: &str| form != Form::Required && row.optional.iter().any(|o| o == a) || row.required.iter().any(|r| r == a);
    let expect = |a: &str| given(a).then(|| example_str(a));
    match event.body.capture() {
        Capture::Dn(CallBody::Telephony(t)) => {
            assert_eq!(format!("Event{:?}", t.kind), row.name);
            assert_eq!((t.dn, t.connid), (example_str("dn"), example_str("connid")));
            let call_type = if given("call_type") { CallType::Inbound } else { CallType::Unknown };
            assert_eq!(t.call_type, call_type, "{} {form:?}", row.name);
            assert_eq!(t.other_dn, expect("other_dn"), "{} {form:?}", row.name);
            assert_eq!(t.third_party_dn, expect("third_party_dn"), "{} {form:?}", row.name);
            assert_eq!(t.previous_connid, expect("previous_connid"), "{} {form:?}: only where the row lists it", row.name);
        }
        Capture::Dn(CallBody::Agent(a)) => {
            assert_eq!(format!("EventAgent{:?}", a.kind), row.name);
            assert_eq!((a.dn, a.agent_id), (example_str("dn"), example_str("agent_id")));
            assert_eq!(a.reason, expect("reason"), "{} {form:?}", row.name);
        }
        Capture::Dn(other) => panic!("{}: unexpected {other:?}", row.name),
        Capture::SwitchUp => assert_eq!(row.name, "EventLinkConnected"),
        Capture::SwitchDown(reason) => {
            assert_eq!(row.name, "EventLinkDisconnected");
            assert_eq!(reason, expect("reason"));
        }
    }
}

#[test]
fn every_documented_event_parses_in_every_form_and_carries_what_its_row_lists() {
    for row in events() {
        for form in FORMS {
            let m = event_message(&row, form, 7, 1_795_305_491_000, &[]);
            let parsed = parse(&m).unwrap_or_else(|e| panic!("{} {form:?} is unusable: {e}\n{m}", row.name));
            check_capture(&row, form, parsed);
        }
    }
}

#[test]
fn attributes_a_row_does_not_list_are_ignored_whatever_their_value() {
    let envelope = ["type", "seq", "time_ms", "event"];
    for row in events() {
        let mut m = event_message(&row, Form::All, 7, 1_795_305_491_000, &[]);
        for a in examples().keys() {
            let listed = row.required.contains(a) || row.optional.contains(a) || envelope.contains(&a.as_str());
            if !listed {
                m[a.as_str()] = json!([1, {"not": "this type"}]);
            }
        }
        check_capture(&row, Form::All, parse(&m).unwrap_or_else(|e| panic!("{}: {e}\n{m}", row.name)));
    }
}

#[test]
fn a_listed_optional_attribute_of_the_wrong_type_makes_the_event_unusable() {
    for row in events() {
        for a in &row.optional {
            let mut m = event_message(&row, Form::All, 7, 1_795_305_491_000, &[]);
            m[a.as_str()] = json!(17.5);
            assert!(parse(&m).is_err(), "{} with a number as {a} must be unusable", row.name);
        }
    }
}

#[test]
fn null_optional_attributes_read_as_absent() {
    for row in events() {
        let mut m = event_message(&row, Form::Required, 7, 1_795_305_491_000, &[]);
        for a in &row.optional {
            m[a.as_str()] = Value::Null;
        }
        check_capture(&row, Form::Required, parse(&m).unwrap_or_else(|e| panic!("{}: {e}", row.name)));
    }
}

#[test]
fn dropping_or_mistyping_a_required_attribute_makes_the_message_unusable() {
    for row in events() {
        let mut required = row.required.clone();
        required.extend(["seq", "time_ms", "event"].map(String::from));
        for a in &required {
            let mut m = event_message(&row, Form::All, 7, 1_795_305_491_000, &[]);
            m.as_object_mut().unwrap().remove(a);
            assert!(parse(&m).is_err(), "{} without {a} must be unusable", row.name);
            let mut m = event_message(&row, Form::All, 7, 1_795_305_491_000, &[]);
            m[a.as_str()] = json!([1]);
            assert!(parse(&m).is_err(), "{} with a list as {a} must be unusable", row.name);
        }
    }
    let m = event_message(&events()[0], Form::Required, 0, 1, &[]);
    assert!(parse(&m).is_err(), "seq starts at 1");
}

#[test]
fn every_documented_answer_parses_in_every_form() {
    for row in answers() {
        for form in FORMS {
            let m = answer_message(&row, form);
            let parsed = parse(&m).unwrap_or_else(|e| panic!("{} {form:?} is unusable: {e}\n{m}", row.name));
            let back = serde_json::to_value(&parsed).unwrap();
            assert_eq!(back["type"], json!(row.name));
            for a in row.required.iter().chain(if form == Form::Required { &[][..] } else { &row.optional[..] }) {
                assert_eq!(back[a.as_str()], m[a.as_str()], "{} {form:?}: {a} is kept", row.name);
            }
        }
        for a in &row.required {
            let mut m = answer_message(&row, Form::All);
            m.as_object_mut().unwrap().remove(a);
            assert!(parse(&m).is_err(), "{} without {a} must be unusable", row.name);
        }
    }
}

#[test]
fn unknown_events_and_types_are_unusable_and_say_so() {
    let m = json!({"type": "Event", "seq": 4, "time_ms": 1, "event": "EventDNOutOfService", "dn": "5001"});
    assert_eq!(parse(&m).unwrap_err(), Unusable::UnknownEvent { name: "EventDNOutOfService".into(), seq: Some(4) });
    let m = json!({"type": "EventPrivateInfo", "ref_id": 1});
    assert_eq!(parse(&m).unwrap_err(), Unusable::UnknownType("EventPrivateInfo".into()));
}

#[test]
fn the_documents_json_examples_are_usable() {
    let start = cti_doc::DOC.find("\n## Events (server → client)\n").unwrap();
    let block = &cti_doc::DOC[start..];
    let open = block.find("```json\n").unwrap() + 8;
    let close = block[open..].find("```").unwrap() + open;
    let lines: Vec<&str> = block[open..close].lines().collect();
    assert_eq!(lines.len(), 3);
    for line in lines {
        parse_message(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
}

/// Valid lines of every form, for the fuzzer to mutate (built once).
fn corpus() -> &'static [Vec<u8>] {
    static CORPUS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    CORPUS.get_or_init(build_corpus)
}

fn build_corpus() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, row) in events().iter().enumerate() {
        for form in FORMS {
            out.push(serde_json::to_vec(&event_message(row, form, i as u64 + 1, 1_795_305_491_000, &[])).unwrap());
        }
    }
    for row in answers() {
        out.push(serde_json::to_vec(&answer_message(&row, Form::All)).unwrap());
    }
    out
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn mutate(mut line: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let n = line.len().max(1);
        match *m {
            Mutation::Flip(i, b) if !line.is_empty() => line[i % n] ^= b,
            Mutation::Insert(i, b) => line.insert(i % (line.len() + 1), b),
            Mutation::Delete(i) if !line.is_empty() => {
                line.remove(i % n);
            }
            _ => {}
        }
    }
    line
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    /// Arbitrary bytes are a message or a reason, never a panic.
    #[test]
    fn fuzz_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_message(&bytes);
    }

    /// Valid lines with random damage: a message or a reason, never a panic; what still
    /// parses survives a round trip through our own encoding.
    #[test]
    fn fuzz_damaged_valid_lines(pick in any::<prop::sample::Index>(), mutations in prop::collection::vec(mutation(), 1..6)) {
        let line = mutate(pick.get(corpus()).clone(), &mutations);
        if let Ok(m) = parse_message(&line) {
            let again = parse_message(serde_json::to_string(&m).unwrap().as_bytes());
            prop_assert_eq!(again.ok(), Some(m));
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// The framing splits any byte stream, cut into any chunks, into exactly its lines.
    #[test]
    fn fuzz_framing_finds_the_lines_in_any_chunking(
        lines in prop::collection::vec(prop::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..300), 0..20),
        cuts in prop::collection::vec(1usize..700, 1..10),
    ) {
        let mut stream: Vec<u8> = Vec::new();
        for l in &lines {
            stream.extend_from_slice(l);
            stream.push(b'\n');
        }
        let got = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
            use tokio::io::AsyncWriteExt;
            let (mut w, r) = tokio::io::duplex(64);
            let writer = tokio::spawn(async move {
                let mut rest = &stream[..];
                for c in cuts.iter().cycle() {
                    if rest.is_empty() { break; }
                    let n = (*c).min(rest.len());
                    w.write_all(&rest[..n]).await.unwrap();
                    rest = &rest[n..];
                }
            });
            let mut reader = LineReader::new(r);
            let mut got = Vec::new();
            while let Ok(line) = reader.next_line().await {
                got.push(line.to_vec());
            }
            writer.await.unwrap();
            got
        });
        prop_assert_eq!(got, lines);
    }
}
