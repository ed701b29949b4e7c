//! The Kamailio adapter against a real Kamailio 5.6 and real SIP calls from SIPp.
//!
//! Starts Kamailio with `infra/kamailio.sh` on ports of its own, reads evapi with
//! [`read_evapi`], feeds [`Model`], and checks the exact outputs of a registration, an
//! answered call with hold and retrieve (`uac_hold.xml` / `uas_hold.xml`), a busy call
//! (`uac_busy.xml` / `uas_busy.xml`) and an unregistration, plus `dlg.list` / `ul.dump`
//! over JSON-RPC during the hold. Skipped (with the reason printed) only when Kamailio or
//! SIPp cannot be installed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use netwatch_producers::sip::event::Decoded;
use netwatch_producers::sip::model::{CallEvent, Model, Outcome, Output, Release, ReleasedBy};
use netwatch_producers::sip::rpc::{read_evapi, EvapiConfig, EvapiEnd, RpcClient};
use netwatch_schemas::calls::{CallType, TEventKind};
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};

// Ports apart from the defaults (5070, 8448, 8449, SIPp 5091/5092) and from SIPp's RTP
// range (6000-6400).
const SIP_PORT: u16 = 5270;
const EVAPI_PORT: u16 = 8648;
const RPC_PORT: u16 = 8649;
const UAC_PORT: u16 = 5291;
const UAS_PORT: u16 = 5292;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the crate is in the workspace").to_path_buf()
}

/// Runs `infra/kamailio.sh <action>` with this test's ports and run dir.
fn kamailio_sh(data: &Path, action: &str) -> std::io::Result<std::process::Output> {
    Command::new(repo().join("infra/kamailio.sh"))
        .arg(action)
        .env("KAMAILIO_DATA", data)
        .env("KAMAILIO_SIP_PORT", SIP_PORT.to_string())
        .env("KAMAILIO_EVAPI_PORT", EVAPI_PORT.to_string())
        .env("KAMAILIO_RPC_PORT", RPC_PORT.to_string())
        .output()
}

/// Stops this test's Kamailio when dropped, also when the test fails.
struct Kamailio {
    data: PathBuf,
}

impl Kamailio {
    fn start(data: PathBuf) -> Self {
        let guard = Kamailio { data };
        let out = kamailio_sh(&guard.data, "start").expect("infra/kamailio.sh runs");
        assert!(
            out.status.success(),
            "infra/kamailio.sh start failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        guard
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        match kamailio_sh(&self.data, "stop") {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("infra/kamailio.sh stop failed: {}", String::from_utf8_lossy(&out.stderr)),
            Err(error) => eprintln!("infra/kamailio.sh stop did not run: {error}"),
        }
    }
}

/// A SIPp process of one scenario; killed if the test ends first.
fn sipp(data: &Path, scenario: &str, inf: Option<&str>, port: u16, uac: bool) -> tokio::process::Child {
    let sip = repo().join("tests/sip");
    let mut cmd = tokio::process::Command::new("sipp");
    if uac {
        cmd.arg(format!("127.0.0.1:{SIP_PORT}"));
    }
    cmd.arg("-sf").arg(sip.join(scenario));
    if let Some(inf) = inf {
        cmd.arg("-inf").arg(sip.join(inf));
    }
    cmd.args(["-i", "127.0.0.1", "-bind_local", "-p", &port.to_string(), "-m", "1", "-nostdin", "-timeout", "40s", "-timeout_error"])
        .current_dir(data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().expect("sipp starts")
}

async fn succeeds(child: tokio::process::Child, what: &str) {
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what}: sipp still runs after 60 s"))
        .expect("sipp ran");
    assert!(out.status.success(), "{what}: sipp exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
}

/// Feeds evapi items to the model and drives everything the test reads.
struct Monitor {
    rx: mpsc::Receiver<Decoded>,
    model: Model,
    unknown: usize,
}

impl Monitor {
    /// Outputs until `count` have come (or the deadline passes: then whatever came).
    async fn outputs(&mut self, count: usize, within: Duration) -> Vec<Output> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < count {
            match timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Decoded::Event(event))) => self.model.on_event(&event, &mut out),
                Ok(Some(Decoded::Hello(hello))) => {
                    self.model.on_hello(&hello);
                }
                Ok(Some(Decoded::Unknown { .. })) => self.unknown += 1,
                Ok(Some(Decoded::Invalid { reason })) => panic!("Kamailio sent an invalid event: {reason}"),
                Ok(None) => panic!("the evapi reader stopped"),
                Err(_) => break,
            }
        }
        out
    }
}

