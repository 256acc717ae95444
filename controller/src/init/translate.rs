//! One pm2 app (as pm2 reads it: its aliases, camelCase spellings, string numbers,
//! `env_<name>` blocks) to the document's processes, field by field. Every field pm2's
//! schema knows (lib/API/schema.json, [`super::fields::PM2_FIELDS`]) has a deliberate answer here:
//! carried, translated (with a note), dropped (with a warning saying why) or refused (an
//! error with the fix). Nothing is dropped in silence except values that mean pm2's default.

use serde_json::{Map, Value};

use super::fields::{DROPPED, canonical};
use super::report::{Locator, Report};
use super::values::{Instances, boolean, instances_of, memory, millis};

/// Where a value came from, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `file:line`.
    pub at: String,
    /// What set it (`env.PORT`, `env_production.PORT`, `port`).
    pub what: String,
}

/// One process of the document, from one pm2 app (an app with `increment_var` gives one
/// per instance).
#[derive(Debug, Clone)]
pub struct Translated {
    /// The pm2 app's name (an app written as several processes gives each the same).
    pub app: String,
    /// The process, with the document's field names.
    pub process: shipshape_spec::app::Process,
    /// Where its `PORT` came from, when it has one.
    pub port_from: Option<Source>,
    /// Its `env_file`, if it had one (the document takes one `envFile` for the app).
    pub env_file: Option<(String, String)>,
}

/// What [`translate`] needs besides the app.
pub struct Ctx<'a> {
    /// The `env_<name>` block chosen with `--env`.
    pub env: Option<&'a str>,
    /// The file's lines.
    pub loc: &'a Locator,
    /// Where lines go.
    pub report: &'a mut Report,
}

