//! Conformance of the real monitor with docs/cti-link.md, end to end: a T-Server written
//! here from the document alone (not our simulator) answers with the documented minimal
//! forms and sends every event of the document's table in three forms — required
//! attributes only, every attribute, every attribute plus unknown extras — each on its
//! own DN. Every one must reach `calls` with its attributes and the projections; then a
//! switch-link flap must leave no DN unknown for more than 10 s.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::cti_doc::{event_message, events, examples, Form, Row, FORMS};
use harness::{wait_for, LogsOnPanic, World};
use serde_json::{json, Value};

/// A T-Server from the document: answers `RequestOpen`, `RequestRegisterAddress` and
/// `RequestUnregisterAddress` with the required attributes only, and numbers its events.
#[derive(Clone, Default)]
struct DocServer {
    inner: Arc<Mutex<Link>>,
}

#[derive(Default)]
struct Link {
    writer: Option<TcpStream>,
    seq: u64,
    registered: BTreeSet<String>,
    /// Registration requests received, in all.
    registrations: usize,
}

impl DocServer {
    fn start() -> (DocServer, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = DocServer::default();
        let s = server.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || s.serve(stream));
            }
        });
        (server, port)
    }

    fn serve(&self, stream: TcpStream) {
        let reader = BufReader::new(stream.try_clone().unwrap());
        {
            let mut link = self.inner.lock().unwrap();
            link.writer = Some(stream);
            link.seq = 0;
            link.registered.clear();
        }
        for line in reader.lines() {
            let Ok(line) = line else { break };
            let request: Value = serde_json::from_str(&line).unwrap();
            let ref_id = request["ref_id"].clone();
            let mut link = self.inner.lock().unwrap();
            let answer = match request["type"].as_str().unwrap() {
                "RequestOpen" => json!({"type": "EventServerInfo", "ref_id": ref_id}),
                "RequestRegisterAddress" => {
                    link.registered.insert(request["dn"].as_str().unwrap().to_string());
                    link.registrations += 1;
                    json!({"type": "EventRegistered", "ref_id": ref_id, "dn": request["dn"]})
                }
                "RequestUnregisterAddress" => {
                    link.registered.remove(request["dn"].as_str().unwrap());
                    json!({"type": "EventUnregistered", "ref_id": ref_id, "dn": request["dn"]})
                }
                other => panic!("the monitor sent {other}"),
            };
            link.write(&answer);
        }
    }

    fn registered(&self) -> BTreeSet<String> {
        self.inner.lock().unwrap().registered.clone()
    }

    fn registrations(&self) -> usize {
        self.inner.lock().unwrap().registrations
    }

    /// Send an event built with `build(seq)`; its seq.
    fn send(&self, build: impl FnOnce(u64) -> Value) -> u64 {
        let mut link = self.inner.lock().unwrap();
        link.seq += 1;
        let seq = link.seq;
        let event = build(seq);
        link.write(&event);
        seq
    }

    /// Send a raw line; it takes no place in the sequence.
    fn send_raw(&self, line: &str) {
        let mut link = self.inner.lock().unwrap();
        let w = link.writer.as_mut().unwrap();
        w.write_all(line.as_bytes()).unwrap();
        w.write_all(b"\n").unwrap();
    }
}

impl Link {
    fn write(&mut self, message: &Value) {
        let w = self.writer.as_mut().expect("a client is connected");
        w.write_all(format!("{message}\n").as_bytes()).unwrap();
    }
}

/// One message sent: the row, the form, its DN and ConnID, its seq.
struct Sent {
    row: Row,
    form: Form,
    dn: String,
    connid: String,
    seq: u64,
}

