//! The app's own words on failure: when a rollout's processes crash at start, never listen
//! or restart, `shipshape status`, `status APP` and `shipshape logs APP` say what happened
//! in a line, with the app's own error line and its output tail from pm2's log files, for
//! that release only. Real git, pm2 and the example app, `run --once`, short deadlines.

mod common;

use std::time::Duration;

use common::{AppEdit, World};
use shipshape_spec::app::{ExecMode, Instances};
use shipshape_spec::status::Outcome;

/// The default document for `commit`, fast: rounds every 200 ms, `success` passes, 2
/// failing rounds in a row fail it, a 15 s deadline, a startup grace of 300 ms, `instances`
/// processes in `mode` with a `listen_timeout` of 1 s.
fn doc(w: &World, commit: &str, mode: ExecMode, instances: u32, success: u32) -> String {
    let mut app = w.app(commit);
    app.health(
        Duration::from_millis(200),
        success,
        2,
        Duration::from_secs(15),
    )
    .rollback(true, Duration::from_secs(600));
    app.spec.health.startup_grace = Some(shipshape_spec::Duration::from_millis(300));
    let p = &mut app.spec.processes[0];
    p.exec_mode = Some(mode);
    p.instances = Some(Instances::Count(instances));
    // pm2 waits this long for a reloaded cluster worker to listen (3 s by default).
    p.listen_timeout = Some(1000);
    shipshape_spec::load::to_yaml(&app)
}

/// The example app's server.js with `code` run first.
fn server_with(w: &World, code: &str) -> String {
    let server = std::fs::read_to_string(w.app_repo().join("server.js")).unwrap();
    let at = server
        .find("'use strict';\n")
        .expect("the example app changed shape")
        + 14;
    format!("{}{code}\n{}", &server[..at], &server[at..])
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A secret in the env file, which revision 2's app prints as it dies.
const TOKEN: &str = "tok-5ecret-1n-the-env-file";

/// Revision 1 healthy (its app writes an error-looking line at start), then revision 2
/// whose app prints its token and throws at start because `DATABASE_URL` is missing;
/// returns the world.
fn crash_at_start(name: &str, mode: ExecMode, instances: u32) -> World {
    let w = World::new(name);
    let env = w.write_env_file(&format!("API_TOKEN={TOKEN}\n"));
    let doc = |commit: &str| {
        common::edited(&doc(&w, commit, mode, instances, 2), |a| {
            a.env_file(&env);
        })
    };
    let noisy = server_with(
        &w,
        "console.error('Error: an old warning from release one');\nconsole.log('release one says hello');",
    );
    let v1 = w.commit_app_files(&[("server.js", &noisy)], "v1 talks at start");
    w.commit_config(&doc(&v1));
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "v1 deploy failed:\n{log}");
    let crashing = server_with(
        &w,
        "console.error('config: token ' + process.env.API_TOKEN);\nif (!process.env.DATABASE_URL) throw new Error('DATABASE_URL is not set');",
    );
    w.commit_app_version("2.0.0");
    let v2 = w.commit_app_files(&[("server.js", &crashing)], "v2 needs a database");
    w.commit_config(&doc(&v2));
    let (_, log) = w.run_once();
    let rec = w.record();
    let r2 = &rec.revision(2).unwrap_or_else(|| panic!("{log}")).revision;
    assert_eq!(r2.outcome, Outcome::Reverted, "{r2:?}\n{log}");
    w
}

