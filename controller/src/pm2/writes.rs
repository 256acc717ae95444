//! Changes to pm2 through its daemon's socket, where the result is exactly what pm2's CLI
//! would leave: deleting a process by name, and saving the dump. Each is what pm2 7's CLI
//! does over the same socket, minus the Node start (~0.15 s of CPU per command):
//!
//! - **delete NAME**: `getMonitorData`, then the ids whose name is NAME (or whose script
//!   is the path NAME resolves to in the CLI's directory, as `Client.getProcessIdByName`
//!   matches), else those of namespace NAME; none is an error, as `pm2 delete` fails.
//!   Then per id, up to 10 at once, `stopWatch` and `deleteProcessId`. (The CLI's
//!   `notifyByProcessId` afterwards names an id the daemon no longer has: a no-op, not sent.)
//! - **save**: `getMonitorData`; every entry's `pm2_env` without `instances`, `pm_id` and
//!   `prev_restart_delay`, modules left out, written as JSON to `PM2_HOME/dump.pm2` after
//!   the old one is copied to `dump.pm2.bak` (`pm2 save --force`, `CLI.dump`). Both are
//!   written 0600 from their first byte (pm2 makes them 0644, then the controller had to
//!   tighten them), atomically.
//!
//! A socket that is missing, refuses, times out or answers unexpectedly sends the change
//! through the CLI instead: warned about (every time: changes are rare) and counted in
//! `shipshape_pm2_socket_fallbacks_total{reason}`. Changes take the turn, as CLI calls do,
//! so a save never interleaves with another app's `startOrReload`.
//!
//! `startOrReload` stays on the CLI: its reload sends the ecosystem app as pm2's client
//! resolves it (`Common.verifyConfs`: defaults, paths, interpreter, env stringified, merged
//! by `mergeEnvironmentVariables`) together with a copy of the CLI's own `process.env`, and
//! its start sends a fully prepared app (`prepareJson`); reproducing that outside pm2 would
//! be a second, drifting implementation of pm2's client for the one step that must match it.
//!
//! Payloads are never logged nor put in errors: they carry every process's environment.

use std::path::Path;

use futures::StreamExt;
use serde_json::Value;
use tracing::warn;

use super::socket::SocketError;
use super::{Pm2, Pm2Error, ReadVia, socket};

/// Why a change through the socket did not happen there.
enum SocketChange {
    /// pm2 has no such process (as the CLI would say).
    NotFound,
    /// The socket failed; `deleted` ids were deleted before it did.
    Failed {
        error: socket::SocketError,
        deleted: usize,
    },
    /// Writing the dump failed (the socket answered).
    Io(Pm2Error),
}

/// A name pm2's CLI takes for a process name and nothing else: our names' characters
/// (a letter or digit, then letters, digits, `-`, `_`, `.`, and `~` as in the temporary
/// name of a graceful replace, `web~next`), not `all`, not a number, not an ecosystem
/// file's name. Anything else is left to the CLI to interpret.
fn plain_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~'))
        && shipshape_spec::validate::pm2_reserved(name).is_none()
}

/// The ids `pm2 delete NAME` acts on, from `getMonitorData`'s list: by name (or script path
/// `exec_path`), else by namespace.
///
/// # Errors
/// [`SocketError::Unexpected`] with a description (never a value) when the list is not
/// one or an entry has no numeric `pm_id`.
pub fn ids_for(list: &Value, name: &str, exec_path: &Path) -> Result<Vec<u64>, SocketError> {
    let unexpected = |what: &str| SocketError::Unexpected(what.to_string());
    let procs = list
        .as_array()
        .ok_or_else(|| unexpected("a process list that is not a list"))?;
    let exec_path = exec_path.to_str();
    let pick = |matches: &dyn Fn(&Value) -> bool| -> Result<Vec<u64>, SocketError> {
        procs
            .iter()
            .filter(|p| matches(&p["pm2_env"]))
            .map(|p| {
                p["pm_id"]
                    .as_u64()
                    .ok_or_else(|| unexpected("a process without a numeric pm_id"))
            })
            .collect()
    };
    let ids = pick(&|env| {
        env["name"].as_str() == Some(name)
            || (exec_path.is_some() && env["pm_exec_path"].as_str() == exec_path)
    })?;
    if !ids.is_empty() {
        return Ok(ids);
    }
    pick(&|env| env["namespace"].as_str() == Some(name))
}

/// JavaScript's truthiness of a JSON value (`undefined` is `None`).
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// What `pm2 save` writes for `getMonitorData`'s list: each process's `pm2_env` without
/// `instances`, `pm_id` and `prev_restart_delay`, modules (`pmx_module`) left out.
///
/// # Errors
/// [`SocketError::Unexpected`] with a description (never a value) when the list or an
/// entry is not what pm2 7 answers.
pub fn dump_of(list: Value) -> Result<Value, SocketError> {
    let unexpected = |what: &str| SocketError::Unexpected(what.to_string());
    let Value::Array(procs) = list else {
        return Err(unexpected("a process list that is not a list"));
    };
    let mut out = Vec::with_capacity(procs.len());
    for p in procs {
        let Value::Object(mut p) = p else {
            return Err(unexpected("a process that is not an object"));
        };
        let Some(Value::Object(mut env)) = p.remove("pm2_env") else {
            return Err(unexpected("a process without a pm2_env object"));
        };
        for key in ["instances", "pm_id", "prev_restart_delay"] {
            env.remove(key);
        }
        if !truthy(env.get("pmx_module")) {
            out.push(Value::Object(env));
        }
    }
    Ok(Value::Array(out))
}

