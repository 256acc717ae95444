//! Traps: documents pm2 accepts but that cannot work, or that do not do what they seem to.
//!
//! - **Refused**: a package manager (`npm`, `npx`, `yarn`, `pnpm`, or a path ending in one)
//!   as the script of a cluster-mode process. pm2's cluster mode loads the script with
//!   node's `cluster` module in each worker; npm's CLI wrapper then starts the real server
//!   as a child process outside the cluster (the workers never listen, the children contend
//!   for one `PORT`), and pm2 restarts them over and over (a rollout ends in "restarted 9
//!   time(s)" with nothing saying why).
//! - **Warned** ([`warnings`]): a package manager as the script in fork mode when pm2's
//!   numbers matter (`max_memory_restart`, a `resources` check: pm2 measures the wrapper,
//!   not the server under it); an `http` check on this host whose port is not the `PORT`
//!   of any process (nor, with `spec.traffic`, the public address's).

use super::*;

/// The package managers' command names (the script's file name, without `.js`/`.cjs`).
const PACKAGE_MANAGERS: [&str; 7] = ["npm", "npx", "yarn", "pnpm", "pnpx", "npm-cli", "npx-cli"];

/// The package manager `script` names (`npm`, `node_modules/.bin/yarn`, …), if it is one.
pub fn package_manager(script: &str) -> Option<&'static str> {
    let file = script.rsplit('/').next().unwrap_or(script);
    let stem = [".js", ".cjs", ".mjs"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))
        .unwrap_or(file);
    PACKAGE_MANAGERS.iter().copied().find(|pm| *pm == stem)
}

/// The process's `args` as one line, for the messages.
fn args_text(p: &Process) -> String {
    match &p.args {
        None => String::new(),
        Some(crate::app::StringOrList::One(s)) => s.clone(),
        Some(crate::app::StringOrList::List(l)) => l.join(" "),
    }
}

/// Refuse a package manager as a cluster-mode process's script (see the module's doc).
pub(super) fn package_manager_in_cluster(c: &mut Checker, at: &str, p: &Process) {
    let Some(pm) = package_manager(&p.script) else {
        return;
    };
    if p.exec_mode != Some(crate::app::ExecMode::Cluster) {
        return;
    }
    let args = args_text(p);
    let shown = if args.is_empty() {
        p.script.clone()
    } else {
        format!("{} {args}", p.script)
    };
    c.fail(
        format!("{at}.script"),
        format!(
            "{shown:?} cannot run in cluster mode: pm2 loads the script with node's cluster module in each worker, and {pm}'s CLI wrapper starts your server as a child process outside the cluster (the workers never listen, the children contend for one PORT), so pm2 restarts them over and over. Run the server itself: the framework's binary (e.g. script: node_modules/.bin/next, args: start), or your server file (e.g. script: server.js); or use exec_mode: fork"
        ),
    );
}

/// What the document asks that probably does not do what it seems to (see the module's
/// doc); the document still loads.
pub(super) fn warnings(c: &mut Checker, app: &App) {
    for (i, p) in app.spec.processes.iter().enumerate() {
        package_manager_measured(c, &format!("spec.processes[{i}]"), app, p);
    }
    health_ports(c, app);
}

/// A package manager in fork mode, where pm2's numbers are the wrapper's.
fn package_manager_measured(c: &mut Checker, at: &str, app: &App, p: &Process) {
    let Some(pm) = package_manager(&p.script) else {
        return;
    };
    if p.exec_mode == Some(crate::app::ExecMode::Cluster) {
        return; // Refused.
    }
    let resources = app
        .spec
        .health
        .checks
        .iter()
        .any(|k| matches!(k.kind, CheckKind::Resources(_)));
    let what = match (&p.max_memory_restart, resources) {
        (Some(_), true) => "max_memory_restart and the resources check see",
        (Some(_), false) => "max_memory_restart sees",
        (None, true) => "the resources check sees",
        (None, false) => return,
    };
    c.fail(
        format!("{at}.script"),
        format!(
            "pm2 measures the process it started, {pm}'s CLI wrapper, not the server it runs as a child: {what} the wrapper's memory and CPU. Run the server itself (e.g. script: node_modules/.bin/next, args: start, or your server file)"
        ),
    );
}

