//! The health check proposed from what the app exposes: the port from the chosen env
//! (or pm2's `port`, next's `-p`/default, or the code: `process.env.PORT || 4000`,
//! `listen(4000)`), and a route from the code (Express/Koa/Fastify routes, plain http
//! `req.url === '/health'`, NestJS decorators, Next.js file routes). The code searched is
//! the process's script and what it imports, else the app's sources. When nothing can be
//! read the check probes `/` and says what to set in a `# TODO:`.

use std::path::{Path, PathBuf};

use super::report::Report;
use super::translate::Translated;

/// A proposed health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckGuess {
    /// Its name (the process's).
    pub name: String,
    /// The URL.
    pub url: String,
    /// What to set, when it is only a placeholder (written as a `# TODO:` comment).
    pub todo: Option<String>,
}

/// Route names a health endpoint goes by, best first.
const HEALTH_NAMES: &[&str] = &[
    "health",
    "healthz",
    "healthcheck",
    "health-check",
    "livez",
    "readyz",
    "ready",
    "live",
    "status",
    "ping",
];

/// A route found in the code: its path, rank in [`HEALTH_NAMES`] and where.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    path: String,
    rank: usize,
    at: String,
    /// Declared by a NestJS decorator (so under `setGlobalPrefix`).
    nest: bool,
}

/// The health checks for `processes`: one per port that can be read (from the env, or the
/// code, or Next.js's default), on a route found in the code, else `/` with a TODO.
pub fn health(
    processes: &mut [Translated],
    dir: &Path,
    shown: &Path,
    report: &mut Report,
) -> Vec<CheckGuess> {
    let all = source_files(dir);
    let single = processes.len() == 1;
    // Pass 1: each process's port, and the files its script reaches (None: not in the
    // repository, e.g. built output).
    let mut found = Vec::new();
    let mut portless = Vec::new();
    for t in processes.iter_mut() {
        let p = &mut t.process;
        let base = p.cwd.as_ref().map_or(PathBuf::new(), PathBuf::from);
        let own = own_files(dir, &base.join(&p.script));
        let from_env = p
            .env
            .get("PORT")
            .and_then(|v| v.as_text().parse::<u16>().ok())
            .map(|port| {
                let from = t
                    .port_from
                    .clone()
                    .map_or("env.PORT".into(), |s| format!("{} ({})", s.what, s.at));
                (port, from)
            });
        let next = p.script.contains("next/dist/bin/next") || p.script.ends_with(".bin/next");
        let from_args = next
            .then(|| next_port(p.args.as_ref()))
            .flatten()
            .map(|port| (port, "next's -p in args".to_string()));
        let port = from_env
            .or(from_args)
            .or_else(|| next.then(|| (3000, "next start's default".to_string())))
            .or_else(|| own.as_ref().and_then(|f| find_port(dir, shown, f)))
            .or_else(|| single.then(|| find_port(dir, shown, &all)).flatten());
        if let Some((port, from)) = &port
            && from_env_port(&p.env).is_none()
        {
            // Said in the document, so the process and its check name the same port
            // (the app reads PORT first; Next.js does too).
            p.env.insert(
                "PORT".into(),
                shipshape_spec::app::EnvValue::Integer(i64::from(*port)),
            );
            report.note(
                "health",
                format!("{}: env.PORT: {port} written (from {from}), so the process and its check name the same port", p.name),
            );
        }
        match port {
            Some((port, from)) => found.push((p.name.clone(), port, from, own, next)),
            None => portless.push(p.name.clone()),
        }
    }
    // Pass 2: a route for each port: from the process's own files, else (for Next.js, or
    // the app's only HTTP process) from anywhere in the app.
    let only_http = found.len() == 1;
    let mut checks: Vec<CheckGuess> = Vec::new();
    let mut ports: Vec<u16> = Vec::new();
    for (name, port, from, own, next) in &found {
        if ports.contains(port) {
            continue;
        }
        ports.push(*port);
        let route = if *next {
            find_route(dir, shown, &all)
        } else {
            own.as_ref()
                .and_then(|f| find_route(dir, shown, f))
                .or_else(|| only_http.then(|| find_route(dir, shown, &all)).flatten())
        };
        checks.push(check(name, *port, from, route.as_ref(), report));
    }
    if checks.is_empty() {
        let name = processes
            .first()
            .map_or("web".to_string(), |t| t.process.name.clone());
        let todo = format!(
            "no PORT in the env and none read from the code: 3000 is a guess; set the URL to the port {name} listens on and a route that answers 200 when it can serve"
        );
        report.warn("health", todo.clone());
        let path = find_route(dir, shown, &all).map_or("/".to_string(), |r| r.path);
        checks.push(CheckGuess {
            name: name.clone(),
            url: format!("http://127.0.0.1:3000{path}"),
            todo: Some(todo),
        });
    } else {
        for name in portless {
            report.note(
                "health",
                format!(
                    "{name}: no port: no HTTP check of its own (pm2's facts still count: online, not restarting)"
                ),
            );
        }
    }
    checks
}

