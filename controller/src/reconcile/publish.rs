//! What a pass tells the world: events for watchers and notifications, and the
//! Prometheus series behind `/metrics` (per app, per check, the config source).

use shipshape_spec::status::{CheckResult, Phase};

use super::Controller;
use crate::events::{Event, EventKind};
use crate::state::{self, AppRecord};

impl Controller {
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

    /// Update the per-app info gauges from the records.
    pub fn publish_app_metrics(&self, rec: &AppRecord) {
        let m = &self.hub.metrics;
        m.clear_app("shipshape_app_info", &rec.name);
        m.set(
            "shipshape_app_info",
            vec![
                ("app", rec.name.clone()),
                ("phase", format!("{:?}", rec.phase)),
                ("pinned", rec.pin.is_some().to_string()),
                (
                    "live_revision",
                    rec.live_revision.map(|n| n.to_string()).unwrap_or_default(),
                ),
            ],
            1.0,
        );
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
        if let Some(pin) = &rec.pin
            && let Ok(t) = chrono::DateTime::parse_from_rfc3339(&pin.at)
        {
            m.set(
                "shipshape_app_pinned_since_timestamp_seconds",
                vec![("app", rec.name.clone())],
                t.timestamp() as f64,
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
        if let Some(t) = source
            .last_success_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            m.set(
                "shipshape_source_last_success_timestamp_seconds",
                vec![],
                t.timestamp() as f64,
            );
        }
    }

    /// Update the per-check gauges from a round's results.
    pub fn publish_check_metrics(&self, app: &str, results: &[CheckResult]) {
        use shipshape_spec::status::ProbeState;
        let m = &self.hub.metrics;
        for r in results {
            let labels = vec![("app", app.to_string()), ("check", r.name.clone())];
            match r.state {
                ProbeState::Pass => m.set("shipshape_health_check_up", labels.clone(), 1.0),
                ProbeState::Fail => m.set("shipshape_health_check_up", labels.clone(), 0.0),
                ProbeState::Inconclusive => {}
            }
            m.set(
                "shipshape_health_check_latency_seconds",
                labels,
                r.latency_ms as f64 / 1000.0,
            );
        }
    }
}
