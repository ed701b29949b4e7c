//! Kamailio as a monitored server, end to end (docs/sip.md): a real Kamailio 5.6
//! (`infra/kamailio.sh`), real SIP calls from SIPp (`tests/sip/*.xml`), the broker, and
//! `netwatch up` (dispatcher, monitor, projections). The call history and the DN states
//! are asserted exactly, the durations to the second from the scenarios' pauses.
//!
//! Kamailio and SIPp come from Debian (`infra/kamailio.sh install`, run by `make test` and
//! by each test); where they cannot be installed the tests print why and skip.

mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{free_port, http_get, wait_for, LogsOnPanic, World};
use serde_json::Value;

/// The ports of one test's Kamailio and SIPp: apart from Kamailio's defaults (5070, 8448,
/// 8449), from producers/tests/sip_kamailio.rs (5270, 8648, 8649, 5291-5292), from each
/// other (tests run in parallel) and from SIPp's RTP range (6000-6400).
#[derive(Clone, Copy)]
struct Ports {
    sip: u16,
    evapi: u16,
    rpc: u16,
    uac: u16,
    uas: u16,
}

const FUNCTIONAL: Ports = Ports { sip: 5370, evapi: 8748, rpc: 8749, uac: 5391, uas: 5392 };
const LOAD: Ports = Ports { sip: 5470, evapi: 8848, rpc: 8849, uac: 5493, uas: 5494 };
const FAILOVER: Ports = Ports { sip: 5570, evapi: 8948, rpc: 8949, uac: 5593, uas: 5594 };

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn kamailio_sh(data: &Path, ports: Ports, action: &str) -> std::process::Output {
    Command::new(repo().join("infra/kamailio.sh"))
        .arg(action)
        .env("KAMAILIO_DATA", data)
        .env("KAMAILIO_SIP_PORT", ports.sip.to_string())
        .env("KAMAILIO_EVAPI_PORT", ports.evapi.to_string())
        .env("KAMAILIO_RPC_PORT", ports.rpc.to_string())
        .output()
        .expect("infra/kamailio.sh runs")
}

