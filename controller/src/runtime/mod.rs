//! The long-running side: the daemon loop (per-app queues, monitors, graceful stop), the
//! local HTTP API in front of it and its listeners, the events it broadcasts and the
//! metrics it exports.

pub mod api;
pub mod daemon;
pub mod events;
pub mod metrics;
pub mod serve;
