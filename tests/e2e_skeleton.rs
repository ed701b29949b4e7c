//! The walking skeleton, end to end: a real broker, separate `netwatch` processes
//! (dispatcher, monitor, projections, HTTP API, two scripted T-Server simulators),
//! configuration through `netwatch config`, exact call history and DN states.

mod harness;

use std::time::Duration;

use harness::{free_port, http_get, http_get_with, sample, scrape, wait_for, LogsOnPanic, World};
use serde_json::{json, Value};

/// T-Server 1 scenario (offsets in ms from its start; the simulator stamps events with
/// exactly these offsets, so durations below follow from them).
const SCENARIO_1: &str = r#"
# agent at 5001
{"at_ms": 0,     "op": "login",  "dn": "5001", "agent": "agent-a"}
{"at_ms": 0,     "op": "ready",  "dn": "5001"}
# in1: inbound to 5001, answered after 4 s, held 12 s, released at 40 s
{"at_ms": 1000,  "op": "call",   "call": "in1", "from": "+15550001", "to": "5001", "connid": "ts1-in1"}
# ab1: inbound to 5002, abandoned after ringing 8 s
{"at_ms": 3000,  "op": "call",   "call": "ab1", "from": "+15550002", "to": "5002", "connid": "ts1-ab1"}
{"at_ms": 5000,  "op": "answer", "call": "in1"}
# tr1: inbound to 5003, answered at 8 s, transferred to 5004 at 20 s, answered there at 23 s, released at 50 s
{"at_ms": 6000,  "op": "call",   "call": "tr1", "from": "+15550003", "to": "5003", "connid": "ts1-tr1"}
{"at_ms": 8000,  "op": "answer", "call": "tr1"}
{"at_ms": 11000, "op": "abandon", "call": "ab1"}
{"at_ms": 15000, "op": "hold",   "call": "in1", "dn": "5001"}
{"at_ms": 20000, "op": "transfer", "call": "tr1", "from": "5003", "to": "5004"}
{"at_ms": 23000, "op": "answer", "call": "tr1"}
{"at_ms": 27000, "op": "retrieve", "call": "in1", "dn": "5001"}
# out1: outbound from 5005, answered after 6 s, released 30 s later
{"at_ms": 30000, "op": "call",   "call": "out1", "from": "5005", "to": "+15550004", "connid": "ts1-out1"}
{"at_ms": 36000, "op": "answer", "call": "out1"}
{"at_ms": 40000, "op": "release", "call": "in1"}
{"at_ms": 40000, "op": "after_call_work", "dn": "5001"}
{"at_ms": 50000, "op": "release", "call": "tr1"}
{"at_ms": 66000, "op": "release", "call": "out1"}
"#;

/// T-Server 2 scenario: an internal call, an agent not ready, a call left ringing, then a
/// two-step transfer and a conference as docs/cti-link.md ("Call flows") reports them.
const SCENARIO_2: &str = r#"
{"at_ms": 0,     "op": "login",     "dn": "6003", "agent": "agent-b"}
{"at_ms": 1000,  "op": "call",      "call": "int1", "from": "6001", "to": "6002", "connid": "ts2-int1"}
{"at_ms": 3000,  "op": "answer",    "call": "int1"}
{"at_ms": 4000,  "op": "not_ready", "dn": "6003", "reason": "training"}
{"at_ms": 13000, "op": "release",   "call": "int1"}
{"at_ms": 14000, "op": "call",      "call": "ring1", "from": "+15550009", "to": "6004", "connid": "ts2-ring1"}
# tt1: 6005 answers, consults 6001 (tt1c), 6001 answers, the transfer completes; 6001 talks to 40 s
{"at_ms": 16000, "op": "call",      "call": "tt1", "from": "+15550010", "to": "6005", "connid": "ts2-tt1"}
{"at_ms": 17000, "op": "answer",    "call": "tt1"}
# cf1: 6002 answers, consults 6003 (cf1c), 6003 answers, the conference completes; 6002 leaves at 30 s
{"at_ms": 18000, "op": "call",      "call": "cf1", "from": "+15550011", "to": "6002", "connid": "ts2-cf1"}
{"at_ms": 19000, "op": "answer",    "call": "cf1"}
{"at_ms": 20000, "op": "consult",   "call": "tt1c", "of": "tt1", "from": "6005", "to": "6001", "connid": "ts2-tt1c"}
{"at_ms": 21000, "op": "consult",   "call": "cf1c", "of": "cf1", "from": "6002", "to": "6003", "connid": "ts2-cf1c"}
{"at_ms": 22000, "op": "answer",    "call": "tt1c"}
{"at_ms": 23000, "op": "answer",    "call": "cf1c"}
{"at_ms": 25000, "op": "complete_transfer",   "call": "tt1c"}
{"at_ms": 26000, "op": "complete_conference", "call": "cf1c"}
{"at_ms": 30000, "op": "release",   "call": "cf1", "dn": "6002"}
{"at_ms": 40000, "op": "release",   "call": "tt1"}
{"at_ms": 44000, "op": "release",   "call": "cf1"}
"#;

