//! Database migrations: reading the applied level (prisma's `_prisma_migrations`,
//! dbmate's `schema_migrations`, or the user's own status command), taking a PostgreSQL
//! advisory lock so two hosts never migrate at once, running the driver's up or down
//! commands, and checking the level afterwards.
//!
//! Secrets (the database URL) reach commands through their environment only, never argv.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shipshape_spec::App;
use shipshape_spec::app::{MigrationDriver, Migrations};
use tokio_postgres::Client;

use crate::envfile::Redactor;
use crate::exec::{ExecError, Spec};

/// Time allowed to connect to the database.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a migration step (or reading the level) failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database URL is not in the env file.
    #[error("{var} is not set in spec.envFile")]
    NoDatabaseUrl {
        /// The variable.
        var: String,
    },
    /// Connecting failed.
    #[error("connecting to the database: {0}")]
    Connect(String),
    /// A query failed.
    #[error("{what}: {message}")]
    Query {
        /// What was asked.
        what: String,
        /// The server's answer.
        message: String,
    },
    /// Another host held the migration lock past the time limit.
    #[error("waited {0:?} for another host's migration lock; giving up")]
    LockTimeout(Duration),
    /// A migration command failed.
    #[error("{0}")]
    Command(#[from] ExecError),
    /// The driver's tool is not in the release.
    #[error("{0}")]
    NoTool(String),
    /// After migrating, the level is not the desired one.
    #[error("after migrating, the level is {after}, not the desired {desired}")]
    Mismatch {
        /// What the database says now.
        after: String,
        /// What the document asks for.
        desired: String,
    },
    /// The driver cannot go down.
    #[error("{0}")]
    CannotGoDown(String),
}

impl MigrateError {
    /// The command output's tail, when a command failed.
    pub fn tail(&self) -> Option<&str> {
        match self {
            MigrateError::Command(e) => e.tail(),
            _ => None,
        }
    }
}

/// The part of a level that orders and compares: dbmate's version digits; the whole
/// name for the other drivers.
pub fn level_key(driver: MigrationDriver, level: &str) -> String {
    match driver {
        MigrationDriver::Dbmate => level.split('_').next().unwrap_or(level).to_string(),
        _ => level.trim().to_string(),
    }
}

/// True when the driver can migrate down.
pub fn can_go_down(m: &Migrations) -> bool {
    match m.driver {
        MigrationDriver::Prisma => false,
        MigrationDriver::Dbmate => true,
        MigrationDriver::Command => m.command.as_ref().is_some_and(|c| c.down.is_some()),
    }
}

/// Everything a migration command needs.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The app.
    pub app: &'a App,
    /// The env file's variables.
    pub env: &'a BTreeMap<String, String>,
    /// Masks secrets in messages.
    pub redactor: &'a Redactor,
    /// Where commands run: the release being rolled out (or the releases root).
    pub dir: PathBuf,
    /// dbmate when the release has none of its own.
    pub dbmate: PathBuf,
    /// Where command output is appended.
    pub log: Option<PathBuf>,
    /// Where the migration commands run ([`crate::ports::Commands`]).
    pub commands: &'a dyn crate::ports::Commands,
}

