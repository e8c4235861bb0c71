//! Health of the servers behind the proxy: a monitor probes every server and publishes an
//! immutable [`Topology`] snapshot that the data path reads without locks.
//!
//! Single-writer rule: only the monitor task stores snapshots; everyone else `load()`s.
//!
//! Tasks: one monitor task (`Monitor::spawn`), probing every server once per
//! `monitor.interval`, the servers concurrently, each probe bounded by `monitor.timeout`.
//!
//! Modules: [`gtid`] (GTID positions), `probe` (what one server says), [`hysteresis`]
//! (up/down after consecutive failures), [`roles`] (who is master, who replicates),
//! `topology` (the snapshot), `monitor` (the task; `monitor/keep.rs` fences, rejoins and sets semi-sync each round, `monitor/promote.rs` fails over and switches over).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acked;
pub mod control;
pub mod crash;
pub mod cut;
mod failover;
pub mod galera;
pub mod gtid;
pub mod hysteresis;
mod monitor;
pub mod note;
mod probe;
pub mod roles;
pub mod semi_sync;
mod settings;
mod sql;
pub mod term;
mod topology;

pub use acked::Acked;
pub use control::{Command, Control};
pub use gtid::{Gtid, GtidList, GtidState};
pub use hysteresis::{Hysteresis, Outcome};
pub use monitor::Monitor;
pub use note::Note;
pub use probe::{split_address, tcp_opts, Replication, Status, ThreadState};
pub use sql::{change_master, literal};
pub use topology::{Lag, MasterStatement, Role, ServerState, ServerView, Topology, TopologyHandle};
