//! The wallboard in a real browser: Debian's headless Chromium, driven over WebDriver
//! (chromedriver, fantoccini), opens the page of a running system — broker, dispatcher,
//! monitor, projections, `serve` with a token — fed by a scripted T-Server. The tiles
//! show the statistics computed by hand from the script and equal the HTTP API's; a DN
//! that changes state changes its grid cell within 2 s of the T-Server's event. A
//! screenshot is kept at target/e2e-wallboard.png.
//!
//! Needs `chromium` and `chromedriver` (infra/chromium.sh install, run by `make test`);
//! without them the test says so and passes without looking.

mod harness;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use harness::{free_port, http_get_with, registrations, wait_for, LogsOnPanic, World};
use serde_json::Value;

/// Sales = agents a1 (DN 5001) and a2 (DN 5002); DN 5003 has no agent. Offsets in ms
/// from the scenario's start, which are also the events' T-Server times.
const SCENARIO: &str = r#"
{"at_ms": 0,     "op": "login",   "dn": "5001", "agent": "a1"}
{"at_ms": 0,     "op": "ready",   "dn": "5001"}
{"at_ms": 0,     "op": "login",   "dn": "5002", "agent": "a2"}
{"at_ms": 0,     "op": "ready",   "dn": "5002"}
# c1: 5001 answers after 2 s, talks 2 s
{"at_ms": 1000,  "op": "call",    "call": "c1", "from": "+15550001", "to": "5001", "connid": "wb-c1"}
# c2: the caller gives up at 5002 after 1.5 s (a short abandon)
{"at_ms": 2000,  "op": "call",    "call": "c2", "from": "+15550002", "to": "5002", "connid": "wb-c2"}
{"at_ms": 3000,  "op": "answer",  "call": "c1"}
{"at_ms": 3500,  "op": "abandon", "call": "c2"}
# c3: 5002 answers after 2 s and is still talking
{"at_ms": 4000,  "op": "call",    "call": "c3", "from": "+15550003", "to": "5002", "connid": "wb-c3"}
{"at_ms": 5000,  "op": "release", "call": "c1"}
{"at_ms": 6000,  "op": "answer",  "call": "c3"}
# c4: 5003 (no agent, not in Sales) answers after 1 s
{"at_ms": 7000,  "op": "call",    "call": "c4", "from": "+15550004", "to": "5003", "connid": "wb-c4"}
{"at_ms": 8000,  "op": "answer",  "call": "c4"}
# c5: rings at 5001, waiting, until 5001 answers at 40 s
{"at_ms": 9000,  "op": "call",    "call": "c5", "from": "+15550005", "to": "5001", "connid": "wb-c5"}
{"at_ms": 40000, "op": "answer",  "call": "c5"}
"#;

const TOKEN: &str = "wallboard-test-token";

/// Chromium and ChromeDriver, if installed.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let find =
        |name: &str| std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()));
    Some((find("chromium")?, find("chromedriver")?))
}

/// Where a person finds the screenshot: the workspace's target folder.
fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("e2e-wallboard.png")
}

async fn text(c: &Client, css: &str) -> Result<String, String> {
    let e = c.find(Locator::Css(css)).await.map_err(|e| format!("{css}: {e}"))?;
    e.text().await.map_err(|e| format!("{css}: {e}"))
}

async fn class(c: &Client, css: &str) -> Result<String, String> {
    let e = c.find(Locator::Css(css)).await.map_err(|e| format!("{css}: {e}"))?;
    Ok(e.attr("class").await.map_err(|e| format!("{css}: {e}"))?.unwrap_or_default())
}

/// Poll an async check until it passes or `within` ends.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => panic!("timed out after {within:?} waiting for {what}; last: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn api(addr: &str, path: &str) -> Result<Value, String> {
    let (status, body) = http_get_with(addr, path, &[("Authorization", &format!("Bearer {TOKEN}"))])?;
    if status != 200 {
        return Err(format!("{path}: {status} {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{path}: {e}: {body}"))
}

/// The board's tile values by statistic, as the API gives them.
fn tiles(board: &Value) -> serde_json::Map<String, Value> {
    board["tiles"].as_array().unwrap().iter().map(|t| (t["stat"].as_str().unwrap().to_string(), t.clone())).collect()
}

