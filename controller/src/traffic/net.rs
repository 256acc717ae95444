//! What the kernel says about a port: who listens on it, and how many connections to it
//! are established (read from `/proc/net/tcp` and `/proc/net/tcp6`, the controller's own
//! network namespace). The listener's pid and command come from the socket's inode in
//! `/proc/<pid>/fd` when that is readable (as root, or for our own user's processes).
//!
//! Drain reads [`established`]: the server side of every connection to a slot's port.
//! nginx keeps idle keepalive connections to the live slot; after a switch they belong to
//! the old workers, which close them as they exit (bounded by `worker_shutdown_timeout`),
//! so a retired slot's count falls to 0 once nothing is in flight to it.

/// A process listening on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Its pid, when it could be found (`/proc/*/fd`).
    pub pid: Option<u32>,
    /// Its command name (`/proc/<pid>/comm`).
    pub command: Option<String>,
}

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.pid, &self.command) {
            (Some(pid), Some(c)) => write!(f, "{c} (pid {pid})"),
            (Some(pid), None) => write!(f, "pid {pid}"),
            _ => write!(f, "a process this controller cannot see"),
        }
    }
}

/// The kernel's TCP states we read (`include/net/tcp_states.h`).
const ESTABLISHED: u8 = 0x01;
const LISTEN: u8 = 0x0A;

/// One socket row of `/proc/net/tcp{,6}`: local port, state, inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Row {
    local_port: u16,
    state: u8,
    inode: u64,
}

/// The rows of one `/proc/net/tcp`-format table (the header line and malformed lines
/// are skipped).
fn parse_table(text: &str) -> Vec<Row> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
            let local = f.get(1)?;
            let (_, port) = local.rsplit_once(':')?;
            let local_port = u16::from_str_radix(port, 16).ok()?;
            let state = u8::from_str_radix(f.get(3)?, 16).ok()?;
            let inode = f.get(9)?.parse().ok()?;
            Some(Row {
                local_port,
                state,
                inode,
            })
        })
        .collect()
}

/// Every TCP socket row, IPv4 and IPv6 (a table that cannot be read is empty: IPv6 may
/// be off).
fn rows() -> Vec<Row> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| parse_table(&t))
        .collect()
}

/// The pids holding any of the sockets `links` (`socket:[INODE]`), searching `/proc/*/fd`
/// (what cannot be read is skipped); the first one only when `first`.
fn holders(links: &[String], first: bool) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|l| links.iter().any(|i| l.as_os_str() == i.as_str()))
        });
        if holds {
            found.push(pid);
            if first {
                break;
            }
        }
    }
    found
}

/// The pid holding socket `inode`.
fn owner(inode: u64) -> Option<u32> {
    holders(&[format!("socket:[{inode}]")], true)
        .first()
        .copied()
}

/// Who listens on TCP `port` (any address, IPv4 or IPv6), if anyone.
pub fn listener(port: u16) -> Option<Listener> {
    let row = rows()
        .into_iter()
        .find(|r| r.state == LISTEN && r.local_port == port)?;
    // inode 0: a socket of another namespace's view, or already closing.
    let pid = (row.inode != 0).then(|| owner(row.inode)).flatten();
    let command = pid.and_then(|p| {
        std::fs::read_to_string(format!("/proc/{p}/comm"))
            .ok()
            .map(|c| c.trim().to_string())
    });
    Some(Listener { pid, command })
}

/// The processes holding a listening socket on TCP `port` that were forked by another
/// holder (nginx's workers, not its master): what a reload must see gone before every new
/// connection gets the new config. Empty when `/proc/*/fd` cannot be read.
pub fn listening_children(port: u16) -> Vec<u32> {
    let inodes: Vec<String> = rows()
        .into_iter()
        .filter(|r| r.state == LISTEN && r.local_port == port && r.inode != 0)
        .map(|r| format!("socket:[{}]", r.inode))
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let holders = holders(&inodes, false);
    let parent = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    holders
        .iter()
        .copied()
        .filter(|p| parent(*p).is_some_and(|pp| holders.contains(&pp)))
        .collect()
}

/// Established TCP connections whose local port is `port` (the server side).
pub fn established(port: u16) -> usize {
    rows()
        .iter()
        .filter(|r| r.state == ESTABLISHED && r.local_port == port)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_table_row_gives_its_local_port_state_and_inode() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:0BB9 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:0BB9 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 12346 1\n garbage\n";
        assert_eq!(
            parse_table(text),
            vec![
                Row {
                    local_port: 3001,
                    state: LISTEN,
                    inode: 12345
                },
                Row {
                    local_port: 3001,
                    state: ESTABLISHED,
                    inode: 12346
                },
            ]
        );
    }

    #[test]
    fn a_listening_socket_is_found_with_our_pid_and_a_closed_one_is_not() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let found = listener(port).expect("the kernel lists our listener");
        assert_eq!(found.pid, Some(std::process::id()));
        assert!(found.command.is_some());
        drop(l);
        assert_eq!(listener(port), None);
    }

    #[test]
    fn an_ipv6_listener_is_found_too() {
        let Ok(l) = TcpListener::bind("[::1]:0") else {
            return; // no IPv6 on this machine
        };
        let port = l.local_addr().unwrap().port();
        assert_eq!(listener(port).and_then(|x| x.pid), Some(std::process::id()));
    }

    #[test]
    fn established_counts_the_server_side_of_each_connection_until_it_closes() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(established(port), 0);
        let c1 = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let c2 = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (s1, _) = l.accept().unwrap();
        let (s2, _) = l.accept().unwrap();
        // Two connections: two server-side sockets (the client sides have other local
        // ports and are not counted).
        assert_eq!(established(port), 2);
        drop((c1, s1));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while established(port) != 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(established(port), 1);
        drop((c2, s2));
        while established(port) != 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(established(port), 0);
    }
}
