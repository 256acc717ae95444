//! The probe thread: every HTTP and Prometheus check runs on one dedicated OS thread with
//! its own single-threaded tokio runtime and its own HTTP clients, so nothing else the
//! controller does (API requests, record reads and writes, passes) can delay a probe or
//! inflate the latency it measures. A round is handed over as a job; the thread runs each
//! job's checks concurrently and answers with the results, each timed by the probe's own
//! clock on that thread (see [`crate::health::probe`]).
//!
//! The thread is started on the first round and sleeps in the kernel between rounds (no
//! timer of its own): idle, it costs a stack and nothing else. If it ever stops (a panic),
//! the next round starts a new one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shipshape_spec::app::Check;
use shipshape_spec::status::{CheckResult, ProbeState};
use tokio::sync::{mpsc, oneshot};

use crate::health;

/// One round's probes.
struct Job {
    checks: Vec<Check>,
    reply: oneshot::Sender<Vec<CheckResult>>,
}

/// A handle on the probe thread (shared by clones; the thread ends when the last is
/// dropped).
#[derive(Clone, Default)]
pub struct Prober {
    jobs: Arc<Mutex<Option<mpsc::UnboundedSender<Job>>>>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let running = self.jobs.lock().map(|j| j.is_some()).unwrap_or(false);
        f.debug_struct("Prober").field("running", &running).finish()
    }
}

/// The name of the probe thread (as `ps -L` and `/proc/PID/task/*/comm` show it).
pub const THREAD_NAME: &str = "shipshape-probe";

impl Prober {
    /// A prober whose thread starts on the first round.
    pub fn new() -> Prober {
        Prober::default()
    }

    /// Run `checks` (HTTP and Prometheus; a `resources` check is answered inconclusively,
    /// as [`health::probe`] does) on the probe thread, concurrently, and return their
    /// results in order. Bounded: a probe thread that does not answer within twice the
    /// longest check timeout and 5 s more gives inconclusive results (the controller, not
    /// the app, is at fault).
    pub async fn probe(&self, checks: Vec<Check>) -> Vec<CheckResult> {
        if checks.is_empty() {
            return Vec::new();
        }
        let bound = checks
            .iter()
            .map(|c| c.timeout.std())
            .max()
            .unwrap_or_default()
            * 2
            + Duration::from_secs(5);
        let names: Vec<String> = checks.iter().map(|c| c.name.clone()).collect();
        let (reply, answer) = oneshot::channel();
        if let Err(why) = self.send(Job { checks, reply }) {
            return inconclusive(&names, &why.to_string());
        }
        match tokio::time::timeout(bound, answer).await {
            Ok(Ok(results)) => results,
            Ok(Err(_)) => {
                self.forget();
                inconclusive(&names, "the probe thread stopped before answering")
            }
            Err(_) => inconclusive(
                &names,
                &format!(
                    "the probe thread did not answer within {} ms",
                    bound.as_millis()
                ),
            ),
        }
    }

