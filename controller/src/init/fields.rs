//! pm2's fields as its schema (lib/API/schema.json) names them, with every spelling pm2
//! accepts for each (schema aliases, camelCase, `cmd`/`command`), and the fields init drops
//! with the reason it says.

/// pm2's fields (lib/API/schema.json, pm2 7) with their schema aliases, plus the spellings
/// pm2 resolves elsewhere (`cmd`/`command` for `script`, in Common.verifyConfs) and
/// `env_file`, which pm2 7 ignores but public ecosystem files carry. pm2 also accepts each
/// field in camelCase (`execMode`), derived by [`camel`].
pub const PM2_FIELDS: &[(&str, &[&str])] = &[
    ("script", &["exec", "cmd", "command"]),
    ("name", &[]),
    ("name_prefix", &[]),
    ("filter_env", &[]),
    ("namespace", &[]),
    ("install_url", &[]),
    ("cwd", &[]),
    ("args", &[]),
    ("exec_interpreter", &["interpreter"]),
    ("node_args", &["interpreter_args", "interpreterArgs"]),
    ("out_file", &["out", "output", "out_log"]),
    ("error_file", &["error", "err", "err_file", "err_log"]),
    ("log_file", &["log"]),
    ("disable_logs", &[]),
    ("log_type", &[]),
    ("log_date_format", &[]),
    ("time", &[]),
    ("env", &[]),
    ("max_memory_restart", &[]),
    ("pid_file", &["pid"]),
    ("restart_delay", &[]),
    ("exp_backoff_restart_delay", &[]),
    ("source_map_support", &[]),
    ("disable_source_map_support", &[]),
    ("wait_ready", &[]),
    ("instances", &[]),
    ("kill_timeout", &[]),
    ("shutdown_with_message", &[]),
    ("listen_timeout", &[]),
    ("cron_restart", &["cron"]),
    ("merge_logs", &["combine_logs"]),
    ("vizion", &[]),
    ("autostart", &[]),
    ("autorestart", &[]),
    ("stop_exit_codes", &[]),
    ("watch_delay", &[]),
    ("watch", &[]),
    ("ignore_watch", &[]),
    ("watch_options", &[]),
    ("min_uptime", &[]),
    ("max_restarts", &[]),
    ("execute_command", &[]),
    ("exec_mode", &[]),
    ("force", &[]),
    ("append_env_to_name", &[]),
    ("post_update", &[]),
    ("trace", &[]),
    ("disable_trace", &[]),
    ("v8", &[]),
    ("event_loop_inspector", &[]),
    ("deep_monitoring", &[]),
    ("increment_var", &[]),
    ("instance_var", &[]),
    ("pmx", &[]),
    ("automation", &[]),
    ("treekill", &[]),
    ("port", &[]),
    ("username", &[]),
    ("uid", &["user"]),
    ("gid", &[]),
    ("windowsHide", &[]),
    ("kill_retry_time", &[]),
    ("write", &[]),
    ("io", &[]),
    ("env_file", &[]),
];

/// Fields dropped with a warning, and why (the rest of [`PM2_FIELDS`] is handled in
/// [`translate`]).
pub(super) const DROPPED: &[(&str, &str)] = &[
    (
        "out_file",
        "the controller owns log paths (pm2's own per-process files, which `shipshape logs` and status read)",
    ),
    (
        "error_file",
        "the controller owns log paths (pm2's own per-process files, which `shipshape logs` and status read)",
    ),
    (
        "log_file",
        "the controller owns log paths (pm2's own per-process files, which `shipshape logs` and status read)",
    ),
    (
        "disable_logs",
        "the controller reads the app's own logs to explain a failed rollout",
    ),
    (
        "log_type",
        "the document has no log format: pm2 writes plain lines",
    ),
    (
        "pid_file",
        "pm2 keeps pid files under PM2_HOME; the controller asks pm2, not pid files",
    ),
    (
        "watch",
        "the controller owns restarts: a release never changes, a change is a new commit",
    ),
    ("ignore_watch", "there is no watch under shipshape"),
    ("watch_options", "there is no watch under shipshape"),
    ("watch_delay", "there is no watch under shipshape"),
    (
        "namespace",
        "the document has no pm2 namespace: processes are told apart by name",
    ),
    ("name_prefix", "processes are named by `name` alone"),
    ("append_env_to_name", "processes are named by `name` alone"),
    (
        "filter_env",
        "the controller never passes its own environment to processes (as if filter_env were always on)",
    ),
    ("install_url", "modules are not installed by the controller"),
    (
        "post_update",
        "pm2 deploy's hook: put commands in spec.build.steps or spec.hooks",
    ),
    ("force", "the controller decides what runs"),
    ("execute_command", "not a setting of the document"),
    (
        "vizion",
        "pm2's versioning metadata: the controller records the commit itself",
    ),
    ("pmx", "pm2.io monitoring is not part of a shipshape deploy"),
    (
        "automation",
        "pm2.io monitoring is not part of a shipshape deploy",
    ),
    (
        "trace",
        "pm2.io monitoring is not part of a shipshape deploy",
    ),
    (
        "disable_trace",
        "pm2.io monitoring is not part of a shipshape deploy",
    ),
    ("v8", "pm2.io monitoring is not part of a shipshape deploy"),
    (
        "event_loop_inspector",
        "pm2.io monitoring is not part of a shipshape deploy",
    ),
    (
        "deep_monitoring",
        "pm2.io monitoring is not part of a shipshape deploy",
    ),
    ("io", "pm2.io monitoring is not part of a shipshape deploy"),
    ("windowsHide", "Windows only"),
    ("username", "pm2 sets it itself"),
    (
        "kill_retry_time",
        "not in the document: pm2's default applies",
    ),
    ("write", "not in the document"),
    (
        "stop_exit_codes",
        "not in the document: a process that exits is restarted by pm2 whatever its code",
    ),
];

/// pm2's camelCase alias of a field (its rule in lib/tools/Config.js: `exec_mode` ->
/// `execMode`; a one-letter part keeps its case).
pub fn camel(field: &str) -> String {
    field
        .split('_')
        .enumerate()
        .map(|(i, part)| {
            if i != 0 && part.len() > 1 {
                let mut c = part.chars();
                let first = c.next().map(|f| f.to_ascii_uppercase()).unwrap_or_default();
                std::iter::once(first).chain(c).collect()
            } else {
                part.to_string()
            }
        })
        .collect()
}

/// The canonical pm2 field `key` spells, if any.
pub(super) fn canonical(key: &str) -> Option<&'static str> {
    PM2_FIELDS.iter().find_map(|(field, aliases)| {
        (*field == key || aliases.contains(&key) || camel(field) == key).then_some(*field)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_follows_pm2s_rule() {
        assert_eq!(camel("exec_mode"), "execMode");
        assert_eq!(camel("max_memory_restart"), "maxMemoryRestart");
        assert_eq!(camel("v8"), "v8");
        assert_eq!(canonical("execMode"), Some("exec_mode"));
        assert_eq!(canonical("output"), Some("out_file"));
        assert_eq!(canonical("interpreterArgs"), Some("node_args"));
        assert_eq!(canonical("bogus"), None);
    }
}
