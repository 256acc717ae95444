//! What the kernel says about a port: who listens on it, and how many connections to it
//! are established (read from `/proc/net/tcp` and `/proc/net/tcp6`).
//!
//! (Stub: owned by the nginx work.)

/// A process listening on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Its pid, when it could be found (`/proc/*/fd`).
    pub pid: Option<u32>,
    /// Its command name (`/proc/<pid>/comm`).
    pub command: Option<String>,
}

/// Who listens on TCP `port` (any address, IPv4 or IPv6), if anyone.
pub fn listener(_port: u16) -> Option<Listener> {
    unimplemented!("nginx work")
}

/// Established TCP connections whose local port is `port` (the server side).
pub fn established(_port: u16) -> usize {
    unimplemented!("nginx work")
}
