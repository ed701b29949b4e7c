//! The capture path through broker faults, with real processes: a simulated T-Server
//! sends a steady stream of events and logs every event it wrote to a link; the broker is
//! killed with SIGKILL for 45 s and restarted, later paused with SIGSTOP for 40 s. Every
//! event the T-Server sent while a link was up must be in `calls` exactly once, in the
//! order sent, and the broker must still answer. A second test flaps the simulator's
//! switch link on a live link: every DN must leave `unknown` within 10 s.

mod harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use harness::{free_port, wait_for, LogsOnPanic, World};
use serde_json::Value;

/// Events per second of the stream.
const RATE: u64 = 50;

/// One line of the simulator's sent log.
#[derive(Debug, serde::Deserialize)]
struct Sent {
    client: String,
    conn: u64,
    seq: u64,
    time_ms: i64,
}

/// The simulator's sent log; a line still being written (no newline yet) is left for later.
fn sent_log(w: &World) -> Vec<Sent> {
    std::fs::read_to_string(w.path("sent.jsonl"))
        .unwrap_or_default()
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn calls(w: &World) -> Vec<Value> {
    w.records("calls").into_iter().map(|r| r["value"].clone()).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Wait until the simulator has sent `n` more events than now.
fn wait_for_more_sent(w: &World, n: usize, within: Duration) {
    let before = sent_log(w).len();
    wait_for(&format!("{n} more events sent"), within, || {
        let now = sent_log(w).len();
        if now >= before + n {
            Ok(())
        } else {
            Err(format!("{} sent since", now - before))
        }
    });
}

/// Configure T-Server 1 on `port` with DNs 5001..=5010 and start the stream simulator.
fn site(w: &World, port: u16) -> harness::Proc {
    let mut import = format!("{{\"op\":\"create_tserver\",\"id\":1,\"name\":\"TS1\",\"host\":\"127.0.0.1\",\"port\":{port}}}\n");
    for i in 1..=10 {
        import.push_str(&format!("{{\"op\":\"create_dn\",\"tserver\":1,\"dbid\":{},\"number\":\"{}\"}}\n", 100 + i, 5000 + i));
    }
    w.ok(&["config", "import", w.file("site.jsonl", &import).to_str().unwrap()]);
    let sent = w.path("sent.jsonl");
    w.spawn(
        "sim",
        &[
            "sim",
            "tserver",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--dns",
            "5001-5010",
            "--stream",
            &RATE.to_string(),
            "--sent-log",
            sent.to_str().unwrap(),
        ],
    )
}

#[test]
fn through_a_broker_kill_and_pause_every_event_is_in_calls_once_and_every_role_recovers() {
    let mut w = World::start();
    let port = free_port();
    let sim = site(&w, port);
    let mut monitor = w.spawn("monitor", &["monitor", "--id", "m1", "--heartbeat", "1s"]);
    let dispatcher = w.spawn("dispatcher", &["dispatcher", "--id", "d1"]);
    let projections = w.spawn("projections", &["projections", "run"]);
    let logs = [monitor.log.clone(), dispatcher.log.clone(), projections.log.clone()];
    let _logs = LogsOnPanic(logs.iter().cloned().chain([sim.log.clone(), w.path("broker.err")]).collect());
    wait_for_more_sent(&w, 5 * RATE as usize, Duration::from_secs(60));

    // The broker is killed for 45 s (the outage is the scenario, not a wait), then
    // restarted on the same data. Within 30 s of it answering again, every slot is owned
    // and the projections apply what comes, with no process restarted.
    w.kill_broker();
    let killed = (now_ms(), Instant::now());
    std::thread::sleep(Duration::from_secs(45));
    let killed = (killed.0, now_ms(), killed.1.elapsed());
    w.restart_broker();
    eprintln!("broker down for {:?}", killed.2);
    let back = recovered(&w, "the broker's restart");
    eprintln!("after the restart: every slot owned and the projections caught up within {back:?}");

    // Then paused for 40 s.
    w.signal_broker("STOP");
    let paused = now_ms();
    std::thread::sleep(Duration::from_secs(40));
    w.signal_broker("CONT");
    let resumed = now_ms();
    let back = recovered(&w, "the pause");
    eprintln!("after the pause: every slot owned and the projections caught up within {back:?}");
    // Each role said it was cut off, and that the broker answers again.
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.matches("Cut off from the broker").count() >= 2, "{} did not say it was cut off twice", log.display());
        assert!(text.matches("The broker answers again").count() >= 2, "{} did not say the broker was back", log.display());
    }

    // The monitor stops: it unregisters every DN it has, so nothing more is sent to it,
    // and delivers what it read.
    let stopped = std::process::Command::new("kill").arg(monitor.pid().to_string()).status().unwrap();
    assert!(stopped.success());
    wait_for("the monitor to stop", Duration::from_secs(30), || if monitor.running() { Err("running".into()) } else { Ok(()) });

    // Every event sent to a link is in `calls` once, in the order sent, per link session.
    let sent = sent_log(&w);
    let records = calls(&w);
    let mut sessions: Vec<(String, Vec<i64>)> = Vec::new();
    for v in records.iter().filter(|v| v["tserver"] == 1) {
        let session = v["session"].as_str().unwrap().to_string();
        if sessions.last().map(|(s, _)| s != &session).unwrap_or(true) {
            assert!(!sessions.iter().any(|(s, _)| s == &session), "session {session} is interleaved with another");
            sessions.push((session.clone(), Vec::new()));
        }
        if let Some(seq) = v["link_seq"].as_i64() {
            sessions.last_mut().unwrap().1.push(seq);
        }
    }
    let mut conns: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for s in &sent {
        assert_eq!(s.client, "m1");
        conns.entry(s.conn).or_default().push(s.seq as i64);
    }
    let sessions: Vec<Vec<i64>> = sessions.into_iter().map(|(_, seqs)| seqs).filter(|seqs| !seqs.is_empty()).collect();
    let conns: Vec<Vec<i64>> = conns.into_values().collect();
    assert_eq!(sessions.len(), conns.len(), "one link session in calls per connection the simulator served");
    for (i, (got, want)) in sessions.iter().zip(&conns).enumerate() {
        assert_eq!(got.len(), want.len(), "link {}: {} events in calls, {} sent", i + 1, got.len(), want.len());
        assert_eq!(got, want, "link {}: the events in calls are exactly those sent, in order", i + 1);
    }
    let total: usize = conns.iter().map(Vec::len).sum();
    // The capture went on while the broker was away: events sent during each outage are
    // in `calls` (read, queued, appended once the broker was back).
    let during = |from: i64, to: i64| sent.iter().filter(|s| s.time_ms >= from && s.time_ms < to).count();
    let (in_kill, in_pause) = (during(killed.0, killed.1), during(paused, resumed));
    eprintln!("{total} events sent on {} links, all in calls once and in order; {in_kill} sent while the broker was killed, {in_pause} while paused", conns.len());
    assert!(in_kill > 0 && in_pause > 0, "events sent during each outage were captured ({in_kill}, {in_pause})");
    // Every link session that ended says so in `calls`.
    let ends = records.iter().filter(|v| v["body"]["type"] == "LinkDisconnected").count();
    assert!(ends >= conns.len(), "{ends} LinkDisconnected for {} links", conns.len());
    assert!(!w.broker_log().contains("panicked"), "the broker did not panic");
    // The monitor kept its link through both outages: one link session for the whole run.
    eprintln!("{} link sessions", conns.len());
    assert_eq!(conns.len(), 1, "the link was kept through the outages");
    // And the projections applied everything once the stream was over.
    wait_for("the projections to have applied the whole log", Duration::from_secs(30), || {
        let s = w.json(&["status", "--json"])?;
        let lags: Vec<i64> = s["projections"].as_array().unwrap().iter().map(|p| p["lag"].as_i64().unwrap()).collect();
        if lags.iter().all(|l| *l == 0) {
            Ok(())
        } else {
            Err(format!("lags {lags:?}"))
        }
    });
}