impl Context<'_> {
    fn migrations(&self) -> &Migrations {
        self.app
            .spec
            .migrations
            .as_ref()
            .expect("migrations are declared")
    }

    fn database_url(&self) -> Result<&str, MigrateError> {
        let var = &self.migrations().database_env;
        self.env
            .get(var)
            .map(String::as_str)
            .ok_or_else(|| MigrateError::NoDatabaseUrl { var: var.clone() })
    }

    fn command_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.extend(
            self.app
                .spec
                .build
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.as_text())),
        );
        env.push(("SHIPSHAPE_APP".into(), self.app.metadata.name.clone()));
        env.push((
            "SHIPSHAPE_RELEASE_DIR".into(),
            self.dir.display().to_string(),
        ));
        env
    }

    fn spec(&self, spec: Spec) -> Spec {
        let spec = spec.envs(self.command_env());
        match &self.log {
            Some(l) => spec.log_to(l),
            None => spec,
        }
    }

    async fn connect(&self) -> Result<Client, MigrateError> {
        let url = self.database_url()?;
        connect(url, self.redactor).await
    }

    /// Read the applied level (`None`: nothing applied yet).
    ///
    /// # Errors
    /// [`MigrateError`] when the database or the status command cannot answer.
    pub async fn level(&self) -> Result<Option<String>, MigrateError> {
        match self.migrations().driver {
            MigrationDriver::Command => self.command_level().await,
            driver => {
                let client = self.connect().await?;
                read_level(&client, driver, self.redactor).await
            }
        }
    }

    async fn command_level(&self) -> Result<Option<String>, MigrateError> {
        let m = self.migrations();
        let cmd = m
            .command
            .as_ref()
            .expect("validated: command driver has commands");
        let out = self
            .commands
            .run(&self.spec(Spec::shell(&cmd.status, &self.dir, m.timeout.std())))
            .await?;
        Ok(out
            .stdout
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(str::to_string))
    }

    /// Migrate to the document's level, under the advisory lock.
    ///
    /// Returns what happened, in words.
    ///
    /// # Errors
    /// [`MigrateError`] when the lock, a command or the final level check fails.
    pub async fn migrate(&self) -> Result<String, MigrateError> {
        let m = self.migrations();
        let desired = m.level.clone();
        let lock = self.take_lock().await?;
        let before = self.level().await?;
        let key = |l: &str| level_key(m.driver, l);
        if before.as_deref().map(key) == Some(key(&desired)) {
            return Ok(format!("already at {desired} (another host migrated it)"));
        }
        let down = before.as_deref().is_some_and(|b| key(b) > key(&desired));
        if down && !can_go_down(m) {
            return Err(MigrateError::CannotGoDown(format!(
                "the database is at {}, above {desired}, and this driver cannot migrate down",
                before.as_deref().unwrap_or("-")
            )));
        }
        match m.driver {
            MigrationDriver::Prisma => self.prisma_deploy().await?,
            MigrationDriver::Dbmate => self.dbmate(down, before.clone(), &desired).await?,
            MigrationDriver::Command => {
                self.command_migrate(down, before.as_deref(), &desired)
                    .await?;
            }
        }
        let after = self.level().await?;
        drop(lock);
        match after {
            Some(a) if key(&a) == key(&desired) => Ok(format!(
                "{} {} → {desired}",
                if down { "down" } else { "up" },
                before.as_deref().unwrap_or("(empty)")
            )),
            other => Err(MigrateError::Mismatch {
                after: other.unwrap_or_else(|| "(empty)".into()),
                desired,
            }),
        }
    }

    /// Take the advisory migration lock, held while the returned client lives. The lock
    /// needs a PostgreSQL URL; the command driver may not have one (`None`: no lock).
    ///
    /// # Errors
    /// [`MigrateError`] when the URL is missing (other drivers), the database cannot be
    /// reached, or the lock is not had within the migration's timeout.
    async fn take_lock(&self) -> Result<Option<Client>, MigrateError> {
        let m = self.migrations();
        match (m.driver, self.database_url()) {
            (MigrationDriver::Command, Err(_)) => Ok(None),
            (_, Err(e)) => Err(e),
            (_, Ok(url)) => {
                let client = connect(url, self.redactor).await?;
                tracing::debug!(app = %self.app.metadata.name, "waiting for the migration lock");
                lock(&client, m.timeout.std(), self.redactor).await?;
                tracing::info!(app = %self.app.metadata.name, "took the migration lock");
                Ok(Some(client))
            }
        }
    }

    /// prisma: `prisma migrate deploy` from the release's own dependencies (up only).
    ///
    /// # Errors
    /// [`MigrateError::NoTool`] when the release has no prisma; the command's failure.
    async fn prisma_deploy(&self) -> Result<(), MigrateError> {
        let m = self.migrations();
        let prisma = self.dir.join("node_modules/.bin/prisma");
        if !prisma.exists() {
            return Err(MigrateError::NoTool(format!(
                "{} not found: add prisma to the app's dependencies",
                prisma.display()
            )));
        }
        self.commands
            .run(&self.spec(Spec::program(
                prisma,
                &["migrate", "deploy"],
                &self.dir,
                m.timeout.std(),
            )))
            .await?;
        Ok(())
    }

    /// dbmate (the release's own, or the controller's): `migrate` up, or `rollback` one
    /// migration at a time from `before` until the level is at or below `desired`.
    ///
    /// # Errors
    /// A command's failure, or the level unreadable between rollbacks.
    async fn dbmate(
        &self,
        down: bool,
        before: Option<String>,
        desired: &str,
    ) -> Result<(), MigrateError> {
        let m = self.migrations();
        let key = |l: &str| level_key(m.driver, l);
        let local = self.dir.join("node_modules/.bin/dbmate");
        let bin = if local.exists() {
            local
        } else {
            self.dbmate.clone()
        };
        let dir = self.dir.join(m.dir.as_deref().unwrap_or("db/migrations"));
        let dir = dir.display().to_string();
        let base = [
            "--env",
            m.database_env.as_str(),
            "--migrations-dir",
            dir.as_str(),
            "--no-dump-schema",
        ];
        if !down {
            let args: Vec<&str> = base.iter().copied().chain(["migrate"]).collect();
            self.commands
                .run(&self.spec(Spec::program(&bin, &args, &self.dir, m.timeout.std())))
                .await?;
            return Ok(());
        }
        // dbmate rolls back one migration at a time.
        let mut level = before;
        let mut steps = 0;
        while level.as_deref().is_some_and(|l| key(l) > key(desired)) {
            steps += 1;
            if steps > 1000 {
                break;
            }
            let args: Vec<&str> = base.iter().copied().chain(["rollback"]).collect();
            self.commands
                .run(&self.spec(Spec::program(&bin, &args, &self.dir, m.timeout.std())))
                .await?;
            level = self.level().await?;
        }
        Ok(())
    }

    /// The command driver: its `up` (or `down`) script, told the target and current levels
    /// (`SHIPSHAPE_TARGET_LEVEL`, `SHIPSHAPE_CURRENT_LEVEL`).
    ///
    /// # Errors
    /// The script's failure.
    async fn command_migrate(
        &self,
        down: bool,
        before: Option<&str>,
        desired: &str,
    ) -> Result<(), MigrateError> {
        let m = self.migrations();
        let cmd = m.command.as_ref().expect("validated");
        let script = if down {
            cmd.down.as_deref().expect("can_go_down checked")
        } else {
            cmd.up.as_str()
        };
        let spec = Spec::shell(script, &self.dir, m.timeout.std()).envs([
            ("SHIPSHAPE_TARGET_LEVEL", desired.to_string()),
            (
                "SHIPSHAPE_CURRENT_LEVEL",
                before.map(str::to_string).unwrap_or_default(),
            ),
        ]);
        self.commands.run(&self.spec(spec)).await?;
        Ok(())
    }

    /// Run `migrations.restore` with `SHIPSHAPE_BACKUP_FILE` set to `file`, then report the level.
    ///
    /// # Errors
    /// [`MigrateError`] when there is no restore command or it fails.
    pub async fn restore(&self, file: &Path) -> Result<(), MigrateError> {
        let m = self.migrations();
        let Some(cmd) = &m.restore else {
            return Err(MigrateError::NoTool(
                "onRevert: restore needs migrations.restore".into(),
            ));
        };
        let spec = Spec::shell(cmd, &self.dir, m.timeout.std())
            .envs([("SHIPSHAPE_BACKUP_FILE", file.display().to_string())]);
        self.commands.run(&self.spec(spec)).await?;
        Ok(())
    }

    /// Run the backup command with `SHIPSHAPE_BACKUP_FILE` set to `file`.
    ///
    /// # Errors
    /// [`MigrateError::Command`] when it fails.
    pub async fn backup(&self, file: &Path) -> Result<(), MigrateError> {
        let m = self.migrations();
        let Some(cmd) = &m.backup else { return Ok(()) };
        // A dump holds the whole database: the directory is 0700 and the file 0600 from its
        // first byte (created empty first: a tool that truncates keeps the mode), and again
        // after the tool ran (one that replaces the file does not).
        if let Some(dir) = file.parent() {
            let _ = crate::state::ensure_dir(dir);
        }
        {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(file);
        }
        let spec = Spec::shell(cmd, &self.dir, m.timeout.std())
            .envs([("SHIPSHAPE_BACKUP_FILE", file.display().to_string())]);
        self.commands.run(&self.spec(spec)).await?;
        if file.exists() {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600));
        }
        Ok(())
    }
}

