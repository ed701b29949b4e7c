//! Projections end to end (issue 4): replay without downtime, kill -9 during a burst,
//! two instances splitting the partitions. Real broker, separate `netwatch` processes;
//! every comparison is by `netwatch projections checksum` against a reference
//! projection that ran uninterrupted into its own store (own consumer group) over the
//! same log.

mod harness;

use std::time::Duration;

use harness::{dump_logs, free_port, http_get, wait_for, Proc, World};

const TSERVERS: i32 = 4;
const DNS: i32 = 8;

fn dn(t: i32, i: i32) -> String {
    format!("{}{:03}", 4 + t, i)
}

/// Configure `TSERVERS` T-Servers with `DNS` DNs each, simulated on fresh ports.
fn configure(w: &World) -> Vec<String> {
    let mut endpoints = Vec::new();
    let mut lines = String::new();
    for t in 1..=TSERVERS {
        let port = free_port();
        endpoints.push(format!("127.0.0.1:{port}"));
        w.ok(&[
            "config",
            "tserver",
            "create",
            "--id",
            &t.to_string(),
            "--name",
            &format!("TS{t}"),
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ]);
        for i in 1..=DNS {
            lines.push_str(&format!("{{\"op\":\"create_dn\",\"tserver\":{t},\"dbid\":{},\"number\":\"{}\"}}\n", t * 100 + i, dn(t, i)));
        }
    }
    w.ok(&["config", "import", w.file("site.jsonl", &lines).to_str().unwrap()]);
    endpoints
}

