//! The configuration database as a source: a real PostgreSQL (Debian's, started by
//! infra/postgres.sh), plain SQL writes, `netwatch cdc postgres` streaming them into
//! `config`, and the rest of Netwatch acting on them.
//!
//! Needs PostgreSQL 15 with wal2json (infra/postgres.sh install, run by `make test`);
//! without it the tests say so and pass without looking.

mod harness;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use harness::{free_port, registrations, wait_for, LogsOnPanic, World};
use serde_json::Value;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/postgres.sh")
}

/// A throw-away cluster on a free port, stopped and removed when dropped.
struct Postgres {
    data: PathBuf,
    port: u16,
    /// max_slot_wal_keep_size of the cluster (infra/postgres.sh's default when None).
    wal_keep: Option<&'static str>,
}

impl Postgres {
    /// Start one, or None when PostgreSQL with wal2json is not installed.
    fn start() -> Option<Postgres> {
        Postgres::start_with(None)
    }

    /// Start one with the given max_slot_wal_keep_size.
    fn start_with(wal_keep: Option<&'static str>) -> Option<Postgres> {
        let installed = std::path::Path::new("/usr/lib/postgresql/15/bin/initdb").exists()
            && std::path::Path::new("/usr/lib/postgresql/15/lib/wal2json.so").exists();
        if !installed {
            eprintln!("SKIPPED: PostgreSQL 15 with wal2json is not installed (infra/postgres.sh install)");
            return None;
        }
        let port = free_port();
        // Under /tmp itself: the server runs as the postgres user, which must reach it.
        let data = std::env::temp_dir().join(format!("netwatch-pg-{port}-{}", std::process::id()));
        let pg = Postgres { data, port, wal_keep };
        let out = pg.script("start");
        assert!(out.status.success(), "postgres start: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        Some(pg)
    }

    fn script(&self, what: &str) -> std::process::Output {
        let mut command = Command::new(script());
        command.arg(what).env("PG_DATA", &self.data).env("PG_PORT", self.port.to_string());
        if let Some(keep) = self.wal_keep {
            command.env("PG_WAL_KEEP", keep);
        }
        command.output().expect("run infra/postgres.sh")
    }

    fn dsn(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=netwatch", self.port)
    }

    /// Run SQL with psql; its output (unaligned, tuples only).
    fn sql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-tA",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "netwatch",
            ])
            .args(["-c", sql])
            .output()
            .expect("run psql");
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.script("stop");
        let _ = std::fs::remove_dir_all(&self.data);
        let _ = std::fs::remove_file(self.data.with_extension("initdb.log"));
    }
}

/// The `config` records the CDC appended: (position header, event).
fn cdc_events(w: &World, slot: &str) -> Vec<(String, Value)> {
    w.records("config")
        .into_iter()
        .filter(|r| r["headers"]["netwatch.cdc.slot"] == slot && !r["value"].is_null())
        .map(|r| (r["headers"]["netwatch.cdc.position"].as_str().unwrap_or_default().to_string(), r["value"].clone()))
        .collect()
}

