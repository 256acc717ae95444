//! Traffic through nginx, one slot at a time: the names a slot's pm2 processes run under
//! (`web@3001`), the ecosystem entry a slot starts from (the release's own directory, its
//! port in `PORT`), and the views of the document the health checks judge — a slot on its
//! own port before the switch ([`slot_view`]), the live slot through the public address
//! after it ([`live_view`]). [`nginx`] switches the traffic; [`net`] reads the kernel's
//! sockets (who holds a port, what is still in flight to a slot); [`settings`] reads what
//! nginx's configuration says of the settings zero downtime relies on.
//!
//! # Slots
//! A slot is the serving process (`spec.traffic.process`) of one release, started under
//! `NAME@PORT` on one of `spec.traffic.ports`, beside the live one. The upstream file names
//! the live slot; the record names the warm one (the slot traffic left, kept running for
//! `warmFor` so that a revert inside it is a switch back). Every other slot is retired:
//! drained (no connection left to its port, bounded by `drainTimeout`), then deleted.

pub mod net;
pub mod nginx;
pub mod settings;

use std::path::Path;

use shipshape_spec::app::{CheckKind, Process, Traffic};
use shipshape_spec::{App, Timestamp};

use crate::envfile::EnvFile;
use crate::plan::ecosystem_entry;

/// What a slot's pm2 name adds to the serving process's: `@` and the port. `@` is not
/// allowed in a declared process name, so a slot name never collides with one.
pub const SLOT_SEPARATOR: char = '@';

/// The env variable every slot instance carries: its port.
pub const ENV_SLOT: &str = "SHIPSHAPE_SLOT";

/// The line the controller writes below nginx's text in the upstream file to say which slot
/// is warm and until when (nginx reads it as a comment). The file is written with each
/// switch, so the live and the warm slot are always recorded together, atomically.
const WARM_MARKER: &str = "# shipshape warm slot:";

/// What the upstream file says of the slots, and what the plan is to do with the slot
/// traffic leaves: what the planner is told in traffic mode.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficState {
    /// The slot nginx sends traffic to (`None`: no switch has happened yet).
    pub live: Option<u16>,
    /// The slot traffic left at the last switch, kept running until then.
    pub warm: Option<Warm>,
    /// The time the plan is made at (is the warm slot's time up?).
    pub now: Timestamp,
    /// What becomes of the slot a switch leaves.
    pub leaving: Leaving,
}

/// A warm slot: where, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warm {
    /// Its port.
    pub port: u16,
    /// When its time is up.
    pub until: Timestamp,
}

/// What becomes of the slot a switch leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaving {
    /// A rollout: it stays warm for `warmFor`, so a revert is a switch back.
    Warm,
    /// A revert: it ran the failed revision, and is drained and stopped at once.
    Retire,
}

/// The upstream file's text: nginx's text naming `live` (its first line is the marker
/// [`nginx::live_slot`] reads), then the warm line, if any.
pub fn upstream_text(t: &Traffic, app: &str, live: u16, warm: Option<Warm>) -> String {
    let body = nginx::render(t, app, live);
    match warm {
        Some(w) => format!("{body}{WARM_MARKER} {} until {}\n", w.port, w.until),
        None => body,
    }
}

/// True for the warm line of an upstream file.
pub fn is_warm_line(line: &str) -> bool {
    line.starts_with(WARM_MARKER)
}

/// The warm slot the upstream file's text names.
pub fn warm_of(text: &str) -> Option<Warm> {
    let line = text.lines().find_map(|l| l.strip_prefix(WARM_MARKER))?;
    let (port, until) = line.trim().split_once(" until ")?;
    Some(Warm {
        port: port.trim().parse().ok()?,
        until: until.trim().parse().ok()?,
    })
}

/// Read the slots from the upstream file (absent: nothing live yet).
///
/// # Errors
/// The file exists and cannot be read.
pub fn read_state(t: &Traffic, now: Timestamp) -> Result<TrafficState, String> {
    let file = Path::new(&t.upstream_file);
    let live = nginx::live_slot(file)?;
    let warm = match std::fs::read_to_string(file) {
        Ok(text) => warm_of(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("reading {}: {e}", file.display())),
    };
    Ok(TrafficState {
        live,
        warm,
        now,
        leaving: Leaving::Warm,
    })
}

/// The pm2 name of `process`'s slot on `port` (`web@3001`).
pub fn slot_name(process: &str, port: u16) -> String {
    format!("{process}{SLOT_SEPARATOR}{port}")
}

/// The serving process and port a slot name stands for (`web@3001` → `("web", 3001)`).
pub fn parse_slot_name(name: &str) -> Option<(&str, u16)> {
    let (process, port) = name.rsplit_once(SLOT_SEPARATOR)?;
    let port: u16 = port.parse().ok()?;
    (!process.is_empty() && port > 0).then_some((process, port))
}

/// The document's traffic section and its serving process, when it runs in slots.
pub fn serving(app: &App) -> Option<(&Traffic, &Process)> {
    let t = app.spec.traffic.as_ref()?;
    Some((t, t.serving(&app.spec.processes)?))
}

