//! A pass's side of the wave gate (`spec.rollout`): when to ask it ([`target::gated_commit`]),
//! asking it ([`Controller::check_gate`]: the fleet's Prometheus, then [`gate::decide`]),
//! and what its answer leaves in the records ([`record`]: the gate's state since when, the
//! failures remembered, the notifications of a hold by a failure and of one past
//! `alertAfter`). The records' part is pure and tested below.

use shipshape_spec::App;
use shipshape_spec::Timestamp;
use shipshape_spec::status::{FleetMark, GateState, WaveGate};

use super::Controller;
use super::publish::Note;
use super::target::{self, Target};
use crate::gate::{self, Verdict};
use crate::plan::short_sha;
use crate::runtime::events::EventKind;
use crate::state::AppRecord;

/// Seconds since the epoch, as the gate's queries name an instant.
pub fn epoch_seconds(t: Timestamp) -> f64 {
    t.datetime().timestamp_millis() as f64 / 1000.0
}

/// The failures remembered for `commit` at `config_commit`: a new config commit forgets
/// them (it is a new decision to roll the commit out).
fn marks_for<'a>(rec: &'a AppRecord, commit: &str, config_commit: &str) -> &'a [FleetMark] {
    match &rec.wave_gate {
        Some(g) if g.app_commit == commit && g.config_commit == config_commit => &g.marks,
        _ => &[],
    }
}

impl Controller {
    /// The wave gate's answer for `target`, when it must be asked (a new app commit under
    /// `spec.rollout`, not live here yet); `None` otherwise.
    pub async fn check_gate(
        &self,
        rec: &AppRecord,
        target: &Target,
        config_commit: &str,
    ) -> Option<Verdict> {
        let commit = target::gated_commit(rec, target, config_commit)?;
        let rollout = target.document.spec.rollout.as_ref()?;
        let client = self.http.for_url(&rollout.prometheus);
        let local_now = epoch_seconds(Timestamp::now());
        let observed = gate::observe::observe(client, rollout, &rec.name, local_now).await;
        let verdict = gate::decide(&gate::Ask {
            rollout,
            me: &self.host.name,
            labels: &self.host.labels,
            commit,
            now: observed.now,
            seen: &observed.seen,
            marks: marks_for(rec, commit, config_commit),
        });
        tracing::debug!(app = %rec.name, state = verdict.state.word(), "wave gate: {}", verdict.message);
        Some(verdict)
    }
}

