//! The `traffic` section: the slots' ports, the public and confirm addresses, the upstream
//! file and its name, the serving process (one instance in fork mode, no `PORT` of its own),
//! health checks that do not probe a slot port, and nginx's command.

use super::*;

pub(super) fn traffic(c: &mut Checker, app: &App) {
    let Some(t) = &app.spec.traffic else { return };
    let public_port = match t.public.strip_prefix("http://").map(|rest| {
        let host_port = rest.trim_end_matches('/');
        host_port
            .rsplit_once(':')
            .and_then(|(host, port)| (!host.is_empty() && !host.contains('/')).then_some(port))
            .and_then(|port| port.parse::<u16>().ok())
    }) {
        Some(Some(port)) if port > 0 => Some(port),
        _ => {
            c.fail(
                "spec.traffic.public",
                format!(
                    "{:?} must be http://HOST:PORT, the address nginx serves the app on (e.g. http://127.0.0.1:8080)",
                    t.public
                ),
            );
            None
        }
    };
    if t.ports.len() != 2 || t.ports[0] == t.ports[1] || t.ports.contains(&0) {
        c.fail(
            "spec.traffic.ports",
            format!(
                "{:?} must be two different ports (slots take turns on them)",
                t.ports
            ),
        );
    }
    for (i, port) in t.ports.iter().enumerate() {
        if Some(*port) == public_port {
            c.fail(
                format!("spec.traffic.ports[{i}]"),
                format!("{port} is the public address's port: nginx listens there"),
            );
        }
        if *port == t.confirm_port {
            c.fail(
                format!("spec.traffic.ports[{i}]"),
                format!("{port} is also spec.traffic.confirmPort"),
            );
        }
    }
    if t.confirm_port == 0 || Some(t.confirm_port) == public_port {
        c.fail(
            "spec.traffic.confirmPort",
            format!(
                "{} must be a port of its own (not 0, not the public address's)",
                t.confirm_port
            ),
        );
    }
    if c.one_line("spec.traffic.upstreamFile", &t.upstream_file)
        && !is_absolute_without_parent(&t.upstream_file)
    {
        c.fail(
            "spec.traffic.upstreamFile",
            format!(
                "{:?} must be an absolute path without '..'",
                t.upstream_file
            ),
        );
    }
    let upstream = t.upstream_name(&app.metadata.name);
    if upstream.is_empty()
        || !upstream
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
    {
        c.fail(
            "spec.traffic.upstream",
            format!("{upstream:?} must be letters, digits, '_' or '-'"),
        );
    }
    match (&t.process, t.serving(&app.spec.processes)) {
        (Some(name), None) => c.fail(
            "spec.traffic.process",
            format!("{name:?} is not one of spec.processes"),
        ),
        (_, Some(p)) => {
            let i = app
                .spec
                .processes
                .iter()
                .position(|q| q.name == p.name)
                .unwrap_or(0);
            let fork = p.exec_mode.unwrap_or_default() == crate::app::ExecMode::Fork;
            let many = !matches!(p.instances, None | Some(crate::app::Instances::Count(1)));
            if fork && many {
                c.fail(
                    format!("spec.processes[{i}].instances"),
                    "in fork mode each instance is its own process on the slot's one PORT, and only one can listen there: use exec_mode: cluster for more than one instance",
                );
            }
            if p.env.contains_key("PORT") {
                c.fail(
                    format!("spec.processes[{i}].env.PORT"),
                    "set by the controller in traffic mode: each slot gets its port from spec.traffic.ports",
                );
            }
        }
        (None, None) => {}
    }
    if app.spec.releases.keep < 2 {
        c.fail(
            "spec.releases.keep",
            format!(
                "{} is too few with spec.traffic: the warm slot runs the previous release from its own directory, keep at least 2",
                app.spec.releases.keep
            ),
        );
    }
    for (i, check) in app.spec.health.checks.iter().enumerate() {
        let Some(h) = check.http() else { continue };
        let port = h
            .url
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""))
            .and_then(|authority| authority.rsplit_once(':'))
            .and_then(|(_, port)| port.parse::<u16>().ok());
        if let Some(port) = port.filter(|p| t.ports.contains(p)) {
            c.fail(
                format!("spec.health.checks[{i}].http.url"),
                format!(
                    "{:?} probes slot port {port} directly: whichever slot holds it would answer (after a switch, the warm one); point it at spec.traffic.public ({}), whose checks run on the new slot's own port before the switch and through nginx after it",
                    h.url, t.public
                ),
            );
        }
    }
    c.one_line("spec.traffic.nginx.binary", &t.nginx.binary);
    for (i, a) in t.nginx.args.iter().enumerate() {
        c.one_line(&format!("spec.traffic.nginx.args[{i}]"), a);
    }
    c.positive("spec.traffic.nginx.timeout", t.nginx.timeout);
    c.positive("spec.traffic.drainTimeout", t.drain_timeout);
}
