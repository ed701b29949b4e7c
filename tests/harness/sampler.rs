//! Samples simulated T-Servers every 200 ms over the CTI link itself: who watches each
//! one (the one client holding all its DNs) and whether a DN is held twice.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Who watches each T-Server at one moment: the one client holding all its DNs, or none
/// (some DN unregistered); and how many DNs were held by two clients at once.
struct Sample {
    at: Instant,
    holders: Vec<Option<String>>,
    doubles: usize,
}

/// Samples the simulators every 200 ms (their status over the CTI link itself, not a
/// process per query) until stopped.
pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    pub fn start(endpoints: Vec<String>, dns: usize) -> Sampler {
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (out, stopped) = (samples.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            // DNs registered by more than one client, printed when they change (for reading
            // beside the test's own timeline).
            let mut held_twice = BTreeSet::new();
            while !stopped.load(Ordering::SeqCst) {
                let at = Instant::now();
                let mut holders = Vec::new();
                let mut doubles = 0;
                let mut now_twice = BTreeSet::new();
                for e in &endpoints {
                    let Ok(status) = rt.block_on(netwatch_producers::sim::query_status(e)) else {
                        holders.push(None);
                        continue;
                    };
                    for (dn, h) in status.registrations.iter().filter(|(_, h)| h.len() > 1) {
                        doubles += 1;
                        now_twice.insert(format!("{e} DN {dn} held by {h:?}"));
                    }
                    let names: BTreeSet<&String> = status.registrations.values().flatten().collect();
                    let complete = status.registrations.len() == dns && status.registrations.values().all(|h| h.len() == 1);
                    holders.push(match (complete, names.into_iter().next()) {
                        (true, Some(one)) if status.registrations.values().all(|h| &h[0] == one) => Some(one.clone()),
                        _ => None,
                    });
                }
                if now_twice != held_twice {
                    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
                    eprintln!(
                        "sampler at {ms} ms since the epoch: {} DNs held twice {:?}",
                        now_twice.len(),
                        now_twice.iter().take(5).collect::<Vec<_>>()
                    );
                    held_twice = now_twice;
                }
                out.lock().unwrap().push(Sample { at, holders, doubles });
                std::thread::sleep(Duration::from_millis(200).saturating_sub(at.elapsed()));
            }
        });
        Sampler { samples, stop, thread: Some(thread) }
    }

    /// The samples taken since `from`.
    pub fn since(&self, from: Instant) -> Vec<(Instant, Vec<Option<String>>, usize)> {
        self.samples.lock().unwrap().iter().filter(|s| s.at >= from).map(|s| (s.at, s.holders.clone(), s.doubles)).collect()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Per T-Server over a phase: did one monitor hold it in every sample (it never moved),
/// and the longest stretch it was unwatched (from the first sample without a holder to
/// the next sample with one).
pub fn phase(samples: &[(Instant, Vec<Option<String>>, usize)], tservers: usize) -> Vec<(bool, Duration)> {
    (0..tservers)
        .map(|t| {
            let held: Vec<(Instant, Option<&String>)> = samples.iter().map(|(at, h, _)| (*at, h[t].as_ref())).collect();
            let first = held.first().and_then(|(_, h)| *h);
            let stayed = first.is_some() && held.iter().all(|(_, h)| *h == first);
            let mut longest = Duration::ZERO;
            let mut since: Option<Instant> = None;
            for (at, h) in &held {
                match (h, since) {
                    (None, None) => since = Some(*at),
                    (Some(_), Some(s)) => {
                        longest = longest.max(*at - s);
                        since = None;
                    }
                    _ => {}
                }
            }
            if let (Some(s), Some((last, _))) = (since, held.last()) {
                longest = longest.max(*last - s);
            }
            (stayed, longest)
        })
        .collect()
}
