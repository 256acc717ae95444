//! `<state-dir>/api.json`: where the running controller can be reached (its Unix socket,
//! its TCP address when it listens) and who it is (pid and process start time); and the
//! check the CLI makes before it sends the token over TCP: that whoever listens on that
//! address is that process, and that it holds the state directory's lock.
//!
//! The check reads Linux's `/proc` (`/proc/locks`, `/proc/<pid>/stat`, `/proc/net/tcp*`,
//! `/proc/<pid>/fd`); anything it cannot confirm is a refusal, never a pass.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What the CLI needs to reach a running controller (`<state-dir>/api.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// `http://127.0.0.1:PORT` while the TCP listener is up; `null` while it is not.
    pub url: Option<String>,
    /// The controller's pid.
    pub pid: u32,
    /// The controller's start time (`/proc/<pid>/stat` field 22, clock ticks since boot):
    /// with the pid, it names one process (a pid can be reused, the pair cannot).
    #[serde(default)]
    pub started: Option<u64>,
    /// The Unix socket the CLI prefers, when it is bound.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// The TCP address asked for (`--listen`).
    #[serde(default)]
    pub listen: Option<String>,
    /// Whether the TCP listener is up.
    #[serde(default = "yes")]
    pub listening: bool,
    /// Why it is not (the last bind error), while it is not.
    #[serde(default)]
    pub error: Option<String>,
}

fn yes() -> bool {
    true
}

impl Address {
    /// This process's address record: listening on `url` (or not, because of `error`).
    pub fn this_process(
        listen: Option<SocketAddr>,
        url: Option<String>,
        socket: Option<PathBuf>,
        error: Option<String>,
    ) -> Address {
        let pid = std::process::id();
        Address {
            listening: url.is_some(),
            url,
            pid,
            started: process_start_time(pid),
            socket,
            listen: listen.map(|l| l.to_string()),
            error,
        }
    }

    /// Write it to `<state-dir>/api.json` (0600).
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn write(&self, state_dir: &Path) -> std::io::Result<()> {
        crate::release::write_atomic_mode(
            &state_dir.join(super::ADDRESS_FILE),
            &serde_json::to_vec(self).expect("json"),
            0o600,
        )
    }

    /// Read `<state-dir>/api.json`; `None` when missing or unreadable.
    pub fn read(state_dir: &Path) -> Option<Address> {
        let text = std::fs::read_to_string(state_dir.join(super::ADDRESS_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Whether the process that wrote it still runs (same pid, same start time).
    pub fn writer_alive(&self) -> bool {
        self.started.is_some() && process_start_time(self.pid) == self.started
    }
}

/// A process's start time: field 22 of `/proc/<pid>/stat` (the command name, field 2, may
/// hold spaces and parentheses, so fields are counted from its closing parenthesis).
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields 3.. follow; the start time is field 22.
    after.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// The pid holding a `flock` write lock on the file with inode `inode`, per `/proc/locks`.
fn flock_holder(locks: &str, inode: u64) -> Option<u32> {
    locks.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF"; waiters have "->" after the id.
        if f.len() < 6 || f[1] != "FLOCK" || f[3] != "WRITE" {
            return None;
        }
        let ino: u64 = f[5].rsplit(':').next()?.parse().ok()?;
        (ino == inode).then(|| f[4].parse().ok()).flatten()
    })
}

/// `/proc/net/tcp*`'s address form (`0100007F:1C84`; an IPv6 address is four 32-bit words,
/// each in the host's byte order) read as a socket address.
fn parse_proc_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let ip = match words.as_slice() {
        [w] => IpAddr::from(w.to_ne_bytes()),
        [a, b, c, d] => {
            let mut bytes = [0u8; 16];
            for (i, w) in [a, b, c, d].into_iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            IpAddr::from(bytes)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The inode of the socket listening on `addr`, from a `/proc/net/tcp*` table.
fn listening_inode(table: &str, addr: SocketAddr) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
        if f.len() < 10 || f[3] != "0A" {
            return None;
        }
        // A listener on the unspecified address (0.0.0.0, [::]) takes connections to
        // loopback on its port too.
        let local = parse_proc_addr(f[1])?;
        if local != addr && !(local.ip().is_unspecified() && local.port() == addr.port()) {
            return None;
        }
        f[9].parse().ok()
    })
}