/// The `PORT` an env sets, if it reads as a port.
fn from_env_port(
    env: &std::collections::BTreeMap<String, shipshape_spec::app::EnvValue>,
) -> Option<u16> {
    env.get("PORT").and_then(|v| v.as_text().parse().ok())
}

/// The script's file and the files it imports relatively (`require('./x')`, `from
/// '../y'`), transitively, inside `dir`; None when the script is not in the repository.
fn own_files(dir: &Path, script: &Path) -> Option<Vec<PathBuf>> {
    let root = std::fs::canonicalize(dir).ok()?;
    let first = std::fs::canonicalize(dir.join(script)).ok()?;
    if !first.is_file() {
        return None;
    }
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut queue = vec![first];
    while let Some(file) = queue.pop() {
        if seen.contains(&file) || seen.len() >= 200 || !file.starts_with(&root) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let here = file.parent().map(Path::to_path_buf).unwrap_or_default();
        for spec in relative_imports(&text) {
            let base = here.join(&spec);
            let candidates = [
                base.clone(),
                base.with_extension("js"),
                base.with_extension("mjs"),
                base.with_extension("cjs"),
                base.with_extension("ts"),
                base.join("index.js"),
                base.join("index.ts"),
            ];
            if let Some(c) = candidates.iter().find(|c| c.is_file())
                && let Ok(c) = std::fs::canonicalize(c)
            {
                queue.push(c);
            }
        }
        seen.push(file);
    }
    let mut out: Vec<PathBuf> = seen
        .into_iter()
        .filter_map(|f| f.strip_prefix(&root).ok().map(Path::to_path_buf))
        .collect();
    out.sort();
    Some(out)
}

/// The relative module specifiers in `text` (`require('./x')`, `from "../y"`, `import('./z')`).
fn relative_imports(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for needle in ["require(", "from ", "import("] {
        let mut rest = text;
        while let Some(r) = after(rest, needle) {
            if let Some(spec) = literal(r).filter(|s| s.starts_with("./") || s.starts_with("../")) {
                out.push(spec);
            }
            rest = r;
        }
    }
    out
}

fn check(
    name: &str,
    port: u16,
    from: &str,
    route: Option<&Route>,
    report: &mut Report,
) -> CheckGuess {
    match route {
        Some(r) => {
            let url = format!("http://127.0.0.1:{port}{}", r.path);
            report.note(
                "health",
                format!(
                    "{name}: GET {url}: port {port} from {from}, route {} from {}",
                    r.path, r.at
                ),
            );
            CheckGuess {
                name: name.into(),
                url,
                todo: None,
            }
        }
        None => {
            let url = format!("http://127.0.0.1:{port}/");
            let todo = format!(
                "no health route found in the code, so this probes / (port {port} from {from}): set a route that answers 200 only when {name} can serve (e.g. /health)"
            );
            report.warn("health", format!("{name}: {todo}"));
            CheckGuess {
                name: name.into(),
                url,
                todo: Some(todo),
            }
        }
    }
}

/// `-p N` / `--port N` / `--port=N` in next's args.
fn next_port(args: Option<&shipshape_spec::app::StringOrList>) -> Option<u16> {
    use shipshape_spec::app::StringOrList;
    let words: Vec<String> = match args? {
        StringOrList::One(s) => s.split_whitespace().map(str::to_string).collect(),
        StringOrList::List(l) => l.clone(),
    };
    words.iter().enumerate().find_map(|(i, w)| {
        if w == "-p" || w == "--port" {
            words.get(i + 1)?.parse().ok()
        } else {
            w.strip_prefix("--port=")?.parse().ok()
        }
    })
}

/// Directories never searched for code.
const SKIP_DIRS: &[&str] = &[
    "node_modules",
    ".git",
    "dist",
    "build",
    ".next",
    "out",
    "coverage",
    ".turbo",
    ".cache",
];
/// The most files (and bytes of one file) read for guesses.
const MAX_FILES: usize = 2000;
const MAX_FILE_BYTES: u64 = 512 * 1024;

