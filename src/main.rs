//! The `kohaproxy` binary: command-line parsing and wiring of the library crates.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A MySQL-protocol proxy that keeps Koha online in front of a MariaDB cluster.
#[derive(Debug, Parser)]
#[command(name = "kohaproxy", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy with a configuration file.
    Run {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and exit (status 1 and a message naming the key if wrong).
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
    /// Take, list, verify and restore backups.
    Backup {
        #[command(subcommand)]
        command: kohaproxy_backup::cli::BackupCommand,
    },
    /// Start, inspect and break a local MariaDB sandbox cluster.
    Sandbox {
        #[command(subcommand)]
        command: kohaproxy_sandbox::cli::SandboxCommand,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Run { config } => {
            let config = kohaproxy_config::Config::load(&config)?;
            kohaproxy_proxy::run(
                config,
                Box::new(|shared| {
                    let scheduler = kohaproxy_admin::backups_of(&shared).scheduler();
                    let mut services = kohaproxy_admin::services(shared)?;
                    services.push(Box::pin(scheduler));
                    Ok(services)
                }),
            )?;
        }
        Command::CheckConfig { file } => {
            let config = kohaproxy_config::Config::load(&file)?;
            println!(
                "{}: ok ({} servers, {} users)",
                file.display(),
                config.servers.len(),
                config.users.len()
            );
        }
        Command::Sandbox { command } => kohaproxy_sandbox::cli::run(command)?,
        Command::Backup { command } => kohaproxy_backup::cli::run(command)?,
    }
    Ok(())
}

/// Logs to stderr; `RUST_LOG` overrides the default `info` level.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