/// Connect to PostgreSQL (TLS when the server offers it, per the URL's `sslmode`).
///
/// # Errors
/// [`MigrateError::Connect`], with secrets masked.
pub async fn connect(url: &str, redactor: &Redactor) -> Result<Client, MigrateError> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
        MigrateError::Connect(redactor.redact(&format!("invalid URL: {e}")))
    })?;
    config.connect_timeout(CONNECT_TIMEOUT);
    let builder = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
        .map_err(|e| MigrateError::Connect(e.to_string()))?;
    let tls = postgres_openssl::MakeTlsConnector::new(builder.build());
    let connecting = config.connect(tls);
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| MigrateError::Connect(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| MigrateError::Connect(redactor.redact(&error_text(&e))))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut s = e.to_string();
            let mut cur = std::error::Error::source(e);
            while let Some(inner) = cur {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                cur = inner.source();
            }
            s
        }
    }
}

/// The level recorded by `driver`'s own table (`None` when the table does not exist or is empty).
///
/// # Errors
/// [`MigrateError::Query`].
pub async fn read_level(
    client: &Client,
    driver: MigrationDriver,
    redactor: &Redactor,
) -> Result<Option<String>, MigrateError> {
    let (table, query) = match driver {
        MigrationDriver::Prisma => (
            "_prisma_migrations",
            "SELECT migration_name::text FROM _prisma_migrations \
             WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL \
             ORDER BY migration_name DESC LIMIT 1",
        ),
        MigrationDriver::Dbmate => (
            "schema_migrations",
            "SELECT version::text FROM schema_migrations ORDER BY version DESC LIMIT 1",
        ),
        MigrationDriver::Command => unreachable!("the command driver has no table"),
    };
    let q = |e: tokio_postgres::Error| MigrateError::Query {
        what: format!("reading {table}"),
        message: redactor.redact(&error_text(&e)),
    };
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map_err(q)?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client.query_opt(query, &[]).await.map_err(q)?;
    Ok(row.map(|r| r.get::<_, String>(0)))
}