impl Pm2 {
    /// Note a change: the cached list is dropped, and socket reads overlapping it do not
    /// fill the cache.
    fn note_change(&self) {
        self.socket
            .changes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        *self.cache.lock().expect("pm2 cache") = None;
    }

    /// Note a change now, and again when the guard drops (the write is over): a list read
    /// while the write was in flight may or may not show it, so it is not kept either way.
    /// (Noted only before, a read between the note and pm2's change filled the cache with
    /// the list as it was: a pass of another app observed a process deleted after it.)
    pub(super) fn changing(&self) -> Changing<'_> {
        self.note_change();
        Changing(self)
    }

    /// Where pm2's CLI runs, which resolves a name as a script path from there.
    fn cli_dir(&self) -> &Path {
        self.home.parent().unwrap_or(Path::new("/"))
    }

    /// A change that went through the CLI because the socket failed: warned, counted.
    fn report_change_fallback(&self, action: &str, error: &socket::SocketError) -> String {
        self.count_fallback(error.kind());
        let reason = error.to_string();
        warn!("pm2 {action} through pm2's CLI instead of its daemon socket: {reason}");
        reason
    }

    /// [`Pm2::delete`], saying which way it went.
    ///
    /// # Errors
    /// [`Pm2Error::Refused`] when pm2 has no process or namespace of that name (as
    /// `pm2 delete` fails then); [`Pm2Error`] when both the socket and the CLI fail.
    pub async fn delete_via(&self, name: &str) -> Result<ReadVia, Pm2Error> {
        let action = format!("delete {name}");
        let _turn = self.turn.lock().await;
        let _changing = self.changing();
        if !self.socket.enabled || !plain_name(name) {
            self.call_in_turn(&action, &["delete", name]).await?;
            return Ok(ReadVia::Cli(None));
        }
        let (error, deleted) = match self.socket_delete(name).await {
            Ok(()) => {
                self.daemon_up
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                return Ok(ReadVia::Socket);
            }
            Err(SocketChange::NotFound) => {
                return Err(Pm2Error::Refused {
                    action,
                    message: format!("process or namespace {name} not found"),
                });
            }
            Err(SocketChange::Io(e)) => return Err(e),
            Err(SocketChange::Failed { error, deleted }) => (error, deleted),
        };
        let reason = self.report_change_fallback(&action, &error);
        match self.call_in_turn(&action, &["delete", name]).await {
            Ok(_) => Ok(ReadVia::Cli(Some(reason))),
            // The socket deleted everything before failing: the CLI finds nothing left.
            Err(e) if deleted > 0 => {
                let out = self.call_in_turn("jlist", &["jlist"]).await?;
                let left = super::parse_jlist(&out.stdout)?
                    .iter()
                    .any(|i| i.name == name);
                if left {
                    Err(e)
                } else {
                    Ok(ReadVia::Cli(Some(reason)))
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn socket_delete(&self, name: &str) -> Result<(), SocketChange> {
        let path = self.socket_path();
        let failed = |error| SocketChange::Failed { error, deleted: 0 };
        let list = socket::monitor_data(&path, self.socket.timeout)
            .await
            .map_err(failed)?;
        let ids = ids_for(&list, name, &self.cli_dir().join(name)).map_err(failed)?;
        if ids.is_empty() {
            return Err(SocketChange::NotFound);
        }
        // A delete waits for the process to stop: the command's limit, as for the CLI.
        let results: Vec<_> = futures::stream::iter(ids)
            .map(|id| socket::delete_process_id(&path, id, self.timeout))
            .buffer_unordered(10)
            .collect()
            .await;
        let deleted = results.iter().filter(|r| r.is_ok()).count();
        match results.into_iter().find_map(Result::err) {
            None => Ok(()),
            Some(error) => Err(SocketChange::Failed { error, deleted }),
        }
    }

    /// [`Pm2::save`], saying which way it went.
    ///
    /// # Errors
    /// [`Pm2Error`] when the dump cannot be written, or both the socket and the CLI fail.
    pub async fn save_via(&self) -> Result<ReadVia, Pm2Error> {
        let _turn = self.turn.lock().await;
        crate::state::ensure_dir(&self.home).map_err(|source| Pm2Error::Io {
            what: format!("creating PM2_HOME {}", self.home.display()),
            source,
        })?;
        let mut via = ReadVia::Cli(None);
        if self.socket.enabled {
            match self.socket_save().await {
                Ok(()) => via = ReadVia::Socket,
                Err(SocketChange::Io(e)) => return Err(e),
                Err(SocketChange::Failed { error, .. }) => {
                    via = ReadVia::Cli(Some(self.report_change_fallback("save", &error)));
                }
                Err(SocketChange::NotFound) => unreachable!("a save names no process"),
            }
        }
        if via != ReadVia::Socket {
            self.call_in_turn("save", &["save", "--force"]).await?;
        }
        // A dump.pm2.bak pm2 made earlier (0644) when this save made none.
        for fixed in self.secure_dump()? {
            tracing::debug!("{fixed}");
        }
        Ok(via)
    }

    async fn socket_save(&self) -> Result<(), SocketChange> {
        let failed = |error| SocketChange::Failed { error, deleted: 0 };
        let list = socket::monitor_data(&self.socket_path(), self.socket.timeout)
            .await
            .map_err(failed)?;
        let dump = dump_of(list).map_err(failed)?;
        self.daemon_up
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let text = serde_json::to_vec_pretty(&dump).expect("JSON values serialize");
        let (main, bak) = (self.home.join("dump.pm2"), self.home.join("dump.pm2.bak"));
        // As pm2: the old dump becomes the backup; a backup that fails is reported, not fatal.
        match std::fs::read(&main) {
            Ok(old) => {
                if let Err(e) = crate::release::write_atomic_mode(&bak, &old, 0o600) {
                    warn!("backing up pm2's dump to {} failed: {e}", bak.display());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(
                "backing up pm2's dump: reading {} failed: {e}",
                main.display()
            ),
        }
        crate::release::write_atomic_mode(&main, &text, 0o600).map_err(|source| {
            SocketChange::Io(Pm2Error::Io {
                what: format!("writing pm2's dump {}", main.display()),
                source,
            })
        })
    }
}

/// A pm2 write in flight: the change is noted again when it drops ([`Pm2::changing`]).
pub(super) struct Changing<'a>(&'a Pm2);

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        self.0.note_change();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_pm2_reads_otherwise_go_to_the_cli() {
        for plain in ["web", "demo-web", "a.b_c", "x1", "web~next"] {
            assert!(plain_name(plain), "{plain}");
        }
        for special in [
            "",
            "all",
            "default",
            "42",
            "1e3",
            "0x1f",
            "/web/",
            "a b",
            "eco.config.js",
            "-x",
            "~web",
        ] {
            assert!(!plain_name(special), "{special}");
        }
    }

    #[test]
    fn ids_are_matched_by_name_or_script_path_else_by_namespace() {
        let list = json!([
            {"pm_id": 0, "pm2_env": {"name": "web", "namespace": "default", "pm_exec_path": "/srv/a.js"}},
            {"pm_id": 3, "pm2_env": {"name": "web", "namespace": "default", "pm_exec_path": "/srv/a.js"}},
            {"pm_id": 4, "pm2_env": {"name": "other", "namespace": "web2", "pm_exec_path": "/home/x/web"}},
            {"pm_id": 5, "pm2_env": {"name": "third", "namespace": "web2", "pm_exec_path": "/srv/b.js"}},
        ]);
        let path = Path::new("/home/x");
        assert_eq!(ids_for(&list, "web", &path.join("web")).unwrap(), [0, 3, 4]);
        assert_eq!(ids_for(&list, "web2", &path.join("web2")).unwrap(), [4, 5]);
        assert!(
            ids_for(&list, "none", &path.join("none"))
                .unwrap()
                .is_empty()
        );
        let odd = json!([{"pm_id": "x", "pm2_env": {"name": "web"}}]);
        assert!(ids_for(&odd, "web", path).is_err());
    }

    #[test]
    fn the_dump_is_each_pm2_env_without_the_fields_pm2_drops_and_without_modules() {
        let list = json!([
            {"pm_id": 0, "monit": {"cpu": 1}, "pm2_env": {"name": "a", "pm_id": 0, "instances": 2, "prev_restart_delay": 0, "env": {"K": "v"}}},
            {"pm_id": 1, "pm2_env": {"name": "mod", "pmx_module": true}},
            {"pm_id": 2, "pm2_env": {"name": "b", "pmx_module": false}},
        ]);
        assert_eq!(
            dump_of(list).unwrap(),
            json!([{"name": "a", "env": {"K": "v"}}, {"name": "b", "pmx_module": false}])
        );
        assert!(dump_of(json!({"a": 1})).is_err());
        assert!(dump_of(json!([{"pm2_env": "x"}])).is_err());
        assert_eq!(dump_of(json!([])).unwrap(), json!([]));
    }

    #[test]
    fn javascript_truthiness() {
        assert!(!truthy(None));
        for falsy in [json!(null), json!(false), json!(0), json!(0.0), json!("")] {
            assert!(!truthy(Some(&falsy)), "{falsy}");
        }
        for t in [json!(true), json!(1), json!("x"), json!({}), json!([])] {
            assert!(truthy(Some(&t)), "{t}");
        }
    }
}