/// Within 30 s of the broker answering: every slot owned by a live monitor, every
/// `config` partition by a live dispatcher, and every projection less than two seconds of
/// the stream behind (it keeps running); how long that took.
fn recovered(w: &World, after: &str) -> Duration {
    let out = w.run(&["topics", "wait", "--timeout", "30s"]);
    assert!(out.status.success(), "the broker answers after {after}: {}", String::from_utf8_lossy(&out.stderr));
    let answering = Instant::now();
    wait_for(&format!("every slot owned and the projections applying, after {after}"), Duration::from_secs(30), || {
        let s = w.json(&["status", "--json"])?;
        let unowned = s["unowned_slots"].as_array().map(Vec::len).unwrap_or(usize::MAX);
        let lags: Vec<i64> = s["projections"].as_array().unwrap().iter().map(|p| p["lag"].as_i64().unwrap_or(i64::MAX)).collect();
        let config: std::collections::BTreeSet<i64> = s["dispatchers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|d| d["partitions"].as_array().unwrap().iter().filter_map(Value::as_i64))
            .collect();
        if unowned == 0 && lags.iter().all(|l| *l <= 2 * RATE as i64) && config.len() == 8 {
            Ok(())
        } else {
            Err(format!("{unowned} slots unowned, projection lags {lags:?}, config partitions owned {config:?}"))
        }
    });
    answering.elapsed()
}

#[test]
fn a_switch_link_flap_on_a_live_link_leaves_no_dn_unknown_for_long() {
    let w = World::start();
    let port = free_port();
    let endpoint = format!("127.0.0.1:{port}");
    let sim = site(&w, port);
    let procs = [
        w.spawn("monitor", &["monitor", "--id", "m1", "--heartbeat", "1s"]),
        w.spawn("dispatcher", &["dispatcher", "--id", "d1"]),
        w.spawn("projections", &["projections", "run", "--projection", "dn-state"]),
    ];
    let _logs = LogsOnPanic(procs.iter().map(|p| p.log.clone()).chain([sim.log.clone()]).collect());
    let states = |w: &World| -> Result<Vec<Value>, String> { Ok(w.json(&["query", "dns", "1"])?.as_array().cloned().unwrap_or_default()) };
    let count = |dns: &[Value], state: &str| dns.iter().filter(|d| d["call_state"] == state).count();
    wait_for("every DN known", Duration::from_secs(60), || match states(&w) {
        Ok(d) if d.len() == 10 && count(&d, "unknown") == 0 => Ok(()),
        other => Err(format!("{other:?}")),
    });

    w.ok(&["sim", "switch-link", &endpoint, "down"]);
    wait_for("every DN unknown while the switch link is down", Duration::from_secs(30), || match states(&w) {
        Ok(d) if count(&d, "unknown") == 10 => Ok(()),
        other => Err(format!("{other:?}")),
    });
    w.ok(&["sim", "switch-link", &endpoint, "up"]);
    let up = Instant::now();
    wait_for("every DN known again within 10 s", Duration::from_secs(10), || match states(&w) {
        Ok(d) if count(&d, "unknown") == 0 => Ok(()),
        other => Err(format!("{other:?}")),
    });
    eprintln!("every DN known again {:?} after the switch link came back", up.elapsed());
    // New calls show in DN state again (the stream rings, answers and releases calls).
    wait_for("a call in DN state after the flap", Duration::from_secs(30), || match states(&w) {
        Ok(d) if count(&d, "ringing") + count(&d, "talking") > 0 => Ok(()),
        other => Err(format!("{other:?}")),
    });
}

/// `infra/broker.sh watch` (what `make run` starts beside the broker) says in one line
/// when the broker stops answering and answers again, restarts it after it panicked (the
/// tansu trap of docs/broker-notes.md, reproduced with a monitor whose sends time out)
/// and after it exited.
#[test]
fn the_broker_watch_reports_a_silent_broker_and_restarts_a_panicked_or_dead_one() {
    let dir = tempfile::Builder::new().prefix("netwatch-watch-").tempdir().unwrap();
    let port = free_port().to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/broker.sh");
    let data = dir.path().join("broker");
    let env = |c: &mut std::process::Command| {
        c.env("BROKER_DATA", &data)
            .env("BROKER_PORT", &port)
            .env("NETWATCH_BIN", env!("CARGO_BIN_EXE_netwatch"))
            .env("BROKER_WATCH_INTERVAL", "1")
            .env("NETWATCH_BROKERS", format!("127.0.0.1:{port}"))
            .env("NETWATCH_TOPIC_PREFIX", "watch.")
            .env("NETWATCH_STORE", format!("sqlite://{}/nw.db", dir.path().display()))
            .env("NETWATCH_CONFIG_SNAPSHOT", dir.path().join("config-snapshots"));
    };
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new(args[0]);
        c.args(&args[1..]);
        env(&mut c);
        c.output().unwrap()
    };
    assert!(run(&[script, "start"]).status.success());
    let out_path = dir.path().join("watch.out");
    let mut watch = std::process::Command::new(script);
    watch.arg("watch").stdout(std::fs::File::create(&out_path).unwrap());
    env(&mut watch);
    let mut watch = Child(watch.spawn().unwrap());
    let _stop = Stop(Box::new({
        let (script, env_data, env_port) = (script.to_string(), data.clone(), port.clone());
        move || {
            let _ = std::process::Command::new(&script).arg("stop").env("BROKER_DATA", &env_data).env("BROKER_PORT", &env_port).status();
        }
    }));
    let pid = || std::fs::read_to_string(data.join("tansu.pid")).unwrap().trim().to_string();
    let signal = |sig: &str| assert!(std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid()).status().unwrap().success());
    let said = |what: &str| {
        let what = what.to_string();
        let out_path = out_path.clone();
        wait_for(&format!("the watch to say {what:?}"), Duration::from_secs(40), move || {
            let out = std::fs::read_to_string(&out_path).unwrap_or_default();
            if out.contains(&what) {
                Ok(())
            } else {
                Err(out)
            }
        })
    };

    signal("STOP");
    said("broker: not answering");
    signal("CONT");
    said("broker: answering again after");

    // The trap: a client whose idempotent sends time out while the broker is paused.
    let nw = env!("CARGO_BIN_EXE_netwatch");
    assert!(run(&[nw, "topics", "create"]).status.success());
    let mut monitor = std::process::Command::new(nw);
    monitor.args(["monitor", "--id", "trap", "--heartbeat", "1s", "--kafka-option", "message.timeout.ms=3000"]);
    env(&mut monitor);
    let mut monitor = Child(monitor.stderr(std::process::Stdio::null()).spawn().unwrap());
    wait_for("the monitor's heartbeats in the log", Duration::from_secs(30), || {
        let out = run(&[nw, "cat", "monitors", "--from-beginning"]);
        let heartbeats = String::from_utf8_lossy(&out.stdout).matches("Heartbeat").count();
        if heartbeats >= 2 {
            Ok(())
        } else {
            Err(format!("{heartbeats} heartbeats"))
        }
    });
    signal("STOP");
    std::thread::sleep(Duration::from_secs(10));
    signal("CONT");
    said("broker: tansu panicked at");
    monitor.0.kill().unwrap();
    let _ = monitor.0.wait();
    wait_for("the restarted broker to take a change", Duration::from_secs(60), || {
        let out = run(&[nw, "config", "tserver", "create", "--id", "1", "--name", "TS1", "--host", "127.0.0.1", "--port", "7001"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });

    // Before the kill, the watch has finished restarting after every panic it reported (a
    // panic comes back once or twice while the trapped client is still connected; one panic
    // can write several lines), and no panic line came for 2 s, twice the watch's interval.
    let (panic_lines, stable_since) = (std::cell::Cell::new(usize::MAX), std::cell::Cell::new(std::time::Instant::now()));
    wait_for("the watch to have restarted the broker after every panic", Duration::from_secs(60), || {
        let out = std::fs::read_to_string(&out_path).unwrap_or_default();
        let in_log =
            std::fs::read_to_string(data.join("tansu.log")).unwrap_or_default().lines().filter(|l| l.contains("panicked at")).count();
        let (reported, restarted) = (out.matches("tansu panicked at").count(), out.matches("broker: running again after").count());
        if panic_lines.replace(in_log) != in_log {
            stable_since.set(std::time::Instant::now());
        }
        let settled = stable_since.get().elapsed() >= Duration::from_secs(2) && reported == restarted;
        if settled && run(&[nw, "topics", "wait", "--timeout", "2s"]).status.success() {
            Ok(())
        } else {
            Err(format!("{in_log} panic lines in the broker's log, {reported} panics reported, {restarted} restarts done"))
        }
    });
    signal("KILL");
    said("broker: tansu exited");
    wait_for("the broker to answer after its restart", Duration::from_secs(40), || {
        let out = run(&[nw, "topics", "wait", "--timeout", "2s"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    watch.0.kill().unwrap();
}

/// A child process killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a clean-up when dropped.
struct Stop(Box<dyn Fn()>);

impl Drop for Stop {
    fn drop(&mut self) {
        (self.0)()
    }
}