/// The DN state a single event leaves on a registered idle DN (docs/call-model.md:
/// t1, t3, t4, t6, t7, t8/t9, t12, a1–a5): (call_state, agent_state).
fn expected_state(event: &str) -> (&'static str, Option<&'static str>) {
    match event {
        "EventRinging" => ("ringing", None),
        "EventDialing" => ("dialing", None),
        "EventEstablished" | "EventRetrieved" => ("talking", None),
        "EventHeld" => ("held", None),
        "EventPartyChanged" | "EventReleased" | "EventAbandoned" => ("idle", None),
        "EventAgentLogin" | "EventAgentNotReady" => ("idle", Some("not_ready")),
        "EventAgentLogout" => ("idle", Some("logged_out")),
        "EventAgentReady" => ("idle", Some("ready")),
        "EventAgentAfterCallWork" => ("idle", Some("after_call_work")),
        other => panic!("no expectation for {other}"),
    }
}

#[test]
fn every_documented_event_in_every_form_reaches_calls_and_the_projections() {
    let w = World::start();
    let (server, port) = DocServer::start();
    let rows: Vec<Row> = events().into_iter().filter(|r| !r.name.starts_with("EventLink")).collect();
    let mut import = format!("{{\"op\":\"create_tserver\",\"id\":1,\"name\":\"DOC\",\"host\":\"127.0.0.1\",\"port\":{port}}}\n");
    let dns: Vec<String> = (0..rows.len() * FORMS.len()).map(|i| format!("{}", 7001 + i)).collect();
    for (i, dn) in dns.iter().enumerate() {
        import.push_str(&format!("{{\"op\":\"create_dn\",\"tserver\":1,\"dbid\":{},\"number\":\"{dn}\"}}\n", 100 + i));
    }
    w.ok(&["config", "import", w.file("site.jsonl", &import).to_str().unwrap()]);
    let procs = [
        w.spawn("dispatcher", &["dispatcher", "--id", "d1"]),
        w.spawn("monitor", &["monitor", "--id", "m1", "--heartbeat", "1s"]),
        w.spawn("projections", &["projections", "run"]),
    ];
    let logs: Vec<_> = procs.iter().map(|p| p.log.clone()).collect();
    let _guard = LogsOnPanic(logs.clone());
    let want: BTreeSet<String> = dns.iter().cloned().collect();
    wait_for("every DN registered at the document's T-Server", Duration::from_secs(60), || {
        let got = server.registered();
        if got == want {
            Ok(())
        } else {
            Err(format!("{} of {}", got.len(), want.len()))
        }
    });

    // Every event of the table, in every form, each on its own DN; an unknown event and
    // a line that is not JSON between them change nothing.
    let time_ms = netwatch_time_ms();
    let mut sent = Vec::new();
    let mut dn_iter = dns.iter();
    for row in &rows {
        for form in FORMS {
            let dn = dn_iter.next().unwrap().clone();
            let connid = format!("doc-{}-{}", row.name, form.name());
            let seq = server.send(|seq| event_message(row, form, seq, time_ms, &[("dn", json!(dn)), ("connid", json!(connid))]));
            sent.push(Sent { row: row.clone(), form, dn, connid, seq });
        }
        if row.name == "EventHeld" {
            server.send(|seq| json!({"type": "Event", "seq": seq, "time_ms": time_ms, "event": "EventDNOutOfService", "dn": "7001"}));
            server.send_raw("this is not JSON");
        }
    }

    // Each reached `calls` with its seq and exactly the attributes its row lists.
    let by_seq: BTreeMap<i64, Value> = wait_for("every event in calls", Duration::from_secs(30), || {
        let got: BTreeMap<i64, Value> =
            w.records("calls").into_iter().filter_map(|r| Some((r["value"]["link_seq"].as_i64()?, r["value"].clone()))).collect();
        if sent.iter().all(|s| got.contains_key(&(s.seq as i64))) {
            Ok(got)
        } else {
            Err(format!("{} of {} events", got.len(), sent.len()))
        }
    });
    assert_eq!(by_seq.len(), sent.len(), "the unknown event and the bad line appended nothing");
    let ex = examples();
    for s in &sent {
        let v = &by_seq[&(s.seq as i64)];
        let body = &v["body"];
        let given = |a: &str| s.row.required.iter().any(|r| r == a) || (s.form != Form::Required && s.row.optional.iter().any(|o| o == a));
        let value = |a: &str| if given(a) { ex[a].clone() } else { Value::Null };
        assert_eq!(
            (body["dn"].as_str(), v["server_time_ms"].as_i64()),
            (Some(s.dn.as_str()), Some(time_ms)),
            "{} {:?}",
            s.row.name,
            s.form
        );
        if let Some(kind) = s.row.name.strip_prefix("EventAgent") {
            assert_eq!((body["type"].as_str(), body["kind"].as_str()), (Some("Agent"), Some(kind)), "{v}");
            assert_eq!(body["agent_id"], ex["agent_id"], "{v}");
            assert_eq!(body["reason"], value("reason"), "{} {:?}: {v}", s.row.name, s.form);
        } else {
            let kind = s.row.name.strip_prefix("Event").unwrap();
            assert_eq!((body["type"].as_str(), body["kind"].as_str()), (Some("Telephony"), Some(kind)), "{v}");
            assert_eq!(body["connid"], json!(s.connid), "{v}");
            let call_type = if given("call_type") { ex["call_type"].clone() } else { json!("Unknown") };
            assert_eq!(body["call_type"], call_type, "{} {:?}: {v}", s.row.name, s.form);
            for a in ["other_dn", "third_party_dn", "previous_connid"] {
                assert_eq!(body[a], value(a), "{} {:?}: {a} in {v}", s.row.name, s.form);
            }
        }
    }

    // ... and the projections: each DN's state, and a call record per telephony event.
    for s in &sent {
        let (call_state, agent_state) = expected_state(&s.row.name);
        wait_for(&format!("{} {:?} in dn-state", s.row.name, s.form), Duration::from_secs(30), || {
            let d = w.json(&["query", "dn", "1", &s.dn])?;
            if d["call_state"] == call_state && d["agent_state"].as_str() == agent_state {
                Ok(())
            } else {
                Err(d.to_string())
            }
        });
        if !s.row.name.starts_with("EventAgent") {
            let call = w.json(&["query", "call", "1", &s.connid]).unwrap_or_else(|e| panic!("{}: {e}", s.connid));
            assert_eq!(call["legs"][0]["dn"], json!(s.dn), "{call}");
        }
    }
    let monitor_log = std::fs::read_to_string(&logs[1]).unwrap();
    assert!(monitor_log.contains("Unusable CTI messages were skipped"), "the unusable lines were logged");

    // A switch-link flap on the live link: every DN unknown, then known again within 10 s.
    let before = server.registrations();
    let seq = server.send(|seq| event_message(&row_named("EventLinkDisconnected"), Form::Required, seq, time_ms + 1, &[]));
    wait_for("the switch link loss in calls", Duration::from_secs(30), || {
        let got = w.records("calls").into_iter().find(|r| r["value"]["link_seq"].as_u64() == Some(seq));
        match got {
            Some(r) if r["value"]["body"] == json!({"type": "LinkDisconnected", "reason": "switch: link lost", "events_lost": null}) => {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    });
    wait_for("every DN unknown", Duration::from_secs(30), || {
        let states = w.json(&["query", "dns", "1"])?;
        let known: Vec<&Value> = states.as_array().unwrap().iter().filter(|d| d["call_state"] != "unknown").collect();
        if known.is_empty() {
            Ok(())
        } else {
            Err(format!("{} DNs still known", known.len()))
        }
    });
    server.send(|seq| event_message(&row_named("EventLinkConnected"), Form::Extras, seq, time_ms + 2, &[]));
    let up = Instant::now();
    wait_for("every DN known again within 10 s", Duration::from_secs(10), || {
        let states = w.json(&["query", "dns", "1"])?;
        let unknown = states.as_array().unwrap().iter().filter(|d| d["call_state"] == "unknown").count();
        if unknown == 0 {
            Ok(())
        } else {
            Err(format!("{unknown} DNs unknown"))
        }
    });
    eprintln!("every DN known again {:?} after EventLinkConnected", up.elapsed());
    assert_eq!(server.registrations() - before, dns.len(), "the monitor registered every DN once more");
}

fn row_named(name: &str) -> Row {
    events().into_iter().find(|r| r.name == name).unwrap()
}

fn netwatch_time_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}
