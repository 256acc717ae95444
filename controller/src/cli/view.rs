//! How `shipshape status` reads: pure functions from records (and "now") to text, so the
//! same records always render the same way and the tests can pin every line.
//!
//! - [`list`]: one line per app, the ones needing attention first ([`attention`]);
//!   [`render_table`] aligns them (`wide` adds columns and keeps messages whole).
//! - [`detail`]: one app, each message once: revisions, pin, quarantine, conditions with
//!   reason and age, the last health round per check, the failing step's output tail.
//! - [`Frame`]: the live view of `status --watch` on a terminal ([`watch_lines`] for every
//!   app, [`watch_detail_lines`] for one), redrawn in place, with the lines that changed
//!   highlighted for a moment.
//!
//! Nothing here reads a file, a clock or the environment: callers pass `now`, the terminal
//! width and whether colours are wanted.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use shipshape_spec::status::{ConditionStatus, Outcome, Phase, PinSource, SourceStatus, Timestamp};

use crate::plan::short_sha;
use crate::state::AppRecord;

/// How much an app needs a person, most urgent first (the order of [`list`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attention {
    /// Failed, degraded, reverted, quarantined, invalid, orphaned, or its checks failing.
    Needed,
    /// Pending or being rolled out.
    Progressing,
    /// Held at a revision by a pin.
    Pinned,
    /// Ready and healthy (or pruned, as asked).
    Fine,
}

/// Where `rec` stands in the queue for a person's attention.
pub fn attention(rec: &AppRecord) -> Attention {
    let reverted_desired = rec.last_attempted().is_some_and(|a| {
        a.revision.outcome == Outcome::Reverted
            && rec.desired_config_commit.as_deref() == Some(a.revision.config_commit.as_str())
    });
    let gate = rec
        .wave_gate
        .as_ref()
        .filter(|g| g.holds() && rec.desired_app_commit.as_deref() == Some(g.app_commit.as_str()));
    match rec.phase {
        Phase::Failed | Phase::Degraded | Phase::Invalid | Phase::Orphaned => Attention::Needed,
        _ if reverted_desired || health_failing(rec) => Attention::Needed,
        _ if gate.is_some_and(|g| g.state == shipshape_spec::status::GateState::Failed) => {
            Attention::Needed
        }
        Phase::Pending | Phase::Progressing => Attention::Progressing,
        _ if gate.is_some() => Attention::Progressing,
        _ if rec.pin.is_some() => Attention::Pinned,
        _ => Attention::Fine,
    }
}

/// True when the live revision's last conclusive health round failed.
fn health_failing(rec: &AppRecord) -> bool {
    rec.health
        .as_ref()
        .is_some_and(|h| !h.passing && Some(h.revision) == rec.live_revision)
}

/// An age for people: `45s`, `12m`, `5h`, `3d` (`-` when `at` is missing; a time in the
/// future counts as now).
pub fn age(at: Option<Timestamp>, now: DateTime<Utc>) -> String {
    let Some(t) = at else {
        return "-".into();
    };
    let secs = (now - t.datetime()).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 120 * 60 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// When the app last changed state: the newest transition of its conditions.
fn since(rec: &AppRecord) -> Option<Timestamp> {
    rec.conditions.iter().map(|c| c.last_transition_time).max()
}

/// A text on one line: newlines and runs of spaces become one space.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `s` cut to `max` characters, with `…` when it was longer.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The message of the one-line view: what a person needs to know first.
fn short_message(rec: &AppRecord) -> String {
    let ready = rec
        .conditions
        .iter()
        .find(|c| c.type_ == shipshape_spec::status::condition_types::READY);
    // A revision that failed and is not live: say which, and what became of it, first.
    let failed_attempt = rec.last_attempted().filter(|a| {
        Some(a.revision.number) != rec.live_revision
            && matches!(a.revision.outcome, Outcome::Failed | Outcome::Reverted)
            && !a.revision.message.is_empty()
    });
    let mut msg = match (rec.phase, ready) {
        (Phase::Failed, _) if failed_attempt.is_some() => {
            let a = &failed_attempt.expect("checked").revision;
            format!(
                "revision {} {}: {}",
                a.number,
                format!("{:?}", a.outcome).to_lowercase(),
                a.message
            )
        }
        (Phase::Ready, Some(c)) if c.status == ConditionStatus::True => c.message.clone(),
        (_, Some(c)) if !c.message.is_empty() => c.message.clone(),
        _ => rec
            .last_error
            .as_ref()
            .map(|e| format!("{}: {}", e.step, e.message))
            .unwrap_or_default(),
    };
    // A wave gate holding the desired commit back says so first (a first rollout held has
    // no Ready condition yet; a Ready app's message would bury it).
    if let Some(g) = rec
        .wave_gate
        .as_ref()
        .filter(|g| g.holds() && rec.desired_app_commit.as_deref() == Some(g.app_commit.as_str()))
        && rec.pin.is_none()
        && matches!(rec.phase, Phase::Pending | Phase::Ready)
    {
        msg = format!("wave {} ({}): {}", g.wave, g.state.word(), g.message);
    }
    if let Some(p) = &rec.pin {
        let pin = format!("pinned by {}: {}", p.by, p.reason);
        msg = if msg.is_empty() || rec.phase == Phase::Ready {
            pin
        } else {
            format!("{pin}; {msg}")
        };
    }
    one_line(&msg)
}

/// One app's line of the one-line view, as cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The app.
    pub name: String,
    /// Its cells, in [`columns`] order.
    pub cells: Vec<String>,
}

