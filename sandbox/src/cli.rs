//! `kohaproxy sandbox ...` subcommands.
use std::path::PathBuf;
use std::time::Instant;

use crate::status::{render, render_table};
use crate::{ClusterKind, Sandbox, SandboxError, Signal, UpOptions};

/// The `kohaproxy sandbox` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SandboxCommand {
    /// Start a master and N replicas (or, with --galera, N Galera nodes) under DIR and
    /// write DIR/kohaproxy.toml.
    Up {
        /// Directory holding the datadirs, logs, pids and the proxy config.
        #[arg(long)]
        dir: PathBuf,
        /// Number of replicas.
        #[arg(long, default_value_t = 2)]
        replicas: usize,
        /// Start a Galera cluster instead of master and replicas. As root, the nodes run
        /// as the `mysql` user (rsync SST fails for a root mariadbd), so every directory
        /// above DIR must be searchable by it.
        #[arg(long, conflicts_with = "replicas")]
        galera: bool,
        /// Number of Galera nodes (with --galera).
        #[arg(long, default_value_t = 3, requires = "galera")]
        nodes: usize,
        /// Port the proxy config will listen on (0: a free port).
        #[arg(long, default_value_t = 6033)]
        proxy_port: u16,
        /// innodb_buffer_pool_size of each server, in MiB.
        #[arg(long, default_value_t = 64)]
        buffer_pool_mb: u32,
    },
    /// Show each server's pid, read_only, GTID position and replication threads (Galera:
    /// wsrep state, cluster status and size, ready, receive queue, gtid_binlog_pos).
    Status {
        /// The sandbox directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Send a signal to one server (fault injection).
    Kill {
        /// The sandbox directory.
        #[arg(long)]
        dir: PathBuf,
        /// The server: db1, db2, ...
        name: String,
        /// KILL (crash), TERM (clean shutdown), STOP (hang) or CONT (resume).
        #[arg(long, value_enum, default_value_t = Signal::Kill, ignore_case = true)]
        signal: Signal,
    },
    /// Start a server that is not running, with its original options and datadir. A
    /// Galera node rejoins the running nodes, or bootstraps a new cluster if none runs.
    Start {
        /// The sandbox directory.
        #[arg(long)]
        dir: PathBuf,
        /// The server: db1, db2, ...
        name: String,
    },
    /// Stop every server of the sandbox (SIGTERM, then SIGKILL after 10 s).
    Down {
        /// The sandbox directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// Runs one sandbox subcommand, printing its result on stdout.
pub fn run(cmd: SandboxCommand) -> Result<(), SandboxError> {
    match cmd {
        SandboxCommand::Up {
            dir,
            replicas,
            galera,
            nodes,
            proxy_port,
            buffer_pool_mb,
        } => {
            let started = Instant::now();
            let sandbox = Sandbox::up(&UpOptions {
                dir,
                kind: if galera {
                    ClusterKind::Galera
                } else {
                    ClusterKind::Replication
                },
                replicas,
                nodes,
                proxy_port,
                buffer_pool_mb,
            })?;
            let mut table = vec![vec![
                "NAME".to_string(),
                "ROLE".into(),
                "ADDRESS".into(),
                "PID".into(),
                "DATADIR".into(),
            ]];
            for s in sandbox.servers() {
                table.push(vec![
                    s.name.clone(),
                    s.role.to_string(),
                    s.address(),
                    sandbox
                        .pid(&s.name)
                        .map_or_else(|| "-".into(), |p| p.to_string()),
                    s.datadir.display().to_string(),
                ]);
            }
            print!("{}", render(&table));
            if galera {
                println!(
                    "up in {:.1} s; {nodes} Galera node(s) Synced in one Primary component",
                    started.elapsed().as_secs_f64(),
                );
            } else {
                println!(
                    "up in {:.1} s; replication running on {} replica(s)",
                    started.elapsed().as_secs_f64(),
                    replicas
                );
            }
            println!("proxy config: {}", sandbox.config_path().display());
        }
        SandboxCommand::Status { dir } => {
            let sandbox = Sandbox::open(&dir)?;
            print!("{}", render_table(&sandbox.status()?));
        }
        SandboxCommand::Kill { dir, name, signal } => {
            let sandbox = Sandbox::open(&dir)?;
            let pid = sandbox.pid(&name);
            sandbox.kill(&name, signal)?;
            println!(
                "sent SIG{signal} to {name} (pid {})",
                pid.map_or_else(|| "-".into(), |p| p.to_string())
            );
        }
        SandboxCommand::Start { dir, name } => {
            let sandbox = Sandbox::open(&dir)?;
            sandbox.start(&name)?;
            let pid = sandbox
                .pid(&name)
                .map_or_else(|| "-".into(), |p| p.to_string());
            println!("{name} started (pid {pid})");
        }
        SandboxCommand::Down { dir } => {
            let sandbox = Sandbox::open(&dir)?;
            sandbox.down()?;
            println!("sandbox in {} stopped", sandbox.dir().display());
        }
    }
    Ok(())
}
