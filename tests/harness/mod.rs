//! Harness for end-to-end tests: a real tansu broker process on a free port, the real
//! `netwatch` binary, random topic prefixes, and polling with deadlines.

#![allow(dead_code)]

pub mod cti_doc;
pub mod sampler;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Poll `check` until it returns `Some` or `within` passes; the last failure explains.
pub fn wait_for<T>(what: &str, within: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => panic!("timed out after {within:?} waiting for {what}; last: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

fn tansu_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        return p.into();
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let p = home.join("bin/tansu");
    assert!(p.exists(), "tansu is not installed at {}; run `make broker-install`", p.display());
    p
}

/// A child process killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Kill with SIGKILL and wait.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Is it still running?
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One test's world: a broker, a topic prefix, a store, a work folder.
pub struct World {
    pub dir: tempfile::TempDir,
    pub brokers: String,
    pub prefix: String,
    pub store: String,
    broker: Option<Proc>,
    broker_port: u16,
}

/// tansu 0.6.0's SQLite `header` table has no index on the record it belongs to, so a
/// fetch scans every header for each record: reading 10,000 records with headers takes
/// minutes. The index infra/broker.sh also creates.
pub fn index_headers(db: &Path) {
    let conn = rusqlite::Connection::open(db).expect("open tansu's database");
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute_batch("CREATE INDEX IF NOT EXISTS netwatch_header_record ON header (topition, offset_id)").expect("index tansu's headers");
}

/// A tansu broker on `port` with its data in `dir`.
fn spawn_broker(dir: &Path, port: u16) -> Proc {
    let url = format!("tcp://127.0.0.1:{port}");
    let log = dir.join("broker.log");
    let append = |name: &str| std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).unwrap();
    // tansu 0.6.0 joins even an absolute sqlite path onto its working directory
    // (docs/broker-notes.md): run it in the data folder with a relative path.
    let child = Command::new(tansu_binary())
        .current_dir(dir)
        .args(["broker", "--storage-engine", "sqlite://tansu.db"])
        .args(["--listener-url", &url, "--advertised-listener-url", &url])
        .stdout(Stdio::from(append("broker.log")))
        .stderr(Stdio::from(append("broker.err")))
        .spawn()
        .expect("start tansu");
    Proc { name: "broker".into(), child, log }
}

impl World {
    /// Start a fresh broker and wait until it answers.
    pub fn start() -> World {
        let mut dir = tempfile::Builder::new().prefix("netwatch-e2e-").tempdir().unwrap();
        // NETWATCH_E2E_KEEP=1 keeps the work folder (logs, data) for a look afterwards.
        if std::env::var_os("NETWATCH_E2E_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("work folder kept: {}", dir.path().display());
        }
        let port = free_port();
        let broker = spawn_broker(dir.path(), port);
        let id: u32 = rand_suffix();
        let world = World {
            brokers: format!("127.0.0.1:{port}"),
            prefix: format!("test-{id:08x}."),
            store: format!("sqlite://{}/netwatch.db", dir.path().display()),
            broker: Some(broker),
            broker_port: port,
            dir,
        };
        world.wait_for_broker();
        let out = world.run(&["topics", "create"]);
        assert!(out.status.success(), "topics create failed: {}", String::from_utf8_lossy(&out.stderr));
        world
    }

    fn wait_for_broker(&self) {
        let out = self.run(&["topics", "wait", "--timeout", "30s"]);
        assert!(out.status.success(), "broker did not become ready: {}", String::from_utf8_lossy(&out.stderr));
        index_headers(&self.dir.path().join("tansu.db"));
    }

    /// Kill the broker with SIGKILL.
    pub fn kill_broker(&mut self) {
        if let Some(b) = self.broker.as_mut() {
            b.kill();
        }
    }

    /// Start the broker again on the same port and data, and wait until it answers.
    pub fn restart_broker(&mut self) {
        self.kill_broker();
        self.broker = Some(spawn_broker(self.dir.path(), self.broker_port));
        self.wait_for_broker();
    }

    /// Send a signal (`STOP`, `CONT`, ...) to the broker.
    pub fn signal_broker(&self, signal: &str) {
        let pid = self.broker.as_ref().expect("a broker").pid();
        let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// The broker's log (stdout and stderr), for its panics.
    pub fn broker_log(&self) -> String {
        ["broker.log", "broker.err"].iter().map(|f| std::fs::read_to_string(self.path(f)).unwrap_or_default()).collect()
    }

    /// Path inside the work folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_netwatch"));
        c.args(args)
            .env("NETWATCH_BROKERS", &self.brokers)
            .env("NETWATCH_TOPIC_PREFIX", &self.prefix)
            .env("NETWATCH_STORE", &self.store)
            .env("NETWATCH_CONFIG_SNAPSHOT", self.path("config-snapshots"))
            .env_remove("NETWATCH_LOG");
        c
    }

