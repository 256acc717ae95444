//! YAML text → [`App`], with errors a person can act on:
//! `apps/prompthub.yaml:14:7: spec.health.checks[0].timeout: invalid duration "5 sec"`.
//!
//! This is the only module that knows which YAML crates are used: serde_yaml to
//! deserialize, and the libyaml event parser it wraps (unsafe-libyaml, driven one event
//! at a time in [`events`]) to bound the text, find duplicate keys and map field paths
//! back to line and column. So swapping either is a change in this module.
//!
//! # Limits
//! A document is at most [`MAX_DOCUMENT_BYTES`] long and nests at most [`MAX_DEPTH`]
//! mappings and sequences deep. Both are checked before anything that recurses (serde)
//! sees the text: the size before parsing at all, the depth by counting events, which
//! stops at the first one past the limit. So a hostile document costs time in proportion
//! to its size, which is bounded, and never the stack.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::app::App;
use crate::validate;

mod events;
mod suggest;

pub use suggest::nearest_field;

use events::{Event, Events, Mark};

/// The longest document read, in bytes (256 KiB: a large app's document is a few KiB).
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// The deepest nesting of mappings and sequences accepted, the document's own mapping
/// counting as the first level (an App document needs 7).
pub const MAX_DEPTH: usize = 64;

/// One thing wrong with a document, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// The file (or other source name) the text came from.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Dotted field path such as `spec.health.checks[0].timeout` (empty for the whole document).
    pub path: String,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one document; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    /// The problems, in document order where known.
    pub problems: Vec<Problem>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl LoadError {
    fn one(file: &str, mark: Option<Mark>, path: &str, message: String) -> LoadError {
        LoadError {
            problems: vec![Problem {
                file: file.to_string(),
                line: mark.map(|m| m.line),
                column: mark.map(|m| m.column),
                path: path.to_string(),
                message,
            }],
        }
    }
}

/// Refuse a document of `bytes` bytes when it is over [`MAX_DOCUMENT_BYTES`]: for readers
/// that know a file's size before reading it (git blobs, files on disk).
///
/// # Errors
/// A [`LoadError`] such as `apps/x.yaml: the document is 50.0 MiB; the limit is 256 KiB`.
pub fn check_size(bytes: usize, file: &str) -> Result<(), LoadError> {
    if bytes <= MAX_DOCUMENT_BYTES {
        return Ok(());
    }
    Err(LoadError::one(
        file,
        None,
        "",
        format!(
            "the document is {}; the limit is {} KiB",
            human_size(bytes),
            MAX_DOCUMENT_BYTES / 1024
        ),
    ))
}

fn human_size(bytes: usize) -> String {
    let size = bytes as f64;
    let text = if size >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", size / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", size / 1024.0)
    };
    // Just over the limit would read "256.0 KiB; the limit is 256 KiB".
    if text == format!("{}.0 KiB", MAX_DOCUMENT_BYTES / 1024) {
        format!("{bytes} bytes")
    } else {
        text
    }
}

/// Parse and validate one document.
///
/// # Errors
/// A [`LoadError`] listing the limit passed, the duplicate keys, the syntax or type error
/// (one, as parsing stops there) or every semantic problem at once, each with file, line,
/// column and field path.
pub fn load_str(text: &str, file: &str) -> Result<App, LoadError> {
    load_str_warned(text, file).map(|(app, _)| app)
}

/// [`load_str`], and the warnings of the document that loaded
/// ([`validate::warnings`]), located like problems and in document order.
///
/// # Errors
/// As [`load_str`].
pub fn load_str_warned(text: &str, file: &str) -> Result<(App, Vec<Problem>), LoadError> {
    let (app, index) = parse_indexed(text, file)?;
    let found = validate::validate(&app);
    if found.is_empty() {
        let warnings = locate(validate::warnings(&app), &index, file);
        return Ok((app, warnings));
    }
    Err(LoadError {
        problems: locate(found, &index, file),
    })
}