/// The app's source files under `dir`, sorted, relative to it.
fn source_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() && depth < 8 && !SKIP_DIRS.contains(&name.as_str()) {
                stack.push((e.path(), depth + 1));
            } else if kind.is_file()
                && ["js", "cjs", "mjs", "ts", "mts", "cts", "jsx", "tsx"]
                    .iter()
                    .any(|x| name.ends_with(&format!(".{x}")))
                && !name.starts_with("ecosystem.")
                && e.metadata().is_ok_and(|m| m.len() <= MAX_FILE_BYTES)
                && out.len() < MAX_FILES
            {
                out.push(
                    e.path()
                        .strip_prefix(dir)
                        .unwrap_or(&e.path())
                        .to_path_buf(),
                );
            }
        }
    }
    out.sort();
    out
}

/// The best health route: Next.js file routes, then routes in the code.
fn find_route(dir: &Path, shown: &Path, files: &[PathBuf]) -> Option<Route> {
    let mut found: Vec<Route> = Vec::new();
    for f in files {
        if let Some(path) = next_route(f) {
            found.push(route(path, shown.join(f).display().to_string(), false));
        }
    }
    let mut prefix = None;
    for f in files {
        let Ok(text) = std::fs::read_to_string(dir.join(f)) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            let at = format!("{}:{}", shown.join(f).display(), i + 1);
            if let Some(p) = after(line, "setGlobalPrefix(").and_then(literal) {
                prefix = Some(format!("/{}", p.trim_matches('/')));
            }
            for (path, nest) in route_literals(line) {
                found.push(route(path, at.clone(), nest));
            }
        }
    }
    let mut best = found
        .into_iter()
        .filter(|r| r.rank < HEALTH_NAMES.len())
        .min_by_key(|r| r.rank)?;
    if best.nest
        && let Some(prefix) = prefix
    {
        best.path = format!("{prefix}{}", best.path);
    }
    best.path = best.path.replace("//", "/");
    Some(best)
}

fn route(path: String, at: String, nest: bool) -> Route {
    let last = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let rank = HEALTH_NAMES
        .iter()
        .position(|n| *n == last)
        .unwrap_or(usize::MAX);
    Route {
        path,
        rank,
        at,
        nest,
    }
}

/// A Next.js route file's URL path: `app/api/health/route.ts` (route groups skipped) or
/// `pages/api/health.ts` / `pages/api/health/index.ts`, under the app or `src/`.
fn next_route(file: &Path) -> Option<String> {
    let parts: Vec<String> = file
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let parts: &[String] = match parts.first().map(String::as_str) {
        Some("src") => &parts[1..],
        _ => &parts[..],
    };
    let (first, rest) = parts.split_first()?;
    let (file, dirs) = rest.split_last()?;
    let stem = file.split('.').next().unwrap_or("");
    let segs: Vec<&str> = dirs
        .iter()
        .map(String::as_str)
        .filter(|d| !(d.starts_with('(') && d.ends_with(')')))
        .collect();
    match first.as_str() {
        "app" if stem == "route" => Some(format!("/{}", segs.join("/"))),
        "pages" if segs.first() == Some(&"api") => {
            let mut segs = segs;
            if stem != "index" {
                segs.push(stem);
            }
            Some(format!("/{}", segs.join("/")))
        }
        _ => None,
    }
}

/// The text after the first `needle` in `line`.
fn after<'a>(line: &'a str, needle: &str) -> Option<&'a str> {
    line.find(needle).map(|i| &line[i + needle.len()..])
}

/// The string literal `text` starts with (after spaces): its content.
fn literal(text: &str) -> Option<String> {
    let t = text.trim_start();
    let q = t.chars().next().filter(|c| matches!(c, '\'' | '"' | '`'))?;
    let end = t[1..].find(q)?;
    Some(t[1..=end].to_string())
}

/// Route paths a line of code declares: `.get('/health'`, `router.all("/healthz"`,
/// `url === '/health'`, `case '/health':`, Nest's `@Get('health')` / `@Controller('health')`.
fn route_literals(line: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for call in [".get(", ".all(", ".head(", ".route(", "url: ", "path: "] {
        let mut rest = line;
        while let Some(r) = after(rest, call) {
            if let Some(p) = literal(r).filter(|p| p.starts_with('/')) {
                out.push((p, false));
            }
            rest = r;
        }
    }
    for cmp in ["=="] {
        let mut rest = line;
        while let Some(r) = after(rest, cmp) {
            let before = &rest[..rest.len() - r.len() - cmp.len()];
            if (before.contains("url") || before.contains("pathname") || before.contains("path"))
                && let Some(p) = literal(r.trim_start_matches('=')).filter(|p| p.starts_with('/'))
            {
                out.push((p, false));
            }
            rest = r.trim_start_matches('=');
        }
    }
    if let Some(p) = after(line.trim_start(), "case ").and_then(literal)
        && p.starts_with('/')
    {
        out.push((p, false));
    }
    for deco in ["@Get(", "@Controller("] {
        if let Some(p) = after(line, deco).and_then(literal) {
            out.push((format!("/{}", p.trim_start_matches('/')), true));
        }
    }
    out.retain(|(p, _)| !p.contains(':') && !p.contains('*') && !p.contains('$'));
    out
}