/// Translate app `index` of the file.
pub fn translate(index: usize, app: &Value, ctx: &mut Ctx<'_>) -> Vec<Translated> {
    let loc = ctx.loc;
    let Some(obj) = app.as_object() else {
        ctx.report.error(
            format!("{}: apps[{index}]", loc.file()),
            "is not an object: each pm2 app is { name, script, ... }",
        );
        return Vec::new();
    };
    let raw_name = obj.get("name").and_then(Value::as_str).unwrap_or("");
    let app_line = loc.app_line(raw_name);
    let label = if raw_name.is_empty() {
        format!("apps[{index}]")
    } else {
        format!("app {raw_name}")
    };
    let at_key = |key: &str| {
        let line = loc.key_line(app_line, key);
        format!(
            "{}: {label}: {key}",
            loc.at(if line == 0 { app_line } else { line })
        )
    };

    // pm2's spellings to its canonical fields; the canonical spelling wins, then the first
    // alias, as in pm2's Config.validateJSON.
    let mut fields: Map<String, Value> = Map::new();
    let mut blocks: Vec<(String, Value)> = Vec::new();
    let mut order: Vec<(&str, &str)> = Vec::new();
    for (key, value) in obj {
        if let Some(env_name) = key.strip_prefix("env_")
            && key != "env_file"
        {
            blocks.push((env_name.to_string(), value.clone()));
            continue;
        }
        match canonical(key) {
            Some(field) => order.push((field, key.as_str())),
            None => ctx
                .report
                .warn(at_key(key), "not a pm2 field (pm2 ignores it too): dropped"),
        }
    }
    order.sort_by_key(|(field, key)| (*field, *key != *field));
    let mut spelled: std::collections::HashMap<&str, &str> = Default::default();
    for (field, key) in order {
        if let Some(first) = spelled.get(field) {
            ctx.report.warn(
                at_key(key),
                format!("{first} is also set: pm2 takes that one; {key} dropped"),
            );
            continue;
        }
        if key != field
            && !matches!(field, "out_file" | "error_file" | "log_file" | "pid_file")
            && key != "interpreter"
        {
            ctx.report
                .note(at_key(key), format!("pm2's spelling of {field}"));
        }
        spelled.insert(field, key);
        fields.insert(field.to_string(), obj[key].clone());
    }
    // Lines name the field as the file spells it.
    let at = |field: &str| at_key(spelled.get(field).copied().unwrap_or(field));

    let mut out = Map::new();
    let errors_before = ctx.report.errors();

    // name and script.
    let script = fields
        .get("script")
        .and_then(Value::as_str)
        .map(str::to_string);
    let name = match (raw_name, &script) {
        ("", Some(script)) => {
            let base = std::path::Path::new(script)
                .file_name()
                .and_then(|b| b.to_str())
                .unwrap_or(script);
            let name = match base.rfind('.') {
                Some(dot) if dot > 0 => &base[..dot],
                _ => base,
            }
            .to_string();
            ctx.report.note(
                at("script"),
                format!("no name: {name:?}, from the script's file name (as pm2 names it)"),
            );
            name
        }
        (name, _) => name.to_string(),
    };
    if name.is_empty() {
        ctx.report
            .error(at("name"), "no name and no script: set name");
    }
    out.insert("name".into(), Value::String(name.clone()));
    paths(&fields, &script, &at, ctx.report, &mut out);
    let instances = scale(&fields, &at, ctx.report, &mut out);
    // The environment: env, then the chosen env_<name> over it (pm2 start --env NAME).
    let mut env = Map::new();
    let mut port_from = None;
    let mut take_env = |report: &mut Report,
                        block: &str,
                        value: &Value,
                        env: &mut Map<String, Value>| {
        let Some(map) = value.as_object() else {
            report.error(at(block), "must be an object of NAME: value".to_string());
            return;
        };
        for (k, v) in map {
            let value = match v {
                Value::String(_) | Value::Bool(_) => v.clone(),
                Value::Number(n) if n.is_i64() => v.clone(),
                Value::Number(n) => {
                    report.note(
                        at(block),
                        format!("{k}: {n} written as the string {:?}", n.to_string()),
                    );
                    Value::String(n.to_string())
                }
                Value::Null => {
                    report.warn(
                        at(block),
                        format!("{k} is null: pm2 passes nothing for it; dropped"),
                    );
                    continue;
                }
                _ => {
                    report.error(at(block), format!("{k} is an {}: an environment value is text, a number or a boolean (JSON.stringify it in the file if the app parses it)", if v.is_array() { "array" } else { "object" }));
                    continue;
                }
            };
            if k == "PORT" {
                let block_line = loc.key_line(app_line, block).max(app_line);
                let line = loc.key_line(block_line, "PORT");
                port_from = Some(Source {
                    at: loc.at(line),
                    what: format!("{block}.PORT"),
                });
            }
            env.insert(k.clone(), value);
        }
    };
    if let Some(v) = fields.get("env") {
        take_env(ctx.report, "env", v, &mut env);
    }
    let names: Vec<String> = blocks.iter().map(|(n, _)| n.clone()).collect();
    for (block, value) in &blocks {
        let key = format!("env_{block}");
        if ctx.env == Some(block.as_str()) {
            take_env(ctx.report, &key, value, &mut env);
            ctx.report.note(
                at(&key),
                format!("merged over env (--env {block}, as pm2 start --env {block})"),
            );
        } else {
            ctx.report.warn(
                at(&key),
                format!("left out (choose it with --env {block}, as pm2 start --env {block})"),
            );
        }
    }
    if let Some(chosen) = ctx.env
        && !names.iter().any(|n| n == chosen)
    {
        ctx.report.warn(
            format!("{}: {label}", loc.at(app_line)),
            format!("has no env_{chosen}: its env is used as it is"),
        );
    }
    if let Some(p) = fields.get("port") {
        env.insert("PORT".into(), p.clone());
        port_from = Some(Source {
            at: loc.at(loc.key_line(app_line, "port")),
            what: "port".into(),
        });
        ctx.report.note(
            at("port"),
            "pm2's shortcut for env.PORT: written as env.PORT".to_string(),
        );
    }

    settings(&fields, &at, ctx.report, &mut out);
    refused_and_dropped(&fields, &at, ctx.report);
    let env_file = fields.get("env_file").and_then(|v| match v.as_str() {
        Some(f) => Some((f.to_string(), at("env_file"))),
        None => {
            ctx.report.error(at("env_file"), "must be a path");
            None
        }
    });

    let copies = increment(&fields, &at, ctx.report, &mut out, (&name, &env, instances));
    if ctx.report.errors() > errors_before {
        return Vec::new();
    }
    copies
        .into_iter()
        .filter_map(|(process_name, env)| {
            let mut p = out.clone();
            p.insert("name".into(), Value::String(process_name));
            if !env.is_empty() {
                p.insert("env".into(), Value::Object(env));
            }
            match serde_json::from_value::<shipshape_spec::app::Process>(Value::Object(p)) {
                Ok(process) => Some(Translated {
                    app: name.clone(),
                    process,
                    port_from: port_from.clone(),
                    env_file: env_file.clone(),
                }),
                Err(e) => {
                    ctx.report.error(
                        format!("{}: {label}", loc.at(app_line)),
                        format!("cannot be written as a process: {e}"),
                    );
                    None
                }
            }
        })
        .collect()
}