    /// Hand `job` to the thread, starting it (again) when there is none.
    fn send(&self, job: Job) -> Result<(), SendError> {
        let mut jobs = self.jobs.lock().map_err(|_| SendError::Poisoned)?;
        let job = match jobs.as_ref() {
            Some(tx) => match tx.send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let tx = start().map_err(SendError::Start)?;
        tx.send(job).map_err(|_| SendError::StoppedAtOnce)?;
        *jobs = Some(tx);
        Ok(())
    }

    /// Drop the handle on a thread that stopped, so the next round starts a new one.
    fn forget(&self) {
        if let Ok(mut jobs) = self.jobs.lock()
            && jobs.as_ref().is_some_and(|tx| tx.is_closed())
        {
            *jobs = None;
        }
    }
}

fn inconclusive(names: &[String], why: &str) -> Vec<CheckResult> {
    names
        .iter()
        .map(|name| CheckResult {
            name: name.clone(),
            state: ProbeState::Inconclusive,
            detail: format!("the controller could not probe: {why}"),
            latency_ms: 0,
        })
        .collect()
}

/// Start the probe thread; it runs until every sender is dropped.
/// Why a round could not be handed to the probe thread (the round is then inconclusive).
#[derive(Debug, thiserror::Error)]
enum SendError {
    /// A thread panicked holding the handle's lock.
    #[error("the probe lock is poisoned")]
    Poisoned,
    /// The thread (or its runtime) could not be started.
    #[error("the probe thread could not start: {0}")]
    Start(#[source] std::io::Error),
    /// A thread just started stopped before taking the round.
    #[error("the probe thread stopped at once")]
    StoppedAtOnce,
}

fn start() -> std::io::Result<mpsc::UnboundedSender<Job>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || {
            // This thread's own clients: their connections are driven by this runtime.
            let http = crate::clients::Http::new();
            rt.block_on(async move {
                while let Some(job) = rx.recv().await {
                    let http = http.clone();
                    tokio::spawn(async move {
                        let received = Instant::now();
                        let probes = job
                            .checks
                            .iter()
                            .map(|c| health::probe(http.for_url(health::check_url(c)), c));
                        let results = futures::future::join_all(probes).await;
                        tracing::trace!(
                            took_ms = received.elapsed().as_millis() as u64,
                            "probe round"
                        );
                        let _ = job.reply.send(results);
                    });
                }
            });
        })?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_check(name: &str, url: &str, max_latency_ms: Option<u64>) -> Check {
        let mut v = serde_json::json!({"name": name, "http": {"url": url}, "timeout": "2s"});
        if let Some(ms) = max_latency_ms {
            v["maxLatency"] = serde_json::json!(format!("{ms}ms"));
        }
        serde_json::from_value(v).unwrap()
    }