fn calls_of(w: &World, tserver: &str, dn: &str) -> Result<Vec<Value>, String> {
    Ok(w.json(&["query", "calls", "--tserver", tserver, "--dn", dn])?.as_array().cloned().unwrap_or_default())
}

fn int(v: &Value, field: &str) -> i64 {
    v[field].as_i64().unwrap_or_else(|| panic!("{field} is not an integer in {v}"))
}

fn registrations(w: &World, endpoint: &str) -> Result<Value, String> {
    Ok(w.json(&["sim", "status", endpoint])?["registrations"].clone())
}

#[test]
fn whole_pipeline_end_to_end() {
    let w = World::start();
    let (port1, port2, http) = (free_port(), free_port(), free_port());
    let (ep1, ep2, http_addr) = (format!("127.0.0.1:{port1}"), format!("127.0.0.1:{port2}"), format!("127.0.0.1:{http}"));

    // Configuration through the CLI: two T-Servers, five DNs each (T-Server 2's by import).
    w.ok(&["config", "tserver", "create", "--id", "1", "--name", "TS1", "--host", "127.0.0.1", "--port", &port1.to_string()]);
    w.ok(&["config", "tserver", "create", "--id", "2", "--name", "TS2", "--host", "127.0.0.1", "--port", &port2.to_string()]);
    for i in 1..=5 {
        w.ok(&[
            "config",
            "dn",
            "create",
            "--tserver",
            "1",
            "--dbid",
            &format!("{}", 100 + i),
            "--number",
            &format!("500{i}"),
            "--type",
            "acd-position",
        ]);
    }
    let import: String =
        (1..=5).map(|i| format!("{{\"op\":\"create_dn\",\"tserver\":2,\"dbid\":{},\"number\":\"600{i}\"}}\n", 200 + i)).collect();
    w.ok(&["config", "import", w.file("ts2.jsonl", &import).to_str().unwrap()]);
    assert_eq!(w.records("config").len(), 12);

    // A garbage value on `calls`, before any real call event.
    produce_raw(&w, "calls", "1", b"this is not avro");

    let metrics_of = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let s1 = w.file("ts1.jsonl", SCENARIO_1);
    let s2 = w.file("ts2.jsonl", SCENARIO_2);
    let procs = [
        w.spawn("sim1", &["sim", "tserver", "--listen", &ep1, "--name", "TS1", "--script", s1.to_str().unwrap(), "--speed", "4"]),
        w.spawn("sim2", &["sim", "tserver", "--listen", &ep2, "--name", "TS2", "--script", s2.to_str().unwrap(), "--speed", "4"]),
        w.spawn("dispatcher", &["dispatcher", "--id", "d1", "--metrics-listen", &metrics_of.0]),
        w.spawn("monitor", &["monitor", "--id", "m1", "--heartbeat", "1s", "--metrics-listen", &metrics_of.1]),
        w.spawn("projections", &["projections", "run", "--metrics-listen", &metrics_of.2]),
        w.spawn("serve", &["serve", "--listen", &http_addr]),
    ];
    let logs: Vec<_> = procs.iter().map(|p| p.log.clone()).collect();
    let guard = LogsOnPanic(logs);

    // The monitor registers every configured DN at its simulator.
    wait_for("all DNs registered", Duration::from_secs(60), || {
        let r1 = registrations(&w, &ep1)?;
        let r2 = registrations(&w, &ep2)?;
        for (r, prefix) in [(&r1, "500"), (&r2, "600")] {
            for i in 1..=5 {
                if r[format!("{prefix}{i}")] != serde_json::json!(["m1"]) {
                    return Err(format!("{r1} {r2}"));
                }
            }
        }
        Ok(())
    });

    // Both scenarios play to their end (66 s of scenario at speed 4) and the projection
    // applies every event.
    let out1 = wait_for("the outbound call to be in the history", Duration::from_secs(120), || {
        let rows = calls_of(&w, "1", "5005")?;
        match rows.first() {
            Some(r) if r["outcome"] != "in_progress" => Ok(r.clone()),
            _ => Err(format!("{rows:?}")),
        }
    });
    wait_for("the conference to end", Duration::from_secs(120), || {
        let c = w.json(&["query", "call", "2", "ts2-cf1"])?;
        if c["outcome"] != "in_progress" {
            Ok(())
        } else {
            Err(c.to_string())
        }
    });
    wait_for("T-Server 2's ringing call", Duration::from_secs(60), || {
        let dn = w.json(&["query", "dn", "2", "6004"])?;
        if dn["call_state"] == "ringing" {
            Ok(())
        } else {
            Err(dn.to_string())
        }
    });

    // Call history: every call, exactly.
    let call = |connid: &str| w.json(&["query", "call", "1", connid]).unwrap();
    let in1 = call("ts1-in1");
    let epoch = int(&in1, "started_ms") - 1000;
    let expect = |c: &Value,
                  epoch: i64,
                  call_type: &str,
                  parties: &[&str],
                  outcome: &str,
                  start: i64,
                  ring: i64,
                  talk: i64,
                  hold: i64,
                  total: i64| {
        assert_eq!(c["call_type"], call_type, "{c}");
        assert_eq!(c["parties"], serde_json::json!(parties), "{c}");
        assert_eq!(c["outcome"], outcome, "{c}");
        assert_eq!(int(c, "started_ms") - epoch, start, "{c}");
        assert_eq!((int(c, "ring_ms"), int(c, "talk_ms"), int(c, "hold_ms"), int(c, "total_ms")), (ring, talk, hold, total), "{c}");
    };
    // in1: rang 1 s → 5 s, held 15 s → 27 s, released at 40 s: talk = 35 s − 12 s hold.
    expect(&in1, epoch, "Inbound", &["5001", "+15550001"], "answered", 1000, 4000, 23000, 12000, 39000);
    // ab1: rang 3 s → 11 s, abandoned.
    expect(&call("ts1-ab1"), epoch, "Inbound", &["5002", "+15550002"], "abandoned", 3000, 8000, 0, 0, 8000);
    // tr1: answered at 8 s by 5003, transferred at 20 s, 5004 answered at 23 s, released at 50 s.
    expect(&call("ts1-tr1"), epoch, "Inbound", &["5003", "+15550003", "5004"], "transferred", 6000, 2000, 42000, 0, 44000);
    // out1: dialled at 30 s, answered at 36 s, released at 66 s.
    expect(&call("ts1-out1"), epoch, "Outbound", &["5005", "+15550004"], "answered", 30000, 6000, 30000, 0, 36000);
    assert_eq!(out1["connid"], "ts1-out1");
    // The internal call on T-Server 2 (whose scenario has its own start: ring1 rang at 14 s).
    let epoch2 = int(&w.json(&["query", "dn", "2", "6004"]).unwrap(), "state_since_ms") - 14000;
    expect(
        &w.json(&["query", "call", "2", "ts2-int1"]).unwrap(),
        epoch2,
        "Internal",
        &["6001", "6002"],
        "answered",
        1000,
        2000,
        10000,
        0,
        12000,
    );

    // Two-step transfer: no call left in progress, the target leg answered (not offered),
    // the consultation merged. Conference: flagged, answered, not transferred.
    let legs = |c: &Value| -> Vec<(String, String, bool, bool)> {
        c["legs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (l["dn"].as_str().unwrap().into(), l["outcome"].as_str().unwrap().into(), l["offered"] == true, !l["answered_ms"].is_null())
            })
            .collect()
    };
    let call2 = |connid: &str| w.json(&["query", "call", "2", connid]).unwrap();
    let (tt1, tt1c) = (call2("ts2-tt1"), call2("ts2-tt1c"));
    // tt1: rang 16 → 17 s; 6005 held it 20 → 25 s while consulting; 6001 talked 25 → 40 s.
    expect(&tt1, epoch2, "Inbound", &["6005", "+15550010", "6001"], "transferred", 16000, 1000, 18000, 5000, 24000);
    let leg = |dn: &str, outcome: &str, offered: bool| (dn.to_string(), outcome.to_string(), offered, true);
    assert_eq!(legs(&tt1), [leg("6005", "transferred", true), leg("6001", "answered", false)], "{tt1}");
    // tt1c: dialled at 20 s, answered at 22 s, merged into tt1 at 25 s.
    expect(&tt1c, epoch2, "Consult", &["6005", "6001"], "answered", 20000, 2000, 3000, 0, 5000);
    assert_eq!((tt1c["merged_into"].as_str(), tt1["previous_connid"].as_str()), (Some("ts2-tt1"), Some("ts2-tt1c")));
    let (cf1, cf1c) = (call2("ts2-cf1"), call2("ts2-cf1c"));
    // cf1: rang 18 → 19 s, held 21 → 26 s while 6002 consulted, conference from 26 s,
    // 6002 left at 30 s, 6003 released at 44 s.
    expect(&cf1, epoch2, "Inbound", &["6002", "+15550011", "6003"], "answered", 18000, 1000, 20000, 5000, 26000);
    assert_eq!(legs(&cf1), [leg("6002", "answered", true), leg("6003", "answered", false)], "{cf1}");
    assert_eq!((cf1["conference"].as_bool(), cf1["transferred"].as_bool()), (Some(true), Some(false)), "{cf1}");
    assert_eq!(cf1c["merged_into"].as_str(), Some("ts2-cf1"), "{cf1c}");
    assert_ne!(cf1c["outcome"], "in_progress");
    // Nothing was abandoned on T-Server 2, and only ring1 is still in progress.
    let stats = w.json(&["query", "stats", "2", "--since", "1h"]).unwrap();
    let abandoned: i64 = stats.as_array().unwrap().iter().map(|i| int(i, "abandoned")).sum();
    assert_eq!(abandoned, 0, "{stats}");
    for dn in ["6001", "6002", "6003", "6005"] {
        for c in calls_of(&w, "2", dn).unwrap() {
            assert_ne!(c["outcome"], "in_progress", "{dn}: {c}");
        }
    }

    // Per-DN history: the transfer split between its two DNs.
    let leg = |dn: &str| calls_of(&w, "1", dn).unwrap();
    let l3 = leg("5003");
    let l4 = leg("5004");
    assert_eq!((l3.len(), l4.len()), (1, 1));
    assert_eq!(
        (l3[0]["outcome"].as_str(), int(&l3[0], "ring_ms"), int(&l3[0], "talk_ms"), int(&l3[0], "total_ms")),
        (Some("transferred"), 2000, 12000, 14000)
    );
    assert_eq!(
        (l4[0]["outcome"].as_str(), int(&l4[0], "ring_ms"), int(&l4[0], "talk_ms"), int(&l4[0], "total_ms")),
        (Some("answered"), 3000, 27000, 30000)
    );
    assert_eq!(l4[0]["other_dn"], "+15550003");

    // Final DN states.
    let dns = w.json(&["query", "dns", "1"]).unwrap();
    let dns = dns.as_array().unwrap();
    assert_eq!(dns.len(), 5);
    for d in dns {
        assert_eq!(
            (d["configured"].as_bool(), d["registered_by"].as_str(), d["call_state"].as_str(), d["link"].as_str()),
            (Some(true), Some("m1"), Some("idle"), Some("up")),
            "{d}"
        );
    }
    let a = w.json(&["query", "dn", "1", "5001"]).unwrap();
    assert_eq!(
        (a["agent_id"].as_str(), a["agent_state"].as_str(), a["dn_type"].as_str()),
        (Some("agent-a"), Some("after_call_work"), Some("acd-position"))
    );
    let b = w.json(&["query", "dn", "2", "6003"]).unwrap();
    assert_eq!((b["agent_state"].as_str(), b["agent_reason"].as_str()), (Some("not_ready"), Some("training")));
    let ringing = w.json(&["query", "dn", "2", "6004"]).unwrap();
    assert_eq!((ringing["connid"].as_str(), ringing["other_dn"].as_str()), (Some("ts2-ring1"), Some("+15550009")));
    assert_eq!(int(&ringing, "state_since_ms") - int(&w.json(&["query", "call", "2", "ts2-int1"]).unwrap(), "started_ms"), 13000);

    // The HTTP twin answers the same.
    let (status, body) = http_get(&http_addr, "/v1/tservers/1/dns/5001").unwrap();
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), a);
    let (status, body) = http_get(&http_addr, "/v1/tservers/1/dns").unwrap();
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()), (200, w.json(&["query", "dns", "1"]).unwrap()));
    let (status, body) = http_get(&http_addr, "/v1/tservers/1/dns/5003/calls?since=1h").unwrap();
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()), (200, serde_json::json!(l3)));
    assert_eq!(http_get(&http_addr, "/v1/tservers/1/dns/5003/calls?since=yesterday").unwrap().0, 400);
    assert_eq!(http_get(&http_addr, "/v1/tservers/x/dns").unwrap().0, 400);
    assert_eq!(http_get(&http_addr, "/healthz").unwrap(), (200, "ok\n".to_string()));
    // The cluster view: monitor m1 is live, holds both T-Servers and all ten DNs.
    let (status, body) = http_get(&http_addr, "/v1/cluster").unwrap();
    assert_eq!(status, 200);
    let cluster: Value = serde_json::from_str(&body).unwrap();
    let m1 = cluster["monitors"].as_array().unwrap().iter().find(|m| m["id"] == "m1").cloned().unwrap();
    assert_eq!(
        (m1["live"].as_bool(), m1["tservers"].clone(), m1["dns"].as_i64()),
        (Some(true), serde_json::json!([1, 2]), Some(10)),
        "{cluster}"
    );

    // The garbage record went to the dead-letter topic with its reason and position,
    // once from each consumer of `calls` (the three projections), and nothing else did.
    let dead = w.records("deadletter");
    let mut consumers: Vec<&str> = dead.iter().map(|d| d["headers"]["netwatch.consumer"].as_str().unwrap()).collect();
    consumers.sort();
    assert_eq!(consumers, ["call-history", "dn-state", "statistics"].map(|p| format!("{}projection.{p}.g1", w.prefix)), "{dead:?}");
    for d in &dead {
        let h = &d["headers"];
        assert_eq!(
            (h["netwatch.source.topic"].as_str(), h["netwatch.source.partition"].as_str(), h["netwatch.source.offset"].as_str()),
            (Some(format!("{}calls", w.prefix).as_str()), Some("1"), Some("0"))
        );
        assert!(h["netwatch.reason"].as_str().unwrap().starts_with("undecodable call event"), "{h}");
        assert_eq!(d["value"]["bytes_hex"], "74686973206973206e6f74206176726f", "the original bytes are kept");
    }

    every_role_serves_its_metrics(&w, &http_addr, &metrics_of);

    // Deleting a DN: the monitor unregisters it at the simulator; its state says so.
    w.ok(&["config", "dn", "delete", "--tserver", "1", "--number", "5002"]);
    wait_for("5002 to be unregistered", Duration::from_secs(30), || {
        let r = registrations(&w, &ep1)?;
        if r.get("5002").is_none() && r["5001"] == serde_json::json!(["m1"]) {
            Ok(())
        } else {
            Err(r.to_string())
        }
    });
    let gone = wait_for("5002 shown unconfigured", Duration::from_secs(30), || {
        let d = w.json(&["query", "dn", "1", "5002"])?;
        if d["configured"] == false && d["registered_by"].is_null() {
            Ok(d)
        } else {
            Err(d.to_string())
        }
    });
    assert_eq!(gone["call_state"], "unknown");
    drop(guard);
}