/// The field set of one app, by canonical name.
type Fields = Map<String, Value>;

/// `script` (and what a command line in it means), `args`, `cwd`, the interpreter and its args.
fn paths(
    fields: &Fields,
    script: &Option<String>,
    at: &dyn Fn(&str) -> String,
    report: &mut Report,
    out: &mut Fields,
) {
    match &script {
        None => report.error(
            at("script"),
            "missing: set script (the file pm2 starts, relative to the repository)",
        ),
        Some(s) if s.contains(' ') => {
            // pm2 runs a command line through bash -c. `node FILE ARGS` (no shell syntax,
            // no args of its own) is written as what it means; anything else is refused.
            let words: Vec<&str> = s.split_whitespace().collect();
            let plain = !s.contains(['&', '|', ';', '>', '<', '$', '`', '"', '\'', '=']);
            match words.as_slice() {
                ["node", file, rest @ ..]
                    if plain && !file.starts_with('-') && !fields.contains_key("args") =>
                {
                    let file = file.trim_start_matches("./");
                    report.note(
                        at("script"),
                        format!(
                            "{s:?} is a command line (pm2 runs it through bash -c): written as script: {file}{}",
                            if rest.is_empty() { String::new() } else { format!(", args: {}", rest.join(" ")) }
                        ),
                    );
                    out.insert("script".into(), Value::String(file.to_string()));
                    if !rest.is_empty() {
                        out.insert("args".into(), Value::String(rest.join(" ")));
                    }
                }
                _ => report.error(
                    at("script"),
                    format!(
                        "{s:?} is a command line (pm2 runs it through bash -c, so pm2 would watch bash, not the app): set script to the app's entry file and args to its arguments (commands run before it belong in spec.build or spec.migrations)"
                    ),
                ),
            }
        }
        Some(s) => {
            let s = s.strip_prefix("./").unwrap_or(s);
            out.insert("script".into(), Value::String(s.to_string()));
        }
    }
    if let Some(args) = fields.get("args") {
        match args {
            Value::String(_) => {
                out.insert("args".into(), args.clone());
            }
            Value::Array(a) if a.iter().all(Value::is_string) => {
                out.insert("args".into(), args.clone());
            }
            _ => report.error(at("args"), "must be a string or a list of strings"),
        }
    }
    if let Some(cwd) = fields.get("cwd").and_then(Value::as_str) {
        let trimmed = cwd.trim_end_matches('/');
        if cwd.starts_with('/') || cwd.starts_with('~') {
            report.warn(
                at("cwd"),
                format!("{cwd:?} is a path on the old server: processes run in the release (<root>/current); dropped"),
            );
        } else if !(trimmed.is_empty() || trimmed == ".") {
            out.insert(
                "cwd".into(),
                Value::String(trimmed.trim_start_matches("./").to_string()),
            );
        }
    }
    if let Some(i) = fields.get("exec_interpreter").and_then(Value::as_str) {
        if i.starts_with('/') || i.starts_with('~') {
            report.warn(
                at("exec_interpreter"),
                format!("{i:?} is a path on the machine the file was written for: make sure it exists on the server (or write node)"),
            );
        }
        out.insert("interpreter".into(), Value::String(i.to_string()));
    }
    if let Some(a) = fields.get("node_args") {
        if a.is_string() || a.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
            let words: Vec<&str> = match a {
                Value::String(s) => s.split_whitespace().collect(),
                _ => a
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect(),
            };
            let (inspect, kept): (Vec<&str>, Vec<&str>) =
                words.into_iter().partition(|w| w.starts_with("--inspect"));
            if !inspect.is_empty() {
                report.warn(
                    at("node_args"),
                    format!("{} dropped: it opens node's debugger, which runs any code sent to its port; put it back in the document only for a debugging session", inspect.join(" ")),
                );
            }
            if !kept.is_empty() {
                let kept = match a {
                    Value::String(_) => Value::String(kept.join(" ")),
                    _ => Value::from(kept),
                };
                out.insert("node_args".into(), kept);
            }
        } else {
            report.error(at("node_args"), "must be a string or a list of strings");
        }
    }
}

