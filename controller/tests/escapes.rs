//! Terminal escape sequences from build output never reach the operator's terminal raw:
//! a build step that prints an OSC title, a screen clear and a C1 CSI fails, and
//! `shipshape status`, `history`, `logs` and the event stream of `status --watch` show
//! those bytes escaped (`\e`, `\x07`, `\u{9b}`), while the records and the revision log
//! keep the raw text. `-o json` is escaped by serde.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// What the hostile step prints: an OSC window title ending in BEL, ED (clear screen), a
/// C1 CSI (U+009B, as UTF-8) and a DEL.
const STEP: &str = r"printf '\033]0;pwned\007\033[2J\302\23331mred\177 build broke\n'; exit 1";

/// True when `bytes` hold a byte a terminal acts on: ESC, BEL, DEL, another C0 control
/// but newline and tab, or a C1 control (U+0080–U+009F as UTF-8: C2 80–C2 9F).
fn raw_control(bytes: &[u8]) -> Option<usize> {
    bytes.iter().enumerate().position(|(i, &b)| {
        (b < 0x20 && b != b'\n' && b != b'\t')
            || b == 0x7f
            || (b == 0xc2 && bytes.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)))
    })
}

fn assert_no_raw_control(what: &str, bytes: &[u8]) {
    if let Some(at) = raw_control(bytes) {
        let from = at.saturating_sub(40);
        panic!(
            "{what} printed a raw control byte {:#04x} at {at}: {:?}",
            bytes[at],
            String::from_utf8_lossy(&bytes[from..(at + 40).min(bytes.len())])
        );
    }
}

fn hostile_world(name: &str) -> World {
    let w = World::new(name);
    let doc = common::edited(&w.document(&w.app_head()), |app| {
        app.build_steps(&[STEP]);
    });
    assert!(doc.contains("printf"), "the step is in the document");
    w.commit_config(&doc);
    w
}

#[test]
fn a_build_steps_escape_sequences_are_shown_escaped_by_status_history_and_logs_and_kept_raw_in_the_records()
 {
    let w = hostile_world("escapes");
    let (code, log) = w.run_once();
    assert_eq!(code, 1, "the build fails: {log}");

    // The records keep the raw output.
    let rec = w.record();
    let tail = rec
        .last_pass
        .as_ref()
        .and_then(|p| p.steps.iter().find_map(|s| s.output_tail.clone()))
        .expect("the failed step's output tail is recorded");
    assert!(
        tail.contains("\x1b]0;pwned\x07\x1b[2J\u{9b}31mred\x7f"),
        "the record keeps the raw text: {tail:?}"
    );
    let log_file = w
        .store()
        .app_dir("escapes")
        .join("logs")
        .join("revision-1.log");
    let raw = std::fs::read(&log_file).unwrap();
    assert!(
        raw.windows(2).any(|p| p == b"\x1b]"),
        "the revision log keeps the raw bytes"
    );

    // Every view for people escapes them.
    for args in [
        vec!["status"],
        vec!["status", "escapes"],
        vec!["status", "-o", "wide"],
        vec!["history", "escapes"],
        vec!["logs", "escapes"],
    ] {
        let out = w.shipshape(&args, &[]);
        assert_no_raw_control(&format!("shipshape {args:?}"), &out.stdout);
        assert_no_raw_control(&format!("shipshape {args:?} (stderr)"), &out.stderr);
    }
    let detail = String::from_utf8(w.shipshape(&["status", "escapes"], &[]).stdout).unwrap();
    assert!(
        detail.contains(r"\e]0;pwned\x07\e[2J\u{9b}31mred\x7f build broke"),
        "the failing step's tail is shown, escaped:\n{detail}"
    );
    let logs = String::from_utf8(w.shipshape(&["logs", "escapes"], &[]).stdout).unwrap();
    assert!(logs.contains(r"\e]0;pwned\x07\e[2J"), "{logs}");

    // JSON is escaped by serde, and still says what was printed.
    let json = w
        .shipshape(&["status", "escapes", "-o", "json"], &[])
        .stdout;
    assert_no_raw_control("status -o json", &json);
    let parsed: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert!(parsed.to_string().contains(r"\u001b]0;pwned"), "{parsed}");
}

#[test]
fn the_event_stream_of_status_watch_shows_escape_sequences_escaped() {
    let w = World::new("watchesc");
    let d = w.start(&[]);
    let mut watch = Command::new(shipshape_bin())
        // Every app's events (this one has no records yet, so it cannot be named).
        .args(["status", "--watch"])
        .env("SHIPSHAPE_STATE_DIR", w.state_dir())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    // The failing rollout's events carry the step's message, escape sequences included.
    let doc = common::edited(&w.document(&w.app_head()), |app| {
        app.build_steps(&[STEP]);
    });
    w.commit_config(&doc);
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let start = Instant::now();
    while !lines.iter().any(|l| {
        let l = String::from_utf8_lossy(l);
        l.contains("watchesc") && l.contains("pwned")
    }) {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no event saying what the step printed in 90s: {:?}\n{}",
            lines
                .iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect::<Vec<_>>(),
            d.log_tail(30)
        );
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(l) => lines.push(l),
            // The stream may have started after the first rollout's events: another config
            // commit makes another rollout, with the same events.
            Err(_) => {
                let again = format!("{doc}# again {}\n", start.elapsed().as_millis());
                w.commit_config(&again);
            }
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let all: Vec<u8> = lines.concat();
    assert_no_raw_control("status --watch", &all);
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.contains(r"\e]0;pwned"),
        "the event says what was printed, escaped:\n{text}"
    );
}
