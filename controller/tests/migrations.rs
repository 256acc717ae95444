//! Migrations against a real PostgreSQL (started by hack/test.sh): dbmate and command
//! drivers up and down, prisma's level read from `_prisma_migrations`, a failing migration
//! stopping the rollout before the switch, two controllers migrating one database, the
//! database URL kept out of records, logs and status, and a revert's treatment of the
//! schema: `onRevert: down`, `onRevert: restore`, and the refusal to revert across a
//! migration that cannot be undone here.

mod common;

use common::{World, fresh_database, sql};
use shipshape_spec::status::{Outcome, Phase};

const M1: &str = "-- migrate:up\nCREATE TABLE items (id serial primary key, name text);\n\n-- migrate:down\nDROP TABLE items;\n";
const M2: &str = "-- migrate:up\nALTER TABLE items ADD COLUMN price int;\n\n-- migrate:down\nALTER TABLE items DROP COLUMN price;\n";

fn steps(w: &World) -> Vec<String> {
    w.record()
        .last_pass
        .unwrap()
        .steps
        .iter()
        .map(|s| s.step.to_string())
        .collect()
}

fn dbmate_block(level: &str) -> String {
    format!("    driver: dbmate\n    level: \"{level}\"\n    timeout: 30s\n")
}

#[test]
fn dbmate_migrates_up_before_the_switch_and_down_when_the_document_asks() {
    let w = World::new("dbm");
    let url = fresh_database("not-a-real-secret-1");
    let env = w.write_env_file(&format!("DATABASE_URL={url}\n"));
    let v1 = w.commit_app_files(&[("db/migrations/0001_items.sql", M1)], "migration 0001");
    w.commit_config(&w.document_with_migrations(&v1, &env, &dbmate_block("0001")));
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        steps(&w),
        [
            "fetch",
            "install",
            "build",
            "migrate",
            "switch",
            "pm2-start",
            "pm2-save",
            "verify"
        ]
    );
    assert_eq!(
        sql(
            &url,
            "SELECT version FROM schema_migrations ORDER BY version"
        ),
        ["0001"]
    );

    // Up: new code with a new migration; the plan says why.
    let v2 = w.commit_app_files(&[("db/migrations/0002_price.sql", M2)], "migration 0002");
    w.commit_config(&w.document_with_migrations(&v2, &env, &dbmate_block("0002")));
    let out = w.shipshape(&["plan"], &[]);
    let plan = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{plan}");
    assert!(plan.contains("level 0001 < 0002"), "{plan}");
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    // (The example app has no dependencies: no node_modules to reuse, so install.)
    assert_eq!(
        steps(&w),
        [
            "fetch",
            "install",
            "build",
            "migrate",
            "switch",
            "pm2-reload",
            "pm2-save",
            "verify"
        ]
    );
    assert_eq!(
        sql(
            &url,
            "SELECT version FROM schema_migrations ORDER BY version"
        ),
        ["0001", "0002"]
    );
    assert_eq!(
        sql(
            &url,
            "SELECT count(*) FROM information_schema.columns WHERE table_name='items' AND column_name='price'"
        ),
        ["1"]
    );

    // Down: the document asks for a lower level and dbmate can go down.
    w.commit_config(&w.document_with_migrations(&v2, &env, &dbmate_block("0001")));
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    assert_eq!(steps(&w), ["migrate", "verify"]);
    assert_eq!(
        sql(
            &url,
            "SELECT version FROM schema_migrations ORDER BY version"
        ),
        ["0001"]
    );

    // Nothing changed: no migration, no step.
    let (code, _) = w.run_once();
    assert_eq!(code, 0);
    assert!(steps(&w).is_empty());
}

