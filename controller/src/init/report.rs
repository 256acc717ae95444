//! What `init` tells the user on stderr: notes (a guess or a translation that loses
//! nothing), warnings (something dropped, with why) and errors (something the document
//! cannot express, with the fix), each one line, each located (`file:line: app NAME: field`).

use std::fmt;

/// How serious a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// A guess or a faithful translation, said so it can be checked.
    Note,
    /// Something dropped or changed in meaning.
    Warning,
    /// Something the document cannot express: nothing is written.
    Error,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// How serious.
    pub level: Level,
    /// Where (`ecosystem.config.js:7: app api: instances`).
    pub at: String,
    /// What, and why (and the fix, for an error).
    pub message: String,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Note => "note",
            Level::Warning => "warning",
            Level::Error => "error",
        };
        let message = self.message.replace('\n', " ");
        if self.at.is_empty() {
            write!(f, "{level}: {message}")
        } else {
            write!(f, "{level}: {}: {message}", self.at)
        }
    }
}

/// Every line, in the order found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The lines.
    pub lines: Vec<Line>,
}

impl Report {
    /// Add a line.
    pub fn push(&mut self, level: Level, at: impl Into<String>, message: impl Into<String>) {
        self.lines.push(Line {
            level,
            at: at.into(),
            message: message.into(),
        });
    }
    /// Add a note.
    pub fn note(&mut self, at: impl Into<String>, message: impl Into<String>) {
        self.push(Level::Note, at, message);
    }
    /// Add a warning.
    pub fn warn(&mut self, at: impl Into<String>, message: impl Into<String>) {
        self.push(Level::Warning, at, message);
    }
    /// Add an error.
    pub fn error(&mut self, at: impl Into<String>, message: impl Into<String>) {
        self.push(Level::Error, at, message);
    }
    /// How many errors.
    pub fn errors(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| l.level == Level::Error)
            .count()
    }
}

/// Points at lines of the ecosystem file: the line where an app starts (its name) and,
/// after it, the first line that sets a key. The file was evaluated, so this is a search
/// of its text, not a parse: good for pointing, never used to decide anything.
#[derive(Debug, Clone)]
pub struct Locator {
    file: String,
    lines: Vec<String>,
}

impl Locator {
    /// A locator over `text`, naming the file as `file`.
    pub fn new(file: &str, text: &str) -> Locator {
        Locator {
            file: file.to_string(),
            lines: text.lines().map(str::to_string).collect(),
        }
    }

    /// The file's name as shown.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The 1-based line declaring the app named `name` (0 when not found).
    pub fn app_line(&self, name: &str) -> usize {
        if name.is_empty() {
            return 0;
        }
        let quoted = [
            format!("'{name}'"),
            format!("\"{name}\""),
            format!("`{name}`"),
        ];
        self.lines
            .iter()
            .position(|l| {
                let t = l.trim_start();
                let bare = trim_item(l);
                (key_of(bare) == Some("name"))
                    && (quoted.iter().any(|q| t.contains(q.as_str()))
                        || bare.split_once(':').map(|(_, v)| v.trim()) == Some(name))
            })
            .map_or(0, |i| i + 1)
    }

    /// The 1-based line setting `key` at or after the app's line (0 when not found).
    pub fn key_line(&self, from: usize, key: &str) -> usize {
        let start = from.saturating_sub(1);
        // Search the app's own block first (up to the next app's name), then anywhere.
        let block = || {
            self.lines
                .iter()
                .enumerate()
                .skip(start)
                .take_while(move |(i, l)| *i == start || key_of(trim_item(l)) != Some("name"))
        };
        block()
            .find(|(_, l)| key_of(trim_item(l)) == Some(key))
            .or_else(|| block().find(|(_, l)| sets_key(l, key)))
            .map_or(0, |(i, _)| i + 1)
    }

    /// `file:line` (or `file` when the line is 0).
    pub fn at(&self, line: usize) -> String {
        if line == 0 {
            self.file.clone()
        } else {
            format!("{}:{line}", self.file)
        }
    }
}

/// True when `line` sets `key` anywhere in it (`{ PORT: 3000 }`, `"PORT": 3000`).
fn sets_key(line: &str, key: &str) -> bool {
    let mut from = 0;
    while let Some(i) = line[from..].find(key) {
        let at = from + i;
        let before = line[..at].chars().next_back();
        let rest = line[at + key.len()..].trim_start_matches(['\'', '"']);
        let boundary = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
        if boundary && rest.trim_start().starts_with(':') {
            return true;
        }
        from = at + key.len();
    }
    false
}

fn trim_item(l: &str) -> &str {
    l.trim_start()
        .trim_start_matches("- ")
        .trim_start_matches('{')
}

/// The key a line of JS/JSON/YAML starts with (`name:`, `'name':`, `"name":`).
fn key_of(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let (k, rest) = match t.chars().next()? {
        q @ ('\'' | '"' | '`') => {
            let end = t[1..].find(q)? + 1;
            (&t[1..end], &t[end + 1..])
        }
        _ => {
            let end = t
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
                .unwrap_or(t.len());
            (&t[..end], &t[end..])
        }
    };
    (!k.is_empty() && rest.trim_start().starts_with(':')).then_some(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_apps_and_keys_are_found_in_js_json_and_yaml() {
        let js = "module.exports = {\n  apps: [\n    { name: 'api',\n      instances: 2 },\n    {\n      name: \"worker\",\n      instances: 1,\n    },\n  ],\n};\n";
        let l = Locator::new("e.js", js);
        assert_eq!(l.app_line("api"), 3);
        assert_eq!(l.app_line("worker"), 6);
        assert_eq!(l.key_line(3, "instances"), 4);
        assert_eq!(l.key_line(6, "instances"), 7);
        assert_eq!(l.key_line(3, "missing"), 0);
        let inline = "  { name: 'web',\n    env: { NODE_ENV: 'production', PORT: 3000 } },\n";
        let l = Locator::new("e.js", inline);
        assert_eq!(l.key_line(l.app_line("web"), "PORT"), 2);
        assert_eq!(l.key_line(1, "ENV"), 0);
        let yaml = "apps:\n  - name: api\n    script: a.js\n  - name: web\n    script: b.js\n";
        let l = Locator::new("e.yaml", yaml);
        assert_eq!(l.app_line("web"), 4);
        assert_eq!(l.key_line(4, "script"), 5);
        assert_eq!(l.key_line(2, "script"), 3);
        let json = "{\"apps\": [{\"name\": \"api\",\n \"exec_mode\": \"cluster_mode\"}]}";
        let l = Locator::new("e.json", json);
        assert_eq!(l.key_line(1, "exec_mode"), 2);
    }
}