/// `found` located in the text `index` was built from, in document order.
fn locate(found: Vec<validate::Violation>, index: &PathIndex, file: &str) -> Vec<Problem> {
    let mut problems: Vec<Problem> = found
        .into_iter()
        .map(|v| {
            let (line, column) = index.locate(&v.path);
            Problem {
                file: file.to_string(),
                line,
                column,
                path: v.path,
                message: v.message,
            }
        })
        .collect();
    problems.sort_by_key(|p| (p.line.unwrap_or(usize::MAX), p.column.unwrap_or(0)));
    problems
}

/// `value` as block YAML (for tools that write documents, such as `shipshape init`).
pub fn to_yaml<T: serde::Serialize>(value: &T) -> String {
    serde_yaml::to_string(value).unwrap_or_default()
}

/// The `metadata.name` of a document that may not load, if it can be read at all (so a
/// broken document's errors can be reported on its app). Only the first
/// [`MAX_DOCUMENT_BYTES`] are read, and nothing past the nesting limit.
pub fn peek_name(text: &str) -> Option<String> {
    let mut cut = text.len().min(MAX_DOCUMENT_BYTES);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut builder = IndexBuilder::default();
    let mut depth = 0;
    for item in Events::new(&text[..cut]) {
        let Ok((event, mark)) = item else { break };
        if !step_depth(&mut depth, &event) || builder.done {
            break;
        }
        if let Event::Scalar(value) = &event
            && builder.value_path().as_deref() == Some("metadata.name")
        {
            return Some(value.clone());
        }
        builder.on_event(event, mark);
    }
    None
}

/// Parse one document without the semantic checks.
///
/// # Errors
/// A [`LoadError`] with the limit passed, every duplicate key, or the one syntax or type
/// error, located.
pub fn parse_str(text: &str, file: &str) -> Result<App, LoadError> {
    parse_indexed(text, file).map(|(app, _)| app)
}

fn parse_indexed(text: &str, file: &str) -> Result<(App, PathIndex), LoadError> {
    check_size(text.len(), file)?;
    let scan = Scan::of(text);
    if let Some(mark) = scan.too_deep {
        return Err(LoadError::one(
            file,
            Some(mark),
            "",
            format!("the document nests deeper than {MAX_DEPTH} levels"),
        ));
    }
    if !scan.duplicates.is_empty() {
        let problems = scan
            .duplicates
            .into_iter()
            .map(|(path, mark, first)| Problem {
                file: file.to_string(),
                line: Some(mark.line),
                column: Some(mark.column),
                path,
                message: format!("duplicate key (the first is at line {})", first.line),
            })
            .collect();
        return Err(LoadError { problems });
    }
    let index = scan.index;
    let deserializer = serde_yaml::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, App>(deserializer) {
        Ok(app) => Ok((app, index)),
        Err(err) => {
            let path = render_path(err.path());
            let inner = err.into_inner();
            // Where the field itself is written beats serde_yaml's mark (often its parent's).
            let (mut line, mut column) = if path.is_empty() {
                (None, None)
            } else {
                index.locate_exact(&path)
            };
            if line.is_none()
                && let Some(loc) = inner.location()
            {
                (line, column) = (Some(loc.line()), Some(loc.column()));
            }
            let message = clean_message(&inner.to_string(), &path);
            Err(LoadError {
                problems: vec![Problem {
                    file: file.to_string(),
                    line,
                    column,
                    path,
                    message,
                }],
            })
        }
    }
}

/// serde_path_to_error renders the root as `.`; we render it as empty.
fn render_path(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." { String::new() } else { text }
}

/// serde_yaml prefixes messages with its own (partial) path and appends
/// " at line L column C"; both are shown up front instead.
fn clean_message(message: &str, path: &str) -> String {
    let mut trimmed = match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => &message[..i],
        _ => message,
    };
    if let Some((head, rest)) = trimmed.split_once(": ")
        && !head.is_empty()
        && path.starts_with(head)
    {
        trimmed = rest;
    }
    suggest::unknown_field_message(trimmed).unwrap_or_else(|| trimmed.to_string())
}

