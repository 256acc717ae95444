//! YAML text → [`App`], with errors a person can act on:
//! `apps/prompthub.yaml:14:7: spec.health.checks[0].timeout: invalid duration "5 sec"`.
//!
//! This is the only module that knows which YAML crates are used (serde_yaml to
//! deserialize, yaml-rust2's event parser to map field paths back to line and column),
//! so swapping either is a one-file change.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::app::App;
use crate::validate;

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

/// Parse and validate one document.
///
/// # Errors
/// A [`LoadError`] listing the syntax or type error (one, as parsing stops there) or
/// every semantic problem at once, each with file, line, column and field path.
pub fn load_str(text: &str, file: &str) -> Result<App, LoadError> {
    let app = parse_str(text, file)?;
    let found = validate::validate(&app);
    if found.is_empty() {
        return Ok(app);
    }
    let index = PathIndex::build(text);
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
    Err(LoadError { problems })
}

/// `value` as block YAML (for tools that write documents, such as `shipshape init`).
pub fn to_yaml<T: serde::Serialize>(value: &T) -> String {
    serde_yaml::to_string(value).unwrap_or_default()
}

/// The `metadata.name` of a document that may not load, if it can be read at all (so a
/// broken document's errors can be reported on its app).
pub fn peek_name(text: &str) -> Option<String> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
    value
        .get("metadata")?
        .get("name")?
        .as_str()
        .map(str::to_string)
}

/// Parse one document without the semantic checks.
///
/// # Errors
/// A [`LoadError`] with the one syntax or type error, located.
pub fn parse_str(text: &str, file: &str) -> Result<App, LoadError> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, App>(deserializer) {
        Ok(app) => Ok(app),
        Err(err) => {
            let path = render_path(err.path());
            let inner = err.into_inner();
            // Where the field itself is written beats serde_yaml's mark (often its parent's).
            let (mut line, mut column) = if path.is_empty() {
                (None, None)
            } else {
                PathIndex::build(text).locate_exact(&path)
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
    trimmed.to_string()
}

/// Maps dotted field paths to the 1-based line and column where they are written.
#[derive(Debug, Default)]
pub struct PathIndex {
    marks: HashMap<String, (usize, usize)>,
}

impl PathIndex {
    /// Index every key and sequence item of the (first) document in `text`.
    /// Text that does not parse yields an empty index.
    pub fn build(text: &str) -> PathIndex {
        let mut builder = IndexBuilder::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut builder, false);
        PathIndex {
            marks: builder.marks,
        }
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
    Mapping { path: String, key: Option<String> },
    Sequence { path: String, next: usize },
}

#[derive(Default)]
struct IndexBuilder {
    seen_first: std::collections::HashSet<String>,
    stack: Vec<Frame>,
    marks: HashMap<String, (usize, usize)>,
    done: bool,
}

impl IndexBuilder {
    /// The path of the node about to start, or `None` if the node is a mapping key.
    fn node_path(&mut self, mark: Marker, scalar: Option<&str>) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Mapping { path, key }) => match key.take() {
                None => {
                    let k = scalar.unwrap_or("?").to_string();
                    let child = join_key(path, &k);
                    self.marks.entry(child).or_insert(position(mark));
                    // A mapping that is a sequence item is best located at its first key
                    // (the parser marks block mappings one column late).
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
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn position(mark: Marker) -> (usize, usize) {
    // yaml-rust2 reports 1-based lines and 0-based columns.
    (mark.line(), mark.col() + 1)
}

impl MarkedEventReceiver for IndexBuilder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.done {
            return;
        }
        match ev {
            Event::Scalar(value, ..) => {
                self.node_path(mark, Some(&value));
            }
            Event::Alias(_) => {
                self.node_path(mark, None);
            }
            Event::MappingStart(..) => {
                if let Some(path) = self.node_path(mark, None) {
                    self.stack.push(Frame::Mapping { path, key: None });
                } else {
                    // A complex key: index it under a placeholder so nesting stays balanced.
                    self.stack.push(Frame::Mapping {
                        path: "?".into(),
                        key: None,
                    });
                }
            }
            Event::SequenceStart(..) => {
                let path = self.node_path(mark, None).unwrap_or_else(|| "?".into());
                self.stack.push(Frame::Sequence { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::DocumentEnd => self.done = true,
            _ => {}
        }
    }
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
}
