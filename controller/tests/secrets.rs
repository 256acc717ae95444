//! Secrets at the edges: credentials in an app repository URL are refused (with a located
//! error that does not repeat them) and, in records written before that, masked in every
//! view, API answer and log line; a private repository's token goes from
//! `spec.source.tokenFile` to the server through git's credential callback (real libgit2
//! against a stand-in server that demands Basic auth), never in a URL, record or log; the
//! notification URL is read from `--notify-url-file`, out of `ps` and of every log line.

mod common;

use std::path::Path;
use std::time::Duration;

use common::stub::{Stub, answer};
use common::*;

/// Standard base64 (for the Basic credentials the stand-in server expects).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Write `text` to `path` with `mode`.
fn write_mode(path: &std::path::Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Everything a person or a script can read about the app: the views for people and for
/// scripts, with their exit codes ignored.
fn every_view(w: &World, app: &str) -> String {
    let mut all = String::new();
    for args in [
        vec!["status"],
        vec!["status", app],
        vec!["status", "-o", "wide"],
        vec!["status", "-o", "json"],
        vec!["history", app],
        vec!["history", app, "-o", "json"],
        vec!["logs", app],
    ] {
        let out = w.shipshape(&args, &[]);
        all.push_str(&format!("== shipshape {args:?}\n"));
        all.push_str(&String::from_utf8_lossy(&out.stdout));
        all.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    all
}

/// The controller's pid, from the lock it holds on the state directory.
fn controller_pid(w: &World) -> u32 {
    let text = std::fs::read_to_string(w.state_dir().join("controller.lock")).unwrap();
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A stand-in git server that demands Basic auth, then has nothing for it (404).
fn basic_auth_server() -> Stub {
    Stub::start(|req| {
        Some(match req.header("authorization") {
            None => answer(
                "401 Unauthorized",
                &["WWW-Authenticate: Basic realm=\"git\""],
                "",
            ),
            Some(_) => answer("404 Not Found", &[], ""),
        })
    })
}

/// `w`'s document with its app repository at `repository`, and `spec.source.tokenFile`
/// (and `tokenUser`) set.
fn document_with_token(w: &World, repository: &str, token: &Path, user: Option<&str>) -> String {
    common::edited(&w.document(&w.app_head()), |app| {
        app.repository(repository).token_file(token, user);
    })
}

#[test]
fn a_repository_url_with_credentials_is_refused_with_a_located_error_that_does_not_repeat_them() {
    let w = World::new("private");
    let port = closed_port();
    for (url, what) in [
        (
            format!("https://user:s3cret@127.0.0.1:{port}/x.git"),
            "user:…@",
        ),
        // A token alone in the user's place (GitHub takes it so) is a credential too.
        (format!("https://s3cret@127.0.0.1:{port}/x.git"), "user@"),
    ] {
        let doc = w
            .document(&w.app_head())
            .replace(&w.app_repo().display().to_string(), &url);
        let line = doc.lines().position(|l| l.contains(&url)).unwrap() + 1;
        let file = w.root().join("private.yaml");
        std::fs::write(&file, &doc).unwrap();
        let out = w.shipshape(&["validate", file.to_str().unwrap()], &[]);
        let said = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "refused: {said}");
        assert!(
            said.contains(&format!(":{line}:"))
                && said.contains("spec.source.repository: ")
                && said.contains(&format!("contains credentials ({what})"))
                && said.contains("spec.source.tokenFile"),
            "a located error naming the way out: {said}"
        );
        assert!(
            said.contains(&format!("\"https://***@127.0.0.1:{port}/x.git\"")),
            "{said}"
        );
        assert!(
            !said.contains("s3cret"),
            "the error repeats the secret: {said}"
        );

        // Committed, it stops only its app, and nothing shows the secret.
        w.commit_config(&doc);
        let (code, log) = w.run_once();
        assert_eq!(code, 1, "{log}");
        assert!(log.contains("contains credentials"), "{log}");
        assert!(!log.contains("s3cret"), "the log shows the secret: {log}");
        let views = every_view(&w, "private");
        assert!(views.contains("contains credentials"), "{views}");
        assert!(
            !views.contains("s3cret"),
            "a view shows the secret:\n{views}"
        );
    }
}

#[test]
fn an_older_record_holding_a_url_with_credentials_never_shows_them_in_views_the_api_or_the_log() {
    // A repository on a stand-in server that has nothing (404): the fetch fails, and the
    // record holds the URL in the revision's document and in the failure's message.
    let server = Stub::start(|_| Some(answer("404 Not Found", &[], "")));
    let w = World::new("legacy");
    let clean = format!("{}/x.git", server.url());
    let doc = common::edited(&w.document(&w.app_head()), |app| {
        app.repository(&clean);
    });
    w.commit_config(&doc);
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");

    // What a controller from before this change wrote: the same, with credentials in the
    // URL (it took them), in the document and in every message quoting it.
    let with_secret = clean.replace("http://", "http://deployer:s3cret@");
    let record = w.store().app_dir("legacy").join("state.json");
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(text.contains(&clean), "the record holds the URL: {text}");
    let text = text
        .replace(&clean, &with_secret)
        .replace("http://***@", "http://deployer:s3cret@");
    std::fs::write(&record, &text).unwrap();
    let revision_log = w
        .store()
        .app_dir("legacy")
        .join("logs")
        .join("revision-1.log");
    let mut old_log = std::fs::read_to_string(&revision_log).unwrap_or_default();
    old_log.push_str(&format!("fetch from {with_secret} failed: 404\n"));
    std::fs::write(&revision_log, old_log).unwrap();

    let views = every_view(&w, "legacy");
    assert!(
        !views.contains("s3cret"),
        "a view shows the secret:\n{views}"
    );
    assert!(views.contains("http://***@127.0.0.1"), "{views}");

    // The API, whose reads need no token.
    let d = w.start(&[]);
    for path in [
        "/api/v1/apps",
        "/api/v1/apps/legacy",
        "/api/v1/apps/legacy/history",
        "/api/v1/source",
    ] {
        let (status, body) = d.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        assert!(!body.contains("s3cret"), "{path} shows the secret: {body}");
    }
    let (_, body) = d.get("/api/v1/apps/legacy");
    assert!(body.contains("http://***@127.0.0.1"), "{body}");
    // The records keep what they hold; only what is shown is masked.
    assert!(
        std::fs::read_to_string(&record)
            .unwrap()
            .contains("deployer:s3cret@"),
        "the older revision is kept as written"
    );
    drop(d);
    let log = std::fs::read_to_string(w.root().join("controller.log")).unwrap();
    assert!(!log.contains("s3cret"), "the log shows the secret: {log}");
}

#[test]
fn a_private_repositorys_token_file_reaches_the_server_only_through_gits_credential_callback() {
    const TOKEN: &str = "tok-s3cret-4711";
    let server = basic_auth_server();
    let w = World::new("private");
    let token_file = w.root().join("git-token");
    write_mode(&token_file, &format!("{TOKEN}\n"), 0o600);
    let repository = format!("{}/x.git", server.url());
    let doc = document_with_token(&w, &repository, &token_file, Some("deployer"));
    w.commit_config(&doc);
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "the repository has nothing: {log}");

    let seen = server.seen();
    assert!(!seen.is_empty(), "git reached the server: {log}");
    assert_eq!(
        seen[0].header("authorization"),
        None,
        "the first request carries no credentials (they are not in the URL)"
    );
    let expected = format!("Basic {}", base64(format!("deployer:{TOKEN}").as_bytes()));
    assert!(
        seen.iter()
            .any(|r| r.header("authorization") == Some(expected.as_str())),
        "the token file's token was sent as deployer's, when the server asked: {seen:?}"
    );
    assert!(
        seen.iter().all(|r| !r.line.contains(TOKEN)),
        "the token is never in a request line: {seen:?}"
    );
    assert!(!log.contains(TOKEN), "the log shows the token: {log}");
    let views = every_view(&w, "private");
    assert!(views.contains("404"), "the failure is said: {views}");
    assert!(!views.contains(TOKEN), "a view shows the token:\n{views}");
    assert!(
        !std::fs::read_to_string(w.store().app_dir("private").join("state.json"))
            .unwrap()
            .contains(TOKEN),
        "the records never hold the token"
    );

    // A token file every local user can read is refused, and its token is not sent.
    write_mode(&token_file, &format!("{TOKEN}\n"), 0o644);
    let before = server.seen().len();
    w.commit_config(&format!("{doc}# a new commit\n"));
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");
    let after = server.seen();
    assert!(
        after[before..]
            .iter()
            .all(|r| r.header("authorization").is_none()),
        "a world-readable token file is not used: {after:?}"
    );
    let views = every_view(&w, "private");
    assert!(
        views.contains("readable by every user"),
        "the refusal says why: {views}"
    );
    assert!(!views.contains(TOKEN) && !log.contains(TOKEN));
}

#[test]
fn a_token_is_not_sent_to_a_server_the_repository_redirected_to() {
    const TOKEN: &str = "tok-s3cret-4712";
    // Where the redirect leads: a server that asks for credentials and records them.
    let elsewhere = basic_auth_server();
    let target = format!(
        "http://localhost:{}/x.git/info/refs?service=git-upload-pack",
        elsewhere.port
    );
    let configured =
        Stub::start(move |_| Some(answer("302 Found", &[&format!("Location: {target}")], "")));
    let w = World::new("redirected");
    let token_file = w.root().join("git-token");
    write_mode(&token_file, TOKEN, 0o600);
    let doc = document_with_token(
        &w,
        &format!("{}/x.git", configured.url()),
        &token_file,
        None,
    );
    w.commit_config(&doc);
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "{log}");
    let seen = elsewhere.seen();
    assert!(!seen.is_empty(), "git followed the redirect: {log}");
    assert!(
        seen.iter().all(|r| r.header("authorization").is_none()),
        "the token went to the server redirected to: {seen:?}"
    );
    let views = every_view(&w, "redirected");
    assert!(
        views.contains(&format!(
            "not sending credentials to http://localhost:{}",
            elsewhere.port
        )),
        "the refusal is said: {views}"
    );
}