    /// A loopback HTTP server answering every request with 200 `ok` after `delay`.
    fn server(delay: Duration) -> u16 {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf);
                    std::thread::sleep(delay);
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    );
                });
            }
        });
        port
    }

    #[test]
    fn probes_run_on_their_own_thread_and_time_the_answer_there_whatever_blocks_the_caller() {
        let port = server(Duration::from_millis(5));
        let url = format!("http://127.0.0.1:{port}/api/health");
        let checks = vec![http_check("api", &url, Some(100))];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let prober = Prober::new();
        let results = rt.block_on(async {
            let probe = prober.probe(checks.clone());
            // The caller's thread is blocked for 400 ms right after handing the round over,
            // as a flooded controller thread would be: the probe is not.
            let block = async {
                tokio::task::yield_now().await;
                std::thread::sleep(Duration::from_millis(400));
            };
            let (results, ()) = tokio::join!(probe, block);
            results
        });
        assert_eq!(results.len(), 1);
        let r = &results[0];
        assert_eq!(r.state, ProbeState::Pass, "{}", r.detail);
        assert!(r.latency_ms < 100, "{} ms: {}", r.latency_ms, r.detail);
        // On the caller's thread (what main did), the same probe measures the block.
        let client = crate::clients::plain();
        let inline = rt.block_on(async {
            let probe = health::probe(&client, &checks[0]);
            let block = async {
                tokio::task::yield_now().await;
                std::thread::sleep(Duration::from_millis(400));
            };
            let (r, ()) = tokio::join!(probe, block);
            r
        });
        assert_eq!(inline.state, ProbeState::Fail, "{}", inline.detail);
        assert!(
            inline.detail.contains("over maxLatency 100ms"),
            "{}",
            inline.detail
        );
    }

    #[test]
    fn a_round_is_answered_in_the_checks_order_and_the_thread_is_named() {
        let fast = server(Duration::ZERO);
        let slow = server(Duration::from_millis(150));
        let checks = vec![
            http_check("slow", &format!("http://127.0.0.1:{slow}/"), Some(100)),
            http_check("fast", &format!("http://127.0.0.1:{fast}/"), None),
        ];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let prober = Prober::new();
        let results = rt.block_on(prober.probe(checks));
        let got: Vec<(&str, ProbeState)> =
            results.iter().map(|r| (r.name.as_str(), r.state)).collect();
        assert_eq!(
            got,
            [("slow", ProbeState::Fail), ("fast", ProbeState::Pass)],
            "{results:?}"
        );
        assert!(
            results[0].detail.contains("over maxLatency 100ms"),
            "{results:?}"
        );
        let named = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .any(|c| c.trim() == THREAD_NAME);
        assert!(named, "no {THREAD_NAME} thread");
    }

    /// Pin the calling thread to CPU 0.
    fn pin_to_cpu0() {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity
        // only read and write it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            assert_eq!(
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
                0
            );
        }
    }

    #[test]
    fn a_probe_whose_thread_is_starved_of_cpu_is_inconclusive_not_failing() {
        // The app answers in 5 ms; the thread probing it shares CPU 0 with two busy
        // threads from a lower scheduling class (SCHED_IDLE), so the answer waits for it.
        let port = server(Duration::from_millis(5));
        let check = http_check("api", &format!("http://127.0.0.1:{port}/"), Some(30));
        // The scheduler decides how long the probe waits: try until it waited long enough
        // to be well over maxLatency (most tries do) while everything else took at most
        // 20 ms (on a busy host the server, or the kernel's loopback work, may be late too:
        // then the probe thread's lateness does not explain the time, and it rightly
        // fails), at most ten times.
        let starved = |check: Check| {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let spinning = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let hogs: Vec<_> = (0..2)
                .map(|_| {
                    let (stop, spinning) = (stop.clone(), spinning.clone());
                    std::thread::spawn(move || {
                        pin_to_cpu0();
                        spinning.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let mut x = 0u64;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            x = x.wrapping_add(1);
                        }
                        x
                    })
                })
                .collect();
            // The probe starts once both hogs spin on CPU 0 (before, a probe could run
            // before they were scheduled, and was never starved: a flake on an idle host).
            let deadline = Instant::now() + Duration::from_secs(5);
            while spinning.load(std::sync::atomic::Ordering::SeqCst) < 2
                && Instant::now() < deadline
            {
                std::thread::yield_now();
            }
            let result = std::thread::spawn(move || {
                pin_to_cpu0();
                // SAFETY: sched_param is plain data; lowering one's own policy needs no privilege.
                unsafe {
                    let param: libc::sched_param = std::mem::zeroed();
                    assert_eq!(libc::sched_setscheduler(0, libc::SCHED_IDLE, &param), 0);
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let client = crate::clients::plain();
                // Timed from outside the probe too: how much of its time was this thread's
                // own wait for a CPU.
                let (t0, late0) = (Instant::now(), health::run_queue_wait());
                let r = rt.block_on(health::probe(&client, &check));
                let late = late0.zip(health::run_queue_wait()).map(|(b, a)| a - b);
                (r, t0.elapsed().saturating_sub(late.unwrap_or_default()))
            })
            .join()
            .unwrap();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            for h in hogs {
                h.join().unwrap();
            }
            result
        };
        let mut tries = Vec::new();
        let result = (0..10)
            .map(|_| starved(check.clone()))
            .inspect(|(r, rest)| tries.push((r.latency_ms, rest.as_millis())))
            .find(|(r, rest)| r.latency_ms > 60 && *rest <= Duration::from_millis(20))
            .map(|(r, _)| r)
            .unwrap_or_else(|| {
                panic!(
                    "the probe was never starved past twice maxLatency with the rest on time in ten tries (ms, rest ms): {tries:?}"
                )
            });
        assert_eq!(result.state, ProbeState::Inconclusive, "{}", result.detail);
        assert!(
            result.detail.contains("the controller was late"),
            "{}",
            result.detail
        );
    }
}
