//! The wave gate of a fleet rollout (`spec.rollout`): whether this host may take a new app
//! commit now, decided from what the fleet's Prometheus saw of the other hosts. The
//! decision ([`decide`]) is pure and table-tested (`tests.rs`); [`observe`] asks
//! Prometheus for its inputs.
//!
//! The rules, in order:
//! 1. a failure of the commit on a host of an earlier wave or of this one (reverted from
//!    it, Degraded or Failed on it) holds it, remembered as a [`FleetMark`] until a new
//!    config commit or until that host tries the commit again and runs it, Ready;
//! 2. every host of every earlier wave must run the commit, Ready, in samples no older and
//!    no further apart than `fresh`, for `soak`; a missing or stale host (a named one
//!    Prometheus does not list included), an empty earlier wave or Prometheus not
//!    answering is a hold (no data), never a go;
//! 3. within the wave, hosts go in name order, at most `maxParallel` at once: a host goes
//!    when fewer than that many of the hosts before it are still to finish (Ready on the
//!    commit); a pinned host is not taking it and does not count. A wave chosen by labels
//!    needs Prometheus to list this host too (else it cannot know the others).
//!
//! Times are Prometheus's: `now` is the instant its answers were evaluated at, so a skew
//! between this host's clock and Prometheus's does not shorten a soak.

pub mod observe;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use shipshape_spec::rollout::{MaxParallel, REST_WAVE, Rollout};
use shipshape_spec::status::{FleetMark, GateHost, GateState};

use crate::plan::short_sha;

/// One sample of a host's `shipshape_app_info` for the app.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When Prometheus scraped it (seconds since the epoch).
    pub at: f64,
    /// The `phase` label.
    pub phase: String,
    /// The live app commit.
    pub live: String,
    /// The desired app commit.
    pub desired: String,
    /// The host went back from its desired config commit.
    pub reverted: bool,
    /// The app is pinned there.
    pub pinned: bool,
}

impl Sample {
    /// Runs `commit`, Ready.
    fn ready_on(&self, commit: &str) -> bool {
        self.live == commit && self.phase == "Ready"
    }

    /// The failure of `commit` this sample shows, if any.
    fn failure_of(&self, commit: &str) -> Option<&'static str> {
        if self.desired == commit && self.reverted {
            Some("reverted")
        } else if (self.live == commit || self.desired == commit) && self.phase == "Failed" {
            Some("Failed")
        } else if self.live == commit && self.phase == "Degraded" {
            Some("Degraded")
        } else {
            None
        }
    }

    /// A new attempt at `commit` (after a retry or a new config commit there).
    fn tries(&self, commit: &str) -> bool {
        self.desired == commit && !self.reverted && self.phase == "Progressing"
    }
}

/// Another host, as Prometheus saw it: its labels and its samples of the app, oldest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostSeen {
    /// `--hostname`.
    pub name: String,
    /// `--label`s.
    pub labels: BTreeMap<String, String>,
    /// The app's samples in the window asked, oldest first.
    pub samples: Vec<Sample>,
}

/// What Prometheus said about the fleet, or why it said nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// The hosts that ran the app in the look-back window (this one too, when Prometheus
    /// has it).
    Hosts(Vec<HostSeen>),
    /// Prometheus could not be asked, or refused: why.
    Unreachable(String),
}

/// What the gate is asked.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The document's rollout.
    pub rollout: &'a Rollout,
    /// This host's name.
    pub me: &'a str,
    /// This host's labels.
    pub labels: &'a BTreeMap<String, String>,
    /// The app commit asked for.
    pub commit: &'a str,
    /// Now, on Prometheus's time line (seconds since the epoch).
    pub now: f64,
    /// What Prometheus saw.
    pub seen: &'a Seen,
    /// The failures of `commit` remembered from earlier checks.
    pub marks: &'a [FleetMark],
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// This host's wave, and its place.
    pub wave: String,
    /// Its index, from 0.
    pub wave_index: usize,
    /// How many waves there are ("the rest" included when this host is in it).
    pub waves: usize,
    /// Open, or why it holds.
    pub state: GateState,
    /// In words.
    pub message: String,
    /// The hosts it waits for, or the one it is held by.
    pub hosts: Vec<GateHost>,
    /// The failures of the commit known now (the ones asked, less those the host tried
    /// again, plus those seen now).
    pub marks: Vec<FleetMark>,
}

impl Verdict {
    /// True when the commit may be applied.
    pub fn open(&self) -> bool {
        self.state == GateState::Open
    }
}

