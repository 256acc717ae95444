//! Traffic through nginx, one slot at a time: the names a slot's pm2 processes run under
//! (`web@3001`), the ecosystem entry a slot starts from (the release's own directory, its
//! port in `PORT`), and the views of the document the health checks judge — a slot on its
//! own port before the switch ([`slot_view`]), the live slot through the public address
//! after it ([`live_view`]). [`nginx`] switches the traffic; [`net`] reads the kernel's
//! sockets (who holds a port, what is still in flight to a slot).
//!
//! # Slots
//! A slot is the serving process (`spec.traffic.process`) of one release, started under
//! `NAME@PORT` on one of `spec.traffic.ports`, beside the live one. The upstream file names
//! the live slot; the record names the warm one (the slot traffic left, kept running for
//! `warmFor` so that a revert inside it is a switch back). Every other slot is retired:
//! drained (no connection left to its port, bounded by `drainTimeout`), then deleted.

pub mod net;
pub mod nginx;

use shipshape_spec::App;
use shipshape_spec::app::{CheckKind, Process, Traffic};

use crate::envfile::EnvFile;
use crate::plan::ecosystem_entry;

/// What a slot's pm2 name adds to the serving process's: `@` and the port. `@` is not
/// allowed in a declared process name, so a slot name never collides with one.
pub const SLOT_SEPARATOR: char = '@';

/// The env variable every slot instance carries: its port.
pub const ENV_SLOT: &str = "SHIPSHAPE_SLOT";

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
/// process under the slot's name (pm2 facts and resources are the slot's), the HTTP checks
/// of the public address sent to the slot's own port. Checks that cannot be about the slot
/// alone are left out: Prometheus (it sees the traffic users send, none yet) and HTTP
/// checks of other addresses.
pub fn slot_view(app: &App, port: u16) -> App {
    let mut view = live_view(app, port);
    let Some(t) = app.spec.traffic.as_ref() else {
        return view;
    };
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
/// name, the checks as written (through the public address). Without traffic, `app`.
pub fn live_view(app: &App, live: u16) -> App {
    let mut view = app.clone();
    if let Some((_, p)) = serving(app) {
        let name = p.name.clone();
        if let Some(q) = view.spec.processes.iter_mut().find(|q| q.name == name) {
            q.name = slot_name(&name, live);
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

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