/// The column titles of the one-line view (`wide` adds CONFIG, LEVEL and LAST PASS).
pub fn columns(wide: bool) -> Vec<&'static str> {
    let mut c = vec![
        "NAME", "PHASE", "REV", "APP", "DESIRED", "HEALTH", "PINNED", "SINCE",
    ];
    if wide {
        c.extend(["CONFIG", "LEVEL", "LAST PASS"]);
    }
    c.push("MESSAGE");
    c
}

/// The index of the SINCE column, whose ticking is not a change of state.
const SINCE_COLUMN: usize = 7;

/// Messages in the one-line view are cut to this many characters (not with `wide`).
pub const MESSAGE_WIDTH: usize = 72;

/// One line per app, the ones needing attention first, then by name.
pub fn list(records: &[AppRecord], now: DateTime<Utc>, wide: bool) -> Vec<Row> {
    let mut sorted: Vec<&AppRecord> = records.iter().collect();
    sorted.sort_by(|a, b| (attention(a), &a.name).cmp(&(attention(b), &b.name)));
    sorted.into_iter().map(|r| row(r, now, wide)).collect()
}

fn row(rec: &AppRecord, now: DateTime<Utc>, wide: bool) -> Row {
    let live = rec.live();
    let live_app = live.map(|l| l.revision.app_commit.as_str());
    let desired = match (rec.desired_app_commit.as_deref(), live_app) {
        (Some(d), Some(l)) if d == l => "-".to_string(),
        (Some(d), _) => short_sha(d),
        (None, _) => "-".to_string(),
    };
    let health = match &rec.health {
        Some(h) if Some(h.revision) == rec.live_revision => {
            if h.passing { "passing" } else { "FAILING" }.to_string()
        }
        _ => "-".to_string(),
    };
    let pinned = match &rec.pin {
        Some(p) if p.source == PinSource::Document => format!("{} (git)", p.revision),
        Some(p) => p.revision.to_string(),
        None => "-".to_string(),
    };
    let mut cells = vec![
        rec.name.clone(),
        format!("{:?}", rec.phase),
        live.map(|l| l.revision.number.to_string())
            .unwrap_or_else(|| "-".into()),
        live_app.map(short_sha).unwrap_or_else(|| "-".into()),
        desired,
        health,
        pinned,
        age(since(rec), now),
    ];
    let message = short_message(rec);
    if wide {
        cells.push(
            rec.desired_config_commit
                .as_deref()
                .map(short_sha)
                .unwrap_or_else(|| "-".into()),
        );
        cells.push(
            live.and_then(|l| l.revision.level.clone())
                .unwrap_or_else(|| "-".into()),
        );
        cells.push(
            rec.last_pass
                .as_ref()
                .map(|p| age(Some(p.finished_at), now))
                .unwrap_or_else(|| "-".into()),
        );
        cells.push(message);
    } else {
        cells.push(truncate(&message, MESSAGE_WIDTH));
    }
    Row {
        name: rec.name.clone(),
        cells,
    }
}

