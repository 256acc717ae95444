//! The app's own output, as pm2 writes it to its log files (`pm_out_log_path`,
//! `pm_err_log_path`; each cluster instance has its own): where every file stood when a
//! release's processes were about to start ([`Marks`]), and what was written since, read
//! bounded ([`read_since`], [`said`]). A failure then shows that release's words, never an
//! older release's lines from the same file.
//!
//! Marking is a listing of the directories the files are in (pm2's `PM2_HOME/logs`, the
//! directories of the files the running instances and the document name): a process that
//! pm2 starts afresh writes to a file that may already hold an older release's output, and
//! its path is only known once it runs.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::Instance;
use crate::health::words::{Said, names_an_error};

/// At most this much of a file is read (its end).
pub const READ_BYTES: u64 = 16 * 1024;
/// At most this many lines of the app's output are kept for status.
pub const TAIL_LINES: usize = 20;
/// A directory with more files than this is listed only this far (a marking stays cheap).
const MAX_FILES: usize = 4096;

/// The size of each log file when a release's processes were about to start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    sizes: HashMap<PathBuf, u64>,
}

impl Marks {
    /// The size of every regular file in `dirs` (not recursive; a missing directory holds
    /// nothing).
    pub fn take(dirs: impl IntoIterator<Item = PathBuf>) -> Marks {
        let mut sizes = HashMap::new();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten().take(MAX_FILES) {
                if let Ok(meta) = entry.metadata()
                    && meta.is_file()
                {
                    sizes.insert(entry.path(), meta.len());
                }
            }
        }
        Marks { sizes }
    }

    /// Where `path` stood: 0 for a file that did not exist then.
    pub fn offset(&self, path: &Path) -> u64 {
        self.sizes.get(path).copied().unwrap_or(0)
    }

    /// True when nothing was marked.
    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }
}

/// The directories to mark before `names`' processes start: pm2's own log directory, and
/// those of the files the running `instances` write and the document declares
/// (`out_file`, `error_file` when absolute; relative ones are in the release directory).
pub fn dirs_to_mark(
    log_dir: Option<PathBuf>,
    instances: &[Instance],
    declared: &[&str],
) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = log_dir.into_iter().collect();
    let files = instances
        .iter()
        .flat_map(|i| [i.logs.out.clone(), i.logs.err.clone()])
        .flatten()
        .chain(
            declared
                .iter()
                .map(PathBuf::from)
                .filter(|p| p.is_absolute()),
        );
    for f in files {
        if let Some(d) = f.parent().map(Path::to_path_buf)
            && !dirs.contains(&d)
        {
            dirs.push(d);
        }
    }
    dirs
}