#[test]
fn sql_writes_reach_config_the_dispatcher_and_the_monitor_and_a_refused_one_the_deadletter() {
    let Some(pg) = Postgres::start() else { return };
    let w = World::start();
    let sim_port = free_port();
    let sim = format!("127.0.0.1:{sim_port}");
    let procs = [
        w.spawn("sim", &["sim", "tserver", "--listen", &sim, "--name", "TS1", "--dns", "5001-5004"]),
        w.spawn("dispatcher", &["dispatcher", "--id", "d1"]),
        w.spawn("monitor", &["monitor", "--id", "m1"]),
        w.spawn("cdc", &["cdc", "postgres", "--dsn", &pg.dsn(), "--slot", "s1", "--poll", "100ms", "--heartbeat", "1s"]),
    ];
    let _guard = LogsOnPanic(procs.iter().map(|p| p.log.clone()).collect());

    // Plain SQL, as a provisioning tool writes it.
    pg.sql(&format!("INSERT INTO tservers (id, name, host, port) VALUES (1, 'TS1', '127.0.0.1', {sim_port})"));
    pg.sql("BEGIN; INSERT INTO dns VALUES (101, 1, '5001', 'acd-position'), (102, 1, '5002', 'extension'), (103, 1, '5003', 'extension'); COMMIT;");
    let registered = |want: &[&str]| {
        wait_for(&format!("{want:?} registered at the simulator"), Duration::from_secs(60), || {
            let r = registrations(&w, &sim)?;
            let got: Vec<&str> = r.iter().filter(|(_, m)| m.iter().any(|m| m == "m1")).map(|(dn, _)| dn.as_str()).collect();
            (got == want).then_some(()).ok_or(format!("{r:?}"))
        })
    };
    registered(&["5001", "5002", "5003"]);

    // An update and a delete.
    pg.sql("UPDATE dns SET type = 'acd-position' WHERE dbid = 102");
    pg.sql("DELETE FROM dns WHERE dbid = 103");
    registered(&["5001", "5002"]);

    // A DN of a T-Server Netwatch does not know: refused with its reason, and the stream
    // goes on.
    pg.sql("INSERT INTO dns VALUES (201, 99, '9001', 'extension')");
    pg.sql("INSERT INTO dns VALUES (104, 1, '5004', 'extension')");
    registered(&["5001", "5002", "5004"]);
    let dead = wait_for("the refused change in deadletter", Duration::from_secs(60), || {
        let dead: Vec<Value> = w.records("deadletter").into_iter().filter(|d| d["headers"]["netwatch.cdc.slot"] == "s1").collect();
        (!dead.is_empty()).then_some(dead).ok_or_else(|| "none yet".to_string())
    });
    assert_eq!(dead.len(), 1, "{dead:?}");
    let reason = dead[0]["headers"]["netwatch.reason"].as_str().unwrap();
    assert!(reason.contains("99"), "the reason names the unknown T-Server: {reason}");
    assert_eq!(dead[0]["headers"]["netwatch.source.topic"], "postgres:s1");

    // In `config`: every change once, in commit order, each with its position.
    let events = cdc_events(&w, "s1");
    let kinds: Vec<String> = events
        .iter()
        .map(|(_, e)| {
            let c = &e["change"];
            let key = c["dbid"].as_i64().or(c["id"].as_i64()).unwrap_or(-1);
            format!("{}:{key}", c["type"].as_str().unwrap_or("?"))
        })
        .collect();
    assert_eq!(
        kinds,
        ["TServerCreated:1", "DnCreated:101", "DnCreated:102", "DnCreated:103", "DnUpdated:102", "DnDeleted:103", "DnCreated:104"],
        "{events:?}"
    );
    let positions: Vec<&str> = events.iter().map(|(p, _)| p.as_str()).collect();
    let mut sorted = positions.clone();
    sorted.sort_by_key(|p| position_key(p));
    assert_eq!(positions, sorted, "positions grow with commit order");
    // The slot is advanced past what was appended: it holds nothing more.
    caught_up(&pg, "s1");
}

/// Wait until the slot is advanced past everything committed now.
fn caught_up(pg: &Postgres, slot: &str) {
    let end = pg.sql("SELECT pg_current_wal_lsn()");
    wait_for(&format!("slot {slot} to pass {end}"), Duration::from_secs(180), || {
        let at = pg.sql(&format!("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'"));
        (pg.sql(&format!("SELECT '{at}'::pg_lsn >= '{end}'::pg_lsn")) == "t").then_some(()).ok_or(at)
    });
}

