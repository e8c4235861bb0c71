//! Fault injection and write-loss accounting for kohaproxy's failover tests and benchmark.
//!
//! The failover tests (tests/failover.rs) and the failover benchmark share this crate:
//!
//! - [`relay`]: [`FaultRelay`], a TCP relay that can [`cut`](FaultRelay::cut) (reset),
//!   [`blackhole`](FaultRelay::blackhole) (partition) and [`heal`](FaultRelay::heal) one
//!   link, without root.
//! - [`ledger`]: the write ledger (workload W1 of the failover test plan): N clients insert
//!   unique `(client, seq)` rows through the proxy and record every attempt with its invoke
//!   and completion instants and its outcome; [`verify`] then checks that every
//!   acknowledged row is on the new master.
//! - [`cluster`]: verdicts over a running sandbox: which servers are writable, whether
//!   GTID positions converged, whether table checksums agree.
//! - [`chaos`]: the chaos soak's seeded, reproducible fault schedule.
//! - [`report`]: the benchmarks' markdown reports, gathered and kept.
//! - [`local`]: a free port, Koha's account on a local one.
//! - [`console`]: kohaproxy's admin console through the `mariadb` client (SHOW SERVERS,
//!   SHOW TOPOLOGY, SWITCHOVER, ...).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chaos;
pub mod cluster;
pub mod console;
pub mod ledger;
pub mod local;
pub mod relay;
pub mod report;

pub use cluster::{checksums_equal, gtid_current_pos, wait_converged, writable_servers};
pub use console::{admin, proxy_master, server_row, ServerRow, NOTE_COLUMN};
pub use ledger::{
    longest_outage, verify, verify_blocking, Attempt, Ledger, LedgerHandle, LedgerOptions,
    LedgerReport, Outcome, Verdict,
};
pub use local::{free_port, koha_opts};
pub use relay::{FaultRelay, RelayMode};