/// Check that `addr`'s TCP listener is the controller that holds `state_dir`'s lock: the
/// pid in `api.json` holds the lock, still has the start time recorded there, and owns the
/// socket listening on the address. `Err` says which part failed.
///
/// # Errors
/// [`Unverified`] naming what could not be confirmed.
pub fn verify_tcp_listener(state_dir: &Path, addr: &Address) -> Result<SocketAddr, Unverified> {
    use std::os::unix::fs::MetadataExt;
    let url = addr.url.as_deref().unwrap_or_default();
    let sock: SocketAddr = url
        .strip_prefix("http://")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| Unverified::BadUrl(url.to_string()))?;
    let io = |what: String| move |source| Unverified::Io { what, source };
    let lock = state_dir.join("controller.lock");
    let inode = std::fs::metadata(&lock)
        .map_err(io(lock.display().to_string()))?
        .ino();
    let locks = std::fs::read_to_string("/proc/locks").map_err(io("/proc/locks".into()))?;
    match flock_holder(&locks, inode) {
        Some(p) if p == addr.pid => {}
        Some(holder) => {
            return Err(Unverified::HeldByOther {
                holder,
                named: addr.pid,
            });
        }
        None => return Err(Unverified::NotHeld),
    }
    if !addr.writer_alive() {
        return Err(Unverified::NotTheWriter(addr.pid));
    }
    let table = if sock.is_ipv4() { "tcp" } else { "tcp6" };
    let text = std::fs::read_to_string(format!("/proc/net/{table}"))
        .map_err(io(format!("/proc/net/{table}")))?;
    let inode = listening_inode(&text, sock).ok_or(Unverified::NothingListens(sock))?;
    let want = format!("socket:[{inode}]");
    let fds = std::fs::read_dir(format!("/proc/{}/fd", addr.pid)).map_err(|source| {
        Unverified::CannotSeeSockets {
            pid: addr.pid,
            source,
        }
    })?;
    let owns = fds
        .flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str()));
    if owns {
        Ok(sock)
    } else {
        Err(Unverified::NotTheController {
            sock,
            pid: addr.pid,
        })
    }
}

/// What [`verify_tcp_listener`] could not confirm.
#[derive(Debug, thiserror::Error)]
pub enum Unverified {
    /// `api.json`'s url is not an `http://ADDRESS:PORT`.
    #[error("api.json's url {0:?} is not http://ADDRESS:PORT")]
    BadUrl(String),
    /// A file that tells who holds what cannot be read.
    #[error("{what}: {source}")]
    Io {
        /// The file.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the state directory's lock.
    #[error("the state directory is held by pid {holder}, not pid {named} that api.json names")]
    HeldByOther {
        /// The lock's holder.
        holder: u32,
        /// The pid `api.json` names.
        named: u32,
    },
    /// No process holds the state directory's lock.
    #[error("no controller holds the state directory")]
    NotHeld,
    /// The pid is not the process that wrote `api.json` (a reused pid).
    #[error("pid {0} is not the process that wrote api.json (its start time differs)")]
    NotTheWriter(u32),
    /// Nothing listens on the address.
    #[error("nothing listens on {0}")]
    NothingListens(SocketAddr),
    /// The controller's sockets cannot be listed by this user.
    #[error("cannot see the sockets of pid {pid} ({source}): run the CLI as the controller's user")]
    CannotSeeSockets {
        /// The controller's pid.
        pid: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another process listens on the address.
    #[error("the process listening on {sock} is not the controller (pid {pid})")]
    NotTheController {
        /// The address.
        sock: SocketAddr,
        /// The controller's pid.
        pid: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_field_22_even_when_the_name_has_spaces_and_parentheses() {
        let stat =
            "4242 (a b) c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        let me = std::process::id();
        assert!(process_start_time(me).is_some());
        assert_eq!(process_start_time(me), process_start_time(me));
    }

    #[test]
    fn proc_tables_are_read_as_addresses_lock_holders_and_listening_inodes() {
        let v4 = parse_proc_addr("0100007F:1C84").unwrap();
        assert_eq!(v4, "127.0.0.1:7300".parse().unwrap());
        let v6 = parse_proc_addr("00000000000000000000000001000000:1C84").unwrap();
        assert_eq!(v6, "[::1]:7300".parse().unwrap());
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1C84 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 55501 1 0 100 0 0 10 0\n   1: 0100007F:1C84 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 55502 1 0 20 4 30 10 -1\n";
        assert_eq!(
            listening_inode(table, "127.0.0.1:7300".parse().unwrap()),
            Some(55501)
        );
        assert_eq!(
            listening_inode(table, "127.0.0.1:7301".parse().unwrap()),
            None
        );
        // A listener on 0.0.0.0:7302 is the one a client on 127.0.0.1:7302 reaches.
        let any = "  sl  local_address rem_address   st\n   0: 00000000:1C86 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 55503 1 0 100 0 0 10 0\n";
        assert_eq!(
            listening_inode(any, "127.0.0.1:7302".parse().unwrap()),
            Some(55503)
        );
        let locks = "1: POSIX  ADVISORY  WRITE 77 00:2b:999 0 EOF\n2: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n2: -> FLOCK  ADVISORY  WRITE 5151 fd:01:1234 0 EOF\n";
        assert_eq!(flock_holder(locks, 1234), Some(4242));
        assert_eq!(
            flock_holder(locks, 999),
            None,
            "a POSIX lock is not the lock"
        );
    }
}