/// (table, operation, key) of a CDC event, as the trigger's change log writes them.
fn logged(event: &Value) -> (String, String, i64) {
    let c = &event["change"];
    let (tbl, op) = match c["type"].as_str().unwrap_or_default() {
        "TServerCreated" => ("tservers", "INSERT"),
        "TServerUpdated" => ("tservers", "UPDATE"),
        "TServerDeleted" => ("tservers", "DELETE"),
        "DnCreated" => ("dns", "INSERT"),
        "DnUpdated" => ("dns", "UPDATE"),
        "DnDeleted" => ("dns", "DELETE"),
        other => panic!("unexpected change {other}: {event}"),
    };
    (tbl.to_string(), op.to_string(), c["dbid"].as_i64().or(c["id"].as_i64()).unwrap())
}

#[test]
fn kill_9_at_five_moments_during_ten_thousand_changes_appends_each_once_in_commit_order() {
    let Some(pg) = Postgres::start() else { return };
    let w = World::start();
    let projections = w.spawn("projections", &["projections", "run", "--projection", "dn-state"]);
    let cdc_args = ["cdc", "postgres", "--dsn", &pg.dsn(), "--slot", "s2", "--poll", "50ms", "--heartbeat", "1s"];
    let mut cdc = w.spawn("cdc", &cdc_args);
    let guard = LogsOnPanic(vec![projections.log.clone(), cdc.log.clone()]);
    // The changes come after the first start's snapshot (of empty tables): each of them
    // goes through the stream.
    wait_for("the CDC to stream", Duration::from_secs(60), || {
        let log = std::fs::read_to_string(&cdc.log).map_err(|e| e.to_string())?;
        log.contains("Streaming changes.").then_some(()).ok_or(log)
    });
    pg.sql("INSERT INTO tservers (id, name, host, port) VALUES (1, 'TS1', '127.0.0.1', 1)");

    // 1,000 transactions of 10 changes each: new DNs, type changes, deletes. Each
    // transaction sleeps a few ms, so that the writes last while the process is killed.
    let mut seed = u64::from(free_port()) | 1;
    eprintln!("seed {seed}");
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut live, mut dbid) = (Vec::<i64>::new(), 1000);
    let mut sql = String::new();
    for _ in 0..1000 {
        sql.push_str("BEGIN;\n");
        for _ in 0..10 {
            let r = next() % 10;
            if live.len() < 5 || r < 5 {
                dbid += 1;
                live.push(dbid);
                sql.push_str(&format!("INSERT INTO dns VALUES ({dbid}, 1, '{}', 'extension');\n", 10_000 + dbid));
            } else if r < 8 {
                let d = live[(next() % live.len() as u64) as usize];
                sql.push_str(&format!(
                    "UPDATE dns SET type = CASE type WHEN 'extension' THEN 'acd-position' ELSE 'extension' END WHERE dbid = {d};\n"
                ));
            } else {
                let d = live.swap_remove((next() % live.len() as u64) as usize);
                sql.push_str(&format!("DELETE FROM dns WHERE dbid = {d};\n"));
            }
        }
        sql.push_str("SELECT pg_sleep(0.004);\nCOMMIT;\n");
    }
    let file = w.file("changes.sql", &sql);
    let mut writer = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "postgres",
            "netwatch",
            "-o",
            "/dev/null",
        ])
        .arg("-f")
        .arg(&file)
        .spawn()
        .expect("run psql");

    // Five kills at random moments while the writes go on, each followed by a restart.
    let mut kills = 0;
    while kills < 5 {
        std::thread::sleep(Duration::from_millis(200 + next() % 800));
        cdc.kill();
        kills += 1;
        cdc = w.spawn("cdc", &cdc_args);
    }
    assert!(writer.wait().unwrap().success(), "the writes failed");
    let changes: i64 = pg.sql("SELECT count(*) FROM change_log").parse().unwrap();
    assert_eq!(changes, 10_001, "1 T-Server and 10,000 DN changes committed");
    assert!(cdc.running(), "the last restart runs");

    // `config` holds every committed change once, in commit order (psql commits one
    // transaction after the other, so the change log's order is the commit order).
    // Done when the slot is advanced past the last commit (it advances only after the
    // broker acknowledged; an idle slot is advanced to the WAL's end by the heartbeat):
    // asked of PostgreSQL, so that the wait does not load the broker.
    caught_up(&pg, "s2");
    let events = cdc_events(&w, "s2");
    let want: Vec<(String, String, i64)> = pg
        .sql("SELECT tbl || ' ' || op || ' ' || row_key FROM change_log ORDER BY seq")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].to_string(), f[1].to_string(), f[2].parse().unwrap())
        })
        .collect();
    let got: Vec<(String, String, i64)> = events.iter().map(|(_, e)| logged(e)).collect();
    assert_eq!(got.len(), want.len(), "as many events as committed changes");
    if let Some(i) = (0..got.len()).find(|i| got[*i] != want[*i]) {
        panic!("event {i} is {:?}, the change log has {:?}", got[i], want[i]);
    }
    assert!(w.records("deadletter").is_empty(), "nothing refused");

    // The projection's configuration equals the table's final content.
    let mut table: Vec<String> = pg.sql("SELECT number FROM dns WHERE tserver = 1 ORDER BY number").lines().map(str::to_string).collect();
    table.sort();
    wait_for("the projection to hold the table's DNs", Duration::from_secs(60), || {
        let rows = w.json(&["query", "dns", "1", "-o", "json"])?;
        let mut configured: Vec<String> = rows
            .as_array()
            .ok_or("not a list")?
            .iter()
            .filter(|r| r["configured"] == true)
            .map(|r| r["dn"].as_str().unwrap_or_default().to_string())
            .collect();
        configured.sort();
        (configured == table).then_some(()).ok_or(format!("{} configured, {} in the table", configured.len(), table.len()))
    });
    drop(guard);
    drop(cdc);
}