/// The port the code listens on when `PORT` is not set: `process.env.PORT || 4000`
/// (or `??`, or through `Number(...)`/`parseInt(...)`), `listen(4000`, `const PORT = 4000`.
fn find_port(dir: &Path, shown: &Path, files: &[PathBuf]) -> Option<(u16, String)> {
    for f in files {
        let Ok(text) = std::fs::read_to_string(dir.join(f)) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            if let Some(port) = port_in(line) {
                let at = format!("{}:{}", shown.join(f).display(), i + 1);
                return Some((port, format!("the code ({at})")));
            }
        }
    }
    None
}

fn port_in(line: &str) -> Option<u16> {
    let digits = |s: &str| -> Option<u16> {
        let s = s.trim_start().trim_start_matches(['\'', '"']);
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        s[..end].parse().ok().filter(|p| *p > 0)
    };
    if let Some(r) = after(line, "process.env.PORT") {
        let r = r
            .trim_start_matches([')', ' ', ','])
            .trim_start_matches("10)");
        let r = r.trim_start_matches([')', ' ']);
        if let Some(r) = r.strip_prefix("||").or_else(|| r.strip_prefix("??")) {
            return digits(r);
        }
    }
    if let Some(r) = after(line, ".listen(") {
        if let Some(p) = digits(r) {
            return Some(p);
        }
        if let Some(p) = after(r, "port:").and_then(digits) {
            return Some(p);
        }
    }
    for decl in [
        "const PORT = ",
        "let PORT = ",
        "var PORT = ",
        "const port = ",
        "let port = ",
    ] {
        if let Some(p) = after(line, decl).and_then(digits) {
            return Some(p);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_read_from_common_shapes_of_code() {
        assert_eq!(
            port_in("const port = process.env.PORT || 4000;"),
            Some(4000)
        );
        assert_eq!(
            port_in("const port = Number(process.env.PORT) || 4001;"),
            Some(4001)
        );
        assert_eq!(
            port_in("const port = parseInt(process.env.PORT, 10) || 4002;"),
            Some(4002)
        );
        assert_eq!(
            port_in("const port = process.env.PORT ?? '4003';"),
            Some(4003)
        );
        assert_eq!(port_in("app.listen(4004, () => {})"), Some(4004));
        assert_eq!(
            port_in("await fastify.listen({ port: 4005, host: '0.0.0.0' })"),
            Some(4005)
        );
        assert_eq!(port_in("const PORT = 4006"), Some(4006));
        assert_eq!(port_in("app.listen(port)"), None);
        assert_eq!(port_in("const x = process.env.PORT;"), None);
    }

    #[test]
    fn health_routes_are_read_from_express_fastify_koa_http_and_nest() {
        let paths = |line: &str| -> Vec<String> {
            route_literals(line).into_iter().map(|(p, _)| p).collect()
        };
        assert_eq!(
            paths("app.get('/health', (req, res) => res.json({}))"),
            vec!["/health"]
        );
        assert_eq!(
            paths("router.get(\"/healthz\", ctx => {})"),
            vec!["/healthz"]
        );
        assert_eq!(
            paths("fastify.route({ method: 'GET', url: '/api/health', handler })"),
            vec!["/api/health"]
        );
        assert_eq!(paths("  if (req.url === '/health') {"), vec!["/health"]);
        assert_eq!(paths("    case '/ready':"), vec!["/ready"]);
        assert_eq!(
            route_literals("@Controller('health')"),
            vec![("/health".to_string(), true)]
        );
        assert!(paths("app.get('/users/:id', h)").is_empty());
    }

    #[test]
    fn next_file_routes_map_to_their_urls() {
        assert_eq!(
            next_route(Path::new("app/api/health/route.ts")),
            Some("/api/health".into())
        );
        assert_eq!(
            next_route(Path::new("src/app/(infra)/healthz/route.js")),
            Some("/healthz".into())
        );
        assert_eq!(
            next_route(Path::new("pages/api/health.ts")),
            Some("/api/health".into())
        );
        assert_eq!(
            next_route(Path::new("pages/api/health/index.js")),
            Some("/api/health".into())
        );
        assert_eq!(next_route(Path::new("app/page.tsx")), None);
        assert_eq!(next_route(Path::new("lib/route.ts")), None);
    }
}