/// `instances` and `exec_mode`; the count when it is one.
fn scale(
    fields: &Fields,
    at: &dyn Fn(&str) -> String,
    report: &mut Report,
    out: &mut Fields,
) -> Option<u32> {
    // instances and exec_mode.
    let mut instances: Option<u32> = None;
    if let Some(v) = fields.get("instances") {
        match instances_of(v) {
            Ok(Instances::Count(n)) => {
                if v.is_string() {
                    report.note(at("instances"), format!("{v} (a string) written as {n}"));
                }
                instances = Some(n);
                out.insert("instances".into(), Value::from(n));
            }
            Ok(Instances::Max(why)) => {
                if let Some(why) = why {
                    report.note(at("instances"), why);
                }
                out.insert("instances".into(), Value::String("max".into()));
            }
            Err(message) => report.error(at("instances"), message),
        }
    }
    if let Some(v) = fields.get("exec_mode") {
        let mode = v.as_str().unwrap_or("");
        match mode {
            "fork" | "cluster" => {
                out.insert("exec_mode".into(), v.clone());
            }
            "fork_mode" | "cluster_mode" => {
                let short = mode.trim_end_matches("_mode");
                report.note(at("exec_mode"), format!("{mode} written as {short}"));
                out.insert("exec_mode".into(), Value::String(short.into()));
            }
            _ => report.error(
                at("exec_mode"),
                format!("{v} is not one pm2 takes: fork or cluster (or fork_mode, cluster_mode)"),
            ),
        }
    }

    instances
}

/// Restart, timing, log-format and memory settings the document takes.
fn settings(fields: &Fields, at: &dyn Fn(&str) -> String, report: &mut Report, out: &mut Fields) {
    // Restart and timing settings the document takes.
    for field in [
        "wait_ready",
        "shutdown_with_message",
        "autorestart",
        "merge_logs",
        "time",
        "source_map_support",
    ] {
        if let Some(v) = fields.get(field) {
            match boolean(v) {
                Some(b) => {
                    out.insert(field.into(), Value::Bool(b));
                }
                None => report.error(at(field), format!("{v} is not true or false")),
            }
        }
    }
    if let Some(v) = fields.get("disable_source_map_support") {
        if boolean(v) == Some(true) {
            out.insert("source_map_support".into(), Value::Bool(false));
            report.note(
                at("disable_source_map_support"),
                "written as source_map_support: false",
            );
        }
    }
    for field in [
        "listen_timeout",
        "kill_timeout",
        "restart_delay",
        "exp_backoff_restart_delay",
        "max_restarts",
        "min_uptime",
    ] {
        if let Some(v) = fields.get(field) {
            match millis(v, field == "min_uptime") {
                Some(n) => {
                    if !v.is_u64() {
                        report.note(at(field), format!("{v} written as {n}"));
                    }
                    out.insert(field.into(), Value::from(n));
                }
                None => report.error(
                    at(field),
                    format!(
                        "{v} is not a whole number of milliseconds{}",
                        if field == "min_uptime" {
                            " (or 10s, 5m, 1h)"
                        } else {
                            ""
                        }
                    ),
                ),
            }
        }
    }
    if let Some(v) = fields.get("log_date_format").and_then(Value::as_str) {
        out.insert("log_date_format".into(), Value::String(v.into()));
    }
    if let Some(v) = fields.get("max_memory_restart") {
        match memory(v) {
            Some(m) => {
                if !v.is_string() {
                    report.note(
                        at("max_memory_restart"),
                        format!("{v} bytes written as {m}"),
                    );
                }
                out.insert("max_memory_restart".into(), Value::String(m));
            }
            None => report.error(
                at("max_memory_restart"),
                format!("{v} is not a size pm2 reads: digits and K, M or G (300M, 1G)"),
            ),
        }
    }
    match fields.get("cron_restart") {
        Some(v) if v == 0 || v == "0" => report.note(
            at("cron_restart"),
            "0 turns cron restarts off: nothing to write",
        ),
        Some(Value::String(c)) => {
            out.insert("cron_restart".into(), Value::String(c.clone()));
        }
        Some(v) => report.error(at("cron_restart"), format!("{v} is not a cron pattern")),
        None => {}
    }
}