/// The series docs/operations.md lists, from each role's own `/metrics` (parsed as
/// Prometheus does), against what the log and the projections say.
fn every_role_serves_its_metrics(w: &World, http_addr: &str, (dispatcher, monitor, projections): &(String, String, String)) {
    // Dispatcher: a placement of each T-Server and a registration of each of the ten DNs
    // (one monitor all along: nothing moved).
    let d = scrape(dispatcher, &[]).unwrap();
    assert_eq!(sample(&d, "netwatch_dispatcher_commands_total", &[("command", "assign_tserver")]), Some(2.0));
    assert_eq!(sample(&d, "netwatch_dispatcher_commands_total", &[("command", "register_dn")]), Some(10.0));
    assert_eq!(sample(&d, "netwatch_dispatcher_moves_total", &[]), None, "nothing moved");
    // Its lag, reported every 5 s, is zero once it has read all of `config`.
    let group = format!("{}dispatcher", w.prefix);
    let topic = format!("{}config", w.prefix);
    wait_for("the dispatcher's lag", Duration::from_secs(15), || {
        let lag = sample(&scrape(dispatcher, &[])?, "netwatch_consumer_lag", &[("group", &group), ("topic", &topic)]);
        if lag == Some(0.0) {
            Ok(())
        } else {
            Err(format!("{lag:?}"))
        }
    });

    // Monitor: each link up with its five DNs; every event it captured is in `calls`
    // (T-Server 1's records but the garbage one produced by hand).
    let calls_of_tserver =
        |t: &str| w.records("calls").iter().filter(|r| r["key"] == t && r["value"].get("undecodable").is_none()).count() as f64;
    wait_for("captured events to equal the calls records", Duration::from_secs(30), || {
        let m = scrape(monitor, &[])?;
        for t in ["1", "2"] {
            let labels = [("tserver", t), ("kind", "cti")];
            let got = (
                sample(&m, "netwatch_link_up", &labels),
                sample(&m, "netwatch_link_dns_registered", &labels),
                sample(&m, "netwatch_events_captured_total", &labels),
            );
            let want = (Some(1.0), Some(5.0), Some(calls_of_tserver(t)));
            if got != want {
                return Err(format!("T-Server {t}: {got:?}, expected {want:?}"));
            }
        }
        let appended = sample(&m, "netwatch_produce_latency_seconds_count", &[("topic", &format!("{}calls", w.prefix))]);
        if appended != Some(calls_of_tserver("1") + calls_of_tserver("2")) {
            return Err(format!("produce latency samples {appended:?}"));
        }
        Ok(())
    });
    let m = scrape(monitor, &[]).unwrap();
    assert_eq!(sample(&m, "netwatch_link_connects_total", &[("tserver", "1")]), Some(1.0));
    assert_eq!(sample(&m, "netwatch_events_lost_total", &[("tserver", "1")]), Some(0.0));
    assert!(sample(&m, "netwatch_produce_queue_depth", &[]).is_some());

    // Projections: the garbage record dead-lettered once by each; everything else applied.
    let p = scrape(projections, &[]).unwrap();
    for name in ["dn-state", "call-history", "statistics"] {
        assert_eq!(sample(&p, "netwatch_projection_events_dead_lettered_total", &[("projection", name)]), Some(1.0), "{name}");
        assert!(sample(&p, "netwatch_projection_events_applied_total", &[("projection", name)]).unwrap() > 0.0, "{name}");
        assert!(sample(&p, "netwatch_store_batch_seconds_count", &[("projection", name)]).unwrap() > 0.0, "{name}");
    }

    // The API: request latency by route pattern and status.
    let labels = [("route", "/v1/projections"), ("method", "GET"), ("status", "200")];
    let before = sample(&scrape(http_addr, &[]).unwrap(), "netwatch_http_request_duration_seconds_count", &labels);
    assert_eq!(http_get(http_addr, "/v1/projections").unwrap().0, 200);
    let after = sample(&scrape(http_addr, &[]).unwrap(), "netwatch_http_request_duration_seconds_count", &labels);
    assert_eq!(after, Some(before.unwrap_or(0.0) + 1.0));
}

