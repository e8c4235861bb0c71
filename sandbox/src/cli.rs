//! `kohaproxy sandbox ...` subcommands.
use std::path::PathBuf;

/// The `kohaproxy sandbox` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SandboxCommand {
    /// Start a master and N replicas (or a Galera cluster) under DIR and write DIR/kohaproxy.toml.
    Up {
        /// Directory holding the datadirs, logs, pids and the proxy config.
        #[arg(long)]
        dir: PathBuf,
        /// Number of replicas.
        #[arg(long, default_value_t = 2)]
        replicas: usize,
        /// Port the proxy config will listen on.
        #[arg(long, default_value_t = 6033)]
        proxy_port: u16,
    },
}

/// Runs one sandbox subcommand, printing its result on stdout.
pub fn run(_cmd: SandboxCommand) -> Result<(), std::io::Error> {
    unimplemented!("sandbox")
}
