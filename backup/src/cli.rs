//! `kohaproxy backup run|list|verify|restore`: backups from the command line, beside a
//! running proxy or without one (for cron users and restores).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;
use kohaproxy_config::Config;

use crate::error::BackupError;
use crate::restore::{self, RestoreOptions, Target};
use crate::runner::Backups;
use crate::source::Endpoint;
use crate::verify;

/// The `backup` subcommands.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Take a backup now, from the best replica (or --from), and wait for it.
    Run {
        /// The proxy's TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The server to back up from.
        #[arg(long)]
        from: Option<String>,
    },
    /// List the backups, newest first.
    List {
        /// The proxy's TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a backup's files against its manifest; with --restore-test, also restore it
    /// into a throw-away server and compare every table's row count and checksum.
    Verify {
        /// The backup's id (see `list`).
        id: String,
        /// The proxy's TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Restore into a throw-away local server and compare every table.
        #[arg(long)]
        restore_test: bool,
    },
    /// Load a backup into a server, then make it a replica (--as-replica-of) or print
    /// the statements that do.
    Restore {
        /// The backup's id (see `list`).
        id: String,
        /// The proxy's TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The server to load into, HOST:PORT.
        #[arg(long)]
        to: String,
        /// Account on that server (needs to create databases, users and set GTIDs).
        #[arg(long, default_value = "root")]
        user: String,
        /// Its password.
        #[arg(long, default_value = "")]
        password: String,
        /// Then make it replicate from this server of the config from the backup's position.
        #[arg(long)]
        as_replica_of: Option<String>,
        /// Files loaded at once (default: backup.parallel).
        #[arg(long)]
        parallel: Option<usize>,
        /// Keep binary logging on during the load (the load then becomes the server's own
        /// transactions; it cannot replicate from the backup's position).
        #[arg(long)]
        keep_binlog: bool,
    },
}

/// Runs a `backup` subcommand; what it did goes to stdout.
pub fn run(command: BackupCommand) -> Result<(), BackupError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| BackupError::Stopped(format!("no runtime: {e}")))?;
    runtime.block_on(run_async(command))
}

fn load(config: &std::path::Path) -> Result<Arc<Config>, BackupError> {
    Config::load(config)
        .map(Arc::new)
        .map_err(|e| BackupError::Config(e.to_string()))
}

async fn run_async(command: BackupCommand) -> Result<(), BackupError> {
    match command {
        BackupCommand::Run { config, from } => {
            let backups = Backups::standalone(load(&config)?);
            let m = backups.run(from.as_deref()).await?;
            println!(
                "backup {} ok from {} at {}: {} files, {} bytes, {:.1} s (replica paused {:.1} s)",
                m.id,
                m.source,
                m.gtid_position,
                m.files.len(),
                m.bytes(),
                m.duration_ms as f64 / 1000.0,
                m.paused_ms as f64 / 1000.0
            );
        }
        BackupCommand::List { config } => {
            let backups = Backups::standalone(load(&config)?);
            print!("{}", render(&backups.list()?));
        }
        BackupCommand::Verify {
            id,
            config,
            restore_test,
        } => {
            let config = load(&config)?;
            let backups = Backups::standalone(config.clone());
            let (dir, mut manifest) = backups.store()?.find(&id)?;
            let options = options(&config, None, false);
            let test = restore_test.then_some(&options);
            let said = verify::verify(&dir, &mut manifest, test).await?;
            println!("backup {id} verified: {said}");
        }
        BackupCommand::Restore {
            id,
            config,
            to,
            user,
            password,
            as_replica_of,
            parallel,
            keep_binlog,
        } => {
            let config = load(&config)?;
            let backups = Backups::standalone(config.clone());
            let (dir, manifest) = backups.store()?.find(&id)?;
            let target = Target::new(&to, &to, &user, &password);
            let master = match &as_replica_of {
                Some(name) => Some(
                    config
                        .servers
                        .iter()
                        .find(|s| &s.name == name)
                        .ok_or_else(|| {
                            BackupError::NoSource(format!(
                                "no server is called {name} in the config"
                            ))
                        })?
                        .address
                        .clone(),
                ),
                None => None,
            };
            let cluster: Vec<Endpoint> = config
                .servers
                .iter()
                .map(|s| {
                    let b = &config.backup;
                    Endpoint::new(&s.name, &s.address, &b.user, &b.password)
                })
                .collect();
            // Checked before the load, which may take long: a replica-to-be must not
            // share a server_id with the cluster.
            if let Some(clash) = restore::server_id_clash(&target, &cluster).await? {
                if as_replica_of.is_some() {
                    return Err(BackupError::Target(clash));
                }
                eprintln!("warning: before it replicates, {clash}");
            }
            let options = options(&config, parallel, keep_binlog);
            restore::restore(&dir, &manifest, &target, &options).await?;
            println!("backup {id} restored into {to}");
            let m = &config.monitor;
            match master {
                Some(address) => {
                    restore::make_replica(
                        &target,
                        &manifest,
                        &address,
                        &m.replication_user,
                        &m.replication_password,
                    )
                    .await?;
                    println!(
                        "{to} now replicates from {address} from {}",
                        manifest.gtid_position
                    );
                }
                None => {
                    println!("to make it a replica from the backup's position, run on it:");
                    let master = manifest
                        .master
                        .as_ref()
                        .and_then(|n| config.servers.iter().find(|s| &s.name == n))
                        .map_or("MASTER_HOST:PORT".to_owned(), |s| s.address.clone());
                    for sql in restore::replica_statements(
                        &manifest,
                        &master,
                        &m.replication_user,
                        "<replication password>",
                    ) {
                        println!("  {sql};");
                    }
                }
            }
        }
    }
    Ok(())
}

fn options(config: &Config, parallel: Option<usize>, binlog: bool) -> RestoreOptions {
    RestoreOptions {
        program: config.backup.mariadb.clone(),
        parallel: parallel.unwrap_or(config.backup.parallel).max(1),
        binlog,
        bar: true,
        accounts: true,
    }
}

/// The `list` table: id, started, source, GTID, size, duration, state.
pub fn render(list: &[crate::store::Listing]) -> String {
    let mut rows = vec![[
        "id".to_owned(),
        "started".to_owned(),
        "source".to_owned(),
        "gtid".to_owned(),
        "size".to_owned(),
        "duration".to_owned(),
        "state".to_owned(),
    ]];
    for b in list {
        let m = b.manifest.as_ref();
        let get = |f: &dyn Fn(&crate::Manifest) -> String| m.map(f).unwrap_or_default();
        let mut state = b.status.clone();
        if let Some(p) = &b.problem {
            state.push_str(": ");
            state.push_str(p);
        }
        rows.push([
            b.id.clone(),
            get(&|m| m.started.chars().take(19).collect()),
            get(&|m| m.source.clone()),
            get(&|m| m.gtid_position.clone()),
            get(&|m| format!("{:.1} MB", m.bytes() as f64 / 1e6)),
            get(&|m| format!("{:.1} s", m.duration_ms as f64 / 1000.0)),
            state,
        ]);
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