#[test]
fn with_a_token_every_request_but_healthz_needs_it() {
    let w = World::start();
    let (http, metrics) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let token = [("NETWATCH_API_TOKEN", "s3cret-token")];
    let procs = [
        w.spawn_env("serve", &token, &["serve", "--listen", &http]),
        w.spawn_env("monitor", &token, &["monitor", "--id", "m1", "--metrics-listen", &metrics]),
    ];
    let _guard = LogsOnPanic(procs.iter().map(|p| p.log.clone()).collect());
    for addr in [&http, &metrics] {
        wait_for("the server to answer", Duration::from_secs(30), || http_get(addr, "/healthz"));
        assert_eq!(http_get(addr, "/healthz").unwrap(), (200, "ok\n".to_string()), "{addr}: health needs no token");
        assert_eq!(http_get(addr, "/metrics").unwrap().0, 401, "{addr}");
        assert_eq!(http_get_with(addr, "/metrics", &[("Authorization", "Bearer wrong-token")]).unwrap().0, 401, "{addr}");
        assert_eq!(http_get_with(addr, "/metrics", &[("Authorization", "Bearer s3cret-token")]).unwrap().0, 200, "{addr}");
        assert_eq!(http_get_with(addr, "/metrics", &[("Authorization", "bearer s3cret-token")]).unwrap().0, 200, "{addr}: any case");
        assert_eq!(http_get(addr, "/metrics?access_token=s3cret-token").unwrap().0, 401, "{addr}: not in the URL");
    }
    assert_eq!(http_get(&http, "/v1/projections").unwrap().0, 401);
    assert_eq!(http_get_with(&http, "/v1/projections", &[("Authorization", "Bearer s3cret-token")]).unwrap().0, 200);
    for p in &procs {
        let log = std::fs::read_to_string(&p.log).unwrap();
        assert!(!log.contains("s3cret-token"), "{}: the token is in the log", p.name);
    }
    // An empty token is refused at start, with the reason.
    let out = w.run_env(&[("NETWATCH_API_TOKEN", " ")], &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Produce raw bytes with librdkafka, bypassing the codec.
fn produce_raw(w: &World, topic: &str, key: &str, bytes: &[u8]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let p: BaseProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &w.brokers).create().unwrap();
    p.send(BaseRecord::to(&format!("{}{topic}", w.prefix)).key(key).partition(1).payload(bytes)).map_err(|(e, _)| e).unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
}

#[test]
fn bad_config_input_exits_2_and_appends_nothing() {
    let w = World::start();
    w.ok(&["config", "tserver", "create", "--id", "1", "--name", "TS1", "--host", "127.0.0.1", "--port", "7001"]);
    w.ok(&["config", "dn", "create", "--tserver", "1", "--dbid", "10", "--number", "5001"]);
    let before = w.records("config").len();
    let cases: [(&[&str], &str); 7] = [
        (
            &["config", "dn", "create", "--tserver", "9", "--dbid", "11", "--number", "5002"],
            "T-Server 9 does not exist; nothing was appended",
        ),
        (
            &["config", "dn", "create", "--tserver", "1", "--dbid", "10", "--number", "5002"],
            "DBID 10 is already used by DN 5001 on T-Server 1; nothing was appended",
        ),
        (&["config", "dn", "delete", "--tserver", "1", "--number", "5999"], "T-Server 1 has no DN 5999; nothing was appended"),
        (&["config", "tserver", "update", "--id", "4", "--port", "1"], "T-Server 4 does not exist; nothing was appended"),
        (
            &["config", "tserver", "create", "--id", "1", "--name", "X", "--host", "h", "--port", "1"],
            "T-Server 1 already exists; nothing was appended",
        ),
        (
            &["config", "group", "create", "--tserver", "1", "--id", "3", "--name", "Sales", "--kind", "dn", "--members", "5001,5002"],
            "T-Server 1 has no DN 5002; nothing was appended",
        ),
        (&["config", "group", "delete", "--tserver", "1", "--id", "3"], "T-Server 1 has no group 3; nothing was appended"),
    ];
    for (args, reason) in cases {
        let out = w.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), format!("netwatch: {reason}"), "{args:?}");
    }
    // An import with one bad line appends none of its lines.
    let file = w.file("bad.jsonl", "{\"op\":\"create_dn\",\"tserver\":1,\"dbid\":20,\"number\":\"5010\"}\n{\"op\":\"create_dn\",\"tserver\":1,\"dbid\":20,\"number\":\"5011\"}\n");
    let out = w.run(&["config", "import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("change 2: DBID 20 is already used by DN 5010"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = w.run(&["cat", "nosuchtopic"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(w.records("config").len(), before);
    // A good group goes in as config v3 and can be updated.
    w.ok(&["config", "group", "create", "--tserver", "1", "--id", "3", "--name", "Sales", "--kind", "dn", "--members", "5001"]);
    w.ok(&["config", "group", "update", "--tserver", "1", "--id", "3", "--name", "Sales EU"]);
    let groups: Vec<Value> = w.records("config").into_iter().skip(before).map(|r| r["value"]["change"].clone()).collect();
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert_eq!(groups[1], json!({"type": "GroupUpdated", "id": 3, "tserver": 1, "name": "Sales EU", "kind": "Dn", "members": ["5001"]}));
}

/// `netwatch config` validates against the snapshot the previous command left and the
/// records appended since; a snapshot the log no longer matches is thrown away.
#[test]
fn config_commands_read_what_follows_their_snapshot_and_drop_a_stale_one() {
    let w = World::start();
    w.ok(&["config", "tserver", "create", "--id", "1", "--name", "TS1", "--host", "127.0.0.1", "--port", "7001"]);
    w.ok(&["config", "dn", "create", "--tserver", "1", "--dbid", "10", "--number", "5001"]);
    let dir = w.path("config-snapshots");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let snapshot = &files[0];

    // Another writer, without the snapshot, appends DN 5002: the next command reads it from
    // the tail and refuses its DBID.
    let out = w
        .run_env(&[("NETWATCH_CONFIG_SNAPSHOT", "off")], &["config", "dn", "create", "--tserver", "1", "--dbid", "11", "--number", "5002"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = w.run(&["config", "dn", "create", "--tserver", "1", "--dbid", "11", "--number", "5003"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DBID 11 is already used by DN 5002"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A snapshot whose last record is not the one the log holds at that offset (as after the
    // topic was recreated) is not believed: the DN it invents does not block DBID 99.
    let mut file: Value = serde_json::from_slice(&std::fs::read(snapshot).unwrap()).unwrap();
    file["dns"].as_array_mut().unwrap().push(json!({"dbid": 99, "tserver": 1, "number": "5099", "dn_type": "Extension"}));
    for position in file["positions"].as_object_mut().unwrap().values_mut() {
        position["last_event_id"] = json!("not-in-the-log");
    }
    std::fs::write(snapshot, serde_json::to_vec(&file).unwrap()).unwrap();
    w.ok(&["config", "dn", "create", "--tserver", "1", "--dbid", "99", "--number", "5004"]);
    // The snapshot was rewritten from the log, and is believed again.
    let file: Value = serde_json::from_slice(&std::fs::read(snapshot).unwrap()).unwrap();
    let numbers: Vec<&str> = file["dns"].as_array().unwrap().iter().map(|d| d["number"].as_str().unwrap()).collect();
    assert_eq!(numbers, ["5001", "5002"], "the snapshot is taken before the command appends");
    let out = w.run(&["config", "dn", "create", "--tserver", "1", "--dbid", "99", "--number", "5005"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DBID 99 is already used by DN 5004"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `netwatch bench` still works (a smoke run at tiny sizes: figures are measured by
/// `make bench`, never asserted here).
#[test]
fn bench_runs_at_tiny_sizes_and_prints_its_tables() {
    let w = World::start();
    let out = w.run(&["bench", "capture", "--events", "200", "--links", "3", "--runs", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| raw produce") && table.contains("| capture: one CTI link into calls | 200 |"), "{table}");
    assert!(table.contains("| capture: CTI links together into calls: 3 | 200 |"), "{table}");
    let out = w.run(&["bench", "config", "--tservers", "3", "--dns", "5", "--runs", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    // 3 T-Servers and 15 DNs imported; then single commands with those 15 DNs configured.
    assert!(table.contains("`config import` of 18 changes") && table.contains("with 15 DNs configured"), "{table}");
    // 100 calls of three events each.
    let out = w.run(&["bench", "apply", "--events", "300", "--runs", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("| apply in process: call-history | 300 |") && table.contains("| apply in process: dn-state | 300 |"),
        "{table}"
    );
    let out = w.run(&["bench", "replay", "--events", "300", "--runs", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| raw consume") && table.contains("switched to): call-history | 300 |"), "{table}");
    // The codec table reads criterion's results; without them it says what to run.
    let out = w.run(&["bench", "codec", "--dir", w.path("no-criterion").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run the criterion benches first"), "{}", String::from_utf8_lossy(&out.stderr));
    // Dispatcher and monitor processes, 2 simulated T-Servers of 3 DNs.
    let out = w.run(&["bench", "registration", "--tservers", "2", "--dns", "3", "--runs", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| 2 T-Servers × 3 DNs configured → all 6 registered") && table.contains("with 6 DNs registered"), "{table}");
    // `netwatch up` fed at 200 events/s for a second, 2 HTTP clients.
    let out = w.run(&["bench", "live", "--rates", "200", "--seconds", "1", "--clients", "2", "--dns", "5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("200 events/s") && table.contains("2 clients"), "{table}");
}
