//! The desired side of a pass: the config repo fetched (remote) and read at its tip (or
//! at the last trusted commit when signatures are required), documents parsed and
//! filtered for this host, and what the desired state says about apps that cannot run
//! (documents that do not load, documents removed: orphaned or pruned).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use shipshape_spec::App;
use shipshape_spec::status::{Phase, StepKind, condition_reasons as cr};
use tracing::{error, info, warn};

use super::record::{last_error, set_stalled};
use super::{AppResult, Controller, ReconcileError};
use crate::plan::short_sha;
use crate::runtime::events::EventKind;
use crate::source::trust::Untrusted;
use crate::source::{self, Snapshot};
use crate::state::AppRecord;

/// One loaded document.
#[derive(Debug, Clone)]
pub struct DesiredDoc {
    /// Its path in the config repo.
    pub path: String,
    /// Its text.
    pub text: String,
    /// The document.
    pub app: App,
}

/// The desired state read from the config repo.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The config commit it was read at.
    pub commit: String,
    /// The documents that load and select this host.
    pub docs: Vec<DesiredDoc>,
    /// Documents that do not load: (path, text, every problem).
    pub invalid: Vec<(String, String, String)>,
    /// Apps whose documents select other hosts.
    pub skipped: Vec<String>,
    /// False when nothing trusted could be read (then no app counts as removed).
    pub complete: bool,
    /// Why the tip was refused, if it was.
    pub refused: Option<String>,
}

/// A snapshot as trust allows it (see `Controller::trusted`).
struct Trusted {
    snapshot: Snapshot,
    complete: bool,
    refused: Option<String>,
}

/// Documents selecting this host; documents that do not load; apps selecting other hosts.
type Selected = (Vec<DesiredDoc>, Vec<(String, String, String)>, Vec<String>);

/// One document per app name: a later document (by path) naming an app already declared
/// is invalid.
fn one_per_name(
    docs: Vec<DesiredDoc>,
    invalid: &mut Vec<(String, String, String)>,
) -> Vec<DesiredDoc> {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut unique = Vec::new();
    for d in docs {
        if let Some(first) = seen.get(&d.app.metadata.name) {
            let message = format!(
                "{}: metadata.name: {:?} is also declared in {first}",
                d.path, d.app.metadata.name
            );
            invalid.push((d.path.clone(), d.text.clone(), message));
        } else {
            seen.insert(d.app.metadata.name.clone(), d.path.clone());
            unique.push(d);
        }
    }
    unique
}

/// What an app holds on the server alone, as (field path, key, how it is shown): its
/// releases root (two apps on one root would move `current` back and forth on every pass)
/// and, in traffic mode, its upstream file (each app's switch would overwrite the other's),
/// its confirm port and its slot ports (two apps' slots on one port cannot both listen).
fn claims(app: &shipshape_spec::App) -> Vec<(String, String, String)> {
    let root: PathBuf = Path::new(&app.spec.releases.root).components().collect();
    let mut held = vec![(
        "spec.releases.root".to_string(),
        format!("root {}", root.display()),
        app.spec.releases.root.clone(),
    )];
    if let Some(t) = &app.spec.traffic {
        let file: PathBuf = Path::new(&t.upstream_file).components().collect();
        held.push((
            "spec.traffic.upstreamFile".into(),
            format!("file {}", file.display()),
            t.upstream_file.clone(),
        ));
        held.push((
            "spec.traffic.confirmPort".into(),
            format!("port {}", t.confirm_port),
            format!("port {}", t.confirm_port),
        ));
        for (i, port) in t.ports.iter().enumerate() {
            held.push((
                format!("spec.traffic.ports[{i}]"),
                format!("port {port}"),
                format!("port {port}"),
            ));
        }
    }
    held
}

