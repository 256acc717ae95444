//! The `processes` section: each pm2 process's name (pm2's rules, none it reads as
//! something else, none twice), paths, instance count, memory limit and env, and no
//! package manager as a cluster-mode script.

use super::*;

pub(super) fn processes(c: &mut Checker, app: &App) {
    let spec = &app.spec;
    if spec.processes.is_empty() {
        c.fail("spec.processes", "at least one process is needed");
    }
    let mut seen = HashSet::new();
    for (i, p) in spec.processes.iter().enumerate() {
        let at = format!("spec.processes[{i}]");
        process_name(c, &at, &p.name, &mut seen);
        process_paths(c, &at, p, &spec.releases.root);
        process_limits(c, &at, p);
        super::traps::package_manager_in_cluster(c, &at, p);
        c.env(&format!("{at}.env"), &p.env);
    }
}

/// A process's name: pm2's rules, not one pm2 reads as something else, not declared twice.
fn process_name<'a>(c: &mut Checker, at: &str, name: &'a str, seen: &mut HashSet<&'a str>) {
    if !is_process_name(name) {
        c.fail(
            format!("{at}.name"),
            format!("{name:?} must be letters, digits, '-', '_' or '.', starting alphanumeric"),
        );
    } else if let Some(why) = pm2_reserved(name) {
        c.fail(format!("{at}.name"), why);
    } else if !seen.insert(name) {
        c.fail(format!("{at}.name"), format!("{name:?} is declared twice"));
    }
}

/// A process's script, cwd, interpreter and log files.
fn process_paths(c: &mut Checker, at: &str, p: &Process, root: &str) {
    if c.one_line(&format!("{at}.script"), &p.script) && !is_contained_relative(&p.script) {
        c.fail(
            format!("{at}.script"),
            format!(
                "{:?} must be a path inside the release (relative, no '..')",
                p.script
            ),
        );
    }
    if let Some(cwd) = &p.cwd
        && c.one_line(&format!("{at}.cwd"), cwd)
        && !is_contained_relative(cwd)
    {
        c.fail(
            format!("{at}.cwd"),
            format!("{cwd:?} must be a path inside the release (relative, no '..')"),
        );
    }
    if let Some(interpreter) = &p.interpreter {
        c.one_line(&format!("{at}.interpreter"), interpreter);
    }
    for (field, file) in [("out_file", &p.out_file), ("error_file", &p.error_file)] {
        if let Some(file) = file
            && c.one_line(&format!("{at}.{field}"), file)
            && !is_log_file(file, root)
        {
            c.fail(
                format!("{at}.{field}"),
                format!(
                    "{file:?} must be a path inside the release (relative, no '..' or '~') or under spec.releases.root ({root}), or /dev/null"
                ),
            );
        }
    }
}

/// A process's instances and memory limit.
fn process_limits(c: &mut Checker, at: &str, p: &Process) {
    match p.instances {
        Some(Instances::Count(0)) => {
            c.fail(format!("{at}.instances"), "must be at least 1 (or max)");
        }
        Some(Instances::Count(n)) if n > MAX_INSTANCES => c.fail(
            format!("{at}.instances"),
            format!("{n} is more than {MAX_INSTANCES}, the most instances of one process"),
        ),
        _ => {}
    }
    if let Some(mem) = &p.max_memory_restart {
        let digits = mem.trim_end_matches(['K', 'M', 'G']);
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || mem.len() - digits.len() > 1
        {
            c.fail(
                format!("{at}.max_memory_restart"),
                format!("{mem:?} must be a size like 300M, 1G or 500000K"),
            );
        }
    }
}
