//! The path a newcomer takes, end to end, on an app nobody tuned for shipshape: ES modules
//! (`"type": "module"`), an ES-module `ecosystem.config.js` with its PORT in
//! `env_production`, no dependencies and no build script. `shipshape init --env production
//! --output` writes the document (and the schema) straight into the config repo;
//! `shipshape validate` accepts it; it is committed as it is; one `shipshape run --once`
//! makes it Healthy in one revision, every step succeeded, no warning logged, serving with the
//! production env.

mod common;

use common::World;
use shipshape_spec::status::{Outcome, Phase, StepResult};

#[test]
fn init_validate_commit_run_takes_an_esm_app_with_no_build_script_to_healthy_in_one_revision() {
    let w = World::with_example("hello-esm", "controller/tests/fixtures/newcomer");
    // The app's pm2 file names its production port; the test's app gets a free one.
    let eco = std::fs::read_to_string(w.app_repo().join("ecosystem.config.js")).unwrap();
    assert!(eco.contains("PORT: 4000"));
    let eco = eco.replace("PORT: 4000", &format!("PORT: {}", w.port));
    let head = w.commit_app_files(&[("ecosystem.config.js", &eco)], "production port");

    // init, run where the newcomer runs it: in the app's repository.
    let doc_path = w.config_repo().join("apps/hello-esm.yaml");
    let root = w.releases_root();
    let out = w
        .shipshape_command(
            &[
                "init",
                "ecosystem.config.js",
                "--env",
                "production",
                "--root",
                root.to_str().unwrap(),
                "--output",
                doc_path.to_str().unwrap(),
            ],
            &[],
        )
        .current_dir(w.app_repo())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "init failed:\n{stderr}");
    assert!(!stderr.contains("error:"), "{stderr}");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let app = shipshape_spec::load_str(&doc, "hello-esm.yaml").unwrap();
    assert_eq!(
        app.spec.source.commit, head,
        "the commit is the repository's HEAD"
    );
    assert!(
        app.spec.build.install.is_none() && app.spec.build.steps.is_empty(),
        "no dependencies, no build script: no build:\n{doc}"
    );
    assert_eq!(
        app.spec.health.checks[0].http().unwrap().url,
        format!("http://127.0.0.1:{}/health", w.port),
        "the health check is the route the code serves, on env_production's PORT"
    );
    assert!(!doc.contains("TODO"), "nothing left to fill in:\n{doc}");

    // validate, then commit exactly what init wrote (the schema beside it is committed too).
    let v = w.shipshape(&["validate", doc_path.to_str().unwrap()], &[]);
    assert!(
        v.status.success(),
        "validate refused it:\n{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(w.config_repo().join("apps/app.schema.json").is_file());
    common::git(&w.config_repo(), &["add", "-A"]);
    common::git(
        &w.config_repo(),
        &["commit", "-qm", "hello-esm: from shipshape init"],
    );

    // One pass: Healthy, one revision, no step failed.
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "the first deploy failed:\n{log}");
    // A first deploy on a machine where pm2 never ran alarms nobody: the daemon pm2 starts
    // is no fallback to warn of.
    assert!(!log.contains("WARN"), "a first deploy warned:\n{log}");
    let rec = w.record();
    assert_eq!(rec.phase, Phase::Ready, "{log}");
    assert_eq!(rec.revisions.len(), 1, "one revision: {:?}", rec.revisions);
    assert_eq!(rec.revisions[0].revision.outcome, Outcome::Healthy);
    let pass = rec.last_pass.as_ref().unwrap();
    let failed: Vec<_> = pass
        .steps
        .iter()
        .filter(|s| s.result != StepResult::Succeeded)
        .collect();
    assert!(failed.is_empty(), "failed steps: {failed:?}");
    let steps = common::steps(&rec);
    assert!(
        !steps.contains(&"install") && !steps.contains(&"build"),
        "{steps:?}"
    );
    let body = w.get("/health").expect("the app answers");
    assert!(
        body.contains("\"env\":\"production\""),
        "env_production was merged: {body}"
    );
}