/// What every crash-at-start test checks: the headline, `status APP`'s tail, `logs APP`,
/// and that release one's lines are nowhere.
fn assert_told_crash_at_start(w: &World) {
    let rec = w.record();
    let message = &rec.revision(2).unwrap().revision.message;
    assert!(
        message
            .starts_with("verify failed: crashed at start: Error: DATABASE_URL is not set (pm2 "),
        "{message}"
    );
    let list = text(&w.shipshape(&["status"], &[]));
    eprintln!("status:\n{list}");
    assert!(
        list.contains("revision 2 reverted: verify failed: crashed at start: Error: DATABAS"),
        "{list}"
    );
    let detail = text(&w.shipshape(&["status", &w.name], &[]));
    eprintln!("status {}:\n{detail}", w.name);
    assert!(
        detail.contains("crashed at start: Error: DATABASE_URL is not set"),
        "{detail}"
    );
    assert!(
        detail.contains("since this release's processes started:"),
        "{detail}"
    );
    assert!(
        detail.contains("    | Error: DATABASE_URL is not set"),
        "the tail of the app's own stderr:\n{detail}"
    );
    let logs = text(&w.shipshape(&["logs", &w.name], &[]));
    eprintln!("logs {}:\n{logs}", w.name);
    assert!(logs.contains("-- the app's own output: pm2 "), "{logs}");
    assert!(logs.contains("Error: DATABASE_URL is not set"), "{logs}");
    let json = text(&w.shipshape(&["status", &w.name, "-o", "json"], &[]));
    assert!(
        json.contains("crashed at start: Error: DATABASE_URL is not set"),
        "{json}"
    );
    let on_disk = std::fs::read_to_string(w.store().app_dir(&w.name).join("state.json")).unwrap();
    for shown in [message.as_str(), &detail, &logs, &json, &list, &on_disk] {
        assert!(
            !shown.contains(TOKEN),
            "the env file's secret is shown:\n{shown}"
        );
    }
    assert!(detail.contains("config: token ***"), "{detail}");
    for shown in [message.as_str(), &detail, &logs] {
        assert!(
            !shown.contains("an old warning from release one")
                && !shown.contains("release one says hello"),
            "release one's lines leaked into release two's failure:\n{shown}"
        );
    }
}

#[test]
fn a_fork_process_that_crashes_at_start_is_told_by_its_own_error_line_and_not_by_older_releases() {
    let w = crash_at_start("dburl", ExecMode::Fork, 1);
    assert_told_crash_at_start(&w);
}

/// A stock ES-module app (`"type": "module"`, no shutdown or health code written for
/// shipshape: the newcomer fixture) with pm2's `time: true`, whose v2 throws while it is
/// imported because `DATABASE_URL` is missing. pm2's fork container keeps such a process
/// online, listening on nothing, with no restart: no pm2 fact fails, yet the headline tells
/// the app's own error (its log lines carry pm2's timestamps, which the headline leaves out).
#[test]
fn an_esm_app_that_throws_at_start_while_pm2_keeps_it_online_is_told_by_its_own_error() {
    let w = World::with_example("esmthrow", "controller/tests/fixtures/newcomer");
    let doc = |commit: &str| {
        let mut app = w.app(commit);
        app.health(Duration::from_millis(200), 2, 2, Duration::from_secs(15))
            .rollback(true, Duration::from_secs(600));
        app.spec.health.startup_grace = Some(shipshape_spec::Duration::from_millis(300));
        app.spec.build.install = None;
        app.spec.build.steps.clear();
        app.spec.health.checks[0].http_mut().unwrap().url =
            format!("http://127.0.0.1:{}/health", w.port);
        let p = &mut app.spec.processes[0];
        p.exec_mode = Some(ExecMode::Fork);
        p.instances = Some(Instances::Count(1));
        p.time = Some(true);
        shipshape_spec::load::to_yaml(&app)
    };
    w.commit_config(&doc(&w.app_head()));
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "v1 deploy failed:\n{log}");
    let server = std::fs::read_to_string(w.app_repo().join("server.js")).unwrap();
    let throwing = server.replacen(
        "import http from 'node:http';\n",
        "import http from 'node:http';\nif (!process.env.DATABASE_URL) throw new Error('DATABASE_URL is not set');\n",
        1,
    );
    assert_ne!(throwing, server, "the fixture changed shape");
    let v2 = w.commit_app_files(&[("server.js", &throwing)], "v2 needs a database");
    w.commit_config(&doc(&v2));
    let (_, log) = w.run_once();
    let rec = w.record();
    let r2 = &rec.revision(2).unwrap_or_else(|| panic!("{log}")).revision;
    assert_eq!(r2.outcome, Outcome::Reverted, "{r2:?}\n{log}");
    assert!(
        r2.message.starts_with(&format!(
            "verify failed: crashed at start: Error: DATABASE_URL is not set, and pm2 still shows it online: api: connection refused on 127.0.0.1:{} (nothing listening)",
            w.port
        )),
        "{}",
        r2.message
    );
    let detail = text(&w.shipshape(&["status", &w.name], &[]));
    assert!(
        detail.contains(": Error: DATABASE_URL is not set"),
        "the tail of the app's own stderr:\n{detail}"
    );
}