/// Are Kamailio and SIPp there (installed now if missing)? Where they cannot be installed
/// the tests skip, saying why.
fn sip_tools(test: &str) -> bool {
    let out = Command::new(repo().join("infra/kamailio.sh")).arg("install").output().expect("infra/kamailio.sh runs");
    if !out.status.success() {
        eprintln!(
            "SKIPPED {test}: Kamailio or SIPp cannot be installed on this machine: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

/// This test's Kamailio, stopped when dropped.
struct Kamailio(PathBuf, Ports);

impl Kamailio {
    fn start(data: PathBuf, ports: Ports) -> Kamailio {
        let out = kamailio_sh(&data, ports, "start");
        assert!(
            out.status.success(),
            "infra/kamailio.sh start failed (Kamailio and SIPp come with `make sip-install`):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Kamailio(data, ports)
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let _ = kamailio_sh(&self.0, self.1, "stop");
    }
}

/// A SIPp process of a scenario from tests/sip; `uac` scenarios call Kamailio.
fn sipp(dir: &Path, ports: Ports, scenario: &str, inf: Option<&str>, uac: bool, extra: &[&str]) -> std::process::Child {
    let sip = repo().join("tests/sip");
    let mut cmd = Command::new("sipp");
    if uac {
        cmd.arg(format!("127.0.0.1:{}", ports.sip));
    }
    cmd.arg("-sf").arg(sip.join(scenario));
    if let Some(inf) = inf {
        cmd.arg("-inf").arg(sip.join(inf));
    }
    let port = if uac && inf.is_some_and(|f| f.contains("pair")) { ports.uac } else { ports.uas };
    cmd.args(["-i", "127.0.0.1", "-bind_local", "-p", &port.to_string(), "-nostdin", "-timeout_error"])
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp starts (make sip-install)")
}

/// One call of the functional cases: the UAS in the background, the UAC to its end.
fn sipp_one(dir: &Path, scenario: &str, inf: Option<&str>, uac: bool) -> std::process::Child {
    sipp(dir, FUNCTIONAL, scenario, inf, uac, &["-m", "1", "-timeout", "40s"])
}

fn succeeds(child: std::process::Child, what: &str) {
    let out = child.wait_with_output().expect("sipp ran");
    assert!(out.status.success(), "{what}: sipp exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
}

/// Wait until a SIPp listens on its UDP port (the port cannot be bound any more).
fn listening(port: u16) {
    wait_for("SIPp listening", Duration::from_secs(10), || match std::net::UdpSocket::bind(("127.0.0.1", port)) {
        Ok(_) => Err(format!("nothing on udp/{port} yet")),
        Err(_) => Ok(()),
    });
}

/// One call: the UAS in the background, the UAC to its end, then the UAS.
fn call(dir: &Path, uac: &str, uas: &str) {
    let callee = sipp_one(dir, uas, None, false);
    // An INVITE sent before the UAS listens is retransmitted 0.5 s later: the ring time
    // would be off by that.
    listening(FUNCTIONAL.uas);
    let caller = sipp_one(dir, uac, Some("pair.csv"), true);
    succeeds(caller, uac);
    succeeds(callee, uas);
}

fn get(http: &str, path: &str) -> Result<Value, String> {
    match http_get(http, path)? {
        (200, body) => serde_json::from_str(&body).map_err(|e| e.to_string()),
        (status, body) => Err(format!("{status}: {body}")),
    }
}

/// Call type, parties, outcome, released by, ring, talk and hold seconds.
type CallSummary = (String, Vec<String>, String, String, i64, i64, i64);

fn seconds(ms: &Value) -> i64 {
    (ms.as_i64().expect("a duration in ms") + 500) / 1000
}

#[test]
fn kamailio_calls_reach_call_history_and_dn_state() {
    if !sip_tools("kamailio_calls_reach_call_history_and_dn_state") {
        return;
    }
    let w = World::start();
    let kamailio = Kamailio::start(w.path("kamailio"), FUNCTIONAL);
    let http = format!("127.0.0.1:{}", free_port());
    let up = w.spawn("up", &["up", "--listen", &http]);
    let _logs = LogsOnPanic(vec![up.log.clone(), w.path("kamailio/kamailio.log")]);
    let evapi = FUNCTIONAL.evapi.to_string();
    w.ok(&["config", "tserver", "create", "--id", "1", "--name", "K1", "--kind", "kamailio", "--host", "127.0.0.1", "--port", &evapi]);
    for (dbid, dn) in [("11", "5001"), ("12", "5002")] {
        w.ok(&["config", "dn", "create", "--tserver", "1", "--dbid", dbid, "--number", dn]);
    }
    // The monitor connected, resynchronised and took both DNs.
    wait_for("both DNs watched and idle", Duration::from_secs(60), || {
        for dn in ["5001", "5002"] {
            let row = get(&http, &format!("/v1/tservers/1/dns/{dn}"))?;
            if row["call_state"] != "idle" || row["link"] != "up" {
                return Err(format!("{dn}: {row}"));
            }
        }
        Ok(())
    });

    // The callee's phone registers: a ready agent.
    let dir = w.path("kamailio");
    succeeds(sipp_one(&dir, "register.xml", Some("callee.csv"), true), "register 5002");
    wait_for("5002 ready", Duration::from_secs(20), || {
        let row = get(&http, "/v1/tservers/1/dns/5002")?;
        (row["agent_state"] == "ready").then_some(()).ok_or(row.to_string())
    });

    // (a) answered; the caller holds and retrieves; the caller hangs up.
    call(&dir, "uac_hold.xml", "uas_hold.xml");
    // (b) rejected busy.
    call(&dir, "uac_busy.xml", "uas_busy.xml");
    // (c) cancelled while ringing.
    call(&dir, "uac_cancel.xml", "uas_cancel.xml");
    // (d) answered; the callee hangs up.
    call(&dir, "uac_callee_bye.xml", "uas_callee_bye.xml");

    // Every call ended, oldest first at the caller.
    let calls = wait_for("four ended calls at 5001", Duration::from_secs(30), || {
        let rows = get(&http, "/v1/tservers/1/dns/5001/calls")?;
        let rows = rows.as_array().cloned().unwrap_or_default();
        if rows.len() == 4 && rows.iter().all(|r| !r["ended_ms"].is_null()) {
            Ok(rows.into_iter().rev().collect::<Vec<_>>())
        } else {
            Err(format!("{rows:?}"))
        }
    });
    let records: Vec<Value> = calls
        .iter()
        .map(|row| {
            // ConnID = `<Call-ID>;<From tag>`, and a Call-ID has an `@`
            let connid = row["connid"].as_str().unwrap().replace('@', "%40").replace(';', "%3B");
            get(&http, &format!("/v1/tservers/1/calls/{connid}")).unwrap()
        })
        .collect();
    let summary: Vec<CallSummary> = records
        .iter()
        .map(|c| {
            (
                c["call_type"].as_str().unwrap().to_string(),
                serde_json::from_value(c["parties"].clone()).unwrap(),
                c["outcome"].as_str().unwrap().to_string(),
                c["released_by"].as_str().unwrap_or("-").to_string(),
                seconds(&c["ring_ms"]),
                seconds(&c["talk_ms"]),
                seconds(&c["hold_ms"]),
            )
        })
        .collect();
    let parties = vec!["5001".to_string(), "5002".to_string()];
    let row = |outcome: &str, by: &str, ring, talk, hold| {
        ("Internal".to_string(), parties.clone(), outcome.to_string(), by.to_string(), ring, talk, hold)
    };
    assert_eq!(
        summary,
        vec![
            // uac_hold.xml: ring 2 s, talk 3 s, held 2 s, talk 3 s, BYE from the caller
            row("answered", "5001", 2, 6, 2),
            // 486 at once from the callee
            row("busy", "5002", 0, 0, 0),
            // ring 2 s, CANCEL from the caller
            row("abandoned", "5001", 2, 0, 0),
            // ring 2 s, talk 3 s, BYE from the callee
            row("answered", "5002", 2, 3, 0),
        ]
    );
    // The legs: the callee's phone rang in (a), (c), (d); the busy reply came without a ring.
    let legs: Vec<Vec<(String, String)>> = records
        .iter()
        .map(|c| {
            c["legs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| (l["dn"].as_str().unwrap().to_string(), l["outcome"].as_str().unwrap().to_string()))
                .collect()
        })
        .collect();
    let leg = |dn: &str, outcome: &str| (dn.to_string(), outcome.to_string());
    assert_eq!(
        legs,
        vec![
            vec![leg("5001", "answered"), leg("5002", "answered")],
            vec![leg("5001", "busy")],
            vec![leg("5001", "abandoned"), leg("5002", "abandoned")],
            vec![leg("5001", "answered"), leg("5002", "answered")],
        ]
    );

    // Final DN states: both idle and watched; the callee's phone is registered, the caller
    // (SIPp's UAC) never registered.
    for (dn, agent) in [("5001", Value::Null), ("5002", Value::from("ready"))] {
        let row = get(&http, &format!("/v1/tservers/1/dns/{dn}")).unwrap();
        assert_eq!(
            (&row["call_state"], &row["link"], &row["agent_state"]),
            (&Value::from("idle"), &Value::from("up"), &agent),
            "{dn}: {row}"
        );
        assert_eq!(row["calls"], Value::Array(vec![]), "{dn}: {row}");
    }
    drop(up);
    drop(kamailio);
}

/// The last row of a SIPp `-stf` statistics file, by column name.
fn sipp_stats(path: &Path) -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().expect("a header row").split(';').collect();
    let last: Vec<&str> = lines.next_back().expect("a statistics row").split(';').collect();
    header.iter().zip(last).map(|(h, v)| (h.to_string(), v.to_string())).collect()
}

fn count(stats: &std::collections::HashMap<String, String>, name: &str) -> u64 {
    stats.get(name).and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| panic!("no {name} in SIPp's statistics"))
}

/// Configure a Kamailio server with 100 callers (7001-7100) and 100 callees (8001-8100),
/// wait until a monitor watches all of them, and register the callees.
fn load_site(w: &World, ports: Ports, http: &str) -> Vec<String> {
    let mut site = format!(
        "{{\"op\":\"create_tserver\",\"id\":1,\"name\":\"K1\",\"host\":\"127.0.0.1\",\"port\":{},\"kind\":\"kamailio\"}}\n",
        ports.evapi
    );
    let (callers, callees): (Vec<String>, Vec<String>) = (1..=100).map(|i| ((7000 + i).to_string(), (8000 + i).to_string())).unzip();
    for (i, dn) in callers.iter().chain(&callees).enumerate() {
        site.push_str(&format!("{{\"op\":\"create_dn\",\"tserver\":1,\"dbid\":{},\"number\":\"{dn}\"}}\n", i + 1));
    }
    let file = w.file("site.jsonl", &site);
    w.ok(&["config", "import", file.to_str().unwrap()]);
    wait_for("200 DNs watched", Duration::from_secs(60), || {
        let rows = get(http, "/v1/tservers/1/dns")?;
        let up = rows.as_array().map(|a| a.iter().filter(|r| r["link"] == "up" && r["call_state"] == "idle").count()).unwrap_or(0);
        (up == 200).then_some(()).ok_or(format!("{up} of 200"))
    });
    let dir = w.path("kamailio");
    succeeds(sipp(&dir, ports, "register.xml", Some("load_callees.csv"), true, &["-m", "100", "-r", "100", "-timeout", "20s"]), "register");
    wait_for("100 callees ready", Duration::from_secs(30), || {
        let rows = get(http, "/v1/tservers/1/dns")?;
        let ready = rows.as_array().map(|a| a.iter().filter(|r| r["agent_state"] == "ready").count()).unwrap_or(0);
        (ready == 100).then_some(()).ok_or(format!("{ready} of 100"))
    });
    callers
}

/// SIPp's load: 50 calls/s, 3,000 calls, each answered after 200 ms ringing and released
/// by the caller after 500 ms. `meanwhile` runs while it goes on. (completed, failed).
fn load(w: &World, ports: Ports, meanwhile: impl FnOnce()) -> (u64, u64) {
    let dir = w.path("kamailio");
    let mut uas = sipp(&dir, ports, "uas_load.xml", None, false, &["-timeout", "200s"]);
    listening(ports.uas);
    let stats = dir.join("uac.stat.csv");
    let uac = sipp(
        &dir,
        ports,
        "uac_load.xml",
        Some("load_pairs.csv"),
        true,
        &["-r", "50", "-m", "3000", "-l", "1000", "-timeout", "150s", "-trace_stat", "-stf", stats.to_str().unwrap(), "-fd", "5"],
    );
    meanwhile();
    let out = uac.wait_with_output().expect("the UAC ran");
    let _ = uas.kill();
    let _ = uas.wait();
    let stats = sipp_stats(&stats);
    let (completed, failed) = (count(&stats, "SuccessfulCall(C)"), count(&stats, "FailedCall(C)"));
    assert!(completed >= 2_900, "SIPp completed only {completed} calls ({failed} failed): {}", String::from_utf8_lossy(&out.stderr));
    (completed, failed)
}

/// Every call at the callers' DNs once every one has ended (`at_least` of them).
fn ended_calls(http: &str, callers: &[String], at_least: u64) -> Vec<Value> {
    wait_for("every call in the history, ended", Duration::from_secs(120), || {
        let mut rows = Vec::new();
        for dn in callers {
            let page = get(http, &format!("/v1/tservers/1/dns/{dn}/calls?since=1h&limit=1000"))?;
            rows.extend(page.as_array().cloned().unwrap_or_default());
        }
        let ended = rows.iter().filter(|r| !r["ended_ms"].is_null()).count() as u64;
        if ended >= at_least && ended == rows.len() as u64 {
            Ok(rows)
        } else {
            Err(format!("{ended} ended of {} rows, {at_least} expected at least", rows.len()))
        }
    })
}

/// SIPp at 50 calls/s for 60 s through Kamailio (100 callers calling 100 registered
/// callees in turn): every call SIPp completed is in the call history exactly once, ended.
#[test]
fn kamailio_load_reaches_call_history_exactly_once() {
    if !sip_tools("kamailio_load_reaches_call_history_exactly_once") {
        return;
    }
    let w = World::start();
    let kamailio = Kamailio::start(w.path("kamailio"), LOAD);
    let http = format!("127.0.0.1:{}", free_port());
    let up = w.spawn("up", &["up", "--listen", &http]);
    let _logs = LogsOnPanic(vec![up.log.clone(), w.path("kamailio/kamailio.log")]);
    let callers = load_site(&w, LOAD, &http);
    let (completed, failed) = load(&w, LOAD, || {});
    let rows = ended_calls(&http, &callers, completed + failed);
    let connids: std::collections::BTreeSet<&str> = rows.iter().map(|r| r["connid"].as_str().unwrap()).collect();
    assert_eq!(connids.len(), rows.len(), "a call appears twice at its caller");
    let answered = rows.iter().filter(|r| r["outcome"] == "answered" && r["released_by"] == r["dn"]).count() as u64;
    assert_eq!((answered, rows.len() as u64), (completed, completed + failed), "answered and released by the caller: every completed call");
    drop(up);
    drop(kamailio);
}

/// The monitor watching Kamailio is killed with SIGKILL during the load: the other one
/// takes the server over, reads the calls the log still has open, and its resync ends those
/// Kamailio no longer has: afterwards no call is left in progress and every DN is idle.
#[test]
fn a_monitor_killed_during_the_load_leaves_no_call_in_progress() {
    if !sip_tools("a_monitor_killed_during_the_load_leaves_no_call_in_progress") {
        return;
    }
    let w = World::start();
    let kamailio = Kamailio::start(w.path("kamailio"), FAILOVER);
    let http = format!("127.0.0.1:{}", free_port());
    let mut procs = vec![
        w.spawn("dispatcher", &["dispatcher", "--id", "d1", "--monitor-heartbeat", "1s"]),
        w.spawn("projections", &["projections", "run"]),
        w.spawn("serve", &["serve", "--listen", &http]),
    ];
    let mut monitors = vec![
        w.spawn("m1", &["monitor", "--id", "m1", "--heartbeat", "1s"]),
        w.spawn("m2", &["monitor", "--id", "m2", "--heartbeat", "1s"]),
    ];
    let mut logs: Vec<PathBuf> = procs.iter().chain(&monitors).map(|p| p.log.clone()).collect();
    logs.push(w.path("kamailio/kamailio.log"));
    let _logs = LogsOnPanic(logs);
    let callers = load_site(&w, FAILOVER, &http);
    let holder = |w: &World| -> Result<String, String> {
        let s = w.json(&["status", "--json", "--monitor-heartbeat", "1s"])?;
        let monitors = s["monitors"].as_array().cloned().unwrap_or_default();
        monitors
            .iter()
            .find(|m| m["live"] == true && m["tservers"].as_array().is_some_and(|t| t.contains(&Value::from(1))))
            .map(|m| m["id"].as_str().unwrap().to_string())
            .ok_or(format!("no live monitor holds the server: {s}"))
    };
    let first = wait_for("the server's monitor", Duration::from_secs(20), || holder(&w));
    let (completed, _) = load(&w, FAILOVER, || {
        // In the middle of the load: about 35 calls are up at any moment.
        std::thread::sleep(Duration::from_secs(20));
        let victim = monitors.iter_mut().find(|m| m.name == first).unwrap();
        victim.kill();
    });
    let second = wait_for("another monitor holding the server", Duration::from_secs(60), || match holder(&w)? {
        id if id != first => Ok(id),
        id => Err(format!("still {id}")),
    });
    // Calls that started and ended while no monitor was connected are not in the history
    // (evapi keeps no backlog): at most every completed call is there, all ended.
    let rows = ended_calls(&http, &callers, completed / 2);
    assert!(rows.len() as u64 <= completed, "{} calls in the history, SIPp completed {completed}", rows.len());
    let closed_by_resync = rows.iter().filter(|r| r["released_by"] == "server").count();
    assert!(closed_by_resync > 0, "the calls up when {first} died were closed by {second}'s resync");
    let states = get(&http, "/v1/tservers/1/dns").unwrap();
    let busy: Vec<&Value> = states.as_array().unwrap().iter().filter(|r| r["call_state"] != "idle" || r["link"] != "up").collect();
    assert!(busy.is_empty(), "DNs not idle after the load: {busy:?}");
    procs.clear();
    monitors.clear();
    drop(kamailio);
}

/// `netwatch bench sip` at a tiny size: its own Kamailio, SIPp, dispatcher and monitor
/// (the figures belong to `make bench`, never asserted here).
#[test]
fn bench_sip_runs_at_a_tiny_size_and_prints_its_table() {
    if !sip_tools("bench_sip_runs_at_a_tiny_size_and_prints_its_table") {
        return;
    }
    let w = World::start();
    let out = w.run(&["bench", "sip", "--rate", "20", "--calls", "20", "--runs", "1", "--repo", repo().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("| raw: SIPp through Kamailio, 20 calls/s offered")
            && table.contains("| Kamailio: calls/s captured")
            && table.contains("| 20 |"),
        "{table}"
    );
}
