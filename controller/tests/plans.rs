//! What `shipshape plan` says is what a pass does: for each kind of change, the steps
//! planned (`plan -o json`) equal the steps the controller then records, and they are the
//! minimal ones. Real git, real pm2, the example app, and a real PostgreSQL for the level.

mod common;

use common::{World, fresh_database, with_env};

const M1: &str = "-- migrate:up\nCREATE TABLE t1 (id int);\n\n-- migrate:down\nDROP TABLE t1;\n";
const M2: &str = "-- migrate:up\nCREATE TABLE t2 (id int);\n\n-- migrate:down\nDROP TABLE t2;\n";

fn planned(w: &World) -> (i32, Vec<String>) {
    let out = w.shipshape(&["plan", "-o", "json"], &[]);
    let code = out.status.code().unwrap_or(-1);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "plan -o json: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let steps = json[0]["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap().to_string())
        .collect();
    (code, steps)
}

fn executed(w: &World) -> Vec<String> {
    w.record()
        .last_pass
        .unwrap()
        .steps
        .iter()
        .map(|s| s.step.to_string())
        .collect()
}

#[test]
fn for_each_kind_of_change_the_executed_steps_are_the_planned_ones() {
    let w = World::new("kinds");
    let url = fresh_database("not-a-real-secret-6");
    let env = w.write_env_file(&format!("DATABASE_URL={url}\n"));
    let block = |level: &str| {
        format!(
            "    driver: dbmate\n    level: \"{level}\"\n    backup: pg_dump --format=custom --file \"$SHIPSHAPE_BACKUP_FILE\" \"$DATABASE_URL\"\n"
        )
    };
    let has_pg_dump = std::process::Command::new("pg_dump")
        .arg("--version")
        .output()
        .is_ok();
    assert!(
        has_pg_dump,
        "pg_dump is needed (hack/test.sh installs PostgreSQL)"
    );
    // A real dependency, so each release has a node_modules that reuse-deps can copy.
    w.add_local_dependency();
    let mut commit = w.commit_app_files(&[("db/migrations/0001_t1.sql", M1)], "0001");
    let mut greeting = "hello".to_string();
    let mut level = "0001".to_string();
    let doc = |commit: &str, greeting: &str, level: &str| {
        with_env(
            &w.document_with_migrations(commit, &env, &block(level)),
            "GREETING",
            greeting,
        )
    };

    struct Kind {
        name: &'static str,
        expected: &'static [&'static str],
    }
    let kinds = [
        Kind {
            name: "first deploy",
            expected: &[
                "fetch",
                "install",
                "build",
                "backup",
                "migrate",
                "switch",
                "pm2-start",
                "pm2-save",
                "verify",
            ],
        },
        Kind {
            name: "nothing changed",
            expected: &[],
        },
        Kind {
            name: "pm2 env only",
            expected: &["pm2-reload", "pm2-save", "verify"],
        },
        Kind {
            name: "code, same lockfile",
            expected: &[
                "fetch",
                "reuse-deps",
                "build",
                "switch",
                "pm2-reload",
                "pm2-save",
                "verify",
            ],
        },
        Kind {
            name: "lockfile changed",
            expected: &[
                "fetch",
                "install",
                "build",
                "switch",
                "pm2-reload",
                "pm2-save",
                "verify",
            ],
        },
        Kind {
            name: "level bump",
            expected: &[
                "fetch",
                "reuse-deps",
                "build",
                "backup",
                "migrate",
                "switch",
                "pm2-reload",
                "pm2-save",
                "verify",
            ],
        },
    ];
    for kind in kinds {
        match kind.name {
            "pm2 env only" => greeting = "howdy".into(),
            "code, same lockfile" => {
                commit = w.commit_app_version("1.1.0");
                // A file no install writes: the new release has it only if its
                // node_modules was copied from the live one.
                let live = w.releases_root().join("current/node_modules");
                std::fs::write(live.join(".carried-over"), "from the live release").unwrap();
            }
            "lockfile changed" => {
                let lock = w.app_repo().join("package-lock.json");
                let text = std::fs::read_to_string(&lock).unwrap().replace(
                    "\"requires\": true",
                    "\"requires\": true,\n  \"x-note\": \"lockfile changed\"",
                );
                std::fs::write(&lock, text).unwrap();
                commit = w.commit_app_files(&[], "lockfile changed");
            }
            "level bump" => {
                commit = w.commit_app_files(&[("db/migrations/0002_t2.sql", M2)], "0002");
                level = "0002".into();
            }
            _ => {}
        }
        w.commit_config(&doc(&commit, &greeting, &level));
        let (code, plan) = planned(&w);
        assert_eq!(plan, kind.expected, "{}: planned", kind.name);
        assert_eq!(
            code,
            if kind.expected.is_empty() { 0 } else { 2 },
            "{}: plan exit code",
            kind.name
        );
        let (code, log) = w.run_once();
        assert_eq!(code, 0, "{}: {log}", kind.name);
        assert_eq!(
            executed(&w),
            plan,
            "{}: executed differs from planned",
            kind.name
        );
        assert_eq!(
            planned(&w),
            (0, vec![]),
            "{}: something left to do after the pass",
            kind.name
        );
        if kind.name == "code, same lockfile" {
            let nm = w.releases_root().join("current/node_modules");
            assert_eq!(
                std::fs::read_to_string(nm.join(".carried-over"))
                    .ok()
                    .as_deref(),
                Some("from the live release"),
                "reuse-deps did not copy the live release's node_modules"
            );
            assert_eq!(
                std::fs::read_to_string(nm.join("dep/index.js")).unwrap(),
                common::DEP_INDEX_JS
            );
        }
    }
    assert_eq!(w.get("/").as_deref(), Some("howdy from 1.1.0"));
    let backups = std::fs::read_dir(w.state_dir().join("apps/kinds/backups"))
        .unwrap()
        .count();
    assert_eq!(backups, 2, "one backup per level bump");
}