/// `netwatch bench cdc` at a tiny size: its own PostgreSQL and CDC process (the figures
/// belong to `make bench`, never asserted here; the run itself checks that `config` holds
/// every committed change).
#[test]
fn bench_cdc_runs_at_a_tiny_size_and_prints_its_table() {
    let installed = std::path::Path::new("/usr/lib/postgresql/15/lib/wal2json.so").exists();
    if !installed {
        eprintln!("SKIPPED: PostgreSQL 15 with wal2json is not installed (infra/postgres.sh install)");
        return;
    }
    let w = World::start();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let port = free_port().to_string();
    let out =
        w.run(&["bench", "cdc", "--changes", "45", "--per-txn", "10", "--runs", "1", "--repo", repo.to_str().unwrap(), "--pg-port", &port]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    // 45 changes in 5 transactions (the last of 5 changes), in each figure.
    assert!(
        table.contains("| raw broker: 45 `config` records")
            && table.contains("committed in 5 transactions of 10")
            && table.contains("| CDC changes/s, backlog: 45 changes")
            && table.contains("| CDC changes/s, live: 45 changes"),
        "{table}"
    );
}

/// A stopped CDC whose slot PostgreSQL invalidated (it held more WAL than
/// max_slot_wal_keep_size allows) is refused with the reason and the way out; following
/// it — drop the slot, run with a new one — brings the configuration to the tables' content
/// through a new snapshot.
#[test]
fn an_invalidated_slot_is_reported_and_a_new_slot_snapshots_what_was_missed() {
    // Keep no WAL for slots beyond what checkpoints need: a few switched segments lose it.
    let Some(pg) = Postgres::start_with(Some("1MB")) else { return };
    let w = World::start();
    let args = |slot: &'static str| {
        ["cdc", "postgres", "--dsn", &pg.dsn(), "--slot", slot, "--poll", "50ms", "--heartbeat", "1h"].map(str::to_string)
    };
    let a = args("s5");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut cdc = w.spawn("cdc", &a);
    let guard = LogsOnPanic(vec![cdc.log.clone()]);
    pg.sql("INSERT INTO tservers (id, name, host, port) VALUES (1, 'TS1', '127.0.0.1', 1)");
    wait_for("the T-Server in config", Duration::from_secs(60), || {
        let n = cdc_events(&w, "s5").len();
        (n == 1).then_some(()).ok_or(format!("{n} events"))
    });
    cdc.kill();
    drop(guard);

    // While it is stopped, DNs are written and the WAL moves on, segment after segment,
    // until a checkpoint removes what the slot still needed.
    for i in 0..20 {
        pg.sql(&format!("INSERT INTO dns VALUES ({}, 1, '{}', 'extension')", 100 + i, 5000 + i));
        pg.sql("SELECT pg_switch_wal()");
        pg.sql("CHECKPOINT");
        if pg.sql("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 's5'") == "lost" {
            break;
        }
    }
    assert_eq!(pg.sql("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 's5'"), "lost", "the slot was invalidated");
    let written: Vec<String> = pg.sql("SELECT number FROM dns ORDER BY dbid").lines().map(str::to_string).collect();

    // The restart refuses to go on from a slot that lost changes, and says what to do.
    let out = w.run(&a);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("slot s5 was invalidated") && stderr.contains("pg_drop_replication_slot('s5')"), "{stderr}");
    assert!(cdc_events(&w, "s5").len() == 1, "nothing appended from the lost slot");

    // The way out: drop it and run with a new slot; its snapshot appends what config lacks.
    pg.sql("SELECT pg_drop_replication_slot('s5')");
    let b = args("s6");
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    let cdc = w.spawn("cdc", &b);
    let _guard = LogsOnPanic(vec![cdc.log.clone()]);
    wait_for("the new slot's snapshot in config", Duration::from_secs(60), || {
        let created: Vec<String> = cdc_events(&w, "s6")
            .iter()
            .filter(|(_, e)| e["change"]["type"] == "DnCreated")
            .map(|(_, e)| e["change"]["number"].as_str().unwrap_or_default().to_string())
            .collect();
        (created == written).then_some(()).ok_or(format!("{created:?}"))
    });
    // The T-Server was in config already and is unchanged: not appended again.
    assert!(cdc_events(&w, "s6").iter().all(|(_, e)| e["change"]["type"] == "DnCreated"), "{:?}", cdc_events(&w, "s6"));
}