fn call(
    kind: TEventKind,
    dn: &str,
    other: &str,
    connid: &str,
    release: Option<Release>,
) -> (TEventKind, String, String, String, CallType, Option<Release>) {
    (kind, dn.into(), other.into(), connid.into(), CallType::Internal, release)
}

fn calls(outputs: &[Output]) -> Vec<(TEventKind, String, String, String, CallType, Option<Release>)> {
    outputs
        .iter()
        .map(|o| match o {
            Output::Call(CallEvent { kind, dn, connid, call_type, other_dn, release, .. }) => {
                (*kind, dn.clone(), other_dn.clone(), connid.clone(), *call_type, *release)
            }
            other => panic!("expected call events, got {other:?} in {outputs:?}"),
        })
        .collect()
}

fn time_of(outputs: &[Output], kind: TEventKind) -> u64 {
    outputs
        .iter()
        .find_map(|o| match o {
            Output::Call(c) if c.kind == kind => Some(c.time_ms),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {kind:?} in {outputs:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kamailio_calls_through_the_model() {
    let started = std::time::Instant::now();
    let data = std::env::temp_dir().join(format!("netwatch-sip-kamailio-{}", std::process::id()));
    std::fs::create_dir_all(&data).expect("run dir");
    match kamailio_sh(&data, "install") {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            eprintln!(
                "skipping: kamailio or sipp cannot be installed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        Err(error) => {
            eprintln!("skipping: infra/kamailio.sh install did not run: {error}");
            return;
        }
    }
    let kamailio = Kamailio::start(data.clone());

    let (tx, rx) = mpsc::channel(64);
    let (stop_reader, reader_stopped) = tokio::sync::oneshot::channel::<()>();
    let config = EvapiConfig::new(format!("127.0.0.1:{EVAPI_PORT}"));
    let reader = tokio::spawn(async move {
        read_evapi(&config, tx, async {
            let _ = reader_stopped.await;
        })
        .await
    });
    let filter: BTreeSet<String> = ["5001", "5002"].iter().map(|s| s.to_string()).collect();
    let mut monitor = Monitor { rx, model: Model::new(filter), unknown: 0 };
    let rpc = RpcClient::new(&format!("http://127.0.0.1:{RPC_PORT}/RPC"), Duration::from_secs(5)).expect("valid URL");

    // connect: the hello names a new instance; a fresh Kamailio has nothing to resync
    match tokio::time::timeout(Duration::from_secs(10), monitor.rx.recv()).await {
        Ok(Some(Decoded::Hello(hello))) => {
            assert!(monitor.model.on_hello(&hello), "first hello is a new instance");
            assert!(hello.version.as_deref().unwrap_or_default().starts_with("kamailio 5."), "{hello:?}");
        }
        other => panic!("expected the hello first, got {other:?}"),
    }
    let mut out = Vec::new();
    monitor.model.resync(&rpc.dlg_list().await.expect("dlg.list"), &rpc.ul_dump().await.expect("ul.dump"), 0, &mut out);
    assert_eq!(out, vec![], "a fresh Kamailio has no dialogs and no registrations");

    // the callee registers
    succeeds(sipp(&data, "register.xml", Some("callee.csv"), UAS_PORT, true), "register 5002").await;
    let out = monitor.outputs(1, Duration::from_secs(10)).await;
    assert!(matches!(out.as_slice(), [Output::InService { dn, .. }] if dn == "5002"), "{out:?}");
    assert!(rpc.ul_dump().await.expect("ul.dump").bindings().contains_key("5002"));

    // (a) answered call, hold and retrieve by the caller, caller hangs up
    let uas = sipp(&data, "uas_hold.xml", None, UAS_PORT, false);
    let uac = sipp(&data, "uac_hold.xml", Some("pair.csv"), UAC_PORT, true);
    let mut hold_call = monitor.outputs(5, Duration::from_secs(20)).await;
    assert_eq!(hold_call.len(), 5, "Dialing, Ringing, Established x2, Held: {hold_call:?}");
    let Output::Call(first) = &hold_call[0] else { panic!("{hold_call:?}") };
    let connid = first.connid.clone();
    // during the hold: Kamailio's dialog agrees with the model, nothing to resync
    let dialogs = rpc.dlg_list().await.expect("dlg.list");
    let live: Vec<_> = dialogs.iter().filter(|d| d.state < 5).collect();
    assert_eq!(live.len(), 1, "{dialogs:?}");
    assert_eq!(format!("{};{}", live[0].call_id, live[0].caller.tag.as_deref().unwrap_or_default()), connid);
    assert_eq!((live[0].state, live[0].variable("hold_caller"), live[0].variable("hold_callee")), (4, Some("1"), Some("0")));
    let mut resynced = Vec::new();
    monitor.model.resync(&dialogs, &rpc.ul_dump().await.expect("ul.dump"), 0, &mut resynced);
    assert_eq!(resynced, vec![], "the model matches dlg.list and ul.dump during the hold");

    hold_call.extend(monitor.outputs(3, Duration::from_secs(20)).await);
    succeeds(uac, "uac_hold").await;
    succeeds(uas, "uas_hold").await;
    let completed = Some(Release { outcome: Outcome::Completed, by: ReleasedBy::Caller });
    assert_eq!(
        calls(&hold_call),
        vec![
            call(TEventKind::Dialing, "5001", "5002", &connid, None),
            call(TEventKind::Ringing, "5002", "5001", &connid, None),
            call(TEventKind::Established, "5001", "5002", &connid, None),
            call(TEventKind::Established, "5002", "5001", &connid, None),
            call(TEventKind::Held, "5001", "5002", &connid, None),
            call(TEventKind::Retrieved, "5001", "5002", &connid, None),
            call(TEventKind::Released, "5001", "5002", &connid, completed),
            call(TEventKind::Released, "5002", "5001", &connid, completed),
        ]
    );
    // the scenario rings 2 s, talks 3 s, holds 2 s (ts_ms is Kamailio's clock, ms)
    let ring = time_of(&hold_call, TEventKind::Established) - time_of(&hold_call, TEventKind::Ringing);
    let held = time_of(&hold_call, TEventKind::Retrieved) - time_of(&hold_call, TEventKind::Held);
    assert!(ring >= 1_900 && held >= 1_900, "ring {ring} ms, held {held} ms");

    // (b) busy: the callee never rang, only the caller is released
    let uas = sipp(&data, "uas_busy.xml", None, UAS_PORT, false);
    let uac = sipp(&data, "uac_busy.xml", Some("pair.csv"), UAC_PORT, true);
    let busy = monitor.outputs(2, Duration::from_secs(20)).await;
    succeeds(uac, "uac_busy").await;
    succeeds(uas, "uas_busy").await;
    let Some(Output::Call(first)) = busy.first() else { panic!("{busy:?}") };
    let busy_id = first.connid.clone();
    assert_ne!(busy_id, connid);
    assert_eq!(
        calls(&busy),
        vec![
            call(TEventKind::Dialing, "5001", "5002", &busy_id, None),
            call(TEventKind::Released, "5001", "5002", &busy_id, Some(Release { outcome: Outcome::Busy, by: ReleasedBy::Callee })),
        ]
    );

    // the callee unregisters
    succeeds(sipp(&data, "register.xml", Some("callee_unregister.csv"), UAS_PORT, true), "unregister 5002").await;
    let out = monitor.outputs(1, Duration::from_secs(10)).await;
    assert!(matches!(out.as_slice(), [Output::OutOfService { dn, .. }] if dn == "5002"), "{out:?}");

    // Kamailio and the model agree at the end: no call, no registration
    let mut resynced = Vec::new();
    monitor.model.resync(&rpc.dlg_list().await.expect("dlg.list"), &rpc.ul_dump().await.expect("ul.dump"), 0, &mut resynced);
    assert_eq!(resynced, vec![]);
    assert!(monitor.model.view().calls.is_empty() && monitor.model.view().registered.is_empty());
    let stats = monitor.model.stats();
    assert_eq!((stats.duplicates, stats.gaps, monitor.unknown), (0, 0, 0), "{stats:?}");

    // stopping Kamailio closes evapi: the reader ends on its own
    drop(kamailio);
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while monitor.rx.recv().await.is_some() {}
        reader.await
    })
    .await
    .expect("the reader ends after Kamailio stopped");
    assert_eq!(end.expect("reader task").expect("reader result"), EvapiEnd::Closed);
    drop(stop_reader);
    let _ = std::fs::remove_dir_all(&data);
    eprintln!("Kamailio integration test took {:.1} s", started.elapsed().as_secs_f64());
}