/// Count `event` into `depth`; false when it starts a collection past [`MAX_DEPTH`].
fn step_depth(depth: &mut usize, event: &Event) -> bool {
    match event {
        Event::SequenceStart | Event::MappingStart => {
            *depth += 1;
            *depth <= MAX_DEPTH
        }
        Event::SequenceEnd | Event::MappingEnd => {
            *depth = depth.saturating_sub(1);
            true
        }
        _ => true,
    }
}

/// One pass over a document's events, stopping at the nesting limit: the path index, the
/// duplicate keys, and where the limit was passed.
struct Scan {
    index: PathIndex,
    /// (path, where, where the first one is).
    duplicates: Vec<(String, Mark, Mark)>,
    too_deep: Option<Mark>,
}

impl Scan {
    fn of(text: &str) -> Scan {
        let mut builder = IndexBuilder::default();
        let mut depth = 0;
        let mut too_deep = None;
        // Every document in the stream is walked (serde_yaml reads a second one to refuse
        // it); only the first is indexed. A syntax error ends the walk: serde_yaml stops
        // at the same place and says what it is.
        for item in Events::new(text) {
            let Ok((event, mark)) = item else { break };
            if !step_depth(&mut depth, &event) {
                too_deep = Some(mark);
                break;
            }
            builder.on_event(event, mark);
        }
        Scan {
            index: PathIndex {
                marks: builder.marks,
            },
            duplicates: builder.duplicates,
            too_deep,
        }
    }
}

/// Maps dotted field paths to the 1-based line and column where they are written.
#[derive(Debug, Default)]
pub struct PathIndex {
    marks: HashMap<String, (usize, usize)>,
}

impl PathIndex {
    /// Index every key and sequence item of the (first) document in `text`, as far as it
    /// parses and no deeper than [`MAX_DEPTH`].
    pub fn build(text: &str) -> PathIndex {
        Scan::of(text).index
    }

    /// Where exactly `path` is written, if it is.
    pub fn locate_exact(&self, path: &str) -> (Option<usize>, Option<usize>) {
        match self.marks.get(path) {
            Some(&(line, col)) => (Some(line), Some(col)),
            None => (None, None),
        }
    }

    /// Where `path` is written; falls back to its nearest written ancestor.
    pub fn locate(&self, path: &str) -> (Option<usize>, Option<usize>) {
        let mut current = path.to_string();
        loop {
            if let Some(&(line, col)) = self.marks.get(&current) {
                return (Some(line), Some(col));
            }
            match parent_path(&current) {
                Some(parent) => current = parent,
                None => return (None, None),
            }
        }
    }
}

fn parent_path(path: &str) -> Option<String> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(path[..cut].to_string())
}

enum Frame {
    Mapping {
        path: String,
        key: Option<String>,
        /// The scalar keys seen so far, and where.
        keys: HashMap<String, Mark>,
    },
    Sequence {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct IndexBuilder {
    seen_first: HashSet<String>,
    stack: Vec<Frame>,
    marks: HashMap<String, (usize, usize)>,
    duplicates: Vec<(String, Mark, Mark)>,
    done: bool,
}

impl IndexBuilder {
    /// The path of the value the next event starts, if it starts one (not a mapping key).
    fn value_path(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Mapping { path, key, .. }) => key.as_ref().map(|k| join_key(path, k)),
            Some(Frame::Sequence { path, next }) => Some(format!("{path}[{next}]")),
        }
    }

