//! Spawns real local MariaDB clusters (mariadbd from Debian's mariadb-server) for the demo,
//! the tests and the benchmarks.
//!
//! A sandbox lives in one directory: `DIR/<name>/` per server (datadir, error.log, socket,
//! pid file), `DIR/sandbox.json` (what was started, so later commands find it) and
//! `DIR/kohaproxy.toml` (a ready proxy config for the cluster). Servers are started from a
//! cached template datadir (see [`template`]) so that `up` takes seconds, and they outlive
//! the process that started them until [`Sandbox::down`].
//!
//! ```no_run
//! use kohaproxy_sandbox::{Sandbox, SandboxGuard, UpOptions};
//! let sb = SandboxGuard(Sandbox::up(&UpOptions::new("/tmp/sb1"))?);
//! sb.sql("db1", "CREATE TABLE koha.t (id INT PRIMARY KEY)")?;
//! sb.wait_replication(std::time::Duration::from_secs(10))?;
//! # Ok::<(), kohaproxy_sandbox::SandboxError>(())
//! ```
//!
//! A Galera cluster of three nodes instead (see [`galera`]):
//!
//! ```no_run
//! use kohaproxy_sandbox::{Sandbox, SandboxGuard, UpOptions};
//! let sb = SandboxGuard(Sandbox::up(&UpOptions::galera("/tmp/sb2", 3))?);
//! sb.sql("db2", "CREATE TABLE koha.t (id INT PRIMARY KEY)")?;
//! assert!(sb.wsrep_status("db3")?.is_synced());
//! sb.wait_galera_synced(std::time::Duration::from_secs(10))?;
//! # Ok::<(), kohaproxy_sandbox::SandboxError>(())
//! ```
#![forbid(unsafe_code)]

pub mod cli;
mod client;
mod cluster;
mod error;
pub mod galera;
mod guard;
mod ops;
mod process;
mod server;
mod state;
mod status;
pub mod template;

pub use cluster::{ClusterKind, Sandbox, UpOptions};
pub use error::SandboxError;
pub use guard::SandboxGuard;
pub use process::Signal;
pub use server::{GaleraPorts, Role, ServerInfo};
pub use status::{render_table, ProcessState, ReplicationThreads, ServerStatus, WsrepStatus};
