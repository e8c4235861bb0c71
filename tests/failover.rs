//! Failover, switchover, fencing and rejoin against a real sandbox (a master and two
//! replicas, semi-synchronous AFTER_SYNC) with the real proxy, under write load.
//!
//! Every test runs the write ledger of `kohaproxy-faults` through the proxy: client
//! sessions insert `(client, seq)` rows continuously and record every write that got an
//! OK. Faults are injected with the sandbox (SIGKILL, SIGSTOP) and TCP fault relays (a
//! cut link). After the cluster settles, every acknowledged row must be on the master
//! and exactly one server is writable. Each run prints its RTO (fault to the first
//! acknowledged write started after it), acknowledged writes lost, client errors and the
//! writable servers. Scenario numbers refer to ../shared/research/failover.md section 8.
//!
//! The proxy runs with the default monitor settings (500 ms probes, 3 failures).

mod common;

#[path = "failover/crash.rs"]
mod crash;
#[path = "failover/durability.rs"]
mod durability;
#[path = "failover/sessions.rs"]
mod sessions;

use std::process::Command;
use std::time::{Duration, Instant};

use common::failover::*;
use common::{spawn_proxy, Env};
use kohaproxy_faults::{verify_blocking, wait_converged, writable_servers, FaultRelay};
use kohaproxy_sandbox::Signal;