/// What one app holds alone ([`claims`]) no other app may hold: the first document (by
/// path) keeps it; the others are invalid, at the field that claims it again.
fn one_app_per_claim(
    docs: Vec<DesiredDoc>,
    invalid: &mut Vec<(String, String, String)>,
) -> Vec<DesiredDoc> {
    let mut holders: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut kept = Vec::new();
    for d in docs {
        let held = claims(&d.app);
        let clash = held
            .iter()
            .find_map(|(field, key, shown)| Some((field, shown, holders.get(key)?)));
        if let Some((field, shown, (app, path))) = clash {
            let at = shipshape_spec::load::PathIndex::build(&d.text).locate(field);
            let message = shipshape_spec::Problem {
                file: d.path.clone(),
                line: at.0,
                column: at.1,
                path: field.clone(),
                message: format!("{shown} is also used by app {app} ({path})"),
            }
            .to_string();
            warn!(file = %d.path, "{message}");
            invalid.push((d.path.clone(), d.text.clone(), message));
        } else {
            for (_, key, _) in held {
                holders.insert(key, (d.app.metadata.name.clone(), d.path.clone()));
            }
            kept.push(d);
        }
    }
    kept
}

/// Who this controller is, for documents that select hosts.
#[derive(Debug, Clone, Default)]
pub struct HostIdentity {
    /// The host name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

impl Controller {
    /// The source status as saved, with this controller's repo and branch filled in.
    pub fn source_status(&self) -> shipshape_spec::status::SourceStatus {
        let mut source = self.store.load_source();
        source.repo = source::redact_url(&self.config.repo);
        source.branch = self.config.branch.clone();
        source.remote = self.config.is_remote();
        source
    }

    /// Fetch the config repo if it is remote, recording the outcome in the source status.
    ///
    /// # Errors
    /// [`ReconcileError::Source`] when the fetch fails.
    pub async fn fetch_source(&self) -> Result<String, ReconcileError> {
        let result = self.ports.source.fetch().await;
        let mut source = self.source_status();
        source.last_fetch_at = Some(self.ports.clock.now());
        match &result {
            Ok(tip) => {
                source.tip = Some(tip.clone());
                source.last_success_at = source.last_fetch_at;
                source.last_error = None;
                source.consecutive_failures = 0;
            }
            Err(e) => {
                source.last_error = Some(e.to_string());
                source.consecutive_failures += 1;
            }
        }
        // `plan` fetches into a temporary mirror and records nothing.
        if !self.read_only
            && let Err(e) = self.store.save_source(&source)
        {
            warn!("could not record the fetch of the config repo: {e}");
        }
        self.publish_source_metrics(&source);
        Ok(result?)
    }

    /// The desired state at the branch tip as last fetched (or the last trusted commit when
    /// signatures are required and the tip is not trusted), parsed and filtered for this host,
    /// read through the source port.
    ///
    /// # Errors
    /// [`ReconcileError`] when the config repo cannot be read.
    pub async fn load_desired(&self) -> Result<Desired, ReconcileError> {
        let mut snapshot = self.ports.source.snapshot(None).await?;
        let (mut complete, mut refused) = (true, None);
        if self.trust.required() {
            let trusted = self.trusted(snapshot).await?;
            (snapshot, complete, refused) = (trusted.snapshot, trusted.complete, trusted.refused);
        }
        let (docs, mut invalid, skipped) = self.select(snapshot.files, &snapshot.commit);
        let docs = one_per_name(docs, &mut invalid);
        let docs = one_app_per_claim(docs, &mut invalid);
        Ok(Desired {
            commit: snapshot.commit,
            docs,
            invalid,
            skipped,
            complete,
            refused,
        })
    }

    /// Signatures required: the tip's snapshot when it is trusted, else the last trusted
    /// commit's (or nothing, when none was ever trusted), with why the tip was refused. The
    /// verdict is recorded in the source status before the pass goes on.
    async fn trusted(&self, snapshot: Snapshot) -> Result<Trusted, ReconcileError> {
        let mut source = self.source_status();
        let tip = snapshot.commit.clone();
        let mut out = Trusted {
            snapshot,
            complete: true,
            refused: None,
        };
        match self.verdict(&source, &tip).await {
            Ok(()) => {
                if source.allow_rewind.as_deref() == Some(tip.as_str()) {
                    warn!(commit = %tip, from = ?source.last_trusted, "applying a rewind of the config branch, as allowed by `shipshape retry --allow-rewind`");
                    source.allow_rewind = None;
                }
                source.last_trusted = Some(tip);
                source.refused = None;
            }
            Err(reason) => {
                let reason = reason.to_string();
                warn!(commit = %tip, "refusing an untrusted config commit: {reason}");
                out.refused = Some(format!(
                    "config commit {} is not trusted: {reason}",
                    short_sha(&tip)
                ));
                if source.refused.as_ref().is_none_or(|r| r.commit != tip) {
                    source.refused = Some(shipshape_spec::status::RefusedCommit {
                        commit: tip.clone(),
                        reason,
                        at: self.ports.clock.now(),
                    });
                }
                match source.last_trusted.clone() {
                    Some(good) => out.snapshot = self.ports.source.snapshot(Some(&good)).await?,
                    None => {
                        out.snapshot.files.clear();
                        out.complete = false;
                    }
                }
            }
        }
        // The last trusted commit is what refuses a rewind to an older signed commit: a
        // pass must not go on without it on disk (`plan` only reads it).
        if !self.read_only {
            self.store.save_source(&source)?;
        }
        Ok(out)
    }