/// The rows under their titles, columns aligned (two spaces apart), one string per line.
pub fn render_table(rows: &[Row], wide: bool) -> Vec<String> {
    let titles = columns(wide);
    let mut widths: Vec<usize> = titles.iter().map(|t| t.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(&r.cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        let cells: Vec<&str> = cells.collect();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(c);
                out.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = vec![line(&mut titles.iter().copied())];
    for r in rows {
        out.push(line(&mut r.cells.iter().map(String::as_str)));
    }
    out
}

/// The config repo's line (tip, fetch failures, a refused commit), or None when the
/// controller has not read one yet.
pub fn source_line(src: &SourceStatus) -> Option<String> {
    if src.repo.is_empty() {
        return None;
    }
    let sha = |s: &Option<String>| s.as_deref().map(short_sha).unwrap_or_else(|| "-".into());
    let mut line = format!("source {} ({}) tip {}", src.repo, src.branch, sha(&src.tip));
    if let Some(e) = &src.last_error {
        line.push_str(&format!(
            "  FETCH FAILING ({} in a row, next try {}): {e}",
            src.consecutive_failures,
            src.next_try_at
                .map_or_else(|| "-".to_string(), |t| t.to_string())
        ));
    }
    if let Some(r) = &src.refused {
        line.push_str(&format!("  REFUSED {}: {}", short_sha(&r.commit), r.reason));
    }
    if let Some(t) = &src.last_trusted {
        line.push_str(&format!("  last trusted {}", short_sha(t)));
    }
    Some(line)
}

/// Lines of the output tail shown under a failed step: room for the app's own output
/// under a failed verification (its header and [`crate::pm2::logs::TAIL_LINES`] lines).
pub const TAIL_LINES: usize = crate::pm2::logs::TAIL_LINES + 4;

/// Messages already shown in a detail view: each is printed once.
#[derive(Default)]
struct Seen(Vec<String>);

/// Shorter messages than this are never cut out of a longer one (too likely to be words
/// that merely repeat).
const QUOTE_MIN: usize = 24;

impl Seen {
    /// `": message"` the first time a non-empty message comes, else nothing (a message
    /// that is part of one already shown counts as shown); a message that quotes one
    /// already shown has the quote replaced by `…`.
    fn note(&mut self, message: &str) -> String {
        let mut m = one_line(message);
        if m.is_empty() || self.0.iter().any(|s| s.contains(&m)) {
            return String::new();
        }
        let mut quoted: Vec<&String> = self
            .0
            .iter()
            .filter(|s| s.len() >= QUOTE_MIN && m.contains(s.as_str()))
            .collect();
        quoted.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let whole = m.clone();
        for q in quoted {
            m = m.replace(q.as_str(), "…");
        }
        self.0.push(whole);
        format!(": {m}")
    }
}

/// The order conditions are shown in (kstatus's); others follow in recorded order.
fn condition_rank(type_: &str) -> usize {
    use shipshape_spec::status::condition_types as ct;
    [ct::READY, ct::RECONCILING, ct::STALLED, ct::HEALTHY]
        .iter()
        .position(|t| *t == type_)
        .unwrap_or(4)
}

/// The detail view of one app: every fact once, newest state first.
pub fn detail(rec: &AppRecord, now: DateTime<Utc>) -> String {
    let mut sheet = Sheet {
        out: Vec::new(),
        seen: Seen::default(),
        now,
    };
    for section in DETAIL_SECTIONS {
        section(&mut sheet, rec);
    }
    let mut text = sheet.out.join("\n");
    text.push('\n');
    text
}

/// The sections of [`detail`], in the order they are shown. The order matters beyond the
/// layout: a message is shown once, where it first appears ([`Seen`]).
const DETAIL_SECTIONS: [fn(&mut Sheet, &AppRecord); 11] = [
    Sheet::title,
    Sheet::desired,
    Sheet::revisions,
    Sheet::traffic,
    Sheet::pin,
    Sheet::wave,
    Sheet::quarantine,
    Sheet::conditions,
    Sheet::health,
    Sheet::last_error,
    Sheet::last_pass,
];

/// The detail view being written: its lines, the messages shown so far, and the time ages
/// are measured to.
struct Sheet {
    out: Vec<String>,
    seen: Seen,
    now: DateTime<Utc>,
}

impl Sheet {
    /// The name, the phase and how long it has held.
    fn title(&mut self, rec: &AppRecord) {
        self.out.push(format!(
            "{}  {:?}  since {}",
            rec.name,
            rec.phase,
            age(since(rec), self.now)
        ));
    }

    /// The desired commits, when the desired app commit is not the live one. A new config
    /// commit that leaves the app commit alone shows as the attempted revision.
    fn desired(&mut self, rec: &AppRecord) {
        let live = rec.live();
        if rec.desired_app_commit.is_some()
            && rec.desired_app_commit.as_deref() != live.map(|l| l.revision.app_commit.as_str())
        {
            self.out.push(format!(
                "  {:<11} config {}  app {}",
                "desired",
                rec.desired_config_commit
                    .as_deref()
                    .map(short_sha)
                    .unwrap_or_else(|| "-".into()),
                rec.desired_app_commit
                    .as_deref()
                    .map(short_sha)
                    .unwrap_or_else(|| "-".into()),
            ));
        }
    }

    /// Traffic through nginx (the live revision's `spec.traffic`): the live slot and the
    /// warm one with its time, as the upstream file says.
    fn traffic(&mut self, rec: &AppRecord) {
        let Some((t, p)) = rec
            .live()
            .and_then(|l| crate::traffic::serving(&l.document))
        else {
            return;
        };
        let now = Timestamp::from_datetime(self.now);
        let line = match crate::traffic::read_state(t, now) {
            Err(e) => format!("unreadable: {e}"),
            Ok(st) => {
                let live = match st.live {
                    Some(l) => format!(
                        "nginx → slot {l} ({})",
                        crate::traffic::slot_name(&p.name, l)
                    ),
                    None => "nginx → no slot yet".to_string(),
                };
                match st.warm {
                    Some(w) if w.until > now => format!(
                        "{live}; warm slot {} until {} (for {})",
                        w.port,
                        w.until,
                        age(Some(now), w.until.datetime())
                    ),
                    Some(w) => format!("{live}; slot {} was warm until {}", w.port, w.until),
                    None => live,
                }
            }
        };
        self.out.push(format!("  {:<11} {line}", "traffic"));
    }

    /// The live revision, then the last healthy and the last attempted ones when they are
    /// not the live one.
    fn revisions(&mut self, rec: &AppRecord) {
        if let Some(l) = rec.live() {
            let line = self.revision_line("live", l);
            self.out.push(line);
        } else {
            self.out
                .push(format!("  {:<11} nothing applied yet", "live"));
        }
        if let Some(h) = rec
            .last_healthy()
            .filter(|h| Some(h.revision.number) != rec.live_revision)
        {
            let line = self.revision_line("healthy", h);
            self.out.push(line);
        }
        if let Some(a) = rec
            .last_attempted()
            .filter(|a| Some(a.revision.number) != rec.live_revision)
        {
            let line = self.revision_line("attempted", a);
            self.out.push(line);
        }
    }

    /// One revision's line under `label`.
    fn revision_line(&mut self, label: &str, e: &crate::state::RevisionEntry) -> String {
        let v = &e.revision;
        let when = v.finished_at.or(v.live_at);
        // A healthy revision's outcome says it all.
        let message = if v.outcome == Outcome::Healthy {
            String::new()
        } else {
            self.seen.note(&v.message)
        };
        format!(
            "  {label:<11} revision {}  config {}  app {}  level {}  {:?} {} ago{}",
            v.number,
            short_sha(&v.config_commit),
            short_sha(&v.app_commit),
            v.level.as_deref().unwrap_or("-"),
            v.outcome,
            age(when.or(Some(v.started_at)), self.now),
            message
        )
    }

    /// The pin: its revision, who set it, when, from where, and why.
    fn pin(&mut self, rec: &AppRecord) {
        if let Some(p) = &rec.pin {
            self.out.push(format!(
                "  {:<11} revision {} by {} {} ago ({}){}",
                "pinned",
                p.revision,
                p.by,
                age(Some(p.at), self.now),
                match p.source {
                    PinSource::Cli => "shipshape pin",
                    PinSource::Document => "spec.pin",
                },
                self.seen.note(&p.reason)
            ));
        }
    }

    /// The wave gate of a fleet rollout: this host's wave, the gate's state since when,
    /// and each host it waits for (or is held by).
    fn wave(&mut self, rec: &AppRecord) {
        let Some(g) = &rec.wave_gate else { return };
        let state = if g.holds() {
            format!(
                "{} for {} (app {}, checked {} ago)",
                g.state.word(),
                age(Some(g.since), self.now),
                short_sha(&g.app_commit),
                age(Some(g.checked_at), self.now)
            )
        } else {
            format!("open for app {}", short_sha(&g.app_commit))
        };
        self.out.push(format!(
            "  {:<11} {} ({} of {}): {state}{}",
            "wave",
            g.wave,
            g.wave_index + 1,
            g.waves,
            self.seen.note(&g.message)
        ));
        for h in &g.hosts {
            let who = if h.host.is_empty() {
                format!("wave {}", h.wave)
            } else {
                format!("{} ({})", h.host, h.wave)
            };
            self.out.push(format!("  {:<11}   {who}: {}", "", h.state));
        }
        if g.alerted {
            self.out.push(format!(
                "  {:<11}   held past alertAfter ({}s): alerted",
                "", g.alert_after_seconds
            ));
        }
    }

    /// Each quarantined config commit, and how many older entries were dropped.
    fn quarantine(&mut self, rec: &AppRecord) {
        for q in &rec.quarantined {
            self.out.push(format!(
                "  {:<11} config {} (revision {}) {} ago{}",
                "quarantined",
                short_sha(&q.config_commit),
                q.revision,
                age(Some(q.at), self.now),
                self.seen.note(&q.reason)
            ));
        }
        if rec.quarantine_dropped > 0 {
            self.out.push(format!(
                "  {:<11} {} older entr{} dropped (the newest {} are kept)",
                "quarantined",
                rec.quarantine_dropped,
                if rec.quarantine_dropped == 1 {
                    "y"
                } else {
                    "ies"
                },
                crate::state::QUARANTINE_KEEP
            ));
        }
    }

    /// The conditions, in kstatus's order, aligned: type, status, reason, age, message.
    fn conditions(&mut self, rec: &AppRecord) {
        if rec.conditions.is_empty() {
            return;
        }
        self.out.push("  conditions".into());
        let mut conditions: Vec<&shipshape_spec::status::Condition> =
            rec.conditions.iter().collect();
        conditions.sort_by_key(|c| condition_rank(&c.type_));
        let tw = rec
            .conditions
            .iter()
            .map(|c| c.type_.len())
            .max()
            .unwrap_or(0);
        let rw = rec
            .conditions
            .iter()
            .map(|c| c.reason.len())
            .max()
            .unwrap_or(0);
        let statuses: Vec<String> = conditions
            .iter()
            .map(|c| format!("{:?}", c.status))
            .collect();
        let sw = statuses.iter().map(String::len).max().unwrap_or(0);
        for (c, status) in conditions.iter().zip(&statuses) {
            self.out.push(
                format!(
                    "    {:<tw$}  {status:<sw$}  {:<rw$}  {:>4}{}",
                    c.type_,
                    c.reason,
                    age(Some(c.last_transition_time), self.now),
                    self.seen.note(&c.message)
                )
                .trim_end()
                .to_string(),
            );
        }
    }

    /// The last health round: its verdict and streaks, then each check's state and detail.
    fn health(&mut self, rec: &AppRecord) {
        let Some(h) = &rec.health else {
            return;
        };
        self.out.push(format!(
            "  {:<11} {} {} ago, revision {}: {} passing, {} failing in a row",
            "health",
            if h.passing { "passing" } else { "FAILING" },
            age(Some(h.checked_at), self.now),
            h.revision,
            h.consecutive_passes,
            h.consecutive_failures
        ));
        let nw = h.results.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let states: Vec<String> = h.results.iter().map(|c| format!("{:?}", c.state)).collect();
        let sw = states.iter().map(String::len).max().unwrap_or(0);
        for (c, state) in h.results.iter().zip(&states) {
            self.out.push(format!(
                "    {:<nw$}  {state:<sw$}  {}",
                c.name,
                one_line(&c.detail)
            ));
        }
    }

    /// The last error: its step, when, its message, and the last [`TAIL_LINES`] of output.
    fn last_error(&mut self, rec: &AppRecord) {
        let Some(e) = &rec.last_error else {
            return;
        };
        self.out.push(format!(
            "  {:<11} {} {} ago{}",
            "last error",
            e.step,
            age(Some(e.at), self.now),
            self.seen.note(&e.message)
        ));
        if let Some(t) = &e.output_tail {
            let lines: Vec<&str> = t.lines().collect();
            for line in &lines[lines.len().saturating_sub(TAIL_LINES)..] {
                self.out
                    .push(format!("    | {line}").trim_end().to_string());
            }
        }
    }

    /// The last pass: when, at which config commit, its steps and its result.
    fn last_pass(&mut self, rec: &AppRecord) {
        if let Some(p) = &rec.last_pass {
            let steps: Vec<&str> = p.steps.iter().map(|s| s.step.as_str()).collect();
            self.out.push(format!(
                "  {:<11} {} ago, config {}, {}{}",
                "last pass",
                age(Some(p.finished_at), self.now),
                short_sha(&p.config_commit),
                if steps.is_empty() {
                    "no steps".to_string()
                } else {
                    steps.join(", ")
                },
                self.seen.note(&p.result)
            ));
        }
    }
}

/// How long a changed line stays highlighted in the live view.
pub const HIGHLIGHT_FOR: chrono::TimeDelta = chrono::TimeDelta::seconds(3);

/// How the live view marks a changed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Highlight {
    /// Reverse video (a terminal with colours).
    Ansi,
    /// A `*` in the gutter (`NO_COLOR` set).
    Marker,
}

/// One line of a live view frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// What identifies the line across frames (the app's name; empty for titles and footer).
    pub key: String,
    /// What counts as a change (the text without the ticking ages).
    pub signature: String,
    /// What is shown.
    pub text: String,
}

