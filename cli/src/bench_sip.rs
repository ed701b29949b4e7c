//! `netwatch bench sip`: a real Kamailio (`infra/kamailio.sh`) watched by a dispatcher and
//! a monitor (processes of this binary), SIPp placing calls between 100 callers and 100
//! registered callees: calls per second SIPp completed through Kamailio, against calls
//! per second whose release reached `calls` (docs/sip.md).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Args;
use netwatch_eventlog::{spawn_tail, ConsumerEvent, Topic};
use netwatch_processors::cluster::Liveness;
use netwatch_processors::status::cluster_status;
use netwatch_schemas::calls::{CallBody, CallEvent, TEventKind};
use netwatch_schemas::decode;
use tokio::process::Command;

use crate::bench::{spread, timed_command};
use crate::bench_live::{fresh_topics, wait_for, Role};
use crate::{input, CliError, Ctx};

/// Ports of the benchmark's Kamailio and SIPp, apart from the tests' and the defaults.
const SIP_PORT: u16 = 5670;
const EVAPI_PORT: u16 = 9048;
const RPC_PORT: u16 = 9049;
const UAC_PORT: u16 = 5693;
const UAS_PORT: u16 = 5694;

#[derive(Args, Debug)]
pub struct SipArgs {
    /// Calls per second SIPp offers.
    #[arg(long, default_value_t = 300)]
    rate: u32,
    /// Calls per run.
    #[arg(long, default_value_t = 6_000)]
    calls: u32,
    /// Runs; the table shows the median with min and max.
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// The checkout: infra/kamailio.sh and the SIPp scenarios of tests/sip.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
}

/// The benchmark's Kamailio, stopped when dropped.
struct Kamailio {
    script: PathBuf,
    data: PathBuf,
}

impl Kamailio {
    fn command(script: &Path, data: &Path, action: &str) -> std::process::Command {
        let mut c = std::process::Command::new(script);
        c.arg(action)
            .env("KAMAILIO_DATA", data)
            .env("KAMAILIO_SIP_PORT", SIP_PORT.to_string())
            .env("KAMAILIO_EVAPI_PORT", EVAPI_PORT.to_string())
            .env("KAMAILIO_RPC_PORT", RPC_PORT.to_string());
        c
    }