    /// The path of the node about to start, or `None` if the node is a mapping key.
    fn node_path(&mut self, mark: Mark, scalar: Option<&str>) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Mapping { path, key, keys }) => match key.take() {
                None => {
                    let k = scalar.unwrap_or("?").to_string();
                    let child = join_key(path, &k);
                    if scalar.is_some() {
                        if let Some(first) = keys.get(&k) {
                            self.duplicates.push((child.clone(), mark, *first));
                        } else {
                            keys.insert(k.clone(), mark);
                        }
                    }
                    self.marks.entry(child).or_insert(position(mark));
                    // A mapping that is a sequence item is best located at its first key
                    // (the mapping's own mark may be off by a column).
                    if path.ends_with(']') && self.seen_first.insert(path.clone()) {
                        self.marks.insert(path.clone(), position(mark));
                    }
                    *key = Some(k);
                    None
                }
                Some(k) => Some(join_key(path, &k)),
            },
            Some(Frame::Sequence { path, next }) => {
                let child = format!("{path}[{next}]");
                *next += 1;
                self.marks.entry(child.clone()).or_insert(position(mark));
                Some(child)
            }
        }
    }

    fn on_event(&mut self, ev: Event, mark: Mark) {
        if self.done {
            return;
        }
        match ev {
            Event::Scalar(value) => {
                self.node_path(mark, Some(&value));
            }
            Event::Alias => {
                self.node_path(mark, None);
            }
            Event::MappingStart => {
                // A complex key is indexed under a placeholder so nesting stays balanced.
                let path = self.node_path(mark, None).unwrap_or_else(|| "?".into());
                self.stack.push(Frame::Mapping {
                    path,
                    key: None,
                    keys: HashMap::new(),
                });
            }
            Event::SequenceStart => {
                let path = self.node_path(mark, None).unwrap_or_else(|| "?".into());
                self.stack.push(Frame::Sequence { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::DocumentEnd => self.done = true,
            Event::StreamStart | Event::StreamEnd | Event::DocumentStart => {}
        }
    }
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn position(mark: Mark) -> (usize, usize) {
    (mark.line, mark.column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_locates_keys_and_items() {
        let text = "a:\n  b: 1\n  list:\n    - x: 2\n    - y: 3\n";
        let index = PathIndex::build(text);
        assert_eq!(index.locate("a"), (Some(1), Some(1)));
        assert_eq!(index.locate("a.b"), (Some(2), Some(3)));
        assert_eq!(index.locate("a.list[1].y"), (Some(5), Some(7)));
        assert_eq!(index.locate("a.list[1].missing"), (Some(5), Some(7)));
        assert_eq!(index.locate("nowhere"), (None, None));
    }

    #[test]
    fn parent_paths_walk_up() {
        assert_eq!(parent_path("a.b[2].c").as_deref(), Some("a.b[2]"));
        assert_eq!(parent_path("a.b[2]").as_deref(), Some("a.b"));
        assert_eq!(parent_path("a").as_deref(), Some(""));
        assert_eq!(parent_path(""), None);
    }

    /// A document that loads, with one label (`team`, line 6) to put hostile text into.
    const VALID: &str = "apiVersion: shipshape/v1alpha1
kind: App
metadata:
  name: demo
  labels:
    team: web
spec:
  source:
    repository: /srv/git/demo
    commit: 3f2a1c9e0b7d4c6a8e1f2a3b4c5d6e7f8a9b0c1d
  releases:
    root: /srv/demo
  processes:
    - name: demo-web
      script: server.js
      env:
        PORT: 3000
  health:
    checks:
      - name: api
        http:
          url: http://127.0.0.1:3000/api/health
";

    fn with_label(value: &str) -> String {
        VALID.replace("    team: web\n", &format!("    team: {value}\n"))
    }

    fn messages(text: &str) -> Vec<String> {
        load_str(text, "apps/demo.yaml")
            .unwrap_err()
            .problems
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn the_valid_fixture_loads() {
        load_str(VALID, "apps/demo.yaml").unwrap();
    }

    #[test]
    fn deep_block_nesting_is_refused_where_it_passes_the_limit() {
        // 30,000 levels, 60 KB: this overflowed the stack (the debug build at ~4,000).
        let text = with_label(&format!("\n      {}a", "- ".repeat(30_000)));
        // The root mapping, metadata and labels are 3 levels; the first `-` is at column
        // 7 of line 7, so the 65th level is the 62nd `-`, at 7 + 2 * 61.
        assert_eq!(
            messages(&text),
            ["apps/demo.yaml:7:129: the document nests deeper than 64 levels"]
        );
        // Everything else that reads a document is bounded too.
        assert_eq!(peek_name(&text).as_deref(), Some("demo"));
        assert_eq!(
            PathIndex::build(&text).locate("metadata.name"),
            (Some(4), Some(3))
        );
        // Nesting at the limit is parsed as usual.
        let text = with_label(&format!("\n      {}a", "- ".repeat(61)));
        assert_eq!(
            messages(&text),
            ["apps/demo.yaml:6:5: metadata.labels.team: invalid type: sequence, expected a string"]
        );
    }

    #[test]
    fn deep_flow_nesting_is_refused_where_it_passes_the_limit() {
        // 100,000 levels, 200 KB: this took a minute of CPU (quadratic in the scanner).
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let text = with_label(&deep);
        assert_eq!(
            messages(&text),
            ["apps/demo.yaml:6:72: the document nests deeper than 64 levels"]
        );
        assert_eq!(peek_name(&text).as_deref(), Some("demo"));
        // Flow mappings count alike, and so does flow nesting inside block nesting.
        let text = with_label(&format!("{}{}", "{a: ".repeat(5_000), "}".repeat(5_000)));
        assert_eq!(
            messages(&text),
            ["apps/demo.yaml:6:255: the document nests deeper than 64 levels"]
        );
        let text = with_label(&format!("\n      - - {}", &deep[99_900..100_100]));
        assert_eq!(
            messages(&text),
            ["apps/demo.yaml:7:70: the document nests deeper than 64 levels"]
        );
        // A second document in the stream is bounded too (serde_yaml reads it).
        let text = format!("{VALID}---\n{deep}\n");
        assert_eq!(
            messages(&text),
            ["apps/demo.yaml:24:65: the document nests deeper than 64 levels"]
        );
    }

    #[test]
    fn a_document_over_the_size_limit_is_refused_before_parsing() {
        let text = format!(
            "{VALID}{}",
            format!("# {}\n", "x".repeat(1_000)).repeat(300)
        );
        assert_eq!(
            messages(&text),
            [format!(
                "apps/demo.yaml: the document is {:.1} KiB; the limit is 256 KiB",
                text.len() as f64 / 1024.0
            )]
        );
        let big = format!("{VALID}#{}\n", "x".repeat(50 << 20));
        assert_eq!(
            messages(&big),
            ["apps/demo.yaml: the document is 50.0 MiB; the limit is 256 KiB"]
        );
        // The name is still read from the start of the document, to report it on its app.
        assert_eq!(peek_name(&big).as_deref(), Some("demo"));
        // Just over it, the size is not rounded down to the limit.
        assert_eq!(
            check_size(256 * 1024 + 1, "-").unwrap_err().to_string(),
            "-: the document is 262145 bytes; the limit is 256 KiB"
        );
        // Exactly at the limit it loads.
        let mut text = VALID.to_string();
        text.push_str(&"#".repeat(256 * 1024 - text.len() - 1));
        text.push('\n');
        assert_eq!(text.len(), 256 * 1024);
        load_str(&text, "apps/demo.yaml").unwrap();
    }

    #[test]
    fn a_duplicate_key_is_located_not_silently_dropped() {
        let text = VALID.replace("PORT: 3000\n", "PORT: 3000\n        PORT: 4000\n");
        assert_eq!(
            messages(&text),
            [
                "apps/demo.yaml:18:9: spec.processes[0].env.PORT: duplicate key (the first is at line 17)"
            ]
        );
        let text = VALID.replace("  name: demo\n", "  name: demo\n  name: other\n");
        assert_eq!(
            messages(&text),
            ["apps/demo.yaml:5:3: metadata.name: duplicate key (the first is at line 4)"]
        );
        // Equal keys in different mappings are not duplicates.
        let text = VALID.replace("team: web", "name: web");
        load_str(&text, "apps/demo.yaml").unwrap();
    }
}