/// What was written to `path` after `mark` bytes: its last [`READ_BYTES`] at most, from a
/// line start; the whole file when it is now shorter than the mark (rotated or truncated).
/// `None` when it cannot be read.
pub fn read_since(path: &Path, mark: u64) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let from = if len < mark { 0 } else { mark };
    let start = from.max(len.saturating_sub(READ_BYTES));
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::new();
    f.take(len - start).read_to_end(&mut bytes).ok()?;
    // Cut in the middle of a line: start at the next one.
    if start > from
        && let Some(nl) = bytes.iter().position(|b| *b == b'\n')
    {
        bytes.drain(..=nl);
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Watching what a release's processes write: where their log files stood before they
/// started, and pm2's bus (which alone carries what a cluster worker said as it died at
/// start), once it could be listened to.
#[derive(Debug, Default)]
pub struct Watch {
    /// Where the log files stood.
    pub marks: Marks,
    /// pm2's bus, when its daemon was up to listen to.
    pub bus: Option<super::bus::Tap>,
}

impl Watch {
    /// What each instance of `names` wrote since: its log files, and what the bus heard
    /// where a file holds nothing (stdout), or no error the way Node names one (stderr: a
    /// cluster worker's file keeps pm2's `Process disconnected from parent!` and loses the
    /// error it died of); then what the bus heard of instances pm2 no longer lists (a
    /// replace's temporary processes, deleted when they failed).
    pub fn said(&self, names: &[&str], instances: &[Instance]) -> Vec<Said> {
        let mut said = said(names, instances, &self.marks);
        let heard = self.bus.as_ref().map(|b| b.heard()).unwrap_or_default();
        for s in &mut said {
            let Some(h) = heard
                .iter()
                .find(|h| h.name == s.name && h.pm_id == s.pm_id)
            else {
                continue;
            };
            let err = without_pm2_lines(&h.err);
            if !names_an_error(&s.err) && names_an_error(&err) {
                s.err.push_str(&err);
            }
            if s.out.trim().is_empty() {
                s.out = h.out.clone();
            }
        }
        let gone: Vec<Said> = heard
            .into_iter()
            .filter(|h| names.contains(&h.name.as_str()))
            .filter(|h| !said.iter().any(|s| s.name == h.name && s.pm_id == h.pm_id))
            .map(|h| Said {
                err: without_pm2_lines(&h.err),
                ..h
            })
            .collect();
        said.extend(gone);
        said
    }
}

/// Lines pm2's own process container writes into an app's error log (a cluster worker of
/// the previous release, disconnected by a reload, says this): not the app's words.
const PM2_LINES: &[&str] = &["Process disconnected from parent! (not connected)"];

/// `text` without [`PM2_LINES`].
fn without_pm2_lines(text: &str) -> String {
    if !PM2_LINES.iter().any(|l| text.contains(l)) {
        return text.to_string();
    }
    text.lines()
        .filter(|l| !PM2_LINES.contains(&l.trim()))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// What each instance of `names` wrote since `marks` were taken, in pm2's order.
pub fn said(names: &[&str], instances: &[Instance], marks: &Marks) -> Vec<Said> {
    let read = |p: &Option<PathBuf>| {
        p.as_deref()
            .and_then(|p| read_since(p, marks.offset(p)))
            .map(|t| without_pm2_lines(&t))
            .unwrap_or_default()
    };
    instances
        .iter()
        .filter(|i| names.contains(&i.name.as_str()))
        .map(|i| Said {
            name: i.name.clone(),
            pm_id: i.pm_id,
            err: read(&i.logs.err),
            out: read(&i.logs.out),
        })
        .collect()
}

/// The tail shown under a failed verification: the last [`TAIL_LINES`] lines the instance
/// that speaks (`first`: pm2's name and id) or else the first instance with output wrote,
/// stderr when there is any, else stdout, under a line saying whose and which stream; from
/// its last error line on when that is among them.
/// `None` when no instance wrote anything.
pub fn tail(said: &[Said], first: Option<(&str, u64)>) -> Option<String> {
    let has_output = |s: &&Said| !s.err.trim().is_empty() || !s.out.trim().is_empty();
    let speaker = first
        .and_then(|(name, id)| {
            said.iter()
                .filter(has_output)
                .find(|s| s.name == name && s.pm_id == id)
        })
        .or_else(|| said.iter().find(has_output))?;
    let (stream, text) = if speaker.err.trim().is_empty() {
        ("stdout", &speaker.out)
    } else {
        ("stderr", &speaker.err)
    };
    let lines: Vec<&str> = text.lines().collect();
    // From the last error line on when it is among the last lines (a crash loop repeats
    // its report: the newest one whole, not the end of one and the start of the next).
    let last = crate::health::words::last_named_error(text)
        .and_then(|l| lines.iter().rposition(|x| x.trim() == l))
        .filter(|i| lines.len() - i <= TAIL_LINES)
        .map(|i| with_what_led_to(&lines, i));
    let kept = &lines[last.unwrap_or(lines.len().saturating_sub(TAIL_LINES))..];
    Some(format!(
        "pm2 {} (id {}) {stream}, since this release's processes started:\n{}",
        speaker.name,
        speaker.pm_id,
        kept.join("\n")
    ))
}

/// `i`, moved back over the few lines (three, blank ones aside) the app wrote just before
/// its error report (what it said as it started), never into the previous report's stack
/// frames.
fn with_what_led_to(lines: &[&str], i: usize) -> usize {
    let (mut start, mut said) = (i, 0);
    while start > 0
        && said < 3
        && lines.len() - (start - 1) <= TAIL_LINES
        && !lines[start - 1].trim_start().starts_with("at ")
    {
        start -= 1;
        said += usize::from(!lines[start].trim().is_empty());
    }
    // Not from a blank line.
    while start < i && lines[start].trim().is_empty() {
        start += 1;
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_was_written_after_the_mark_is_read_and_a_rotated_file_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("web-error.log");
        std::fs::write(&f, "Error: from the old release\n").unwrap();
        let marks = Marks::take([dir.path().to_path_buf(), dir.path().join("missing")]);
        assert_eq!(marks.offset(&f), 28);
        assert_eq!(marks.offset(&dir.path().join("new.log")), 0);
        use std::io::Write;
        let mut w = std::fs::OpenOptions::new().append(true).open(&f).unwrap();
        writeln!(w, "Error: DATABASE_URL is not set").unwrap();
        assert_eq!(
            read_since(&f, marks.offset(&f)).unwrap(),
            "Error: DATABASE_URL is not set\n"
        );
        std::fs::write(&f, "short\n").unwrap();
        assert_eq!(read_since(&f, marks.offset(&f)).unwrap(), "short\n");
        assert_eq!(read_since(&dir.path().join("gone"), 0), None);
    }

    #[test]
    fn a_long_output_is_read_from_its_end_at_a_line_start() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("big.log");
        let mut text = String::new();
        for i in 0..5000 {
            text.push_str(&format!("line {i}\n"));
        }
        std::fs::write(&f, &text).unwrap();
        let got = read_since(&f, 0).unwrap();
        assert!(got.len() as u64 <= READ_BYTES, "{}", got.len());
        assert!(got.starts_with("line "), "{}", &got[..20]);
        assert!(got.ends_with("line 4999\n"));
    }

    #[test]
    fn the_tail_is_the_speakers_stderr_bounded_and_says_whose_it_is() {
        let s = |pm_id, err: &str, out: &str| Said {
            name: "web".into(),
            pm_id,
            err: err.into(),
            out: out.into(),
        };
        let long: String = (0..30).map(|i| format!("e{i}\n")).collect();
        let said = [s(0, "", "booting\n"), s(1, &long, "")];
        let t = tail(&said, Some(("web", 1))).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "pm2 web (id 1) stderr, since this release's processes started:"
        );
        assert_eq!(lines.len(), TAIL_LINES + 1);
        assert_eq!(lines[TAIL_LINES], "e29");
        let looped = "booting\nError: boom\n    at a (a.js:1:1)\n".repeat(15);
        let t = tail(&[s(1, &looped, "")], None).unwrap();
        assert_eq!(t.lines().nth(1), Some("booting"), "{t}");
        assert_eq!(t.lines().nth(2), Some("Error: boom"), "{t}");
        assert_eq!(t.lines().count(), 4, "{t}");
        let t = tail(&said, Some(("web", 7))).unwrap();
        assert!(t.starts_with("pm2 web (id 0) stdout"), "{t}");
        assert_eq!(tail(&[s(0, " \n", "")], None), None);
        assert_eq!(
            without_pm2_lines("Process disconnected from parent! (not connected)\nError: x\n"),
            "Error: x\n"
        );
    }

    #[test]
    fn the_directories_marked_are_pm2s_and_those_of_the_files_in_use_or_declared() {
        let mut i = crate::pm2::parse_jlist(r#"[{"name":"web","pm2_env":{"status":"online","pm_out_log_path":"/srv/logs/web.out","pm_err_log_path":"/dev/null"}}]"#).unwrap();
        assert_eq!(i[0].logs.err, None);
        let dirs = dirs_to_mark(
            Some(PathBuf::from("/pm2/logs")),
            &i,
            &["/srv/demo/shared/err.log", "logs/relative.log"],
        );
        assert_eq!(
            dirs,
            [
                PathBuf::from("/pm2/logs"),
                PathBuf::from("/srv/logs"),
                PathBuf::from("/srv/demo/shared")
            ]
        );
        i.clear();
        assert_eq!(dirs_to_mark(None, &i, &[]), Vec::<PathBuf>::new());
    }
}