/// `(host, port)` of an `http://` or `https://` URL (the scheme's port when none is
/// written); `None` when it cannot be read (said by the URL's own check).
pub fn url_host_port(url: &str) -> Option<(String, u16)> {
    // The URL parser the check URLs are validated with (rules.rs), not a second one.
    let u = url::Url::parse(url).ok()?;
    let host = match u.host()? {
        url::Host::Domain(d) => d.to_ascii_lowercase(),
        url::Host::Ipv4(a) => a.to_string(),
        url::Host::Ipv6(a) => a.to_string(),
    };
    Some((host, u.port_or_known_default()?))
}

/// A host that is this machine.
fn is_this_host(host: &str) -> bool {
    host == "localhost" || host == "::1" || host == "0.0.0.0" || host.starts_with("127.")
}

/// `http` checks of this host on a port no process listens on by its `PORT`.
fn health_ports(c: &mut Checker, app: &App) {
    let spec = &app.spec;
    // Where the app listens, as the document says: with spec.traffic the checks go through
    // the public address (slot ports are refused in `traffic`); else each process's PORT.
    let (ports, said): (Vec<u16>, String) = match &spec.traffic {
        Some(t) => {
            let Some((_, public)) = url_host_port(&t.public) else {
                return;
            };
            (
                vec![public],
                format!(
                    "with spec.traffic the checks go through spec.traffic.public ({}, port {public}); the slots' PORTs are {:?}",
                    t.public, t.ports
                ),
            )
        }
        None => {
            let declared: Vec<(String, String)> = spec
                .processes
                .iter()
                .filter_map(|p| p.env.get("PORT").map(|v| (p.name.clone(), v.as_text())))
                .collect();
            if declared.is_empty() {
                // Nothing says where the app listens (its own default, or the env file).
                return;
            }
            let ports = declared
                .iter()
                .filter_map(|(_, v)| v.parse().ok())
                .collect();
            let listed: Vec<String> = declared
                .iter()
                .map(|(name, port)| format!("{name}: PORT={port}"))
                .collect();
            (
                ports,
                format!("the processes' PORTs: {}", listed.join(", ")),
            )
        }
    };
    for (i, check) in spec.health.checks.iter().enumerate() {
        let Some(h) = check.http() else { continue };
        let Some((host, port)) = url_host_port(&h.url) else {
            continue;
        };
        if !is_this_host(&host) || ports.contains(&port) {
            continue;
        }
        if spec
            .traffic
            .as_ref()
            .is_some_and(|t| t.ports.contains(&port) || t.confirm_port == port)
        {
            continue; // Refused in `traffic`.
        }
        c.fail(
            format!("spec.health.checks[{i}].http.url"),
            format!(
                "{:?} probes port {port}, where no process of this app listens ({said}): the check would fail every round",
                h.url
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_managers_are_known_by_name_and_path() {
        for (script, pm) in [
            ("npm", Some("npm")),
            ("node_modules/.bin/yarn", Some("yarn")),
            ("pnpm", Some("pnpm")),
            ("npx", Some("npx")),
            ("node_modules/npm/bin/npm-cli.js", Some("npm-cli")),
            ("server.js", None),
            ("node_modules/.bin/next", None),
            ("npm-run-all", None),
        ] {
            assert_eq!(package_manager(script), pm, "{script}");
        }
    }

    #[test]
    fn urls_give_their_host_and_port() {
        assert_eq!(
            url_host_port("http://127.0.0.1:3000/api/health"),
            Some(("127.0.0.1".into(), 3000))
        );
        assert_eq!(
            url_host_port("http://localhost/x"),
            Some(("localhost".into(), 80))
        );
        assert_eq!(
            url_host_port("https://Example.com?x"),
            Some(("example.com".into(), 443))
        );
        assert_eq!(
            url_host_port("http://[::1]:8080/"),
            Some(("::1".into(), 8080))
        );
        assert_eq!(
            url_host_port("http://u:p@127.0.0.1:9/"),
            Some(("127.0.0.1".into(), 9))
        );
        assert_eq!(url_host_port("http://h:x/"), None);
        assert_eq!(url_host_port("nope"), None);
    }
}