#[test]
fn drift_is_put_back_on_the_next_pass() {
    let w = World::new("drift");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    assert_eq!(w.run_once().0, 0);

    // Someone stops the app by hand.
    let out = std::process::Command::new(common::pm2_bin())
        .args(["stop", "drift-web"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("PM2_HOME", w.pm2_home())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(w.get("/version"), None, "stopped");
    let (_, plan) = planned(&w);
    assert_eq!(plan, ["pm2-reload", "pm2-save", "verify"]);
    assert_eq!(w.run_once().0, 0);
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));

    // Someone points `current` elsewhere.
    let v2 = w.commit_app_version("2.0.0");
    w.commit_config(&w.document(&v2));
    assert_eq!(w.run_once().0, 0);
    let layout = shipshape::release::Layout::new(w.releases_root());
    layout.switch(&v1).unwrap();
    let (_, plan) = planned(&w);
    assert_eq!(plan, ["switch", "pm2-reload", "pm2-save", "verify"]);
    assert_eq!(w.run_once().0, 0);
    assert_eq!(w.current().as_deref(), Some(v2.as_str()));
}

/// `text` (app source, not a document) with `from` replaced by `to`; fails when `from`
/// is not there.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the document has no {from:?}");
    text.replacen(from, to, 1)
}

#[test]
fn plan_shows_the_hold_of_a_pinned_or_quarantined_app_instead_of_a_rollout() {
    let w = World::new("holds");
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    assert_eq!(w.run_once().0, 0, "v1 deploys");

    // A pin in the document: v2 is desired, but the daemon would hold revision 1.
    let v2 = w.commit_app_version("2.0.0");
    let mut pinned = w.app(&v2);
    pinned.spec.pin = Some(shipshape_spec::app::DocumentPin {
        reason: "change freeze".into(),
        by: Some("ana".into()),
        app_commit: None,
    });
    w.commit_app(&pinned);
    let out = w.shipshape(&["plan"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("HOLD     pinned at revision 1 by ana (change freeze)"),
        "{text}"
    );
    assert!(!text.contains("fetch"), "no rollout is shown: {text}");
    let json = w.shipshape(&["plan", "-o", "json"], &[]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json[0]["hold"]["kind"], "pinned");
    assert_eq!(json[0]["plan"]["steps"].as_array().map(Vec::len), Some(0));

    // A broken v3 fails, is reverted and quarantined: plan shows the hold, not v3 again.
    let server = std::fs::read_to_string(w.app_repo().join("server.js")).unwrap();
    let broken = edit(&server, "res.writeHead(ok ? 200 : 503", "res.writeHead(500");
    let v3 = w.commit_app_files(&[("server.js", &broken)], "v3 answers 500");
    let bad = w.commit_config(&w.document(&v3));
    assert_ne!(w.run_once().0, 0, "v3 fails");
    assert!(w.record().is_quarantined(&bad));
    let out = w.shipshape(&["plan"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("HOLD     config commit"), "{text}");
    assert!(text.contains("is quarantined"), "{text}");
    assert!(text.contains("holding revision 1"), "{text}");
    assert!(!text.contains("fetch"), "{text}");
}