#[test]
fn the_command_driver_gets_the_target_level_and_goes_up_and_down() {
    let w = World::new("cmd");
    let url = fresh_database("not-a-real-secret-2");
    let env = w.write_env_file(&format!("DATABASE_URL={url}\n"));
    sql(&url, "CREATE TABLE app_level (level text)");
    let v1 = w.app_head();
    let block = |level: &str| {
        format!(
            "    driver: command\n    level: \"{level}\"\n    command:\n      status: psql \"$DATABASE_URL\" -tAc 'SELECT max(level) FROM app_level'\n      up: psql \"$DATABASE_URL\" -c \"INSERT INTO app_level VALUES ('$SHIPSHAPE_TARGET_LEVEL')\"\n      down: psql \"$DATABASE_URL\" -c \"DELETE FROM app_level WHERE level > '$SHIPSHAPE_TARGET_LEVEL'\"\n    onRevert: down\n"
        )
    };
    w.commit_config(&w.document_with_migrations(&v1, &env, &block("0003")));
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    assert!(steps(&w).contains(&"migrate".to_string()));
    assert_eq!(sql(&url, "SELECT level FROM app_level"), ["0003"]);
    w.commit_config(&w.document_with_migrations(&v1, &env, &block("0005")));
    assert_eq!(w.run_once().0, 0);
    assert_eq!(
        sql(&url, "SELECT level FROM app_level ORDER BY level"),
        ["0003", "0005"]
    );
    w.commit_config(&w.document_with_migrations(&v1, &env, &block("0003")));
    assert_eq!(w.run_once().0, 0);
    assert_eq!(steps(&w), ["migrate", "verify"]);
    assert_eq!(sql(&url, "SELECT level FROM app_level"), ["0003"]);
}

#[test]
fn prisma_level_is_the_newest_finished_not_rolled_back_migration() {
    let url = fresh_database("not-a-real-secret-3");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = shipshape::envfile::Redactor::default();
        let client = shipshape::migrate::connect(&url, &r).await.unwrap();
        let driver = shipshape_spec::app::MigrationDriver::Prisma;
        assert_eq!(shipshape::migrate::read_level(&client, driver, &r).await.unwrap(), None, "no table yet");
        client
            .batch_execute(
                "CREATE TABLE _prisma_migrations (id varchar(36) PRIMARY KEY, checksum varchar(64) NOT NULL, \
                 finished_at timestamptz, migration_name varchar(255) NOT NULL, logs text, rolled_back_at timestamptz, \
                 started_at timestamptz NOT NULL DEFAULT now(), applied_steps_count int NOT NULL DEFAULT 0);
                 INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, rolled_back_at) VALUES
                   ('a', 'x', now(), '20250101000000_init', NULL),
                   ('b', 'x', now(), '20250201000000_add_search_index', NULL),
                   ('c', 'x', now(), '20250301000000_rolled_back', now()),
                   ('d', 'x', NULL,  '20250401000000_unfinished', NULL);",
            )
            .await
            .unwrap();
        assert_eq!(
            shipshape::migrate::read_level(&client, driver, &r).await.unwrap().as_deref(),
            Some("20250201000000_add_search_index")
        );
    });
}

#[test]
fn a_failing_migration_stops_the_rollout_before_the_switch() {
    let w = World::new("badmig");
    let url = fresh_database("not-a-real-secret-4");
    let env = w.write_env_file(&format!("DATABASE_URL={url}\n"));
    let v1 = w.commit_app_files(&[("db/migrations/0001_items.sql", M1)], "migration 0001");
    w.commit_config(&w.document_with_migrations(&v1, &env, &dbmate_block("0001")));
    assert_eq!(w.run_once().0, 0);
    w.commit_app_version("2.0.0");
    let v2 = w.commit_app_files(
        &[(
            "db/migrations/0002_broken.sql",
            "-- migrate:up\nALTER TABLE no_such_table ADD COLUMN x int;\n\n-- migrate:down\n",
        )],
        "broken migration",
    );
    w.commit_config(&w.document_with_migrations(&v2, &env, &dbmate_block("0002")));
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");
    assert_eq!(
        w.current().as_deref(),
        Some(v1.as_str()),
        "current moved past a failed migration"
    );
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
    let rec = w.record();
    assert_eq!(rec.phase, Phase::Failed);
    let err = rec.last_error.unwrap();
    assert_eq!(err.step, "migrate");
    assert!(
        err.output_tail
            .unwrap_or_default()
            .contains("no_such_table")
    );
    assert_eq!(steps(&w), ["fetch", "install", "build", "migrate"]);
    assert_eq!(
        sql(
            &url,
            "SELECT version FROM schema_migrations ORDER BY version"
        ),
        ["0001"]
    );
}

