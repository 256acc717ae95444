//! What a pass tells the world: events for watchers and notifications, and the
//! Prometheus series behind `/metrics` (per app, per check, the config source).

use shipshape_spec::status::{CheckResult, Outcome, Phase};

use super::{Controller, HostIdentity};
use crate::runtime::events::{Event, EventKind};
use crate::state::{self, AppRecord};

/// An event to publish about an app, decided by pure bookkeeping; the phase it carries is
/// the app's when it is published ([`Controller::publish`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// What happened.
    pub kind: EventKind,
    /// The revision it is about.
    pub revision: Option<u64>,
    /// In words.
    pub message: String,
}

impl Note {
    /// A note of `kind` about `revision`.
    pub fn new(kind: EventKind, revision: Option<u64>, message: String) -> Note {
        Note {
            kind,
            revision,
            message,
        }
    }
}

impl Controller {
    /// Publish what [`super::record::apply`] returned: its events, and its rollouts counted.
    pub fn publish_effects(&self, rec: &AppRecord, effects: super::record::Effects) {
        for outcome in effects.rollouts {
            self.count_rollout(&rec.name, outcome);
        }
        self.publish(rec, effects.notes);
    }

    /// Publish `notes` about `rec`'s app, in order.
    pub fn publish(&self, rec: &AppRecord, notes: Vec<Note>) {
        for n in notes {
            self.emit(rec, n.kind, n.revision, n.message);
        }
    }

    /// Tell watchers when the phase differs from the one last announced.
    pub(super) fn announce_phase(&self, rec: &mut AppRecord) {
        let before = rec.announced_phase.unwrap_or(rec.phase);
        if before != rec.phase {
            self.emit(
                rec,
                EventKind::PhaseChanged,
                rec.live_revision,
                format!("{before:?} → {:?}", rec.phase),
            );
        }
        rec.announced_phase = Some(rec.phase);
    }

    /// Publish an event about `rec`'s app (with its current phase).
    pub fn emit(&self, rec: &AppRecord, kind: EventKind, revision: Option<u64>, message: String) {
        self.hub.emit(Event {
            at: state::now(),
            app: rec.name.clone(),
            kind,
            revision,
            phase: Some(rec.phase),
            message,
        });
    }

    pub(super) fn count_rollout(&self, app: &str, outcome: &str) {
        self.hub.metrics.inc(
            "shipshape_rollouts_total",
            vec![("app", app.to_string()), ("outcome", outcome.to_string())],
            1.0,
        );
    }

    /// Update the per-app info gauges from the records. `shipshape_app_info` is one series
    /// per app, replaced (never added to) when a label changes.
    pub fn publish_app_metrics(&self, rec: &AppRecord) {
        let m = &self.hub.metrics;
        m.clear_app("shipshape_app_info", &rec.name);
        m.set("shipshape_app_info", app_info_labels(rec, &self.host), 1.0);
        m.clear_app("shipshape_app_wave_held_seconds", &rec.name);
        m.clear_app("shipshape_app_wave_hold_bound_seconds", &rec.name);
        if let Some(g) = &rec.wave_gate {
            m.set(
                "shipshape_app_wave_hold_bound_seconds",
                vec![("app", rec.name.clone())],
                g.alert_after_seconds as f64,
            );
            if g.holds() {
                let held = g.since.until(state::now()).num_milliseconds().max(0) as f64 / 1000.0;
                m.set(
                    "shipshape_app_wave_held_seconds",
                    vec![
                        ("app", rec.name.clone()),
                        ("wave", g.wave.clone()),
                        ("cause", g.state.word().to_string()),
                    ],
                    held,
                );
            }
        }
        m.set(
            "shipshape_app_degraded",
            vec![("app", rec.name.clone())],
            if rec.phase == Phase::Degraded {
                1.0
            } else {
                0.0
            },
        );
        m.clear_app("shipshape_app_pinned_since_timestamp_seconds", &rec.name);
        if let Some(pin) = &rec.pin {
            m.set(
                "shipshape_app_pinned_since_timestamp_seconds",
                vec![("app", rec.name.clone())],
                pin.at.datetime().timestamp() as f64,
            );
        }
    }

    /// Update the config-repo gauges from its status.
    pub fn publish_source_metrics(&self, source: &shipshape_spec::status::SourceStatus) {
        let m = &self.hub.metrics;
        m.set(
            "shipshape_source_fetch_failures",
            vec![],
            source.consecutive_failures as f64,
        );
        if let Some(t) = source.last_success_at {
            m.set(
                "shipshape_source_last_success_timestamp_seconds",
                vec![],
                t.datetime().timestamp() as f64,
            );
        }
    }

    /// Update the per-check gauges from a round's results.
    pub fn publish_check_metrics(&self, app: &str, results: &[CheckResult]) {
        crate::execute::verify::publish_check_metrics(&self.hub.metrics, app, results);
    }
}