/// A duration in seconds, rounded, as `spec.rollout` writes one (`40s`, `4m10s`, `1h`):
/// the document's own [`shipshape_spec::Duration`] text.
pub fn secs(s: f64) -> String {
    shipshape_spec::Duration::from_secs(s.max(0.0).round() as u64).to_string()
}

/// How a host of an earlier wave stands towards the commit.
#[derive(Debug, Clone, PartialEq)]
enum Standing {
    /// Runs it, Ready, for the soak time.
    Proven,
    /// Runs something else, or not yet for long enough.
    Waiting(String, Option<f64>),
    /// No sample fresh enough.
    Unseen(String),
}

/// How `h` stands towards `commit`: its newest sample must be fresh; it has soaked for as
/// long as its samples, newest first, show it Ready on the commit with no gap above
/// `fresh`.
fn standing(h: &HostSeen, commit: &str, now: f64, rollout: &Rollout) -> Standing {
    let fresh = rollout.fresh.std().as_secs_f64();
    let soak = rollout.soak.std().as_secs_f64();
    let Some(last) = h.samples.last() else {
        return Standing::Unseen(format!("no sample in the last {}", secs(soak + fresh)));
    };
    if now - last.at > fresh {
        return Standing::Unseen(format!(
            "no sample for {} (fresh: {})",
            secs(now - last.at),
            secs(fresh)
        ));
    }
    if !last.ready_on(commit) {
        let pinned = if last.pinned { "pinned, " } else { "" };
        let on = if last.live.is_empty() {
            "nothing live".to_string()
        } else {
            short_sha(&last.live).to_string()
        };
        return Standing::Waiting(format!("{pinned}{} on {on}", last.phase), None);
    }
    let mut since = last.at;
    let mut newer = last.at;
    for s in h.samples.iter().rev() {
        if !s.ready_on(commit) || newer - s.at > fresh {
            break;
        }
        since = s.at;
        newer = s.at;
    }
    let soaked = now - since;
    if soaked >= soak {
        Standing::Proven
    } else {
        Standing::Waiting(
            format!(
                "Ready on {}, soaked {} of {}",
                short_sha(commit),
                secs(soaked),
                secs(soak)
            ),
            Some(soaked),
        )
    }
}

/// The marks of `ask.commit` now: the remembered ones less those whose host has tried
/// the commit again since and run it, Ready; plus the failures in the samples of the hosts
/// of waves up to `upto` (this host's), one per host: the first one not followed by a new
/// attempt that became Ready.
fn marks_now(ask: &Ask<'_>, hosts: &[(usize, &HostSeen)], upto: usize) -> Vec<FleetMark> {
    let mut marks: BTreeMap<String, FleetMark> = BTreeMap::new();
    // A mark lifts once its host tried the commit again and then ran it, Ready: a retry
    // under way still holds (the commit is known to have failed; the next host must not
    // take it beside the retry).
    let proven_since = |h: &HostSeen, at: f64| {
        let mut tried = false;
        h.samples.iter().filter(|s| s.at > at).any(|s| {
            tried |= s.tries(ask.commit);
            tried && s.ready_on(ask.commit)
        })
    };
    for m in ask.marks {
        let lifted = hosts
            .iter()
            .any(|(_, h)| h.name == m.host && proven_since(h, m.at));
        if !lifted {
            marks.insert(m.host.clone(), m.clone());
        }
    }
    for (wave, h) in hosts {
        if *wave > upto {
            continue;
        }
        // The first failure in the samples, unless the host tried again and was Ready
        // after it.
        let mut found: Option<FleetMark> = None;
        let mut tried = false;
        for s in &h.samples {
            if let Some(reason) = s.failure_of(ask.commit) {
                tried = false;
                if found.is_none() {
                    found = Some(FleetMark {
                        host: h.name.clone(),
                        reason: reason.to_string(),
                        at: s.at,
                    });
                }
            } else if s.tries(ask.commit) {
                tried = true;
            } else if tried && s.ready_on(ask.commit) {
                found = None;
                tried = false;
            }
        }
        if let Some(f) = found
            && !marks.contains_key(&f.host)
        {
            marks.insert(f.host.clone(), f);
        }
    }
    marks.into_values().collect()
}

/// Why the gate holds: its state, its words, and the hosts it names.
type Held = (GateState, String, Vec<GateHost>);

/// What [`decide`] reads, once: the ask, this host's wave, the other hosts with theirs, and
/// why Prometheus said nothing (if it did not).
struct Scene<'a> {
    ask: &'a Ask<'a>,
    /// This host's wave: its index and name.
    index: usize,
    name: &'a str,
    /// Every host Prometheus listed (this one included, when it did).
    seen: &'a [HostSeen],
    /// The other hosts, each with its wave's index.
    hosts: Vec<(usize, &'a HostSeen)>,
    /// Prometheus could not be asked: why.
    unreachable: Option<&'a str>,
    /// The commit, shortened, for the words.
    commit: String,
}

