//! For the flood tests (flood.rs, stock.rs): the `hey` HTTP load generator, and the
//! spread of the latencies measured under it.

use std::process::Command;

/// What `hey -c 256 -z <secs>s <url>` reported: the responses it counted and its summary
/// (the Requests/sec, Average and per-status lines); `None` when `hey` would not run.
pub fn hey(url: &str, secs: u64) -> Option<(u64, String)> {
    let out = Command::new("hey")
        .args(["-c", "256", "-z", &format!("{secs}s"), "-t", "30", url])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // "  [200]\t12345 responses" per status code.
    let responses = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.starts_with('[')
                .then(|| l.split_whitespace().nth(1)?.parse::<u64>().ok())?
        })
        .sum();
    let summary = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Requests/sec") || l.starts_with("Average") || l.starts_with('['))
        .collect::<Vec<_>>()
        .join("; ");
    Some((responses, summary))
}

/// (min, median, max) of `v`.
pub fn spread(v: &mut [u64]) -> (u64, u64, u64) {
    v.sort_unstable();
    match v {
        [] => (0, 0, 0),
        _ => (v[0], v[v.len() / 2], v[v.len() - 1]),
    }
}