#[test]
fn a_process_that_is_up_but_never_listens_is_told_as_connection_refused_on_its_port() {
    let w = World::new("deaf");
    let deaf =
        "'use strict';\nconsole.log('up, but not listening');\nsetInterval(() => {}, 1000);\n";
    let v1 = w.commit_app_files(&[("server.js", deaf)], "never listens");
    w.commit_config(&doc(&w, &v1, ExecMode::Fork, 1, 2));
    let (code, log) = w.run_once();
    assert_ne!(code, 0, "{log}");
    let rec = w.record();
    let r1 = &rec.revision(1).unwrap().revision;
    assert_eq!(r1.outcome, Outcome::Failed, "{r1:?}");
    let want = format!(
        "api: connection refused on 127.0.0.1:{} (nothing listening), after 2 failing rounds in a row",
        w.port
    );
    assert!(r1.message.contains(&want), "{}", r1.message);
    assert!(!r1.message.contains("os error"), "{}", r1.message);
    let detail = text(&w.shipshape(&["status", &w.name], &[]));
    eprintln!("status {}:\n{detail}", w.name);
    assert!(detail.contains(&want), "{detail}");
    assert!(
        detail.contains("    | up, but not listening"),
        "its stdout, when it wrote no stderr:\n{detail}"
    );
}

#[test]
fn a_cluster_process_that_restarts_is_told_with_its_last_error_line() {
    let w = World::new("flaky");
    // Each instance answers two health checks, then throws in the third one.
    let crashy = r#"'use strict';
const http = require('http');
let answered = 0;
http.createServer((req, res) => {
  if (req.url === '/api/health' && ++answered > 2) throw new Error('lost the database connection');
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ status: 'ok' }));
}).listen(Number(process.env.PORT), '127.0.0.1');
"#;
    let v1 = w.commit_app_files(&[("server.js", crashy)], "crashes in its third check");
    // Five passes needed: the four the two instances give cannot make it healthy.
    w.commit_config(&doc(&w, &v1, ExecMode::Cluster, 2, 5));
    let (code, log) = w.run_once();
    assert_ne!(code, 0, "{log}");
    let rec = w.record();
    let r1 = &rec.revision(1).unwrap().revision;
    assert_eq!(r1.outcome, Outcome::Failed, "{r1:?}");
    assert!(r1.rounds.passed > 0, "{:?}", r1.rounds);
    assert!(
        r1.message.contains(" restarted ")
            && r1
                .message
                .contains(" time(s): Error: lost the database connection, after "),
        "{}",
        r1.message
    );
    let detail = text(&w.shipshape(&["status", &w.name], &[]));
    eprintln!("status {}:\n{detail}", w.name);
    assert!(
        detail.contains("| Error: lost the database connection"),
        "{detail}"
    );
}

#[test]
fn a_cluster_worker_that_crashes_at_start_is_told_by_the_error_pm2_relays_on_its_bus() {
    // pm2 loses a cluster worker's stderr when it exits at once (its error log stays
    // empty): the controller hears it on pm2's bus.
    let w = crash_at_start("dburlc", ExecMode::Cluster, 2);
    assert_told_crash_at_start(&w);
}
