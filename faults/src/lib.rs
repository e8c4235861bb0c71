//! Fault injection and write-loss accounting for the failover tests and benchmark.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
