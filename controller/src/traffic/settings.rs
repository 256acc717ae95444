//! What nginx's own configuration says about the settings zero downtime relies on, read
//! with `nginx -T` after a switch: `worker_shutdown_timeout` (how long a reload's old workers
//! keep long-lived connections, against the slot's `drainTimeout`), a `proxy_pass` to the
//! app's upstream (or users' traffic never reaches the slots), and HTTP/1.1 with an empty
//! `Connection` header towards the upstream (or its `keepalive` does nothing). Each finding is
//! a note for the revision log and the controller's log, never a failure: nginx may be
//! configured in ways this reading does not follow (variables, `map`s).

use std::time::Duration;

use shipshape_spec::app::Traffic;

use super::nginx;
use crate::ports::Commands;

/// The notes on nginx's configuration as `nginx -T` prints it.
///
/// # Errors
/// `nginx -T` failed (why).
pub async fn notes(t: &Traffic, app: &str, commands: &dyn Commands) -> Result<Vec<String>, String> {
    let spec = nginx::nginx_spec(t, &["-T"]);
    let out = commands.run(&spec).await.map_err(|e| e.to_string())?;
    Ok(read_notes(t, app, &out.stdout))
}

/// The notes on `config` (the text `nginx -T` prints), pure.
pub fn read_notes(t: &Traffic, app: &str, config: &str) -> Vec<String> {
    let text: String = config
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let directive = |name: &str| -> Vec<String> {
        text.split(';')
            .filter_map(|stmt| {
                let words: Vec<&str> = stmt.split_whitespace().collect();
                // The statement's directive is the first word after the last brace.
                let start = words
                    .iter()
                    .rposition(|w| w.ends_with('{') || w.ends_with('}'))
                    .map_or(0, |i| i + 1);
                (words.get(start) == Some(&name)).then(|| words[start + 1..].join(" "))
            })
            .collect()
    };
    let mut notes = Vec::new();
    let drain = t.drain_timeout.std();
    match directive("worker_shutdown_timeout").first() {
        None => notes.push(format!(
            "nginx: worker_shutdown_timeout is not set: after a reload, nginx's old workers keep long-lived connections (websockets, event streams) to the old slot for as long as they last; the slot is stopped after drainTimeout ({}) all the same",
            t.drain_timeout
        )),
        Some(v) => match nginx_time(v) {
            Some(d) if d > drain => notes.push(format!(
                "nginx: worker_shutdown_timeout {v} is longer than drainTimeout ({}): a connection nginx still holds to a slot after {} is cut when the slot is stopped",
                t.drain_timeout, t.drain_timeout
            )),
            Some(_) => {}
            None => notes.push(format!("nginx: worker_shutdown_timeout {v:?} could not be read")),
        },
    }
    let upstream = t.upstream_name(app);
    let target = format!("http://{upstream}");
    let passes = directive("proxy_pass");
    let confirm_only = passes
        .iter()
        .filter(|p| p.trim_end_matches('/') == target)
        .count()
        <= 1;
    if confirm_only {
        notes.push(format!(
            "nginx: no proxy_pass {target} besides the confirm server's: users' requests do not go through the slots' upstream"
        ));
    }
    let versions = directive("proxy_http_version");
    if !versions.iter().any(|v| v == "1.1") {
        notes.push(
            "nginx: proxy_http_version 1.1 is not set: nginx opens a connection to the slot per request and the upstream's keepalive does nothing (it works; each request pays for a connection)"
                .to_string(),
        );
    }
    notes
}

/// An nginx time (`30s`, `1m`, `500ms`, `1h`, a bare number of seconds).
fn nginx_time(v: &str) -> Option<Duration> {
    let v = v.trim();
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86400),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic() -> Traffic {
        serde_json::from_value(serde_json::json!({
            "via": "nginx", "public": "http://127.0.0.1:8080", "ports": [3000, 3001],
            "upstreamFile": "/etc/nginx/shipshape/demo.conf", "confirmPort": 8099,
        }))
        .unwrap()
    }

    const CONFIRM: &str = "server { listen 127.0.0.1:8099; location / { proxy_pass http://shipshape_demo; proxy_http_version 1.1; } }";

    #[test]
    fn a_config_with_every_setting_gets_no_note() {
        let conf = format!(
            "worker_shutdown_timeout 30s;\nhttp {{ {CONFIRM}\nserver {{ location / {{ proxy_pass http://shipshape_demo; proxy_http_version 1.1; }} }} }}"
        );
        assert_eq!(read_notes(&traffic(), "demo", &conf), Vec::<String>::new());
    }

    #[test]
    fn missing_settings_are_each_named() {
        // No worker_shutdown_timeout, no proxy_pass but the confirm server's, and HTTP/1.1
        // only in a comment.
        let conf = format!(
            "http {{ {} }}\n# proxy_http_version 1.1;",
            CONFIRM.replace(" proxy_http_version 1.1;", "")
        );
        let notes = read_notes(&traffic(), "demo", &conf);
        assert_eq!(notes.len(), 3, "{notes:#?}");
        assert!(
            notes[0].contains("worker_shutdown_timeout is not set"),
            "{notes:#?}"
        );
        assert!(
            notes[1].contains("no proxy_pass http://shipshape_demo"),
            "{notes:#?}"
        );
        assert!(
            notes[2].contains("proxy_http_version 1.1 is not set"),
            "{notes:#?}"
        );
    }

    #[test]
    fn a_shutdown_timeout_longer_than_the_drain_is_named() {
        let conf = format!(
            "worker_shutdown_timeout 2m;\nhttp {{ {CONFIRM}\nserver {{ location / {{ proxy_pass http://shipshape_demo; }} }} }}"
        );
        let notes = read_notes(&traffic(), "demo", &conf);
        assert_eq!(notes.len(), 1, "{notes:#?}");
        assert!(
            notes[0].contains("worker_shutdown_timeout 2m is longer than drainTimeout (30s)"),
            "{notes:#?}"
        );
        assert_eq!(nginx_time("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(nginx_time("45"), Some(Duration::from_secs(45)));
    }
}