#[test]
fn two_controllers_migrating_one_database_apply_each_migration_once() {
    let url = fresh_database("not-a-real-secret-5");
    // The migration takes a while, so both controllers reach it together.
    let slow = "-- migrate:up\nCREATE TABLE applied (host text);\nSELECT pg_sleep(1.5);\nINSERT INTO applied VALUES (current_setting('application_name'));\n\n-- migrate:down\nDROP TABLE applied;\n";
    let worlds: Vec<World> = ["hosta", "hostb"].iter().map(|n| World::new(n)).collect();
    for w in &worlds {
        let env = w.write_env_file(&format!("DATABASE_URL={url}\n"));
        let v = w.commit_app_files(
            &[("db/migrations/0001_applied.sql", slow)],
            "slow migration",
        );
        w.commit_config(&w.document_with_migrations(&v, &env, &dbmate_block("0001")));
    }
    let results: Vec<(i32, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = worlds.iter().map(|w| s.spawn(|| w.run_once())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (code, log) in &results {
        assert_eq!(*code, 0, "{log}");
    }
    assert_eq!(
        sql(&url, "SELECT count(*) FROM applied"),
        ["1"],
        "the migration ran twice"
    );
    assert_eq!(sql(&url, "SELECT version FROM schema_migrations"), ["0001"]);
    let migrated: Vec<bool> = worlds
        .iter()
        .map(|w| steps(w).contains(&"migrate".to_string()))
        .collect();
    assert_eq!(
        migrated,
        [true, true],
        "both planned the migration; one found it done under the lock"
    );
    let both_logs = results.iter().map(|(_, l)| l.as_str()).collect::<String>();
    assert!(
        both_logs.contains("another host migrated it"),
        "{both_logs}"
    );
}

#[test]
fn the_database_url_never_reaches_records_logs_or_status() {
    let w = World::new("secretdb");
    let password = "pw-9f8e7d6c5b4a";
    let url = fresh_database(password);
    let env = w.write_env_file(&format!("# the app's secrets\nDATABASE_URL={url}\n"));
    let v1 = w.app_head();
    // A status command that fails after printing the URL.
    let block = "    driver: command\n    level: \"0001\"\n    command:\n      status: echo \"connecting to $DATABASE_URL\"; echo \"cannot reach $DATABASE_URL\" >&2; exit 3\n      up: \"true\"\n";
    w.commit_config(&w.document_with_migrations(&v1, &env, block));
    let (code, log) = w.run_once();
    assert_eq!(code, 1);
    assert!(
        !log.contains(password),
        "the controller's log shows the secret:\n{log}"
    );
    assert!(log.contains("***"), "{log}");
    let status = w.shipshape(&["status", "-o", "json"], &[]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("cannot read the migration level"),
        "{status}"
    );
    assert!(!status.contains(password));
    let plan = w.shipshape(&["plan", "-o", "json"], &[]);
    assert!(!String::from_utf8_lossy(&plan.stdout).contains(password));
    assert!(!String::from_utf8_lossy(&plan.stderr).contains(password));
    for entry in walk(&w.state_dir()) {
        if entry.file_name().is_some_and(|n| n == "ecosystem.json") {
            continue; // pm2's process definition must carry the app's env (mode 0600)
        }
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned();
        assert!(
            !text.contains(password),
            "{} holds the secret",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "sources") {
                continue;
            }
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `text` with `from` replaced by `to`; fails when `from` is not there.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the document has no {from:?}:\n{text}");
    text.replacen(from, to, 1)
}

/// A document whose app answers 503 on `/api/health` (its `/` works): 2 failing rounds in a
/// row after the startup grace fail the rollout.
fn failing(doc: &str) -> String {
    let doc = edit(
        doc,
        "        PORT:",
        "        HEALTH_FAIL: \"1\"\n        PORT:",
    );
    edit(
        &doc,
        "    progressDeadline: 20s\n",
        "    progressDeadline: 30s\n    failureThreshold: 2\n",
    )
}

/// The kinds of the steps the last pass ran, each with its target.
fn steps_with_targets(w: &World) -> Vec<(String, String)> {
    w.record()
        .last_pass
        .unwrap()
        .steps
        .iter()
        .map(|s| (s.step.to_string(), s.target.clone()))
        .collect()
}

fn levels(url: &str) -> Vec<String> {
    sql(
        url,
        "SELECT version FROM schema_migrations ORDER BY version",
    )
}

#[test]
fn on_revert_down_migrates_the_failed_revision_back_down_and_the_old_release_serves() {
    let w = World::new("revdown");
    let url = fresh_database("not-a-real-secret-7");
    let env = w.write_env_file(&format!("DATABASE_URL={url}\n"));
    let block = |level: &str| format!("{}    onRevert: down\n", dbmate_block(level));
    let v1 = w.commit_app_files(&[("db/migrations/0001_items.sql", M1)], "migration 0001");
    w.commit_config(&w.document_with_migrations(&v1, &env, &block("0001")));
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    assert_eq!(levels(&url), ["0001"]);

    // v2 adds a column (0002, with its down) and fails its health checks.
    w.commit_app_version("2.0.0");
    let v2 = w.commit_app_files(&[("db/migrations/0002_price.sql", M2)], "migration 0002");
    let bad = w.commit_config(&failing(&w.document_with_migrations(
        &v2,
        &env,
        &block("0002"),
    )));
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");

    let s = steps_with_targets(&w);
    let kinds: Vec<&str> = s.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            // The rollout: migrated up before the switch.
            "fetch",
            "install",
            "build",
            "migrate",
            "switch",
            "pm2-reload",
            "pm2-save",
            "verify",
            // The revert: back to v1's release and processes, then down, then verify v1.
            "switch",
            "pm2-replace",
            "pm2-save",
            "migrate",
            "verify"
        ],
        "{log}"
    );
    assert_eq!(s[3].1, "0001 → 0002");
    assert_eq!(s[11].1, "0002 → 0001");
    let rec = w.record();
    let failed = common::revision_of(&rec, &v2);
    assert_eq!(failed.revision.outcome, Outcome::Reverted);
    assert_eq!(failed.revision.level.as_deref(), Some("0002"));
    assert!(
        failed.revision.message.contains("reverted to revision 1"),
        "{}",
        failed.revision.message
    );
    assert!(rec.is_quarantined(&bad));
    // The level is back down (the column is gone) and the old release is live.
    assert_eq!(levels(&url), ["0001"]);
    assert_eq!(
        sql(
            &url,
            "SELECT count(*) FROM information_schema.columns WHERE table_name='items' AND column_name='price'"
        ),
        ["0"]
    );
    assert_eq!(rec.live_revision, Some(1));
    assert_eq!(w.current().as_deref(), Some(v1.as_str()));
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
    // Held there: the next pass runs nothing.
    w.run_once();
    assert!(steps(&w).is_empty(), "{:?}", steps(&w));
    assert_eq!(levels(&url), ["0001"]);
}

#[test]
fn on_revert_restore_restores_the_backup_taken_before_the_up_migration() {
    let w = World::new("revrestore");
    let url = fresh_database("not-a-real-secret-8");
    let env = w.write_env_file(&format!("DATABASE_URL={url}\n"));
    let block = |level: &str| {
        format!(
            "{}    backup: pg_dump --format=custom --file \"$SHIPSHAPE_BACKUP_FILE\" \"$DATABASE_URL\"\n    restore: pg_restore --clean --if-exists --single-transaction --dbname \"$DATABASE_URL\" \"$SHIPSHAPE_BACKUP_FILE\"\n    onRevert: restore\n",
            dbmate_block(level)
        )
    };
    let v1 = w.commit_app_files(&[("db/migrations/0001_items.sql", M1)], "migration 0001");
    w.commit_config(&w.document_with_migrations(&v1, &env, &block("0001")));
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    sql(&url, "INSERT INTO items (name) VALUES ('written under v1')");

    // v2's migration writes a row (and has no down: only the backup can undo it).
    w.commit_app_version("2.0.0");
    let v2 = w.commit_app_files(
        &[(
            "db/migrations/0002_seed.sql",
            "-- migrate:up\nINSERT INTO items (name) VALUES ('written by 0002');\n\n-- migrate:down\n",
        )],
        "migration 0002",
    );
    w.commit_config(&failing(&w.document_with_migrations(
        &v2,
        &env,
        &block("0002"),
    )));
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");

    let s = steps_with_targets(&w);
    let kinds: Vec<&str> = s.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "fetch",
            "install",
            "build",
            "backup",
            "migrate",
            "switch",
            "pm2-reload",
            "pm2-save",
            "verify",
            "switch",
            "pm2-replace",
            "pm2-save",
            "restore",
            "verify"
        ],
        "{log}"
    );
    // The restore used the file the backup wrote.
    let backup = &s[3].1;
    assert_eq!(&s[12].1, backup);
    assert!(std::path::Path::new(backup).is_file(), "{backup}");
    // A dump holds the whole database: private, in a private directory.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(std::path::Path::new(backup)), 0o600, "{backup}");
    assert_eq!(mode(std::path::Path::new(backup).parent().unwrap()), 0o700);
    let rec = w.record();
    let failed = common::revision_of(&rec, &v2);
    assert_eq!(failed.revision.outcome, Outcome::Reverted);
    assert_eq!(failed.backup.as_deref(), Some(backup.as_str()));
    // What the backup held is back: the row 0002 wrote is gone, v1's row is there.
    assert_eq!(
        sql(&url, "SELECT name FROM items ORDER BY id"),
        ["written under v1"]
    );
    assert_eq!(levels(&url), ["0001"]);
    assert_eq!(w.current().as_deref(), Some(v1.as_str()));
    assert_eq!(w.get("/version").as_deref(), Some("1.0.0"));
    w.run_once();
    assert!(steps(&w).is_empty(), "{:?}", steps(&w));
}