#[test]
fn the_wallboard_shows_hand_computed_statistics_and_follows_a_dn_within_two_seconds() {
    let Some((chromium, chromedriver)) = browser() else {
        eprintln!("SKIPPED: chromium or chromedriver is not installed (infra/chromium.sh install)");
        return;
    };
    let w = World::start();
    let (sim_port, http) = (free_port(), free_port());
    let (sim, http) = (format!("127.0.0.1:{sim_port}"), format!("127.0.0.1:{http}"));
    w.ok(&["config", "tserver", "create", "--id", "1", "--name", "TS1", "--host", "127.0.0.1", "--port", &sim_port.to_string()]);
    for (i, dn) in ["5001", "5002", "5003"].iter().enumerate() {
        w.ok(&["config", "dn", "create", "--tserver", "1", "--dbid", &(101 + i).to_string(), "--number", dn, "--type", "acd-position"]);
    }
    w.ok(&["config", "group", "create", "--tserver", "1", "--id", "7", "--name", "Sales", "--kind", "agent", "--members", "a1,a2"]);

    let script = w.file("wallboard.jsonl", SCENARIO);
    let token = [("NETWATCH_API_TOKEN", TOKEN)];
    let procs = [
        w.spawn("sim", &["sim", "tserver", "--listen", &sim, "--name", "TS1", "--script", script.to_str().unwrap()]),
        w.spawn("dispatcher", &["dispatcher", "--id", "d1"]),
        w.spawn("monitor", &["monitor", "--id", "m1"]),
        w.spawn("projections", &["projections", "run"]),
        w.spawn_env("serve", &token, &["serve", "--listen", &http]),
    ];
    let driver_port = free_port();
    let driver_log = w.path("chromedriver.log");
    let mut driver = Command::new(&chromedriver)
        .args([format!("--port={driver_port}"), format!("--log-path={}", driver_log.display())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let mut logs: Vec<_> = procs.iter().map(|p| p.log.clone()).collect();
    logs.push(driver_log);
    let _guard = LogsOnPanic(logs);

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        // The browser starts while the monitor registers the DNs.
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = eventually("a WebDriver session", Duration::from_secs(30), || {
            let (caps, connector) = (caps.clone(), connector.clone());
            async move {
                ClientBuilder::new(connector)
                    .capabilities(caps)
                    .connect(&format!("http://127.0.0.1:{driver_port}"))
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .await;
        wait_for("the DNs registered at the simulator", Duration::from_secs(60), || {
            let r = registrations(&w, &sim)?;
            ["5001", "5002", "5003"].iter().all(|dn| r.get(*dn).is_some_and(|m| m == &["m1"])).then_some(()).ok_or(format!("{r:?}"))
        });
        // The token travels in the fragment, never to the server; the page sends it in
        // the Authorization header.
        client.goto(&format!("http://{http}/wallboard?tserver=1&group=7&profile=last_60m#token={TOKEN}")).await.unwrap();

        // Every call but c5's answer happened (9 s into the scenario): the API has it all.
        let board = wait_for("the statistics of the first 9 s", Duration::from_secs(60), || {
            let b = api(&http, "/v1/wallboard?tserver=1&group=7&profile=last_60m")?;
            let t = tiles(&b);
            (t["offered"]["value"] == 4.0 && t["calls_waiting"]["value"] == 1.0).then_some(b.clone()).ok_or(b.to_string())
        });
        // By hand, for Sales over the scenario: offered c1, c2, c3, c5; answered c1 and c3,
        // each after 2 s (both within 20 s); c2 abandoned after 1.5 s, a short abandon.
        // Service level = 2 / (2 + 1 − 1) = 100.0 %; abandoned = 1 / 3 = 33.3 % (red:
        // ≥ 10); ASA = (2 + 2) / 2 = 2 s; AHT = c1's 2 s talk / 1 handled = 2 s; c5 waits.
        // c4, at 5003 where no Sales agent is, is not Sales' call.
        let expected = [
            ("service_level_pct", "100.0 %", "colour-green"),
            ("abandoned_pct", "33.3 %", "colour-red"),
            ("asa_ms", "2 s", "colour-green"),
            ("aht_ms", "2 s", "colour-green"),
            ("offered", "4", ""),
            ("answered", "2", ""),
            ("abandoned", "1", ""),
            ("calls_waiting", "1", "colour-green"),
            ("agents_logged_in", "2", ""),
            ("agents_talking", "1", ""),
            ("agents_ready", "0", ""),
        ];
        let t = tiles(&board);
        assert_eq!(t["service_level_pct"]["value"], 100.0, "{board}");
        assert_eq!(t["abandoned_pct"]["value"], 33.3, "{board}");
        assert_eq!((t["asa_ms"]["value"].as_f64(), t["aht_ms"]["value"].as_f64()), (Some(2000.0), Some(2000.0)), "{board}");
        let stats = api(&http, "/v1/tservers/1/statistics?object=group:7&profile=last_60m").unwrap();
        assert_eq!(
            (&stats["sums"]["answered"], &stats["sums"]["short_abandoned"], &stats["sums"]["answer_wait_ms"], &stats["sums"]["talk_ms"]),
            (&serde_json::json!(2), &serde_json::json!(1), &serde_json::json!(4000), &serde_json::json!(2000)),
            "{stats}"
        );
        // The T-Server counts c4 too: 3 answered of 5 offered, ASA (2 + 2 + 1) / 3 s.
        let ts = api(&http, "/v1/tservers/1/statistics?object=tserver&profile=last_60m").unwrap();
        assert_eq!(
            (&ts["sums"]["offered"], &ts["sums"]["answered"], &ts["figures"]["asa_ms"]),
            (&serde_json::json!(5), &serde_json::json!(3), &serde_json::json!(1667)),
            "{ts}"
        );

        eventually("the page to show the hand-computed tiles", Duration::from_secs(20), || async {
            for (stat, shown, colour) in expected {
                let css = format!("[data-stat={stat}]");
                let got = text(&client, &format!("{css} .value")).await?;
                if got != shown {
                    return Err(format!("{stat}: {got:?}, not {shown:?}"));
                }
                if !colour.is_empty() && !class(&client, &css).await?.split_whitespace().any(|c| c == colour) {
                    return Err(format!("{stat} is not {colour}"));
                }
            }
            Ok(())
        })
        .await;
        let cell = |dn: &'static str| {
            let client = client.clone();
            async move { text(&client, &format!("#agents tr[data-dn=\"{dn}\"] .status")).await }
        };
        assert_eq!(cell("5001").await.unwrap(), "ringing");
        assert_eq!(cell("5002").await.unwrap(), "talking");
        assert!(client.find(Locator::Css("#agents tr[data-dn=\"5003\"]")).await.is_err(), "5003 has no Sales agent");
        // The open page is one event stream, counted in serve's metrics.
        let m = harness::scrape(&http, &[("Authorization", &format!("Bearer {TOKEN}"))]).unwrap();
        assert_eq!(harness::sample(&m, "netwatch_sse_clients", &[]), Some(1.0));
        let png = client.screenshot().await.unwrap();
        std::fs::create_dir_all(screenshot_path().parent().unwrap()).unwrap();
        std::fs::write(screenshot_path(), png).unwrap();

        // 5001 answers c5 at 40 s: its cell turns to talking within 2 s of the event.
        let seen = eventually("5001's cell to show talking", Duration::from_secs(60), || async {
            match cell("5001").await?.as_str() {
                "talking" => Ok(netwatch_schemas::now_ms()),
                other => Err(other.to_string()),
            }
        })
        .await;
        let board = api(&http, "/v1/wallboard?tserver=1&group=7&profile=last_60m").unwrap();
        let since = board["agents"].as_array().unwrap().iter().find(|a| a["dn"] == "5001").unwrap()["status_since_ms"].as_i64().unwrap();
        assert!(seen - since <= 2000, "the cell changed {} ms after the T-Server's event", seen - since);
        let png = client.screenshot().await.unwrap();
        std::fs::write(screenshot_path(), png).unwrap();
        eprintln!("screenshot: {}; cell changed {} ms after the event", screenshot_path().display(), seen - since);
        client.close().await.unwrap();
    });
    let _ = driver.kill();
    let _ = driver.wait();
}
