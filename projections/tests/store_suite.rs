//! The store scenarios, written once and run for every engine: SQLite always, ScyllaDB
//! when `SCYLLA_NODES` (e.g. `127.0.0.1:9042`) names a cluster (a fresh keyspace per run).

use netwatch_projections::rows::{CallLeg, CallRecord, DnState};
use netwatch_projections::store::{checksum, current_gen, open_store, Batch, CallsPage, Cursor, GenState, StoreError, INTERVAL_MS};
use netwatch_projections::{AnyStore, Store};

fn call(connid: &str, dn: &str, started: i64, ended: Option<i64>) -> CallRecord {
    CallRecord {
        tserver: 1,
        connid: connid.into(),
        call_type: "Inbound".into(),
        parties: vec![dn.into()],
        started_ms: started,
        ended_ms: ended,
        outcome: if ended.is_some() { "answered" } else { "in_progress" }.into(),
        legs: vec![CallLeg {
            dn: dn.into(),
            started_ms: started,
            answered_ms: Some(started + 1_000),
            ended_ms: ended,
            outcome: if ended.is_some() { "answered" } else { "in_progress" }.into(),
            offered: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn batch(projection: &str, gen: u32, offset: i64) -> Batch {
    let mut b = Batch::new(projection, gen);
    b.positions.insert(("t.calls".into(), 1), offset);
    b.stamps.insert(1, offset);
    b
}

async fn scenario<S: Store>(store: S) {
    // A fresh store reads generation 1 and has nothing.
    assert_eq!(current_gen(&store, "call-history").await.unwrap(), 1);
    assert!(store.generations("call-history").await.unwrap().is_empty());
    store.set_generation("call-history", 1, GenState::Current).await.unwrap();
    store.set_generation("dn-state", 1, GenState::Current).await.unwrap();

    // Rows and positions of one batch.
    let mut b = batch("call-history", 1, 10);
    for (i, started) in [(1, 1_000), (2, 2_000), (3, 2_000), (4, INTERVAL_MS + 5)] {
        let c = call(&format!("c{i}"), "5001", started, Some(started + 30_000));
        b.calls.insert((1, c.connid.clone()), c);
    }
    b.calls.insert((1, "c5".into()), call("c5", "5001", 3_000, None));
    store.write(b).await.unwrap();
    let mut d = batch("dn-state", 1, 4);
    for dn in ["5002", "5001"] {
        d.dns.insert((1, dn.into()), DnState::new(1, dn));
    }
    store.write(d).await.unwrap();

    assert_eq!(store.position("call-history", 1, "t.calls", 1).await.unwrap(), Some(10));
    assert_eq!(store.position("call-history", 1, "t.calls", 2).await.unwrap(), None);
    assert_eq!(store.positions("dn-state", 1).await.unwrap().into_iter().collect::<Vec<_>>(), [(("t.calls".to_string(), 1), 4)]);
    assert_eq!(store.dn(1, 1, "5001").await.unwrap().map(|r| r.dn), Some("5001".to_string()));
    assert_eq!(store.dns(1, 1).await.unwrap().iter().map(|r| r.dn.as_str()).collect::<Vec<_>>(), ["5001", "5002"]);
    assert_eq!(store.call(1, 1, "c2").await.unwrap().map(|c| c.started_ms), Some(2_000));
    assert!(store.call(1, 1, "nope").await.unwrap().is_none());

    // A DN's calls: newest first, ties by ConnID descending, paged without overlap.
    let all = CallsPage { from_ms: i64::MIN, to_ms: i64::MAX, after: None, limit: 100 };
    let order: Vec<String> = store.dn_calls(1, 1, "5001", &all).await.unwrap().into_iter().map(|r| r.connid).collect();
    assert_eq!(order, ["c4", "c5", "c3", "c2", "c1"]);
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store.dn_calls(1, 1, "5001", &CallsPage { after: after.clone(), limit: 2, ..all.clone() }).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(Cursor { started_ms: last.started_ms, connid: last.connid.clone() });
        paged.extend(page.into_iter().map(|r| r.connid));
    }
    assert_eq!(paged, order);
    let window = CallsPage { from_ms: 2_000, to_ms: 3_000, after: None, limit: 100 };
    let inside: Vec<String> = store.dn_calls(1, 1, "5001", &window).await.unwrap().into_iter().map(|r| r.connid).collect();
    assert_eq!(inside, ["c3", "c2"]);

    // Interval legs: ended legs by the interval they started in.
    let first: Vec<String> = store.interval_legs(1, 1, 0, None).await.unwrap().into_iter().map(|r| r.connid).collect();
    assert_eq!(first, ["c1", "c2", "c3"]);
    assert_eq!(store.interval_legs(1, 1, INTERVAL_MS, Some("5001")).await.unwrap().len(), 1);
    assert!(store.interval_legs(1, 1, INTERVAL_MS, Some("5002")).await.unwrap().is_empty());

    // Writing the same batch again changes nothing.
    let (_, rows, digest) = checksum(&store, "call-history").await.unwrap();
    let mut again = batch("call-history", 1, 10);
    again.calls.insert((1, "c1".into()), call("c1", "5001", 1_000, Some(31_000)));
    store.write(again).await.unwrap();
    assert_eq!(checksum(&store, "call-history").await.unwrap(), (1, rows, digest.clone()));

    // A second generation is invisible until switched to; then the first is retired,
    // refuses writes, and is dropped.
    store.set_generation("call-history", 2, GenState::Building).await.unwrap();
    let mut g2 = batch("call-history", 2, 10);
    g2.calls.insert((1, "c9".into()), call("c9", "5001", 9_000, Some(10_000)));
    store.write(g2).await.unwrap();
    assert_eq!(current_gen(&store, "call-history").await.unwrap(), 1);
    store.switch_generation("call-history", Some(1), 2).await.unwrap();
    assert_eq!(current_gen(&store, "call-history").await.unwrap(), 2);
    assert_eq!(store.generations("call-history").await.unwrap(), [(1, GenState::Retired), (2, GenState::Current)]);
    let late = store.write(batch("call-history", 1, 11)).await;
    assert!(matches!(late, Err(StoreError::Retired { gen: 1, .. })), "{late:?}");
    store.drop_generation("call-history", 1).await.unwrap();
    assert!(store.call(1, 1, "c1").await.unwrap().is_none());
    assert!(store.dn_calls(1, 1, "5001", &all).await.unwrap().is_empty());
    assert!(store.interval_legs(1, 1, 0, None).await.unwrap().is_empty());
    assert!(store.positions("call-history", 1).await.unwrap().is_empty());
    assert_eq!(store.dump("call-history", 2).await.unwrap().len(), 1);
    // The other projection's rows are untouched.
    assert_eq!(store.dns(1, 1).await.unwrap().len(), 2);

    // Statistics rows: a part's keys read as a range, in key order; minute buckets are
    // pruned by age and are not part of the checksum's rows.
    let mut s = batch("statistics", 1, 1);
    for (key, row) in [("i:000000000900000", "{\"i\":1}"), ("m:000000000060000", "{\"m\":1}"), ("m:000000000120000", "{\"m\":2}")] {
        s.stats.insert((1, "b:dn:5001".into(), key.into()), row.into());
    }
    s.stats.insert((1, "dn".into(), "5001".into()), "{}".into());
    store.write(s).await.unwrap();
    let minutes = store.stat_range(1, 1, "b:dn:5001", "m:", "m:~").await.unwrap();
    assert_eq!(minutes.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["m:000000000060000", "m:000000000120000"]);
    assert_eq!(store.stat_row(1, 1, "b:dn:5001", "i:000000000900000").await.unwrap().as_deref(), Some("{\"i\":1}"));
    assert_eq!(store.dump("statistics", 1).await.unwrap().len(), 2, "the interval and the DN row, no minute");
    store.prune_minutes(120_000).await.unwrap();
    let minutes = store.stat_range(1, 1, "b:dn:5001", "m:", "m:~").await.unwrap();
    assert_eq!(minutes.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["m:000000000120000"]);
    assert!(store.stat_row(1, 1, "b:dn:5001", "i:000000000900000").await.unwrap().is_some(), "intervals stay");
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&format!("sqlite://{}/p.db", dir.path().display())).await.unwrap();
    assert!(matches!(store, AnyStore::Sqlite(_)));
    scenario(store).await;
}

#[cfg(feature = "scylla")]
#[tokio::test]
async fn scylla_store() {
    let Ok(nodes) = std::env::var("SCYLLA_NODES") else {
        eprintln!("SCYLLA_NODES is not set; the ScyllaDB store scenario is skipped");
        return;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let url = format!("scylla://{nodes}/netwatch_test_{nanos:x}?replication_factor=1");
    scenario(open_store(&url).await.unwrap()).await;
}

#[tokio::test]
async fn bad_store_urls_are_refused() {
    for url in ["postgres://x", "sqlite://", "scylla://hostonly", "scylla://h/bad-name"] {
        assert!(matches!(open_store(url).await, Err(StoreError::Url(_))), "{url}");
    }
}

#[test]
fn many_openers_of_a_fresh_sqlite_file_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    let openers: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || netwatch_projections::store::SqliteStore::open(&path).map(|_| ()))
        })
        .collect();
    for o in openers {
        o.join().unwrap().expect("every opener succeeds");
    }
}