/// After a refused revert: Degraded with the refusal, the failed revision live and serving
/// (its `/` works), the level where it took it, and so on the next pass too.
fn assert_refused_and_left_live(
    w: &World,
    v2: &str,
    level: &[&str],
    read_level: &dyn Fn() -> Vec<String>,
    why: &str,
) {
    for pass in ["the failed pass", "the next pass"] {
        let rec = w.record();
        assert_eq!(
            rec.phase,
            Phase::Degraded,
            "{pass}: last pass {:#?}, current {:?}",
            rec.last_pass,
            w.current()
        );
        let failed = common::revision_of(&rec, v2);
        assert_eq!(failed.revision.outcome, Outcome::Failed, "{pass}");
        let m = &failed.revision.message;
        assert!(
            m.contains("REFUSING to revert to revision 1"),
            "{pass}: {m}"
        );
        assert!(m.contains(why), "{pass}: {m}");
        assert_eq!(rec.live_revision, Some(failed.revision.number), "{pass}");
        assert_eq!(
            w.current().as_deref(),
            Some(v2),
            "{pass}: the failed release is not live"
        );
        assert_eq!(w.get("/version").as_deref(), Some("2.0.0"), "{pass}");
        assert_eq!(read_level(), level, "{pass}");
        // Not quarantined: a quarantine would hold revision 1, moving the server back to it
        // across the migration on the next pass (the refused revert after all).
        assert!(rec.quarantined.is_empty(), "{pass}: {:?}", rec.quarantined);
        let (code, log) = w.run_once();
        assert_eq!(code, 1, "{log}");
    }
    assert!(
        steps(w).is_empty(),
        "the pass after the refusal ran {:?}",
        steps(w)
    );
}

