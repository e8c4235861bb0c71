//! Health of the servers behind the proxy: a monitor probes every server and publishes an
//! immutable [`Topology`] snapshot that the data path reads without locks.
//!
//! Single-writer rule: only the monitor task stores snapshots; everyone else `load()`s.
//!
//! Tasks: one monitor task (`Monitor::spawn`), probing every server once per
//! `monitor.interval`, each probe bounded by `monitor.timeout`.
#![forbid(unsafe_code)]

mod monitor;
mod topology;

pub use monitor::Monitor;
pub use topology::{ServerState, ServerView, Topology, TopologyHandle};