    fn start(repo: &Path, data: PathBuf) -> Result<Kamailio, CliError> {
        let script = repo.join("infra/kamailio.sh");
        let out = Kamailio::command(&script, &data, "start").output()?;
        if !out.status.success() {
            return Err(CliError::Failed(anyhow::anyhow!(
                "infra/kamailio.sh start failed (make sip-install): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Kamailio { script, data })
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let _ = Kamailio::command(&self.script, &self.data, "stop").output();
    }
}

/// A SIPp process of a scenario of tests/sip.
fn sipp(repo: &Path, dir: &Path, scenario: &str, inf: Option<&str>, args: &[&str]) -> Result<tokio::process::Child, CliError> {
    let sip = repo.join("tests/sip");
    let mut cmd = Command::new("sipp");
    let uac = inf.is_some();
    if uac {
        cmd.arg(format!("127.0.0.1:{SIP_PORT}"));
    }
    cmd.arg("-sf").arg(sip.join(scenario));
    if let Some(inf) = inf {
        cmd.arg("-inf").arg(sip.join(inf));
    }
    let port = if inf.is_some_and(|f| f.contains("pairs")) { UAC_PORT } else { UAS_PORT };
    let child = cmd
        .args(["-i", "127.0.0.1", "-bind_local", "-p", &port.to_string(), "-nostdin", "-timeout_error"])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot start sipp (make sip-install): {e}")))?;
    Ok(child)
}

async fn finished(child: tokio::process::Child, what: &str) -> Result<(), CliError> {
    let out = child.wait_with_output().await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(CliError::Failed(anyhow::anyhow!("sipp {what} exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())))
    }
}

/// A column of the last row of a SIPp `-stf` statistics file.
fn stat(path: &Path, name: &str) -> Result<u64, CliError> {
    let text = std::fs::read_to_string(path)?;
    let mut rows = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = rows.next().unwrap_or_default().split(';').collect();
    let last: Vec<&str> = rows.next_back().unwrap_or_default().split(';').collect();
    header
        .iter()
        .position(|h| *h == name)
        .and_then(|i| last.get(i)?.trim().parse().ok())
        .ok_or_else(|| CliError::Failed(anyhow::anyhow!("no {name} in {}", path.display())))
}

pub async fn sip(ctx: &Ctx, args: SipArgs) -> Result<(), CliError> {
    if args.rate == 0 || args.calls == 0 || args.runs == 0 {
        return Err(input("--rate, --calls and --runs must be at least 1"));
    }
    let work = tempfile::tempdir()?;
    let (mut offered, mut captured) = (Vec::new(), Vec::new());
    let mut completed = 0;
    for run in 1..=args.runs {
        let (done, sipp_s, captured_s) = sip_run(ctx, &args, &work.path().join(format!("run{run}"))).await?;
        eprintln!("run {run}: SIPp completed {done} calls in {sipp_s:.1} s; every release in calls after {captured_s:.1} s");
        offered.push(done as f64 / sipp_s);
        captured.push(done as f64 / captured_s);
        completed = done;
    }
    let (rm, rlo, rhi) = spread(&offered);
    let (m, lo, hi) = spread(&captured);
    println!("| figure | calls | calls/s (median) | min | max | ratio to raw | target | met |");
    println!("|---|---:|---:|---:|---:|---:|---|---|");
    println!("| raw: SIPp through Kamailio, {} calls/s offered, calls completed per second | {completed} | {rm:.0} | {rlo:.0} | {rhi:.0} | 1.00 | — | — |", args.rate);
    println!("| Kamailio: calls/s captured (each completed call's release in `calls`) | {completed} | {m:.0} | {lo:.0} | {hi:.0} | {:.2} | — | — |", m / rm);
    Ok(())
}

/// One run: (calls SIPp completed, seconds SIPp ran, seconds until every release of them
/// was in `calls`), both from SIPp's start.
async fn sip_run(ctx: &Ctx, args: &SipArgs, dir: &Path) -> Result<(u64, f64, f64), CliError> {
    std::fs::create_dir_all(dir)?;
    let repo = std::fs::canonicalize(&args.repo)?;
    let kamailio = Kamailio::start(&repo, dir.join("kamailio"))?;
    let log = fresh_topics(ctx).await?;
    let prefix = log.topics.prefix.clone();
    let store = format!("sqlite://{}", dir.join("unused.db").display());
    let (dlog, mlog) = (dir.join("dispatcher.log"), dir.join("monitor.log"));
    let dispatcher = Role::spawn(ctx, &prefix, &store, &["dispatcher"], &dlog)?;
    let monitor = Role::spawn(ctx, &prefix, &store, &["monitor"], &mlog)?;
    let file = dir.join("site.jsonl");
    let mut site = format!(
        "{{\"op\":\"create_tserver\",\"id\":1,\"name\":\"Kamailio\",\"host\":\"127.0.0.1\",\"port\":{EVAPI_PORT},\"kind\":\"kamailio\"}}\n"
    );
    for (i, dn) in (7001..=7100).chain(8001..=8100).enumerate() {
        site.push_str(&format!("{{\"op\":\"create_dn\",\"tserver\":1,\"dbid\":{},\"number\":\"{dn}\"}}\n", i + 1));
    }
    std::fs::write(&file, site)?;
    timed_command(ctx, &prefix, &dir.join("snapshots"), &["config", "import", file.to_str().unwrap_or_default()]).await?;
    let (d, m, l, dl, ml) = (&dispatcher, &monitor, &log, &dlog, &mlog);
    wait_for("the monitor watching the 200 DNs", Duration::from_secs(90), move || async move {
        d.check("the dispatcher", dl)?;
        m.check("the monitor", ml)?;
        let s = cluster_status(l, Liveness::default()).await?;
        Ok(s.monitors.iter().any(|m| m.live && m.view.tservers.contains(&1) && m.view.dns == 200))
    })
    .await?;
    let register = sipp(&repo, dir, "register.xml", Some("load_callees.csv"), &["-m", "100", "-r", "100", "-timeout", "20s"])?;
    finished(register, "register").await?;

    // Count the releases at the callers from here on.
    let mut tail = spawn_tail(&log.kafka, &log.topic(Topic::Calls), |_, _, high| high)?;
    let uas = sipp(&repo, dir, "uas_load.xml", None, &["-timeout", "600s"])?;
    // The UAS listens once its port cannot be bound any more.
    wait_for("the SIPp UAS listening", Duration::from_secs(10), || async {
        Ok(std::net::UdpSocket::bind(("127.0.0.1", UAS_PORT)).is_err())
    })
    .await?;
    let stats = dir.join("uac.stat.csv");
    let start = Instant::now();
    let (rate, calls) = (args.rate.to_string(), args.calls.to_string());
    let uac = sipp(
        &repo,
        dir,
        "uac_load.xml",
        Some("load_pairs.csv"),
        &[
            "-r",
            &rate,
            "-m",
            &calls,
            "-l",
            "2000",
            "-timeout",
            "600s",
            "-trace_stat",
            "-stf",
            stats.to_str().unwrap_or_default(),
            "-fd",
            "60",
        ],
    )?;
    let mut uac = Box::pin(finished(uac, "uac_load.xml"));
    let (mut released, mut last_release, mut sipp_s) = (0u64, start, None);
    let deadline = Duration::from_secs(600);
    let done = loop {
        let target = sipp_s.map(|_| stat(&stats, "SuccessfulCall(C)")).transpose()?;
        if let Some(t) = target {
            if released >= t {
                break t;
            }
        }
        if start.elapsed() > deadline {
            return Err(CliError::Failed(anyhow::anyhow!("{released} releases in calls after {} s", deadline.as_secs())));
        }
        tokio::select! {
            result = &mut uac, if sipp_s.is_none() => {
                result?;
                sipp_s = Some(start.elapsed().as_secs_f64());
            }
            event = tail.events.recv() => match event {
                Some(ConsumerEvent::Record(r)) => {
                    let release = r.value.as_deref().and_then(|v| decode::<CallEvent>(v).ok()).is_some_and(|e| {
                        matches!(&e.body, CallBody::Telephony(t) if t.kind == TEventKind::Released && t.dn.starts_with('7'))
                    });
                    if release {
                        released += 1;
                        last_release = Instant::now();
                    }
                }
                Some(_) => {}
                None => return Err(CliError::Failed(anyhow::anyhow!("the calls reader stopped"))),
            },
        }
    };
    drop(uas);
    tail.stop().await;
    m.check("the monitor", ml)?;
    drop((dispatcher, monitor, kamailio));
    Ok((done, sipp_s.unwrap_or_default(), last_release.duration_since(start).as_secs_f64()))
}