/// Keep `verdict` (the gate's answer for `desired` at `config_commit`, `None` when it was
/// not asked) in `rec.wave_gate`, and say what people must hear: a hold by a failure when
/// it begins, and a hold that lasts past `spec.rollout.alertAfter`, once each (a hold of
/// the same app commit lasts across config commits). Without a rollout the record's gate
/// goes; with one but not asked, an open answer stays (the commit is live here, or being
/// rolled out) and a hold goes (the app is pinned or held by a quarantine).
pub fn record(
    rec: &mut AppRecord,
    desired: &App,
    config_commit: &str,
    verdict: Option<&Verdict>,
    now: Timestamp,
) -> Vec<Note> {
    let Some(rollout) = &desired.spec.rollout else {
        rec.wave_gate = None;
        return Vec::new();
    };
    let Some(v) = verdict else {
        // Not asked: the commit is live or under way here (the gate's last word, open,
        // stays), or the app is pinned or held: a hold recorded before is no longer what
        // holds it (status and metrics must not say so).
        if rec
            .wave_gate
            .as_ref()
            .is_some_and(|g| g.app_commit != desired.spec.source.commit || g.holds())
        {
            rec.wave_gate = None;
        }
        return Vec::new();
    };
    let commit = desired.spec.source.commit.clone();
    // The same commit's hold goes on across config commits (a busy config repo must not
    // keep restarting the clock of alertAfter); its marks are the verdict's.
    let before = rec.wave_gate.take().filter(|g| g.app_commit == commit);
    let same_state = before.as_ref().is_some_and(|g| g.state == v.state);
    let since = match &before {
        Some(g) if same_state || (g.holds() && v.state != GateState::Open) => g.since,
        _ => now,
    };
    let mut alerted = before.as_ref().is_some_and(|g| g.alerted) && v.state != GateState::Open;
    if !same_state {
        tracing::info!(app = %rec.name, wave = %v.wave, gate = v.state.word(), "{}", v.message);
    }
    let mut notes = Vec::new();
    if v.state == GateState::Failed
        && !before
            .as_ref()
            .is_some_and(|g| g.state == GateState::Failed)
    {
        notes.push(Note::new(EventKind::WaveHeld, None, v.message.clone()));
    }
    let held_for = since.until(now).to_std().unwrap_or_default();
    if v.state != GateState::Open && !alerted && held_for >= rollout.alert_after.std() {
        alerted = true;
        notes.push(Note::new(
            EventKind::WaveHeld,
            None,
            format!(
                "wave {} has held app {} for {} (alertAfter {}): {}",
                v.wave,
                short_sha(&commit),
                gate::secs(held_for.as_secs_f64()),
                rollout.alert_after,
                v.message
            ),
        ));
    }
    rec.wave_gate = Some(WaveGate {
        wave: v.wave.clone(),
        wave_index: v.wave_index,
        waves: v.waves,
        app_commit: commit,
        config_commit: config_commit.to_string(),
        state: v.state,
        message: v.message.clone(),
        hosts: v.hosts.clone(),
        since,
        checked_at: now,
        marks: v.marks.clone(),
        alerted,
        alert_after_seconds: rollout.alert_after.std().as_secs(),
    });
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::fixtures;

    fn verdict(state: GateState, marks: Vec<FleetMark>) -> Verdict {
        Verdict {
            wave: "web".into(),
            wave_index: 1,
            waves: 2,
            state,
            message: format!("{state:?}"),
            hosts: vec![],
            marks,
        }
    }

    fn desired() -> App {
        let mut app = fixtures::app("c0ffee");
        app.spec.rollout = Some(
            serde_json::from_value(serde_json::json!({
                "prometheus": "http://p:9090",
                "alertAfter": "10m",
                "waves": [{ "name": "canary", "hosts": { "names": ["web-1"] } }]
            }))
            .unwrap(),
        );
        app
    }

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_datetime(
            Timestamp::UNIX_EPOCH.datetime() + chrono::TimeDelta::minutes(minutes),
        )
    }

    /// Waiting since 0; a failure at 1 (notified once); still failed at 5 (no news); at
    /// 11, past alertAfter (10m), alerted once; a new config commit starts afresh.
    #[test]
    fn the_gate_keeps_since_when_notifies_a_failure_once_and_alerts_once_past_its_bound() {
        let mut rec = fixtures::record();
        let app = desired();
        let mark = FleetMark {
            host: "web-1".into(),
            reason: "reverted".into(),
            at: 60.0,
        };
        let w = verdict(GateState::Waiting, vec![]);
        assert!(record(&mut rec, &app, "cfg1", Some(&w), at(0)).is_empty());
        assert_eq!(rec.wave_gate.as_ref().unwrap().since, at(0));
        let f = verdict(GateState::Failed, vec![mark.clone()]);
        let notes = record(&mut rec, &app, "cfg1", Some(&f), at(1));
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].kind, EventKind::WaveHeld);
        let g = rec.wave_gate.clone().unwrap();
        assert_eq!(
            (g.state, g.since, g.marks.len()),
            (GateState::Failed, at(0), 1)
        );
        assert!(record(&mut rec, &app, "cfg1", Some(&f), at(5)).is_empty());
        let notes = record(&mut rec, &app, "cfg1", Some(&f), at(11));
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].message.contains("has held app"),
            "{}",
            notes[0].message
        );
        assert!(rec.wave_gate.as_ref().unwrap().alerted);
        assert!(record(&mut rec, &app, "cfg1", Some(&f), at(12)).is_empty());
        // The marks are kept for this config commit only.
        assert_eq!(marks_for(&rec, "c0ffee", "cfg1").len(), 1);
        assert!(marks_for(&rec, "c0ffee", "cfg2").is_empty());
        // A new config commit asking for the same app commit: the hold goes on, with the
        // verdict's marks (none were remembered for cfg2).
        let w = verdict(GateState::Waiting, vec![]);
        assert!(record(&mut rec, &app, "cfg2", Some(&w), at(12)).is_empty());
        let g = rec.wave_gate.clone().unwrap();
        assert_eq!((g.since, g.alerted, g.marks.len()), (at(0), true, 0));
        let open = verdict(GateState::Open, vec![]);
        assert!(record(&mut rec, &app, "cfg2", Some(&open), at(13)).is_empty());
        let g = rec.wave_gate.clone().unwrap();
        assert_eq!(
            (g.state, g.since, g.alerted),
            (GateState::Open, at(13), false)
        );
        // Not asked (the commit is live): the last answer stays; no rollout: it goes.
        assert!(record(&mut rec, &app, "cfg2", None, at(14)).is_empty());
        assert!(rec.wave_gate.is_some());
        // Not asked while a hold was recorded (the app was pinned): the hold goes.
        record(&mut rec, &app, "cfg2", Some(&w), at(14));
        record(&mut rec, &app, "cfg2", None, at(15));
        assert_eq!(rec.wave_gate, None);
        record(&mut rec, &app, "cfg2", Some(&open), at(15));
        let mut plain = app.clone();
        plain.spec.rollout = None;
        record(&mut rec, &plain, "cfg2", None, at(15));
        assert_eq!(rec.wave_gate, None);
    }
}