/// A document whose rollout starts (an event, so a notification) and then fails at once:
/// its repository does not exist. No app process is started.
fn failing_rollout(w: &World) {
    let doc = common::edited(&w.document(&w.app_head()), |app| {
        app.repository("/nonexistent/repo");
    });
    w.commit_config(&doc);
}

/// Wait for a failed notification to be logged.
fn failed_notification(d: &Daemon) {
    wait_for(
        "a failed notification in the log",
        Duration::from_secs(60),
        || {
            let log = std::fs::read_to_string(&d.log).ok()?;
            log.lines()
                .any(|l| l.contains("notification webhook") && l.contains("failed"))
                .then_some(())
        },
    );
}

/// The controller's log, checked: the URL's secret path is in no line, and the failed
/// notification names the server (`origin`), not the URL.
fn masked_log(d: &Daemon, origin: &str) -> String {
    let log = std::fs::read_to_string(&d.log).unwrap();
    assert!(
        !log.contains("s3cretpath"),
        "the log shows the secret:\n{log}"
    );
    assert!(
        log.contains(&format!("notification webhook {origin} failed")),
        "the failure names the server, not the URL:\n{log}"
    );
    log
}

#[test]
fn notifications_go_to_the_url_in_notify_url_file_which_is_in_no_log_line_and_not_in_ps() {
    // The first notification is answered; then the stand-in closes its port, so the next
    // ones fail (and their errors are logged).
    // The stand-in answers until it is dropped; then nothing listens on its port.
    let hook = Stub::start(|req| {
        req.line
            .starts_with("POST")
            .then(|| answer("200 OK", &["connection: close"], "ok"))
    });
    let w = World::new("notified");
    let url = format!("{}/services/T0/B0/s3cretpath", hook.url());

    // Refused at start: a file every user can read, an empty one, one holding no URL.
    let file = w.root().join("notify-url");
    for (text, mode, why) in [
        (url.as_str(), 0o644, "readable by every user"),
        ("  \n", 0o600, "is empty"),
        (
            "s3cretpath",
            0o600,
            "does not hold an http:// or https:// URL",
        ),
    ] {
        write_mode(&file, text, mode);
        let out = w.shipshape(
            &["run", "--once", "--notify-url-file", file.to_str().unwrap()],
            &[],
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{said}");
        assert!(
            said.contains(why) && said.contains("--notify-url-file"),
            "{said}"
        );
        assert!(
            !said.contains("s3cretpath"),
            "the error quotes the file: {said}"
        );
    }

    write_mode(&file, &format!("{url}\n"), 0o600);
    failing_rollout(&w);
    let d = w.start(&["--notify-url-file", file.to_str().unwrap()]);
    let first = wait_for("the first notification", Duration::from_secs(60), || {
        hook.seen().into_iter().find(|r| r.line.starts_with("POST"))
    });
    assert_eq!(first.line, "POST /services/T0/B0/s3cretpath HTTP/1.1");
    assert!(first.body.contains("shipshape: notified"), "{}", first.body);

    // Close the port: the next notifications fail, and say so without the URL's path.
    drop(hook);
    w.commit_config(&format!(
        "{}# again\n",
        std::fs::read_to_string(w.config_repo().join("apps/notified.yaml")).unwrap()
    ));
    let origin = url.split("/services").next().unwrap().to_string();
    failed_notification(&d);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", controller_pid(&w))).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(cmdline.contains("--notify-url-file"), "{cmdline}");
    assert!(
        !cmdline.contains("s3cretpath"),
        "ps shows the secret: {cmdline}"
    );
    let log = masked_log(&d, &origin);
    assert!(
        !log.contains("visible to every local user"),
        "no warning for the file"
    );
}

#[test]
fn a_notify_url_on_the_command_line_is_warned_about_and_masked_when_a_notification_fails() {
    let url = format!(
        "http://127.0.0.1:{}/services/T0/B0/s3cretpath",
        closed_port()
    );
    let w = World::new("loud");
    failing_rollout(&w);
    let d = w.start(&["--notify-url", &url]);
    let origin = url.split("/services").next().unwrap().to_string();
    failed_notification(&d);
    let log = masked_log(&d, &origin);
    assert!(
        log.contains("--notify-url is visible to every local user")
            && log.contains("--notify-url-file"),
        "the warning names the way out:\n{log}"
    );
}