impl Scene<'_> {
    /// The name of `host`'s wave (empty for one Prometheus does not list).
    fn wave_name(&self, host: &str) -> String {
        self.hosts
            .iter()
            .find(|(_, h)| h.name == host)
            .map(|(_, h)| self.ask.rollout.wave_of(&h.name, &h.labels).1.to_string())
            .unwrap_or_default()
    }

    /// Rule 1: the commit failed on a host up to this wave (`marks`, the first named).
    fn failed(&self, marks: &[FleetMark]) -> Option<Held> {
        let m = marks.first()?;
        let commit = &self.commit;
        let message = format!(
            "app {commit} failed on {} ({}): it is not applied here until a new config commit, or `shipshape retry` on {}",
            m.host, m.reason, m.host
        );
        let hosts = marks
            .iter()
            .map(|m| GateHost {
                host: m.host.clone(),
                wave: self.wave_name(&m.host),
                state: format!("{} on {commit}", m.reason),
                soaked_seconds: None,
            })
            .collect();
        Some((GateState::Failed, message, hosts))
    }

    /// Rule 2: every host of every earlier wave runs the commit, Ready, soaked, in fresh
    /// samples; else whom it waits for (no data when one is unseen).
    fn earlier_waves(&self) -> Option<Held> {
        if self.index == 0 {
            return None;
        }
        let (ask, commit) = (self.ask, &self.commit);
        if let Some(why) = self.unreachable {
            let message = format!(
                "waiting for the earlier waves to prove app {commit}, but Prometheus cannot say: {why}"
            );
            return Some((GateState::NoData, message, Vec::new()));
        }
        let lookback = secs(observe::LOOKBACK.as_secs_f64());
        let mut waiting = Vec::new();
        let mut unseen = false;
        let mut wait = |host: String, wave: &str, state: String, soaked: Option<f64>| {
            waiting.push(GateHost {
                host,
                wave: wave.to_string(),
                state,
                soaked_seconds: soaked,
            })
        };
        for (j, wave) in ask.rollout.waves.iter().enumerate().take(self.index) {
            let members: Vec<&HostSeen> = self
                .hosts
                .iter()
                .filter(|(w, _)| *w == j)
                .map(|(_, h)| *h)
                .collect();
            if wave.hosts.labels.is_empty() {
                // A named host Prometheus does not list has not proven the commit: the
                // wave is not proven by its other hosts alone.
                for n in &wave.hosts.names {
                    if n != ask.me && !members.iter().any(|h| &h.name == n) {
                        unseen = true;
                        let state =
                            format!("no sample of this app in Prometheus's last {lookback}");
                        wait(n.clone(), &wave.name, state, None);
                    }
                }
            } else if members.is_empty() {
                unseen = true;
                let state = format!(
                    "no host of wave {} runs this app in Prometheus's last {lookback}",
                    wave.name
                );
                wait(String::new(), &wave.name, state, None);
            }
            for h in members {
                match standing(h, ask.commit, ask.now, ask.rollout) {
                    Standing::Proven => {}
                    Standing::Waiting(s, soaked) => wait(h.name.clone(), &wave.name, s, soaked),
                    Standing::Unseen(s) => {
                        unseen = true;
                        wait(h.name.clone(), &wave.name, s, None);
                    }
                }
            }
        }
        if waiting.is_empty() {
            return None;
        }
        let list: Vec<String> = waiting
            .iter()
            .map(|h| match h.host.as_str() {
                "" => h.state.clone(),
                host => format!("{host}: {}", h.state),
            })
            .collect();
        let message = format!(
            "waiting for the earlier waves to run app {commit}, Ready, for {}: {}",
            secs(ask.rollout.soak.std().as_secs_f64()),
            list.join("; ")
        );
        let state = if unseen {
            GateState::NoData
        } else {
            GateState::Waiting
        };
        Some((state, message, waiting))
    }

    /// Rule 3: fewer than `maxParallel` of this wave's hosts before this one (by name) are
    /// still to finish; else which are.
    fn within_wave(&self) -> Option<Held> {
        let (ask, commit, name) = (self.ask, &self.commit, self.name);
        let wave = ask.rollout.wave(self.index);
        let max_parallel = wave.map(|w| w.max_parallel).unwrap_or_default();
        let named: Vec<&str> = wave
            .filter(|w| w.hosts.labels.is_empty())
            .map(|w| w.hosts.names.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let whole = matches!(max_parallel, MaxParallel::Percent(p) if p.value() >= 100.0);
        if !whole && named.is_empty() {
            // Only Prometheus knows a labelled wave's hosts: without its word of this host
            // (it does not scrape this controller, or drops `host`), not of the others either.
            let unknown = match self.unreachable {
                Some(why) => Some(format!("Prometheus cannot say which are taking it: {why}")),
                None if !self.seen.iter().any(|h| h.name == ask.me) => Some(format!(
                    "Prometheus at {} has no sample of this app from this host ({}) in its last {}: is it scraping this controller?",
                    ask.rollout.prometheus,
                    ask.me,
                    secs(observe::LOOKBACK.as_secs_f64())
                )),
                None => None,
            };
            if let Some(why) = unknown {
                let message = format!(
                    "wave {name} takes app {commit} on {max_parallel} of its hosts at a time, but {why}"
                );
                return Some((GateState::NoData, message, Vec::new()));
            }
        }
        let mut members: BTreeMap<&str, Option<&HostSeen>> = named
            .iter()
            .filter(|n| **n != ask.me)
            .map(|n| (*n, None))
            .collect();
        for (w, h) in &self.hosts {
            if *w == self.index {
                members.insert(h.name.as_str(), Some(*h));
            }
        }
        let size = members.len() + 1;
        let allowed = max_parallel.of(size);
        let fresh = ask.rollout.fresh.std().as_secs_f64();
        let busy: Vec<GateHost> = members
            .iter()
            .filter(|(n, _)| **n < ask.me)
            .filter_map(|(n, h)| {
                let state = match h.and_then(|h| h.samples.last()) {
                    None => "no sample".to_string(),
                    Some(s) if ask.now - s.at > fresh => {
                        format!("no sample for {}", secs(ask.now - s.at))
                    }
                    Some(s) if s.ready_on(ask.commit) || s.pinned => return None,
                    Some(s) if s.live.is_empty() => format!("{} on nothing live", s.phase),
                    Some(s) => format!("{} on {}", s.phase, short_sha(&s.live)),
                };
                Some(GateHost {
                    host: n.to_string(),
                    wave: name.to_string(),
                    state,
                    soaked_seconds: None,
                })
            })
            .collect();
        if busy.len() < allowed {
            return None;
        }
        let list: Vec<String> = busy
            .iter()
            .map(|h| format!("{}: {}", h.host, h.state))
            .collect();
        let mut message = format!(
            "wave {name} takes app {commit} on {allowed} host(s) at a time (maxParallel {max_parallel} of {size}), in name order; before this one: {}",
            list.join("; ")
        );
        let state = match self.unreachable {
            Some(why) => {
                message.push_str(&format!("; Prometheus cannot say: {why}"));
                GateState::NoData
            }
            None => GateState::Busy,
        };
        Some((state, message, busy))
    }

    /// The words of an open gate.
    fn open(&self) -> String {
        let (name, commit) = (self.name, &self.commit);
        let mut message = if self.index == 0 {
            format!("wave {name} is the first: app {commit} goes")
        } else {
            format!(
                "the earlier waves run app {commit}, Ready, for {}: wave {name} takes it",
                secs(self.ask.rollout.soak.std().as_secs_f64())
            )
        };
        if name == REST_WAVE {
            message.push_str(" (this host is in no listed wave)");
        }
        message
    }
}