/// Fields refused (errors with the fix) and fields dropped (warnings saying why).
fn refused_and_dropped(fields: &Fields, at: &dyn Fn(&str) -> String, report: &mut Report) {
    // Fields refused: the document cannot do what they ask.
    if fields.get("autostart").and_then(boolean) == Some(false) {
        report.error(at("autostart"), "false would never start the process, so no rollout could become healthy: remove the app from the file, or the field");
    }
    if fields.contains_key("instance_var") {
        report.error(at("instance_var"), "renaming NODE_APP_INSTANCE is not in the document: read NODE_APP_INSTANCE in the app and remove instance_var");
    }
    for field in ["uid", "gid"] {
        if fields.contains_key(field) {
            report.error(at(field), "processes run as the user the controller runs pm2 as: set User= in the controller's systemd unit and remove this field");
        }
    }
    // Dropped, each said.
    let watching = fields
        .get("watch")
        .is_some_and(|w| boolean(w) != Some(false));
    for (field, why) in DROPPED {
        let Some(v) = fields.get(*field) else {
            continue;
        };
        let default = match *field {
            "watch" => !watching,
            "ignore_watch" | "watch_options" | "watch_delay" => !watching,
            "disable_logs"
            | "force"
            | "vizion"
            | "pmx"
            | "automation"
            | "trace"
            | "v8"
            | "event_loop_inspector"
            | "deep_monitoring"
            | "windowsHide"
            | "write" => boolean(v) == Some(false),
            "disable_trace" => boolean(v) == Some(true),
            _ => false,
        };
        if !default {
            report.warn(at(field), format!("dropped: {why}"));
        }
    }
    if fields.get("treekill").and_then(boolean) == Some(false) {
        report.warn(
            at("treekill"),
            "false dropped: pm2 stops the whole process tree (its default)",
        );
    }
}

/// `increment_var`: one (name, env) per instance, each with its own value; else the app's own.
fn increment(
    fields: &Fields,
    at: &dyn Fn(&str) -> String,
    report: &mut Report,
    out: &mut Fields,
    (name, env, instances): (&str, &Fields, Option<u32>),
) -> Vec<(String, Fields)> {
    let name = name.to_string();
    // increment_var: one process per instance, each with its own value.
    let mut copies: Vec<(String, Map<String, Value>)> = vec![(name.clone(), env.clone())];
    if let Some(var) = fields.get("increment_var") {
        let var = var.as_str().unwrap_or("").to_string();
        let base = env.get(&var).map(|v| match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        });
        match (instances, base) {
            (Some(n), Some(Some(base))) => {
                copies = (0..n)
                    .map(|i| {
                        let mut e = env.clone();
                        e.insert(var.clone(), Value::from(base + i64::from(i)));
                        (format!("{name}-{i}"), e)
                    })
                    .collect();
                out.insert("instances".into(), Value::from(1));
                report.note(at("increment_var"), format!("{n} instances with {var} {base}..{}: written as {n} processes ({name}-0..{name}-{}), one per value, each with 1 instance", base + i64::from(n) - 1, n - 1));
            }
            (None, _) => report.error(at("increment_var"), format!("needs a fixed instances count to be written out (the document has no increment_var: init writes one process per {var} value); set instances to a number")),
            (_, _) => report.error(at("increment_var"), format!("env.{var} must be a number to count up from (pm2 starts at 0 otherwise): set env.{var}")),
        }
    }
    copies
}