/// A burst: on every DN, `rounds` calls one after the other (ring, answer, hold,
/// retrieve, release; every seventh abandoned), agents logging in first.
fn burst(t: i32, rounds: i32) -> String {
    let mut steps: Vec<(i64, String)> = Vec::new();
    for i in 1..=DNS {
        let d = dn(t, i);
        steps.push((0, format!(r#"{{"at_ms": 0, "op": "login", "dn": "{d}", "agent": "agent-{d}"}}"#)));
        for r in 0..rounds {
            let base = 200 + i64::from(r) * 4_000 + i64::from(i) * 150;
            let call = format!("t{t}d{i}r{r}");
            steps.push((base, format!(r#"{{"at_ms": {base}, "op": "call", "call": "{call}", "from": "+1555{t}{i:02}{r:03}", "to": "{d}", "connid": "{call}"}}"#)));
            if (i + r) % 7 == 0 {
                steps.push((base + 1_500, format!(r#"{{"at_ms": {}, "op": "abandon", "call": "{call}"}}"#, base + 1_500)));
                continue;
            }
            steps.push((base + 1_000, format!(r#"{{"at_ms": {}, "op": "answer", "call": "{call}"}}"#, base + 1_000)));
            steps.push((base + 1_500, format!(r#"{{"at_ms": {}, "op": "hold", "call": "{call}", "dn": "{d}"}}"#, base + 1_500)));
            steps.push((base + 2_200, format!(r#"{{"at_ms": {}, "op": "retrieve", "call": "{call}", "dn": "{d}"}}"#, base + 2_200)));
            steps.push((base + 3_000, format!(r#"{{"at_ms": {}, "op": "release", "call": "{call}"}}"#, base + 3_000)));
        }
    }
    steps.sort_by_key(|(at, _)| *at);
    steps.into_iter().map(|(_, s)| s + "\n").collect()
}

/// (digest, generation, rows, records applied) of a projection in a store.
fn checksum(w: &World, store: &str, projection: &str) -> Result<(String, String, usize, i64), String> {
    let out = w.run(&["--store", store, "projections", "checksum", projection]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let f: Vec<&str> = text.split_whitespace().collect();
    match f.as_slice() {
        [hex, _, gen, rows, "rows", "at", at] => Ok((hex.to_string(), gen.to_string(), rows.parse().unwrap(), at.parse().unwrap())),
        _ => Err(format!("unexpected checksum line {text:?}")),
    }
}

/// Wait until a store's projection has applied `records` records; its checksum.
fn caught_up(w: &World, store: &str, projection: &str, records: usize, within: Duration) -> (String, String, usize, i64) {
    wait_for(&format!("{projection} in {store} to apply {records} records"), within, || {
        let c = checksum(w, store, projection)?;
        if c.3 == records as i64 {
            Ok(c)
        } else {
            Err(format!("{c:?}"))
        }
    })
}

/// Prints the processes' logs if the test panics.
struct LogsOnPanic(Vec<std::path::PathBuf>);

impl Drop for LogsOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            dump_logs(&self.0.iter().map(|p| p.as_path()).collect::<Vec<_>>());
        }
    }
}

fn logs(procs: &[&Proc]) -> LogsOnPanic {
    LogsOnPanic(procs.iter().map(|p| p.log.clone()).collect())
}

/// Start scripted simulators, the dispatcher and a monitor.
fn site(w: &World, endpoints: &[String], rounds: i32, speed: &str) -> Vec<Proc> {
    let mut procs = Vec::new();
    for (i, ep) in endpoints.iter().enumerate() {
        let t = i as i32 + 1;
        let script = w.file(&format!("ts{t}.jsonl"), &burst(t, rounds));
        procs
            .push(w.spawn(&format!("sim{t}"), &["sim", "tserver", "--listen", ep, "--script", script.to_str().unwrap(), "--speed", speed]));
    }
    procs.push(w.spawn("dispatcher", &["dispatcher", "--id", "d1"]));
    procs.push(w.spawn("monitor", &["monitor", "--id", "m1", "--heartbeat", "1s"]));
    procs
}

/// Wait for the last call of every T-Server's burst to end in `store`, then stop the
/// monitor so that the log stops growing; the number of `calls` and `config` records.
fn freeze(w: &World, store: &str, monitor: &mut Proc, rounds: i32) -> (usize, usize) {
    for t in 1..=TSERVERS {
        let last = format!("t{t}d{DNS}r{}", rounds - 1);
        wait_for(&format!("call {last} to end"), Duration::from_secs(120), || {
            let out = w.run(&["--store", store, "query", "call", &t.to_string(), &last]);
            let v: serde_json::Value =
                serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stderr)))?;
            if v["outcome"] != "in_progress" {
                Ok(())
            } else {
                Err(v.to_string())
            }
        });
    }
    monitor.kill();
    (w.records("calls").len(), w.records("config").len())
}

fn pseudo_random(n: u64) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    (nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % 1_000
}

#[test]
fn kill_9_during_a_burst_changes_nothing() {
    let w = World::start();
    let reference = format!("sqlite://{}", w.path("reference.db").display());
    let endpoints = configure(&w);
    // A killed member stays in the group until its session times out; a short timeout
    // lets each restarted process get the partitions back quickly.
    let victim_args = ["--kafka-option", "session.timeout.ms=6000", "projections", "run"];
    let rounds = 16;
    let mut victim = w.spawn("projections-0", &victim_args);
    let refproc = w.spawn("reference", &["--store", &reference, "projections", "run", "--group", "reference"]);
    let mut procs = site(&w, &endpoints, rounds, "1.5");
    let mut guard = logs(&[&refproc, &victim]);
    // The burst has begun once the reference applied its first call events.
    wait_for("the burst to begin", Duration::from_secs(60), || {
        let c = checksum(&w, &reference, "call-history")?;
        if c.2 > 0 {
            Ok(())
        } else {
            Err(format!("{c:?}"))
        }
    });
    let calls_topic = format!("{}calls", w.prefix);
    for k in 0..5 {
        // Once the process works (holds its partitions: tansu 0.6.0 never expires a
        // member killed half-way through joining, which would stall the group), kill it
        // at a random moment within the next second (a kill moment, not a readiness wait).
        wait_for("the projection process to hold its partitions", Duration::from_secs(60), || {
            let held = ["dn-state", "call-history"].map(|p| held_partitions(&victim, p, &calls_topic).len());
            if held == [8, 8] {
                Ok(())
            } else {
                Err(format!("{held:?}"))
            }
        });
        std::thread::sleep(Duration::from_millis(pseudo_random(k)));
        victim.kill();
        victim = w.spawn(&format!("projections-{}", k + 1), &victim_args);
        guard.0.push(victim.log.clone());
    }
    let monitor = procs.iter_mut().find(|p| p.name == "monitor").unwrap();
    let (calls, config) = freeze(&w, &reference, monitor, rounds);
    for (projection, records) in [("call-history", calls), ("dn-state", calls + config)] {
        let want = caught_up(&w, &reference, projection, records, Duration::from_secs(60));
        let got = caught_up(&w, &w.store, projection, records, Duration::from_secs(90));
        assert!(want.2 > 0, "{projection}: the reference has rows");
        assert_eq!((got.0, got.2), (want.0, want.2), "{projection}: killed five times vs uninterrupted");
    }
    drop(guard);
}

/// A runner's log without its ANSI colour codes.
fn log_text(p: &Proc) -> String {
    let raw = std::fs::read_to_string(&p.log).unwrap_or_default();
    let mut text = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            text.push(c);
        }
    }
    text
}

/// The partitions of `calls` a runner's log says its `projection` holds now (its last
/// assignment).
fn held_partitions(p: &Proc, projection: &str, calls_topic: &str) -> Vec<String> {
    let text = log_text(p);
    let Some(line) = text.lines().rev().find(|l| l.contains("Partitions assigned.") && l.contains(&format!("\"{projection}\""))) else {
        return Vec::new();
    };
    let list = line.split("partitions=").nth(1).unwrap_or("").split_whitespace().next().unwrap_or("");
    list.split(',').filter(|p| p.starts_with(calls_topic)).map(str::to_string).collect()
}

#[test]
fn two_instances_split_the_partitions_and_equal_one() {
    let w = World::start();
    let reference = format!("sqlite://{}", w.path("reference.db").display());
    let endpoints = configure(&w);
    let rounds = 4;
    let a = w.spawn("projections-a", &["projections", "run", "--projection", "call-history"]);
    let b = w.spawn("projections-b", &["projections", "run", "--projection", "call-history"]);
    let refproc =
        w.spawn("reference", &["--store", &reference, "projections", "run", "--projection", "call-history", "--group", "reference"]);
    let guard = logs(&[&a, &b, &refproc]);
    let calls_topic = format!("{}calls", w.prefix);
    let (held_a, held_b) = wait_for("both instances to hold partitions", Duration::from_secs(60), || {
        let (pa, pb) = (held_partitions(&a, "call-history", &calls_topic), held_partitions(&b, "call-history", &calls_topic));
        if !pa.is_empty() && !pb.is_empty() && pa.len() + pb.len() == 8 {
            Ok((pa, pb))
        } else {
            Err(format!("{pa:?} {pb:?}"))
        }
    });
    assert!(held_a.iter().all(|p| !held_b.contains(p)), "{held_a:?} {held_b:?}");
    let mut procs = site(&w, &endpoints, rounds, "4");
    let monitor = procs.iter_mut().find(|p| p.name == "monitor").unwrap();
    let (calls, _) = freeze(&w, &reference, monitor, rounds);
    let want = caught_up(&w, &reference, "call-history", calls, Duration::from_secs(60));
    let got = caught_up(&w, &w.store, "call-history", calls, Duration::from_secs(60));
    assert!(want.2 > 0);
    assert_eq!((got.0, got.2), (want.0, want.2), "two instances vs one");
    drop(guard);
}

#[test]
fn replay_while_serving_switches_without_a_gap() {
    let w = World::start();
    let reference = format!("sqlite://{}", w.path("reference.db").display());
    let endpoints = configure(&w);
    let http = format!("127.0.0.1:{}", free_port());
    let mut procs = Vec::new();
    for (i, ep) in endpoints.iter().enumerate() {
        let t = (i + 1).to_string();
        let d = format!("{}-{}", dn(i as i32 + 1, 1), dn(i as i32 + 1, DNS));
        procs
            .push(w.spawn(&format!("sim{t}"), &["sim", "tserver", "--listen", ep, "--dns", &d, "--calls-per-minute", "240", "--seed", &t]));
    }
    procs.push(w.spawn("dispatcher", &["dispatcher", "--id", "d1"]));
    procs.push(w.spawn("monitor", &["monitor", "--id", "m1", "--heartbeat", "1s"]));
    let live = w.spawn("projections", &["projections", "run"]);
    let serve = w.spawn("serve", &["serve", "--listen", &http]);
    let refproc = w.spawn("reference", &["--store", &reference, "projections", "run", "--group", "reference"]);
    let guard = logs(&[&live, &serve, &refproc]);

    // Some ended call that rang at a DN while it was watched, to ask for throughout.
    let (tserver, connid, dn_) = wait_for("an ended call in the history", Duration::from_secs(90), || {
        for t in 1..=TSERVERS {
            for i in 1..=DNS {
                let (status, body) = http_get(&http, &format!("/v1/tservers/{t}/dns/{}/calls", dn(t, i)))?;
                let rows: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{status} {e}"))?;
                if let Some(r) = rows.as_array().and_then(|a| a.iter().find(|r| r["outcome"] != "in_progress" && r["offered"] == true)) {
                    return Ok((t, r["connid"].as_str().unwrap().to_string(), dn(t, i)));
                }
            }
        }
        Err("no ended call yet".into())
    });
    let before = checksum(&w, &w.store, "call-history").unwrap();

    // Replay while polling the API: every answer is 200 and not empty.
    let replay = std::process::Command::new(env!("CARGO_BIN_EXE_netwatch"))
        .args(["replay", "call-history"])
        .env("NETWATCH_BROKERS", &w.brokers)
        .env("NETWATCH_TOPIC_PREFIX", &w.prefix)
        .env("NETWATCH_STORE", &w.store)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let poller = {
        let (http, connid, dn_) = (http.clone(), connid.clone(), dn_.clone());
        std::thread::spawn(move || {
            let mut polls = 0;
            while rx.try_recv().is_err() {
                for path in [format!("/v1/tservers/{tserver}/calls/{connid}"), format!("/v1/tservers/{tserver}/dns/{dn_}/calls")] {
                    let (status, body) = http_get(&http, &path).unwrap_or_else(|e| panic!("{path}: {e}"));
                    assert_eq!(status, 200, "{path}: {body}");
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                    assert!(v.is_object() || v.as_array().is_some_and(|a| !a.is_empty()), "{path} answered {body}");
                    polls += 1;
                }
            }
            polls
        })
    };
    let out = replay.wait_with_output().unwrap();
    tx.send(()).unwrap();
    let polls = poller.join().expect("the API answered every poll during the replay");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "replay failed: {}{}", stdout, String::from_utf8_lossy(&out.stderr));
    assert!(polls > 10, "only {polls} polls during the replay");
    assert!(stdout.contains("readers switched from g1 to g2"), "{stdout}");
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(progress.contains("events/s"), "progress is shown: {progress}");
    eprintln!("replay progress: {}", progress.lines().last().unwrap_or(""));

    // The live runner followed the switch: it keeps extending g2 while traffic goes on.
    wait_for("the live runner to extend g2", Duration::from_secs(60), || {
        let c = checksum(&w, &w.store, "call-history")?;
        if c.1 == "g2" && c.3 > before.3 {
            Ok(())
        } else {
            Err(format!("{c:?}"))
        }
    });
    let monitor = procs.iter_mut().find(|p| p.name == "monitor").unwrap();
    monitor.kill();
    let calls = w.records("calls").len();
    let want = caught_up(&w, &reference, "call-history", calls, Duration::from_secs(60));
    let got = caught_up(&w, &w.store, "call-history", calls, Duration::from_secs(60));
    assert_eq!((got.0, got.1.as_str(), got.2), (want.0, "g2", want.2), "the rebuilt generation equals an uninterrupted run");
    let (status, body) = http_get(&http, &format!("/v1/tservers/{tserver}/calls/{connid}")).unwrap();
    assert_eq!(status, 200, "{body}");
    api_checks(&w, &http);
    // dn-state replays the same way (config and calls); it equals the reference too.
    let out = w.ok(&["replay", "dn-state"]);
    assert!(out.contains("readers switched from g1 to g2"), "{out}");
    let records = calls + w.records("config").len();
    let want = caught_up(&w, &reference, "dn-state", records, Duration::from_secs(60));
    let got = caught_up(&w, &w.store, "dn-state", records, Duration::from_secs(60));
    assert_eq!((got.0, got.1.as_str(), got.2), (want.0, "g2", want.2), "dn-state rebuilt");
    // So does statistics (groups from config, sums from calls): a replay gives the
    // checksum of the reference, which applied the log once.
    let out = w.ok(&["replay", "statistics"]);
    assert!(out.contains("readers switched from g1 to g2"), "{out}");
    let want = caught_up(&w, &reference, "statistics", records, Duration::from_secs(60));
    let got = caught_up(&w, &w.store, "statistics", records, Duration::from_secs(60));
    assert_eq!((got.0, got.1.as_str(), got.2), (want.0, "g2", want.2), "statistics rebuilt");
    drop(guard);
}

/// GET with the response headers: (status, lower-case headers, body).
fn get_with_headers(addr: &str, path: &str) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string())).collect();
    (status, headers, body.to_string())
}

/// The query API on a frozen log: paging, validation, statistics against history.
fn api_checks(w: &World, http: &str) {
    let json = |path: &str| -> serde_json::Value {
        let (status, body) = http_get(http, path).unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    // The document is generated from the handlers; every path it names is served (the
    // fallback's 404 names /v1/openapi.json), with `{param}`s filled in. The event stream
    // never ends, so it is left out here (tests/e2e_wallboard.rs reads it).
    let doc = json("/v1/openapi.json");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for p in ["/v1/cluster", "/metrics", "/v1/openapi.json", "/v1/tservers/{tserver}/statistics", "/wallboard"] {
        assert!(paths.contains_key(p), "{p} is not in the document");
    }
    for template in paths.keys().filter(|p| *p != "/v1/wallboard/events") {
        let path = template.replace("{tserver}", "1").replace("{dn}", &dn(1, 1)).replace("{connid}", "no-such-call");
        let path = if path.starts_with("/v1/wallboard") { format!("{path}?tserver=1") } else { path };
        let (status, body) = http_get(http, &path).unwrap();
        assert!(!body.contains("no such path"), "{template} is documented but not served: {status} {body}");
        assert!(status == 200 || (status == 404 && template.contains("{connid}")), "{path}: {status} {body}");
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let quarter = 15 * 60 * 1000;
    let from = (now - 3_600_000).div_euclid(quarter) * quarter;
    let mut offered_anywhere = 0;
    for t in 1..=TSERVERS {
        let mut offered_in_history = 0;
        let mut talk_in_history = 0;
        for i in 1..=DNS {
            let base = format!("/v1/tservers/{t}/dns/{}/calls?from={from}", dn(t, i));
            let all = json(&format!("{base}&limit=1000"));
            // Paging with two rows a page walks the same rows, in the same order.
            let mut paged = Vec::new();
            let mut path = format!("{base}&limit=2");
            loop {
                let (status, headers, body) = get_with_headers(http, &path);
                assert_eq!(status, 200, "{path}: {body}");
                paged.extend(serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap());
                match headers.iter().find(|(k, _)| k == "x-next-page") {
                    Some((_, token)) => path = format!("{base}&limit=2&page={token}"),
                    None => break,
                }
            }
            assert_eq!(serde_json::Value::Array(paged), all, "{base}");
            for row in all.as_array().unwrap().iter().filter(|r| !r["ended_ms"].is_null()) {
                offered_in_history += i64::from(row["offered"] == true);
                talk_in_history += row["talk_ms"].as_i64().unwrap();
            }
        }
        // Interval statistics over the same window sum to the history.
        let stats = json(&format!("/v1/tservers/{t}/stats/intervals?from={from}"));
        let sum = |field: &str| stats.as_array().unwrap().iter().map(|s| s[field].as_i64().unwrap()).sum::<i64>();
        assert_eq!((sum("offered"), sum("talk_ms")), (offered_in_history, talk_in_history), "T-Server {t}: {stats}");
        offered_anywhere += offered_in_history;
        let current = json(&format!("/v1/tservers/{t}/stats/current"));
        assert_eq!(current.as_array().unwrap().len(), DNS as usize);
    }
    assert!(offered_anywhere > 0, "the site had traffic");
    // Bad input: 400 with a one-line reason, over HTTP; exit 2 from the CLI.
    for path in [
        "/v1/tservers/1/dns/5001/calls?limit=0",
        "/v1/tservers/1/dns/5001/calls?limit=many",
        "/v1/tservers/1/dns/5001/calls?page=zz",
        "/v1/tservers/1/dns/5001/calls?since=yesterday",
        "/v1/tservers/1/dns/5001/calls?from=5&to=5",
        "/v1/tservers/1/stats/intervals?since=30d",
        "/v1/tservers/x/stats/current",
    ] {
        let (status, body) = http_get(http, path).unwrap();
        assert_eq!(status, 400, "{path}: {body}");
        assert!(!body.trim().is_empty() && !body.trim().contains('\n'), "{path}: {body}");
    }
    assert_eq!(http_get(http, "/v1/tservers/1/dns/9999").unwrap().0, 404);
    for args in [
        &["query", "calls", "--tserver", "1", "--dn", "5001", "--page", "zz"][..],
        &["query", "stats", "1", "--since", "30d"],
        &["replay", "no-such-projection"],
        &["projections", "checksum", "nope"],
        &["--store", "mysql://x", "query", "dns", "1"],
    ] {
        let out = w.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}