/// The ecosystem entry of `process`'s slot on `port` for release `release`: the declared
/// entry (so its config marker is the same on either port) under the slot's name, run from
/// the release's own directory (two slots run two releases at once: not from `current`),
/// with `PORT` and [`ENV_SLOT`] set to the port.
pub fn slot_entry(
    app: &App,
    process: &Process,
    env_file: &EnvFile,
    port: u16,
) -> serde_json::Value {
    let mut entry = ecosystem_entry(app, process, env_file);
    let root = app.spec.releases.root.trim_end_matches('/');
    let release_dir = format!("{root}/releases/{}", app.spec.source.commit);
    let cwd = match &process.cwd {
        Some(sub) => format!("{release_dir}/{}", sub.trim_start_matches("./")),
        None => release_dir,
    };
    let obj = entry.as_object_mut().expect("an entry is an object");
    obj.insert("name".into(), slot_name(&process.name, port).into());
    obj.insert("cwd".into(), cwd.into());
    let env = obj
        .get_mut("env")
        .and_then(|e| e.as_object_mut())
        .expect("an entry has env");
    env.insert("PORT".into(), port.to_string().into());
    env.insert(ENV_SLOT.into(), port.to_string().into());
    entry
}

/// `url` on the slot's own port when it points at the public address (`None`: it does
/// not, and the check is not about the slot).
pub fn slot_url(t: &Traffic, url: &str, port: u16) -> Option<String> {
    let public = t.public.trim_end_matches('/');
    let rest = url.strip_prefix(public)?;
    if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
        return None;
    }
    Some(format!("http://127.0.0.1:{port}{rest}"))
}

/// The document as a slot on `port` is judged before it gets traffic: the serving
/// process under the slot's name and no other (pm2 facts and resources are the slot's
/// alone: the other processes are applied in place after the switch), the HTTP checks
/// of the public address sent to the slot's own port. Checks that cannot be about the slot
/// alone are left out: Prometheus (it sees the traffic users send, none yet) and HTTP
/// checks of other addresses.
pub fn slot_view(app: &App, port: u16) -> App {
    let mut view = live_view(app, port);
    let Some((t, p)) = serving(app) else {
        return view;
    };
    // Only the slot is judged: the other processes are applied in place after the switch.
    let name = slot_name(&p.name, port);
    view.spec.processes.retain(|q| q.name == name);
    view.spec.health.checks.retain_mut(|c| match &mut c.kind {
        CheckKind::Http(h) => match slot_url(t, &h.url, port) {
            Some(url) => {
                h.url = url;
                true
            }
            None => false,
        },
        CheckKind::Prometheus(_) => false,
        CheckKind::Resources(_) => true,
    });
    view
}

/// The document as the slot on `live` serves it: the serving process under the slot's
/// name, the checks as written (through the public address). A view has no
/// `spec.traffic`: it is judged as it is, never viewed again. Without traffic, `app`.
pub fn live_view(app: &App, live: u16) -> App {
    let mut view = app.clone();
    if let Some((_, p)) = serving(app) {
        let name = p.name.clone();
        if let Some(q) = view.spec.processes.iter_mut().find(|q| q.name == name) {
            q.name = slot_name(&name, live);
        }
    }
    view.spec.traffic = None;
    view
}

/// The document as a health round judges it now: in traffic mode, the live slot's view
/// (the upstream file says which; before the first switch, the serving process is looked
/// for under its declared name and found nowhere, so the round fails its pm2 facts);
/// otherwise `app` itself.
pub fn judged(app: &App) -> std::borrow::Cow<'_, App> {
    let Some(t) = &app.spec.traffic else {
        return std::borrow::Cow::Borrowed(app);
    };
    match nginx::live_slot(Path::new(&t.upstream_file)) {
        Ok(Some(live)) => std::borrow::Cow::Owned(live_view(app, live)),
        _ => {
            let mut view = app.clone();
            view.spec.traffic = None;
            std::borrow::Cow::Owned(view)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warm_line_round_trips() {
        let until: Timestamp = "2026-12-02T03:00:00Z".parse().unwrap();
        let text = format!("{WARM_MARKER} 3001 until {until}\n# managed by shipshape\n");
        assert_eq!(warm_of(&text), Some(Warm { port: 3001, until }));
        assert_eq!(warm_of("# managed by shipshape\n"), None);
    }

    #[test]
    fn slot_names_round_trip_and_never_parse_a_declared_name() {
        assert_eq!(slot_name("web", 3001), "web@3001");
        assert_eq!(parse_slot_name("web@3001"), Some(("web", 3001)));
        assert_eq!(parse_slot_name("web"), None);
        assert_eq!(parse_slot_name("web@"), None);
        assert_eq!(parse_slot_name("@3001"), None);
        assert_eq!(parse_slot_name("web@x"), None);
        assert_eq!(parse_slot_name("web~next"), None);
    }
}
