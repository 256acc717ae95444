//! Migrations against a real PostgreSQL (started by hack/test.sh): dbmate and command
//! drivers up and down, prisma's level read from `_prisma_migrations`, a failing migration
//! stopping the rollout before the switch, two controllers migrating one database, and
//! the database URL kept out of records, logs and status.

mod common;

use common::{World, fresh_database, sql};
use shipshape_spec::status::Phase;

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