/// Whether this host may take `ask.commit` now (see the module's rules, tried in order).
pub fn decide(ask: &Ask<'_>) -> Verdict {
    let rollout = ask.rollout;
    let (index, name) = rollout.wave_of(ask.me, ask.labels);
    let (seen, unreachable): (&[HostSeen], _) = match ask.seen {
        Seen::Hosts(h) => (h, None),
        Seen::Unreachable(why) => (&[], Some(why.as_str())),
    };
    let scene = Scene {
        ask,
        index,
        name,
        seen,
        hosts: seen
            .iter()
            .filter(|h| h.name != ask.me)
            .map(|h| (rollout.wave_of(&h.name, &h.labels).0, h))
            .collect(),
        unreachable,
        commit: short_sha(ask.commit).to_string(),
    };
    let marks = marks_now(ask, &scene.hosts, index);
    let held = scene
        .failed(&marks)
        .or_else(|| scene.earlier_waves())
        .or_else(|| scene.within_wave());
    let (state, message, hosts) =
        held.unwrap_or_else(|| (GateState::Open, scene.open(), Vec::new()));
    Verdict {
        wave: name.to_string(),
        wave_index: index,
        waves: if index == rollout.waves.len() {
            rollout.waves.len() + 1
        } else {
            rollout.waves.len()
        },
        state,
        message,
        hosts,
        marks,
    }
}