/// The lines of the live view for `records`: titles, one line per app, a footer.
pub fn watch_lines(
    records: &[AppRecord],
    source: &SourceStatus,
    now: DateTime<Utc>,
    footer: &str,
) -> Vec<Line> {
    let rows = list(records, now, false);
    let table = render_table(&rows, false);
    let mut lines = Vec::new();
    if let Some(s) = source_line(source) {
        lines.push(Line {
            key: "\0source".into(),
            signature: s.clone(),
            text: s,
        });
    }
    let mut table = table.into_iter();
    if let Some(t) = table.next() {
        lines.push(Line {
            key: String::new(),
            signature: String::new(),
            text: t,
        });
    }
    for (r, text) in rows.iter().zip(table) {
        let mut sig = r.cells.clone();
        sig.remove(SINCE_COLUMN);
        lines.push(Line {
            key: r.name.clone(),
            signature: sig.join("\u{1f}"),
            text,
        });
    }
    if records.is_empty() {
        lines.push(Line {
            key: String::new(),
            signature: String::new(),
            text: "(no apps yet)".into(),
        });
    }
    lines.push(Line {
        key: String::new(),
        signature: String::new(),
        text: footer.to_string(),
    });
    lines
}

/// The lines of the live view of one app: its detail, then a footer. A line's signature is
/// the same line rendered at a fixed time, so ages that tick are not changes, and its key
/// is its label (first word) and how many lines before it had that label.
pub fn watch_detail_lines(
    rec: &AppRecord,
    source: &SourceStatus,
    now: DateTime<Utc>,
    footer: &str,
) -> Vec<Line> {
    let fixed = DateTime::<Utc>::UNIX_EPOCH;
    let shown = detail(rec, now);
    let still = detail(rec, fixed);
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut lines = Vec::new();
    if let Some(s) = source_line(source) {
        lines.push(Line {
            key: "\0source".into(),
            signature: s.clone(),
            text: s,
        });
    }
    for (text, sig) in shown.lines().zip(still.lines()) {
        let label = text.split_whitespace().next().unwrap_or("").to_string();
        let n = seen.entry(label.clone()).or_default();
        *n += 1;
        lines.push(Line {
            key: format!("{label}#{n}"),
            signature: sig.to_string(),
            text: text.to_string(),
        });
    }
    lines.push(Line {
        key: String::new(),
        signature: String::new(),
        text: footer.to_string(),
    });
    lines
}