    /// Is the tip trusted? Already trusted, already refused (unless a rewind to it is
    /// allowed), or verified now: signed by a trusted key and descending from the last
    /// trusted commit.
    async fn verdict(
        &self,
        source: &shipshape_spec::status::SourceStatus,
        tip: &str,
    ) -> Result<(), Untrusted> {
        if source.last_trusted.as_deref() == Some(tip) {
            return Ok(());
        }
        if let Some(r) = source
            .refused
            .as_ref()
            .filter(|r| r.commit == tip && source.allow_rewind.as_deref() != Some(tip))
        {
            return Err(Untrusted::Refused(r.reason.clone()));
        }
        let signer = self.ports.source.verify_trusted(tip).await?;
        info!(commit = %tip, signer = %signer, "trusted config commit");
        self.check_descends(source, tip).await
    }

    /// The documents that load, split into those that select this host and those that
    /// select others (their app names), and those that do not load (path, text, problems).
    fn select(&self, files: Vec<source::DocumentFile>, commit: &str) -> Selected {
        let (mut docs, mut invalid, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
        for file in files {
            match file.load() {
                Ok(app) => {
                    let selected = app
                        .spec
                        .hosts
                        .as_ref()
                        .is_none_or(|h| h.selects(&self.host.name, &self.host.labels));
                    if selected {
                        docs.push(DesiredDoc {
                            path: file.path,
                            text: file.text,
                            app,
                        });
                    } else {
                        skipped.push(app.metadata.name.clone());
                    }
                }
                Err(e) => {
                    warn!(file = %file.path, config_commit = %commit, "invalid document:\n{e}");
                    invalid.push((file.path, file.text, e.to_string()));
                }
            }
        }
        (docs, invalid, skipped)
    }

    /// Record what the desired state says about apps it cannot run: documents that do not
    /// load (on their app, when its name can be read) and apps whose document is gone
    /// (reported, or pruned with `--prune`). Returns results per file or app.
    pub async fn record_unrunnable(&self, desired: &Desired) -> BTreeMap<String, AppResult> {
        let mut out = BTreeMap::new();
        let mut named = BTreeSet::new();
        for (path, text, message) in &desired.invalid {
            let name = shipshape_spec::load::peek_name(text)
                .filter(|n| shipshape_spec::validate::is_dns_label(n));
            let key = name.clone().unwrap_or_else(|| path.clone());
            if let Some(name) = name {
                named.insert(name.clone());
                self.mark_invalid(&name, &desired.commit, message);
            }
            out.insert(
                key,
                AppResult::Invalid {
                    message: message.clone(),
                },
            );
        }
        if !desired.complete {
            return out;
        }
        // A document whose app cannot be named may be any missing app's: none is called
        // removed (let alone pruned) until every document names its app again.
        if let Some((path, _, _)) = desired.invalid.iter().find(|(_, text, _)| {
            shipshape_spec::load::peek_name(text)
                .filter(|n| shipshape_spec::validate::is_dns_label(n))
                .is_none()
        }) {
            warn!(file = %path, "a document does not name its app; no app is reported removed or pruned this pass");
            return out;
        }
        let present: BTreeSet<&str> = desired
            .docs
            .iter()
            .map(|d| d.app.metadata.name.as_str())
            .chain(desired.skipped.iter().map(String::as_str))
            .collect();
        for name in self.store.apps() {
            if present.contains(name.as_str()) || named.contains(&name) {
                continue;
            }
            let handle = self.handles.get(&name);
            let Ok(_guard) = handle.lock.try_lock() else {
                continue;
            };
            let mut rec = match self.store.load(&name) {
                Ok(rec) => rec,
                Err(e) => {
                    error!(app = %name, "its document was removed, but its records cannot be read: {e}");
                    continue;
                }
            };
            if matches!(rec.phase, Phase::Pruned) || (!self.prune && rec.phase == Phase::Orphaned) {
                continue;
            }
            let was = rec.phase;
            let message = self.remove(&name, &mut rec, &desired.commit).await;
            out.insert(name, self.finish_removed(&mut rec, was, message));
        }
        out
    }

    /// Record that `name`'s document is invalid at `config_commit` (nothing is applied; the
    /// server keeps what it runs). Skipped while a pass of that app runs: it records its own.
    fn mark_invalid(&self, name: &str, config_commit: &str, message: &str) {
        let handle = self.handles.get(name);
        let Ok(_guard) = handle.lock.try_lock() else {
            return;
        };
        let Ok(mut rec) = self.store.load(name) else {
            return;
        };
        let was = rec.phase;
        rec.desired_config_commit = Some(config_commit.to_string());
        rec.phase = Phase::Invalid;
        last_error(&mut rec, StepKind::Load, message, None);
        set_stalled(
            &mut rec,
            cr::INVALID_DOCUMENT,
            &format!("{message}\n(nothing was applied; the server keeps what it runs)"),
        );
        if let Err(e) = self.store.save(&rec) {
            error!(app = %name, "could not record the invalid document: {e}");
        }
        if was != Phase::Invalid {
            self.emit(
                &rec,
                EventKind::PhaseChanged,
                rec.live_revision,
                format!("{was:?} → Invalid"),
            );
        }
        self.publish_app_metrics(&rec);
    }

    /// What removing `name`'s document does to its record: pruned (its pm2 processes
    /// deleted) under `--prune`, else orphaned (what it deployed keeps running). A failed prune
    /// leaves it orphaned with the error, to be tried again. Returns the message to record.
    async fn remove(&self, name: &str, rec: &mut AppRecord, config_commit: &str) -> String {
        let at = short_sha(config_commit);
        if !self.prune {
            rec.phase = Phase::Orphaned;
            let message = format!(
                "the document was removed at config commit {at}; what it deployed keeps running (run with --prune to remove it)"
            );
            set_stalled(rec, cr::DOCUMENT_REMOVED, &message);
            return message;
        }
        match self.prune_processes(name).await {
            Ok(deleted) => {
                rec.phase = Phase::Pruned;
                rec.live_revision = None;
                let message = format!(
                    "the document was removed at config commit {at}; pruned: deleted pm2 process(es) {} (releases stay on disk)",
                    deleted.join(", ")
                );
                set_stalled(rec, cr::PRUNED, &message);
                message
            }
            Err((message, tail)) => {
                // Nothing is marked pruned: what it deployed may still run.
                let message = format!(
                    "the document was removed at config commit {at}, but pruning failed: {message}; it is not marked pruned, and the next pass tries again"
                );
                error!(app = %name, "{message}");
                rec.phase = Phase::Orphaned;
                last_error(rec, StepKind::Pm2Delete, &message, tail);
                set_stalled(rec, cr::PRUNE_FAILED, &message);
                message
            }
        }
    }

    /// The one ending of an app whose document is gone (orphaned, pruned, or a failed
    /// prune): save its record (a failed save is logged; the next pass finds it unrecorded
    /// and does this again), announce a phase change, publish its metrics.
    fn finish_removed(&self, rec: &mut AppRecord, was: Phase, message: String) -> AppResult {
        if let Err(e) = self.store.save(rec) {
            error!(app = %rec.name, "could not record that the document was removed: {e}");
        }
        if was != rec.phase {
            self.emit(
                rec,
                EventKind::PhaseChanged,
                rec.live_revision,
                format!("{was:?} → {:?}: {message}", rec.phase),
            );
        }
        self.publish_app_metrics(rec);
        AppResult::NotReady {
            phase: rec.phase,
            message,
        }
    }

    /// Delete `name`'s pm2 processes and save pm2's list; returns the processes deleted.
    /// Any failure (pm2 cannot be read, a delete or the save fails) is returned with the
    /// command's output tail: the caller must not mark the app pruned.
    async fn prune_processes(&self, name: &str) -> Result<Vec<String>, (String, Option<String>)> {
        let failed = |e: crate::pm2::Pm2Error| {
            let tail = e.tail().map(str::to_string);
            (
                crate::execute::with_last_line(e.to_string(), tail.as_deref()),
                tail,
            )
        };
        let list = self.ports.pm2.jlist().await.map_err(failed)?;
        let mut names: Vec<String> = list
            .iter()
            .filter(|i| i.app() == Some(name))
            .map(|i| i.name.clone())
            .collect();
        names.dedup();
        let mut deleted = Vec::new();
        for p in names {
            self.ports.pm2.delete(&p).await.map_err(failed)?;
            deleted.push(p);
        }
        self.ports.pm2.save().await.map_err(failed)?;
        Ok(deleted)
    }

    /// A trusted tip must descend from the last applied trusted commit: a force-push back
    /// to an older signed commit (a downgrade) is refused until a person allows it.
    async fn check_descends(
        &self,
        source: &shipshape_spec::status::SourceStatus,
        tip: &str,
    ) -> Result<(), Untrusted> {
        let Some(last) = source.last_trusted.clone() else {
            return Ok(());
        };
        if source.allow_rewind.as_deref() == Some(tip) {
            return Ok(());
        }
        let descends = self.ports.source.descends(&last, tip).await;
        if descends {
            Ok(())
        } else {
            Err(Untrusted::Rewound(short_sha(&last)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str, root: &str, traffic: Option<(&str, [u16; 2], u16)>) -> DesiredDoc {
        let traffic = traffic
            .map(|(file, ports, confirm)| {
                format!(
                    "  traffic: {{ via: nginx, public: \"http://127.0.0.1:8080\", ports: [{}, {}], upstreamFile: {file}, confirmPort: {confirm} }}\n",
                    ports[0], ports[1]
                )
            })
            .unwrap_or_default();
        let text = format!(
            "apiVersion: shipshape/v1alpha1\nkind: App\nmetadata: {{ name: {name} }}\nspec:\n  source: {{ repository: /srv/git/{name}, commit: 3f2a1c9e0b7d4c6a8e1f2a3b4c5d6e7f8a9b0c1d }}\n  releases: {{ root: {root} }}\n  processes:\n    - {{ name: {name}-web, script: server.js }}\n  health:\n    checks:\n      - {{ name: api, http: {{ url: \"http://127.0.0.1:8080/health\" }} }}\n{traffic}"
        );
        let app = shipshape_spec::load_str(&text, "x.yaml").unwrap();
        DesiredDoc {
            path: format!("apps/{name}.yaml"),
            text,
            app,
        }
    }

    #[test]
    fn what_one_app_holds_alone_makes_a_second_app_holding_it_invalid_at_its_field() {
        let file = "/etc/nginx/shipshape/a.conf";
        let rows = [
            (
                "another root, other slots",
                doc(
                    "b",
                    "/srv/b",
                    Some(("/etc/nginx/shipshape/b.conf", [4000, 4001], 4099)),
                ),
                None,
            ),
            (
                "the same root",
                doc("b", "/srv/a", None),
                Some("spec.releases.root: /srv/a is also used by app a"),
            ),
            (
                "the same upstream file",
                doc("b", "/srv/b", Some((file, [4000, 4001], 4099))),
                Some(
                    "spec.traffic.upstreamFile: /etc/nginx/shipshape/a.conf is also used by app a",
                ),
            ),
            (
                "a slot port of a's",
                doc(
                    "b",
                    "/srv/b",
                    Some(("/etc/nginx/shipshape/b.conf", [4000, 3001], 4099)),
                ),
                Some("spec.traffic.ports[1]: port 3001 is also used by app a"),
            ),
            (
                "a's confirm port",
                doc(
                    "b",
                    "/srv/b",
                    Some(("/etc/nginx/shipshape/b.conf", [4000, 4001], 3099)),
                ),
                Some("spec.traffic.confirmPort: port 3099 is also used by app a"),
            ),
        ];
        for (what, b, want) in rows {
            let a = doc("a", "/srv/a", Some((file, [3000, 3001], 3099)));
            let mut invalid = Vec::new();
            let kept = one_app_per_claim(vec![a, b], &mut invalid);
            match want {
                None => assert!(invalid.is_empty() && kept.len() == 2, "{what}: {invalid:?}"),
                Some(m) => {
                    assert_eq!(kept.len(), 1, "{what}");
                    assert!(invalid[0].2.contains(m), "{what}: {}", invalid[0].2);
                }
            }
        }
    }
}