/// The labels of an app's `shipshape_app_info` series on `host`: what the fleet view
/// (`shipshape fleet`) and the dashboard's fleet table read. Commits are full SHAs; a label
/// is empty when the record has no value yet (nothing live, no document read); `wave` is
/// there only under `spec.rollout`.
pub fn app_info_labels(rec: &AppRecord, host: &HostIdentity) -> Vec<(&'static str, String)> {
    let live = rec.live_revision.and_then(|n| rec.revision(n));
    let mut labels = vec![
        ("app", rec.name.clone()),
        ("host", host.name.clone()),
        ("phase", format!("{:?}", rec.phase)),
        ("pinned", rec.pin.is_some().to_string()),
        ("reverted", reverted(rec).to_string()),
        (
            "live_revision",
            rec.live_revision.map(|n| n.to_string()).unwrap_or_default(),
        ),
        (
            "live_commit",
            live.map(|e| e.revision.app_commit.clone())
                .unwrap_or_default(),
        ),
        (
            "desired_commit",
            rec.desired_app_commit.clone().unwrap_or_default(),
        ),
        (
            "config_commit",
            rec.desired_config_commit.clone().unwrap_or_default(),
        ),
    ];
    // Only under `spec.rollout`: the series of an app without waves stays as it was.
    let wave = wave_of(rec, host);
    if !wave.is_empty() {
        labels.push(("wave", wave));
    }
    labels
}

/// This host's wave for `rec`'s app: the gate's, else the live revision's document's;
/// empty without `spec.rollout`.
fn wave_of(rec: &AppRecord, host: &HostIdentity) -> String {
    if let Some(g) = &rec.wave_gate {
        return g.wave.clone();
    }
    rec.live()
        .and_then(|r| r.document.spec.rollout.as_ref())
        .map(|r| r.wave_of(&host.name, &host.labels).1.to_string())
        .unwrap_or_default()
}

/// Whether this host went back from the config commit it is asked to run: that commit is
/// quarantined and the revision that tried it ended Reverted. A new config commit (or
/// `shipshape retry`) clears it.
pub fn reverted(rec: &AppRecord) -> bool {
    let Some(desired) = rec.desired_config_commit.as_deref() else {
        return false;
    };
    rec.quarantined
        .iter()
        .filter(|q| q.config_commit == desired)
        .filter_map(|q| rec.revision(q.revision))
        .any(|e| e.revision.outcome == Outcome::Reverted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::fixtures;
    use crate::state::Quarantine;

    /// Revision 1 healthy and live, revision 2 (config `cfg2`, desired) reverted.
    fn record() -> AppRecord {
        let mut rec = fixtures::record();
        rec.revisions.push(fixtures::entry(1, Outcome::Healthy));
        rec.revisions.push(fixtures::entry(2, Outcome::Reverted));
        rec.live_revision = Some(1);
        rec.desired_config_commit = Some("cfg2".into());
        rec.desired_app_commit = Some("app2".into());
        rec.quarantined.push(Quarantine {
            config_commit: "cfg2".into(),
            revision: 2,
            reason: "api: status 503".into(),
            at: shipshape_spec::Timestamp::UNIX_EPOCH,
        });
        rec
    }

    fn host(name: &str) -> HostIdentity {
        HostIdentity {
            name: name.into(),
            labels: Default::default(),
        }
    }

    fn label<'a>(labels: &'a [(&'static str, String)], key: &str) -> &'a str {
        &labels.iter().find(|(k, _)| *k == key).unwrap().1
    }

    #[test]
    fn a_host_that_went_back_from_its_desired_config_commit_is_reverted_until_a_new_one() {
        let mut rec = record();
        let labels = app_info_labels(&rec, &host("web-3"));
        assert_eq!(label(&labels, "reverted"), "true");
        assert_eq!(label(&labels, "live_commit"), "app1");
        assert_eq!(label(&labels, "live_revision"), "1");
        assert_eq!(label(&labels, "desired_commit"), "app2");
        assert_eq!(label(&labels, "config_commit"), "cfg2");
        assert_eq!(label(&labels, "host"), "web-3");
        // A newer config commit: the host is no longer held back from what it is asked.
        rec.desired_config_commit = Some("cfg3".into());
        assert!(!reverted(&rec));
        // A quarantine whose revision failed before the switch (nothing went back).
        let mut failed = record();
        failed.revisions[1].revision.outcome = Outcome::Failed;
        assert!(!reverted(&failed));
    }

    #[test]
    fn an_app_with_nothing_live_has_empty_commit_labels() {
        let rec = AppRecord::new("demo");
        let labels = app_info_labels(&rec, &host("web-1"));
        assert_eq!(label(&labels, "live_commit"), "");
        assert_eq!(label(&labels, "desired_commit"), "");
        assert_eq!(label(&labels, "reverted"), "false");
        assert_eq!(label(&labels, "pinned"), "false");
        assert!(
            !labels.iter().any(|(k, _)| *k == "wave"),
            "no wave label without spec.rollout: {labels:?}"
        );
    }

    #[test]
    fn under_spec_rollout_the_series_names_the_hosts_wave() {
        let mut rec = record();
        let live = rec
            .revisions
            .iter_mut()
            .find(|e| e.revision.number == 1)
            .unwrap();
        live.document.spec.rollout = Some(
            serde_json::from_value(serde_json::json!({
                "prometheus": "http://p:9090",
                "waves": [{ "name": "canary", "hosts": { "names": ["web-1"] } }]
            }))
            .unwrap(),
        );
        assert_eq!(
            label(&app_info_labels(&rec, &host("web-1")), "wave"),
            "canary"
        );
        assert_eq!(
            label(&app_info_labels(&rec, &host("web-2")), "wave"),
            "the rest"
        );
    }
}