/// What a look appended, by kind and key: `DnCreated:101@1:5001`.
fn kinds(events: &[(String, Value)]) -> Vec<String> {
    events
        .iter()
        .map(|(_, e)| {
            let c = &e["change"];
            let key = c["dbid"].as_i64().or(c["id"].as_i64()).unwrap_or(-1);
            format!("{}:{key}@{}:{}", c["type"].as_str().unwrap_or("?"), c["tserver"], c["number"].as_str().unwrap_or_default())
        })
        .collect()
}

/// This slot's events in commit order (the log is read partition by partition).
fn in_commit_order(w: &World, slot: &str) -> Vec<(String, Value)> {
    let mut events = cdc_events(w, slot);
    events.sort_by_key(|(p, _)| position_key(p));
    events
}

/// A position header (`<commit LSN>#<index>`) as a sortable key.
fn position_key(position: &str) -> (u64, u32) {
    let (lsn, i) = position.split_once('#').unwrap();
    let (hi, lo) = lsn.split_once('/').unwrap();
    (u64::from_str_radix(hi, 16).unwrap() << 32 | u64::from_str_radix(lo, 16).unwrap(), i.parse().unwrap())
}

/// Wait until no process reads the slot (a killed reader's server process may finish its
/// query first).
fn slot_released(pg: &Postgres, slot: &str) {
    wait_for(&format!("slot {slot} released"), Duration::from_secs(60), || {
        let active = pg.sql(&format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'"));
        (active == "f").then_some(()).ok_or(active)
    });
}

/// A crash after the broker acknowledged a look's events but before the slot's advance,
/// made exact: the slot is put back as a copy taken before those transactions, so it hands
/// them out again. The restart appends none of them twice — among them a refused DN, a DN
/// moved to another T-Server (a deletion and a creation in two partitions) and, last, a DN
/// retyped and renumbered in one transaction (three events whose count depends on the
/// configuration they are mapped against) — and the configuration it rebuilt is right:
/// deleting those DNs afterwards is accepted, not refused.
#[test]
fn a_slot_handing_out_appended_transactions_again_appends_nothing_twice() {
    let Some(pg) = Postgres::start() else { return };
    let w = World::start();
    let args = ["cdc", "postgres", "--dsn", &pg.dsn(), "--slot", "r1", "--poll", "50ms", "--heartbeat", "1s"];
    pg.sql(
        "INSERT INTO tservers (id, name, host, port) VALUES (1, 'TS1', '127.0.0.1', 1), (2, 'TS2', '127.0.0.1', 2); \
         INSERT INTO dns VALUES (101, 1, '5001', 'extension'), (102, 1, '5002', 'extension')",
    );
    let dead = || w.records("deadletter").into_iter().filter(|d| d["headers"]["netwatch.cdc.slot"] == "r1").count();
    let mut cdc = w.spawn("cdc", &args);
    let guard = LogsOnPanic(vec![cdc.log.clone()]);
    wait_for("the snapshot in config", Duration::from_secs(60), || {
        let n = cdc_events(&w, "r1").len();
        (n == 4).then_some(()).ok_or(format!("{n} events"))
    });
    cdc.kill();
    drop(guard);
    slot_released(&pg, "r1");
    pg.sql("SELECT pg_copy_logical_replication_slot('r1', 'r1_before')");

    let mut cdc = w.spawn("cdc", &args);
    let guard = LogsOnPanic(vec![cdc.log.clone()]);
    pg.sql("INSERT INTO dns VALUES (103, 9, '9003', 'extension')");
    pg.sql("UPDATE dns SET tserver = 2 WHERE dbid = 102");
    pg.sql("BEGIN; UPDATE dns SET type = 'acd-position' WHERE dbid = 101; UPDATE dns SET number = '5011' WHERE dbid = 101; COMMIT;");
    caught_up(&pg, "r1");
    let appended = in_commit_order(&w, "r1");
    assert_eq!(
        kinds(&appended[4..]),
        ["DnDeleted:102@1:5002", "DnCreated:102@2:5002", "DnUpdated:101@1:5001", "DnDeleted:101@1:5001", "DnCreated:101@1:5011",],
        "the move is a deletion and a creation, so is the renumbering"
    );
    assert_eq!(dead(), 1, "the DN of T-Server 9 is refused");
    cdc.kill();
    drop(guard);

    // Put the slot back where it was before those three transactions.
    slot_released(&pg, "r1");
    pg.sql("SELECT pg_drop_replication_slot('r1')");
    pg.sql("SELECT pg_copy_logical_replication_slot('r1_before', 'r1')");
    pg.sql("SELECT pg_drop_replication_slot('r1_before')");
    let cdc = w.spawn("cdc", &args);
    let _guard = LogsOnPanic(vec![cdc.log.clone()]);
    caught_up(&pg, "r1");
    let again = in_commit_order(&w, "r1");
    assert_eq!(kinds(&again), kinds(&appended), "nothing appended twice");
    assert_eq!(dead(), 1, "nothing dead-lettered twice");

    // The configuration the restart rebuilt and replayed into holds DN 101 as 5011 on
    // TS1 and DN 102 on TS2: deleting them is accepted.
    pg.sql("DELETE FROM dns WHERE dbid IN (101, 102)");
    wait_for("the deletions in config", Duration::from_secs(60), || {
        let events = cdc_events(&w, "r1");
        (events.len() == appended.len() + 2).then_some(()).ok_or(format!("{:?}", kinds(&events)))
    });
    let mut deleted = kinds(&in_commit_order(&w, "r1")[appended.len()..]);
    deleted.sort();
    assert_eq!(deleted, ["DnDeleted:101@1:5011", "DnDeleted:102@2:5002"]);
    assert_eq!(dead(), 1, "neither deletion refused");
}