/// What the live view showed last: its lines, and when each app's line last changed.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    shown: usize,
    signatures: HashMap<String, String>,
    changed_at: HashMap<String, DateTime<Utc>>,
}

impl Frame {
    /// Draw `lines` over the previous frame, in place: the bytes to write to the terminal,
    /// and the frame to draw the next one over. A line whose signature differs from the
    /// previous frame's (or is new, after the first frame) is highlighted for
    /// [`HIGHLIGHT_FOR`]; lines are cut to `width` so none wraps.
    pub fn draw(
        &self,
        lines: &[Line],
        now: DateTime<Utc>,
        width: usize,
        highlight: Highlight,
    ) -> (String, Frame) {
        let first = self.shown == 0;
        let mut next = Frame {
            shown: lines.len(),
            signatures: HashMap::new(),
            changed_at: HashMap::new(),
        };
        let mut out = String::new();
        if !first {
            // Back to the first line of the previous frame.
            out.push_str(&format!("\r\x1b[{}A", self.shown));
        }
        for l in lines {
            let mut changed_at = self.changed_at.get(&l.key).copied();
            if !l.key.is_empty() {
                let before = self.signatures.get(&l.key);
                if !first && before != Some(&l.signature) {
                    changed_at = Some(now);
                }
                next.signatures.insert(l.key.clone(), l.signature.clone());
                if let Some(t) = changed_at {
                    next.changed_at.insert(l.key.clone(), t);
                }
            }
            let lit = changed_at.is_some_and(|t| now - t < HIGHLIGHT_FOR);
            let gutter = match (highlight, lit) {
                (Highlight::Marker, true) => "* ",
                _ => "  ",
            };
            let text = truncate(&l.text, width.saturating_sub(gutter.len()).max(1));
            out.push_str("\x1b[2K");
            out.push_str(gutter);
            if lit && highlight == Highlight::Ansi {
                out.push_str(&format!("\x1b[7m{text}\x1b[0m"));
            } else {
                out.push_str(&text);
            }
            out.push('\n');
        }
        // Clear what is left of a longer previous frame.
        out.push_str("\x1b[J");
        (out, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shipshape_spec::status::{
        CheckResult, Condition, HealthRecord, LastError, PassRecord, Pin, ProbeState, Revision,
        StepKind,
    };

    use crate::state::{Quarantine, RevisionEntry};

    const NOW: &str = "2026-01-01T12:00:00Z";

    fn now() -> DateTime<Utc> {
        NOW.parse().unwrap()
    }

    fn ago(secs: i64) -> Timestamp {
        Timestamp::from(now() - chrono::TimeDelta::seconds(secs))
    }

    fn sha(c: char) -> String {
        c.to_string().repeat(40)
    }

    fn entry(n: u64, config: char, app: char, outcome: Outcome, message: &str) -> RevisionEntry {
        let doc = shipshape_spec::load_str(
            &format!(
                "apiVersion: shipshape/v1alpha1\nkind: App\nmetadata: {{ name: x }}\nspec:\n  source: {{ repository: /r, commit: {} }}\n  releases: {{ root: /srv/x }}\n  processes: [{{ name: x, script: s.js }}]\n  health:\n    checks: [{{ name: api, http: {{ url: \"http://127.0.0.1:3000/\" }} }}]\n",
                sha(app)
            ),
            "x.yaml",
        )
        .unwrap();
        RevisionEntry {
            revision: Revision {
                number: n,
                config_commit: sha(config),
                app_commit: sha(app),
                level: None,
                process_hash: "h".into(),
                started_at: ago(600),
                live_at: None,
                finished_at: Some(ago(300)),
                outcome,
                message: message.into(),
                rounds: Default::default(),
            },
            release: sha(app),
            document: doc,
            not_blamed: false,
            suspect_checks: Vec::new(),
            backup: None,
        }
    }

    fn cond(t: &str, s: ConditionStatus, reason: &str, msg: &str, secs: i64) -> Condition {
        Condition {
            type_: t.into(),
            status: s,
            reason: reason.into(),
            message: msg.into(),
            last_transition_time: ago(secs),
        }
    }

    /// A healthy app that alice pinned at revision 1 a minute ago.
    fn pinned_by_alice(name: &str) -> AppRecord {
        let mut rec = healthy(name);
        rec.pin = Some(Pin {
            revision: 1,
            by: "alice".into(),
            at: ago(60),
            reason: "incident 42".into(),
            source: PinSource::Cli,
        });
        rec
    }

    fn healthy(name: &str) -> AppRecord {
        let mut r = AppRecord::new(name);
        r.phase = Phase::Ready;
        r.revisions.push(entry(1, 'a', '1', Outcome::Healthy, ""));
        r.live_revision = Some(1);
        r.desired_app_commit = Some(sha('1'));
        r.desired_config_commit = Some(sha('a'));
        let m = "revision 1 is live and healthy";
        r.conditions = vec![
            cond("Ready", ConditionStatus::True, "Succeeded", m, 300),
            cond("Healthy", ConditionStatus::True, "ChecksPassing", m, 300),
        ];
        r.health = Some(HealthRecord {
            checked_at: ago(1),
            revision: 1,
            passing: true,
            consecutive_passes: 40,
            consecutive_failures: 0,
            failing_since: None,
            results: vec![CheckResult {
                name: "api".into(),
                state: ProbeState::Pass,
                detail: "200 in 3ms".into(),
                latency_ms: 3,
            }],
        });
        r
    }

    fn reverted(name: &str) -> AppRecord {
        let mut r = healthy(name);
        r.phase = Phase::Failed;
        let why = "3 failing rounds in a row: api: status 500";
        r.revisions.push(entry(
            2,
            'b',
            '2',
            Outcome::Reverted,
            &format!("{why}; reverted to 1"),
        ));
        r.desired_app_commit = Some(sha('2'));
        r.desired_config_commit = Some(sha('b'));
        r.quarantined.push(Quarantine {
            config_commit: sha('b'),
            revision: 2,
            reason: why.into(),
            at: ago(120),
        });
        r.conditions = vec![
            cond(
                "Ready",
                ConditionStatus::False,
                "HealthCheckFailed",
                why,
                120,
            ),
            cond(
                "Stalled",
                ConditionStatus::True,
                "HealthCheckFailed",
                why,
                120,
            ),
            cond("Healthy", ConditionStatus::True, "ChecksPassing", "", 300),
        ];
        r.last_error = Some(LastError {
            step: StepKind::Verify,
            message: why.into(),
            output_tail: None,
            at: ago(120),
        });
        r
    }

    #[test]
    fn ages_read_like_kubectl_and_never_go_negative() {
        assert_eq!(age(Some(ago(5)), now()), "5s");
        assert_eq!(age(Some(ago(119)), now()), "119s");
        assert_eq!(age(Some(ago(600)), now()), "10m");
        assert_eq!(age(Some(ago(3 * 3600)), now()), "3h");
        assert_eq!(age(Some(ago(3 * 86_400)), now()), "3d");
        assert_eq!(age(Some(ago(-30)), now()), "0s");
        assert_eq!(age(None, now()), "-");
    }

    #[test]
    fn the_list_puts_apps_needing_attention_first_then_progressing_then_pinned_then_by_name() {
        let pinned = pinned_by_alice("aa-pinned");
        let mut rolling = healthy("ab-rolling");
        rolling.phase = Phase::Progressing;
        let mut sick = healthy("ac-sick");
        sick.health.as_mut().unwrap().passing = false;
        let mut failed = healthy("ad-failed-build");
        failed.phase = Phase::Failed;
        failed
            .revisions
            .push(entry(2, 'b', '2', Outcome::Failed, "build failed"));
        let records = vec![
            healthy("zz-fine"),
            healthy("a-fine"),
            pinned,
            rolling,
            reverted("zz-reverted"),
            sick,
            failed,
        ];
        let names: Vec<String> = list(&records, now(), false)
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(
            names,
            [
                "ac-sick",
                "ad-failed-build",
                "zz-reverted",
                "ab-rolling",
                "aa-pinned",
                "a-fine",
                "zz-fine"
            ]
        );
    }

    #[test]
    fn one_line_per_app_shows_the_desired_commit_only_when_it_differs() {
        let mut pinned = pinned_by_alice("pinned");
        pinned.desired_app_commit = Some(sha('3'));
        let rows = list(&[healthy("web"), reverted("api"), pinned], now(), false);
        let text = render_table(&rows, false).join("\n");
        assert_eq!(
            text,
            "\
NAME    PHASE   REV  APP           DESIRED       HEALTH   PINNED  SINCE  MESSAGE
api     Failed  1    111111111111  222222222222  passing  -       2m     revision 2 reverted: 3 failing rounds in a row: api: status 500; revert…
pinned  Ready   1    111111111111  333333333333  passing  1       5m     pinned by alice: incident 42
web     Ready   1    111111111111  -             passing  -       5m     revision 1 is live and healthy"
        );
    }

    #[test]
    fn long_messages_are_cut_in_the_table_and_kept_whole_when_wide() {
        let mut r = reverted("api");
        let long = "x".repeat(200);
        r.revision_mut(2).unwrap().revision.message = long.clone();
        let narrow = render_table(&list(std::slice::from_ref(&r), now(), false), false);
        assert!(narrow[1].ends_with('…'), "{}", narrow[1]);
        assert!(narrow[1].chars().count() < 160, "{}", narrow[1]);
        let wide = render_table(&list(&[r], now(), true), true);
        assert!(wide[0].contains("CONFIG") && wide[0].contains("LAST PASS"));
        assert!(wide[1].ends_with(&long), "{}", wide[1]);
    }

    /// A held wave: its line in the detail (wave, state and since when, each host waited
    /// for), and its place in the list: a hold by a failure needs a person, a wait is
    /// progressing.
    #[test]
    fn a_wave_gate_shows_in_the_detail_and_a_failure_hold_asks_for_attention() {
        use shipshape_spec::status::{GateHost, GateState, WaveGate};
        let mut r = healthy("shop");
        r.desired_app_commit = Some(sha('4'));
        r.wave_gate = Some(WaveGate {
            wave: "web".into(),
            wave_index: 1,
            waves: 2,
            app_commit: sha('4'),
            config_commit: sha('c'),
            state: GateState::Waiting,
            message: "waiting for the earlier waves to run app 444444444444, Ready, for 5m: web-1: Ready on 444444444444, soaked 40s of 5m".into(),
            hosts: vec![GateHost {
                host: "web-1".into(),
                wave: "canary".into(),
                state: "Ready on 444444444444, soaked 40s of 5m".into(),
                soaked_seconds: Some(40.0),
            }],
            since: ago(45),
            checked_at: ago(1),
            marks: vec![],
            alerted: false,
            alert_after_seconds: 1800,
        });
        let text = detail(&r, now());
        assert!(
            text.contains("  wave        web (2 of 2): waiting for 45s (app 444444444444, checked 1s ago): waiting for the earlier waves"),
            "{text}"
        );
        assert!(
            text.contains(
                "                web-1 (canary): Ready on 444444444444, soaked 40s of 5m\n"
            ),
            "{text}"
        );
        assert_eq!(attention(&r), Attention::Progressing);
        let rows = list(std::slice::from_ref(&r), now(), true);
        let line = render_table(&rows, true).join("\n");
        assert!(
            line.contains(
                "wave web (waiting): waiting for the earlier waves to run app 444444444444"
            ),
            "the one-line view leads with the gate:\n{line}"
        );
        r.wave_gate.as_mut().unwrap().state = GateState::Failed;
        assert_eq!(attention(&r), Attention::Needed);
        // Once the commit is live (desired moved on, or the gate opened), no attention.
        r.wave_gate.as_mut().unwrap().state = GateState::Open;
        assert_eq!(attention(&r), Attention::Fine);
        assert!(
            detail(&r, now()).contains("  wave        web (2 of 2): open for app 444444444444")
        );
    }

    #[test]
    fn the_detail_prints_each_message_once() {
        let mut r = reverted("api");
        r.last_error.as_mut().unwrap().output_tail = Some(
            (1..=TAIL_LINES + 4)
                .map(|i| format!("line {i}"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        r.last_pass = Some(PassRecord {
            started_at: ago(3),
            finished_at: ago(2),
            config_commit: sha('b'),
            steps: vec![],
            result: "3 failing rounds in a row: api: status 500".into(),
        });
        let text = detail(&r, now());
        assert_eq!(
            text.matches("api: status 500").count(),
            1,
            "the attempt's message holds the quarantine's, the conditions' and the pass's:\n{text}"
        );
        let (last, first) = (TAIL_LINES + 4, 5);
        assert!(
            text.contains(&format!("    | line {last}\n"))
                && text.contains(&format!("    | line {first}\n"))
        );
        assert!(
            !text.contains("    | line 4\n"),
            "only the last TAIL_LINES lines:\n{text}"
        );
        assert!(
            text.contains("    Ready    False  HealthCheckFailed    2m\n"),
            "{text}"
        );
        assert!(
            text.contains("    api  Pass  200 in 3ms"),
            "the last round per check:\n{text}"
        );
    }

    fn line(key: &str, text: &str) -> Line {
        Line {
            key: key.into(),
            signature: text.into(),
            text: text.into(),
        }
    }

    #[test]
    fn the_live_view_redraws_in_place_and_highlights_what_changed_for_a_moment() {
        let t0 = now();
        let (first, f1) = Frame::default().draw(
            &[
                line("", "TITLE"),
                line("a", "a Ready"),
                line("b", "b Ready"),
            ],
            t0,
            80,
            Highlight::Ansi,
        );
        assert!(
            !first.contains("\x1b[3A"),
            "the first frame starts where it is"
        );
        assert!(
            !first.contains("\x1b[7m"),
            "nothing is new in the first frame"
        );
        let t1 = t0 + chrono::TimeDelta::seconds(1);
        let (second, f2) = f1.draw(
            &[
                line("", "TITLE"),
                line("a", "a Ready"),
                line("b", "b Failed"),
            ],
            t1,
            80,
            Highlight::Ansi,
        );
        assert!(second.starts_with("\r\x1b[3A"), "{second:?}");
        assert!(
            second.contains("\x1b[2K  \x1b[7mb Failed\x1b[0m\n"),
            "{second:?}"
        );
        assert!(second.contains("\x1b[2K  a Ready\n"), "{second:?}");
        assert!(second.ends_with("\x1b[J"));
        // Still lit a moment later, then not.
        let same = [
            line("", "TITLE"),
            line("a", "a Ready"),
            line("b", "b Failed"),
        ];
        let (third, f3) = f2.draw(
            &same,
            t1 + chrono::TimeDelta::seconds(2),
            80,
            Highlight::Ansi,
        );
        assert!(third.contains("\x1b[7mb Failed"), "{third:?}");
        let (fourth, _) = f3.draw(
            &same,
            t1 + chrono::TimeDelta::seconds(4),
            80,
            Highlight::Ansi,
        );
        assert!(!fourth.contains("\x1b[7m"), "{fourth:?}");
    }

    #[test]
    fn without_colours_a_changed_line_gets_a_marker_and_lines_never_wrap() {
        let (_, f1) = Frame::default().draw(&[line("a", "a Ready")], now(), 80, Highlight::Marker);
        let long = format!("a Failed {}", "y".repeat(100));
        let (out, _) = f1.draw(&[line("a", &long)], now(), 40, Highlight::Marker);
        assert!(!out.contains("\x1b[7m"), "{out:?}");
        let shown = out
            .split("\x1b[2K")
            .nth(1)
            .unwrap()
            .trim_end_matches("\n\x1b[J");
        assert!(shown.starts_with("* a Failed"), "{shown:?}");
        assert_eq!(shown.chars().count(), 40, "{shown:?}");
    }

    #[test]
    fn in_one_apps_live_view_a_ticking_age_is_not_a_change_but_a_condition_flipping_is() {
        let mut r = reverted("api");
        let src = SourceStatus::default();
        let later = now() + chrono::TimeDelta::minutes(10);
        let l1 = watch_detail_lines(&r, &src, now(), "f");
        let l2 = watch_detail_lines(&r, &src, later, "f");
        let sig = |ls: &[Line]| -> Vec<(String, String)> {
            ls.iter()
                .map(|l| (l.key.clone(), l.signature.clone()))
                .collect()
        };
        assert_ne!(
            l1.iter().map(|l| &l.text).collect::<Vec<_>>(),
            l2.iter().map(|l| &l.text).collect::<Vec<_>>()
        );
        assert_eq!(sig(&l1), sig(&l2), "only ages moved");
        r.conditions[1].status = ConditionStatus::False;
        let l3 = watch_detail_lines(&r, &src, later, "f");
        let changed: Vec<String> = sig(&l3)
            .into_iter()
            .zip(sig(&l1))
            .filter(|(a, b)| a != b)
            .map(|(a, _)| a.0)
            .collect();
        assert_eq!(changed, ["Stalled#1"]);
    }

    #[test]
    fn a_ticking_age_is_not_a_change_but_a_new_phase_is() {
        let mut r = healthy("web");
        let src = SourceStatus::default();
        let l1 = watch_lines(std::slice::from_ref(&r), &src, now(), "f");
        let l2 = watch_lines(
            std::slice::from_ref(&r),
            &src,
            now() + chrono::TimeDelta::minutes(10),
            "f",
        );
        let web = |ls: &[Line]| ls.iter().find(|l| l.key == "web").unwrap().clone();
        assert_ne!(web(&l1).text, web(&l2).text, "the age moved");
        assert_eq!(web(&l1).signature, web(&l2).signature);
        r.phase = Phase::Progressing;
        let l3 = watch_lines(&[r], &src, now(), "f");
        assert_ne!(web(&l1).signature, web(&l3).signature);
    }
}