#[test]
fn a_revert_to_a_revision_without_migrations_under_on_revert_down_is_refused_and_the_failed_revision_stays_live()
 {
    let w = World::new("nodown");
    let url = fresh_database("not-a-real-secret-9");
    let env = w.write_env_file(&format!("DATABASE_URL={url}\n"));
    // v1 declares no migrations: there is no level to go down to.
    let v1 = w.app_head();
    w.commit_config(&w.document(&v1));
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    w.commit_app_version("2.0.0");
    let v2 = w.commit_app_files(&[("db/migrations/0001_items.sql", M1)], "migration 0001");
    let block = format!("{}    onRevert: down\n", dbmate_block("0001"));
    w.commit_config(&failing(&w.document_with_migrations(&v2, &env, &block)));
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");
    assert_eq!(
        steps(&w),
        [
            "fetch",
            "install",
            "build",
            "migrate",
            "switch",
            "pm2-reload",
            "pm2-save",
            "verify"
        ],
        "no revert step may run"
    );
    let read = || levels(&url);
    assert_refused_and_left_live(&w, &v2, &["0001"], &read, "onRevert is Down");
}

#[test]
fn a_revert_under_on_revert_restore_without_a_backup_on_this_host_is_refused_and_the_failed_revision_stays_live()
 {
    let w = World::new("nobackup");
    let url = fresh_database("not-a-real-secret-10");
    let env = w.write_env_file(&format!("DATABASE_URL={url}\n"));
    let block = |level: &str| {
        format!(
            "{}    backup: pg_dump --format=custom --file \"$SHIPSHAPE_BACKUP_FILE\" \"$DATABASE_URL\"\n    restore: pg_restore --clean --if-exists --single-transaction --dbname \"$DATABASE_URL\" \"$SHIPSHAPE_BACKUP_FILE\"\n    onRevert: restore\n",
            dbmate_block(level)
        )
    };
    let v1 = w.commit_app_files(&[("db/migrations/0001_items.sql", M1)], "migration 0001");
    w.commit_config(&w.document_with_migrations(&v1, &env, &block("0001")));
    let (code, log) = w.run_once();
    assert_eq!(code, 0, "{log}");
    w.commit_app_version("2.0.0");
    let v2 = w.commit_app_files(&[("db/migrations/0002_price.sql", M2)], "migration 0002");
    // Another host migrated the database to 0002 first: this host finds the level there,
    // takes no backup and runs no migration, so it has no backup to restore.
    let out = std::process::Command::new(common::dbmate_bin())
        .args(["--url", &url, "--no-dump-schema", "--migrations-dir"])
        .arg(w.app_repo().join("db/migrations"))
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(levels(&url), ["0001", "0002"]);
    w.commit_config(&failing(&w.document_with_migrations(
        &v2,
        &env,
        &block("0002"),
    )));
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");
    assert_eq!(
        steps(&w),
        [
            "fetch",
            "install",
            "build",
            "switch",
            "pm2-reload",
            "pm2-save",
            "verify"
        ],
        "no backup, no migration, no revert step"
    );
    let read = || levels(&url);
    assert_refused_and_left_live(
        &w,
        &v2,
        &["0001", "0002"],
        &read,
        "no backup was taken on this host",
    );
}
