//! A load generator for the zero-downtime tests: ~[`RATE`] plain HTTP/1.0 GETs of `/` a
//! second on loopback (each a new connection) from [`WORKERS`] threads, counting every
//! answer by version and every failed request with when and why it failed.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::World;

/// Requests per second, over all workers.
pub const RATE: u32 = 100;
/// Worker threads sharing the rate.
const WORKERS: u32 = 4;
/// A bound on one phase, whatever happens.
const MAX_PHASE: Duration = Duration::from_secs(120);

/// What the load saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: u64,
    /// Answers per version ("hello from 2.0.0" → "2.0.0").
    pub versions: BTreeMap<String, u64>,
    /// Every failed request: when it was sent and why it failed.
    pub failures: Vec<(String, String)>,
    /// How long the load ran (the phase and the second before and after it).
    pub window: Duration,
}

/// ~[`RATE`] GETs a second of `/` on `port` from [`WORKERS`] threads until stopped (or
/// [`MAX_PHASE`] has passed, or as many requests as that allows were sent).
struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally: Arc<Mutex<Tally>> = Arc::default();
        let t0 = Instant::now();
        let period = Duration::from_secs(1) * WORKERS / RATE;
        let cap = u64::from(RATE) * MAX_PHASE.as_secs() / u64::from(WORKERS);
        let workers = (0..WORKERS)
            .map(|i| {
                let (stop, tally) = (stop.clone(), tally.clone());
                std::thread::spawn(move || {
                    // Spread the workers over the period.
                    let mut next = t0 + period * i / WORKERS;
                    for _ in 0..cap {
                        if stop.load(Ordering::Relaxed) || t0.elapsed() > MAX_PHASE {
                            break;
                        }
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        }
                        next = (next + period).max(Instant::now());
                        let sent_at = shipshape::state::now().to_string();
                        let answer = get(port);
                        let mut t = tally.lock().unwrap();
                        t.sent += 1;
                        match answer {
                            Ok(version) => *t.versions.entry(version).or_default() += 1,
                            Err(why) => t.failures.push((sent_at, why)),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            tally,
            workers,
        }
    }

    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.join().unwrap();
        }
        std::mem::take(&mut *self.tally.lock().unwrap())
    }
}

/// One HTTP/1.0 GET of `/`: the version that answered, or why it failed.
pub fn get(port: u16) -> Result<String, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)
        .map_err(|e| format!("read: {e} (after {} bytes)", buf.len()))?;
    let status = buf.split_whitespace().nth(1).unwrap_or("");
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim())
        .unwrap_or("");
    match (status, body.strip_prefix("hello from ")) {
        ("200", Some(version)) => Ok(version.to_string()),
        _ => Err(format!("answer {:?}", buf.lines().next().unwrap_or(""))),
    }
}

/// Run `phase` under load; returns the tally (printed) once the load stopped, a second after
/// the phase ended.
pub fn under_load(w: &World, what: &str, phase: impl FnOnce()) -> Tally {
    let load = Load::start(w.port);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    phase();
    let took = t0.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let mut tally = load.finish();
    tally.window = started.elapsed();
    println!(
        "{what}: {} requests in {:.1}s of {what} (+2 s around it), {} failed; answers by version {:?}",
        tally.sent,
        took.as_secs_f64(),
        tally.failures.len(),
        tally.versions
    );
    tally
}

/// No request of `t` failed, and the load really ran: at least half of [`RATE`] over its
/// window (a pass that fails in half a second still had two seconds of load around it).
pub fn assert_no_failures(w: &World, what: &str, t: &Tally) {
    let min_sent = (f64::from(RATE) * t.window.as_secs_f64() * 0.5) as u64;
    let steps: Vec<(String, String, u64)> = w
        .record()
        .last_pass
        .map(|p| p.steps)
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.step.to_string(), s.started_at.to_string(), s.duration_ms))
        .collect();
    assert!(
        t.failures.is_empty(),
        "{what}: {} of {} requests failed: {:?}\nthe pass's steps (kind, start, ms): {steps:?}",
        t.failures.len(),
        t.sent,
        t.failures
    );
    assert!(
        t.sent >= min_sent,
        "{what}: only {} requests were sent in {:.1}s (the load did not run at ~{RATE}/s)",
        t.sent,
        t.window.as_secs_f64()
    );
}