    /// Run a command to completion with the projections in another store.
    pub fn run_in_store(&self, store: &str, args: &[&str]) -> Output {
        self.command(args).env("NETWATCH_STORE", store).stdin(Stdio::null()).output().expect("run netwatch")
    }

    /// Run a command to completion with extra environment variables.
    pub fn run_env(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        self.command(args).envs(env.iter().copied()).stdin(Stdio::null()).output().expect("run netwatch")
    }

    /// Run a command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().expect("run netwatch")
    }

    /// Run a command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "netwatch {args:?} failed ({:?}): {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run a command whose stdout is JSON.
    pub fn json(&self, args: &[&str]) -> Result<Value, String> {
        let out = self.run(args);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    }

    /// Every record of a topic, as `netwatch cat --from-beginning` prints them.
    pub fn records(&self, topic: &str) -> Vec<Value> {
        self.ok(&["cat", topic, "--from-beginning"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Start a long-running netwatch process whose projections go to another store.
    pub fn spawn_in_store(&self, name: &str, store: &str, args: &[&str]) -> Proc {
        self.spawn_with(name, args, Some(store))
    }

    /// Start a long-running netwatch process.
    pub fn spawn(&self, name: &str, args: &[&str]) -> Proc {
        self.spawn_with(name, args, None)
    }

    /// Start a long-running netwatch process with extra environment variables.
    pub fn spawn_env(&self, name: &str, env: &[(&str, &str)], args: &[&str]) -> Proc {
        self.spawn_full(name, args, None, env)
    }

    fn spawn_with(&self, name: &str, args: &[&str], store: Option<&str>) -> Proc {
        self.spawn_full(name, args, store, &[])
    }

    fn spawn_full(&self, name: &str, args: &[&str], store: Option<&str>, env: &[(&str, &str)]) -> Proc {
        let log = self.path(&format!("{name}.log"));
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        if let Some(store) = store {
            command.env("NETWATCH_STORE", store);
        }
        // A restarted process appends to the log of its earlier runs.
        let append = |p: PathBuf| std::fs::OpenOptions::new().create(true).append(true).open(p).unwrap();
        let child = command
            .env("NETWATCH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(append(self.path(&format!("{name}.out")))))
            .stderr(Stdio::from(append(log.clone())))
            .spawn()
            .expect("spawn netwatch");
        Proc { name: name.into(), child, log }
    }

    /// Write a file into the work folder.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    nanos ^ std::process::id().rotate_left(16)
}

/// GET a path from an HTTP server; (status, body).
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    http_get_with(addr, path, &[])
}

/// GET a path with extra request headers; (status, body).
pub fn http_get_with(addr: &str, path: &str, headers: &[(&str, &str)]) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("no HTTP header")?;
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("no status")?;
    Ok((status, body.to_string()))
}

/// A role's `/metrics`, parsed as Prometheus parses the text format.
pub fn scrape(addr: &str, headers: &[(&str, &str)]) -> Result<prometheus_parse::Scrape, String> {
    let (status, body) = http_get_with(addr, "/metrics", headers)?;
    if status != 200 {
        return Err(format!("/metrics of {addr} answered {status}: {body}"));
    }
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).map_err(|e| format!("not the text format: {e}\n{body}"))
}

/// The value of the sample `name` whose labels include `labels` (a counter, gauge or
/// untyped sample; a histogram's count under `NAME_count`).
pub fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    use prometheus_parse::Value as V;
    scrape.samples.iter().filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))).find_map(|s| match &s.value {
        V::Counter(x) | V::Gauge(x) | V::Untyped(x) if s.metric == name => Some(*x),
        V::Histogram(buckets) if format!("{}_count", s.metric) == name => buckets.last().map(|b| b.count),
        _ => None,
    })
}

/// Print the logs of processes (call when a test fails to see why).
pub fn dump_logs(paths: &[&Path]) {
    for p in paths {
        if let Ok(text) = std::fs::read_to_string(p) {
            eprintln!("==== {} (last 40 lines)", p.display());
            for line in text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Serializes the tests of one binary that measure time under load (failover deadlines):
/// on a 2-core machine they must not share the CPU with another broker and site.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registrations of a simulator: DN → clients that have it registered.
pub fn registrations(w: &World, endpoint: &str) -> Result<std::collections::BTreeMap<String, Vec<String>>, String> {
    let status = w.json(&["sim", "status", endpoint])?;
    serde_json::from_value(status["registrations"].clone()).map_err(|e| e.to_string())
}

/// Overlaps a simulator has counted (a DN registered by two clients at once).
pub fn overlaps(w: &World, endpoint: &str) -> u64 {
    w.json(&["sim", "status", endpoint]).unwrap()["overlaps"].as_u64().unwrap()
}

/// Prints the processes' logs if the test panics: keep it alive for the test's length.
pub struct LogsOnPanic(pub Vec<PathBuf>);

impl Drop for LogsOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            dump_logs(&self.0.iter().map(|p| p.as_path()).collect::<Vec<_>>());
        }
    }
}