/// The advisory-lock key every shipshape controller takes before migrating a database.
/// It is per database (advisory locks are), not per app: two apps sharing a schema must not
/// migrate it at once either.
pub const LOCK_KEY: &str = "shipshape-migrate";

/// Take the database's migration lock on `client`'s session, waiting at most `timeout`.
/// The lock is released when the session ends.
///
/// # Errors
/// [`MigrateError::LockTimeout`] when another host holds it too long.
pub async fn lock(
    client: &Client,
    timeout: Duration,
    redactor: &Redactor,
) -> Result<(), MigrateError> {
    let key = LOCK_KEY;
    let ms = timeout.as_millis().max(1);
    client
        .batch_execute(&format!("SET lock_timeout = {ms}"))
        .await
        .map_err(|e| MigrateError::Query {
            what: "setting lock_timeout".into(),
            message: redactor.redact(&error_text(&e)),
        })?;
    match client
        .execute("SELECT pg_advisory_lock(hashtext($1))", &[&key])
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
            Err(MigrateError::LockTimeout(timeout))
        }
        Err(e) => Err(MigrateError::Query {
            what: "taking the migration lock".into(),
            message: redactor.redact(&error_text(&e)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbmate_levels_compare_by_version() {
        assert_eq!(
            level_key(MigrationDriver::Dbmate, "20240101120000_create_users"),
            "20240101120000"
        );
        assert_eq!(
            level_key(MigrationDriver::Dbmate, "20240101120000"),
            "20240101120000"
        );
        assert_eq!(
            level_key(MigrationDriver::Prisma, "20240101120000_init"),
            "20240101120000_init"
        );
    }

    /// A document whose command driver keeps its level in the file `level` of the release
    /// directory; its down command (and the test's up) appends which ran, from which
    /// `SHIPSHAPE_CURRENT_LEVEL`, to `seen`.
    fn command_app(level: &str, up: &str) -> App {
        let mut app = crate::reconcile::fixtures::app("1111111111111111111111111111111111111111");
        let down = r#"echo "down from $SHIPSHAPE_CURRENT_LEVEL" >> seen; echo "$SHIPSHAPE_TARGET_LEVEL" > level"#;
        let migrations = serde_json::json!({
            "driver": "command",
            "level": level,
            "command": { "status": "cat level 2>/dev/null || true", "up": up, "down": down },
        });
        app.spec.migrations = Some(serde_json::from_value(migrations).expect("migrations"));
        app
    }

    #[tokio::test]
    async fn the_command_driver_without_a_database_url_goes_up_and_down_and_checks_the_level() {
        const UP: &str = r#"echo "up from $SHIPSHAPE_CURRENT_LEVEL" >> seen; echo "$SHIPSHAPE_TARGET_LEVEL" > level"#;
        let dir = tempfile::tempdir().unwrap();
        let env = BTreeMap::new();
        let redactor = Redactor::default();
        let migrate = |app: App| {
            let (env, redactor, dir) = (&env, &redactor, dir.path().to_path_buf());
            async move {
                let cx = Context {
                    app: &app,
                    env,
                    redactor,
                    dir,
                    dbmate: PathBuf::from("/nonexistent/dbmate"),
                    log: None,
                    commands: &crate::ports::SystemCommands,
                };
                cx.migrate().await
            }
        };
        let steps = [
            ("0003", UP, "up (empty) → 0003"),
            ("0005", UP, "up 0003 → 0005"),
            ("0003", UP, "down 0005 → 0003"),
            ("0003", UP, "already at 0003 (another host migrated it)"),
        ];
        for (level, up, said) in steps {
            let got = migrate(command_app(level, up)).await;
            assert_eq!(got.unwrap(), said, "to {level}");
        }
        let seen = std::fs::read_to_string(dir.path().join("seen")).unwrap();
        assert_eq!(
            seen, "up from \nup from 0003\ndown from 0005\n",
            "which command ran, told which current level"
        );
        // An up command that leaves the level where it was fails the check afterwards.
        match migrate(command_app("0007", "true")).await {
            Err(MigrateError::Mismatch { after, desired }) => {
                assert_eq!((after.as_str(), desired.as_str()), ("0003", "0007"));
            }
            other => panic!("{other:?}"),
        }
    }
}
