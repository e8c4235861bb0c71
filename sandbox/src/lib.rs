//! Spawns real local MariaDB clusters (mariadbd from Debian's mariadb-server) for the demo,
//! the tests and the benchmarks.
pub mod cli;
