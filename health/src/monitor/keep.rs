//! Keeping the cluster whole while the master is up, each round: fencing writable
//! servers that are not the master, semi-sync settings that follow the roles, and
//! rejoining read-only servers as replicas (or keeping diverged ones out).

use std::time::Duration;

use kohaproxy_config::Durability;
use tracing::{error, info, warn};

use super::Monitor;
use crate::note::Note;
use crate::probe::ThreadState;
use crate::roles;
use crate::semi_sync;
use crate::sql;
use crate::topology::{Role, ServerState, Topology};

impl Monitor {
    /// Makes read-only every reachable server other than the master that is writable.
    pub(super) async fn fence(&mut self, t: &Topology, h: usize) {
        for (i, v) in t.servers.iter().enumerate() {
            if i == h || v.state != ServerState::Up || v.read_only != Some(false) {
                continue;
            }
            self.publish_term_before_releasing_commits();
            let result = match self.open(i).await {
                Ok(mut s) => {
                    // Commits held for a semi-sync ack that no replica will give (a woken
                    // old master cut off from its replicas) hold `read_only` back, up to
                    // rpl_semi_sync_master_timeout, and would then be answered OK. Killed,
                    // their clients get an error instead and the fence lands at once.
                    kill_held_commits(&mut s, self.config.timeout).await;
                    match self.open(i).await {
                        Ok(killer) => set_read_only_killing_held(s, killer).await,
                        Err(_) => s.exec("SET GLOBAL read_only = ON").await,
                    }
                }
                Err(e) => Err(e),
            };
            let master = self.servers[h].name.clone();
            let note = match result {
                Ok(()) => {
                    if let Some(st) = self.servers[i].status.as_mut() {
                        st.read_only = true;
                    }
                    Note::Fenced {
                        master,
                        term: self.term,
                    }
                }
                Err(error) => Note::FenceFailed { master, error },
            };
            warn!(server = %v.name, "{note}");
            self.servers[i].note = Some(note);
        }
    }

    /// Publishes this proxy's term if its sessions do not have it yet. Killing a commit
    /// held for a semi-sync ack can let another held commit be answered OK with no
    /// replica having it, and so can turning `rpl_semi_sync_master_wait_no_slave` off;
    /// both are harmless only once no session of this proxy forwards an OK from the old
    /// master, that is once the term that replaced it is published. A proxy that learns
    /// of another's promotion adopts the new term in its round and publishes at the end
    /// of the round, after fencing: its sessions had forwarded such OKs (chaos seed 5
    /// lost 6 acknowledged writes, all answered in the same millisecond as the fence's
    /// kills).
    pub(super) fn publish_term_before_releasing_commits(&mut self) {
        if self.handle.term() != self.term {
            self.publish();
        }
    }

    /// Gives each server the semi-sync settings its role and the configured durability
    /// call for ([`crate::semi_sync`]); a failure is logged and the next round tries
    /// again. The master's note says while its commits wait for a replica
    /// ([`Durability::Replicated`]) or while it acknowledges writes alone (otherwise).
    pub(super) async fn semi_sync_follows_roles(&mut self, t: &Topology, h: usize) {
        self.publish_term_before_releasing_commits();
        let durability = self.config.durability;
        let seen: Vec<semi_sync::Seen> = t
            .servers
            .iter()
            .map(|v| semi_sync::Seen {
                up: v.state == ServerState::Up && v.last_error.is_none(),
                wait_no_slave: v.status.as_ref().and_then(|s| s.semi_sync_wait_no_slave),
                timeout_ms: v.status.as_ref().and_then(|s| s.semi_sync_timeout_ms),
            })
            .collect();
        for (i, change) in semi_sync::changes(&seen, h, durability) {
            let sql = change.sql();
            let result = match self.open(i).await {
                Ok(mut s) => s.exec(&sql).await,
                Err(e) => Err(e),
            };
            let name = &self.servers[i].name;
            match result {
                Ok(()) => {
                    info!(server = %name, "{sql}");
                    if let Some(st) = self.servers[i].status.as_mut() {
                        match change {
                            semi_sync::Change::WaitNoSlave(on) => {
                                st.semi_sync_wait_no_slave = Some(on)
                            }
                            semi_sync::Change::Timeout(ms) => st.semi_sync_timeout_ms = Some(ms),
                        }
                    }
                }
                Err(e) => warn!(server = %name, "could not {sql}: {e}"),
            }
        }
        // Only on news from this round: a master whose last probe failed may be hung, and
        // a session opened to it would cost this round a whole timeout.
        if t.servers.len() < 2 || t.servers[h].last_error.is_some() {
            return;
        }
        let Some(status) = t.servers[h].status.as_ref() else {
            return;
        };
        let note = match durability {
            Durability::Replicated if status.semi_sync_clients == Some(0) => Some(
                "no replica is connected: commits wait until one receives them or a \
                 failover (durability = replicated: never acknowledged without a replica)"
                    .to_string(),
            ),
            Durability::Available | Durability::Unmanaged
                if status.semi_sync_active == Some(false) =>
            {
                Some(
                    "semi-sync is off: writes are acknowledged by the master alone (a \
                     failover is refused while it holds writes no replica has; losing its \
                     disk loses them)"
                        .to_string(),
                )
            }
            _ => None,
        };
        let before = self.handle.load();
        let shown = before.servers.get(h).and_then(|v| v.note.as_ref());
        if let Some(note) = note.map(Note::Said) {
            if shown != Some(&note) {
                match durability {
                    // Also for a moment after each promotion, until the replicas are
                    // re-pointed: commits wait, nothing is at risk.
                    Durability::Replicated => warn!(server = %self.servers[h].name, "{note}"),
                    Durability::Available | Durability::Unmanaged => {
                        error!(server = %self.servers[h].name, "{note}")
                    }
                }
            }
            self.servers[h].note = Some(note);
        }
    }

    /// Gives server `c`, about to be made writable, the master's semi-sync settings
    /// ([`semi_sync::as_master`]) on its session `s`, so that no write is acknowledged
    /// under weaker ones before the next round. A failure is logged; the rounds retry.
    pub(super) async fn semi_sync_as_master(&mut self, s: &mut sql::Session, c: usize) {
        let timeout = self.servers[c]
            .status
            .as_ref()
            .and_then(|st| st.semi_sync_timeout_ms);
        for sql in semi_sync::as_master(self.config.durability, timeout) {
            if let Err(e) = s.exec(&sql).await {
                warn!(server = %self.servers[c].name, "could not {sql}: {e}");
            }
        }
    }

    /// Rejoins as replicas of the master the read-only servers that replicate from nobody
    /// or from another server, unless their history diverged (then they are kept out and
    /// the extra transactions are shown).
    pub(super) async fn rejoin(&mut self, t: &Topology, h: usize) {
        let Some(master_state) = t.servers[h]
            .status
            .as_ref()
            .map(|s| s.gtid_binlog_state.clone())
        else {
            return;
        };
        for (i, v) in t.servers.iter().enumerate() {
            if i == h || v.state != ServerState::Up || self.servers[i].maintenance {
                continue;
            }
            let Some(st) = v.status.as_ref() else {
                continue;
            };
            // Kept out as diverged, and a replica of the master since, holding nothing the
            // master lacks: rebuilt (`REBUILD`, or by a person).
            if v.role == Role::Replica
                && self.servers[i].note.as_ref().is_some_and(Note::is_diverged)
                && st.gtid_binlog_state.extra_over(&master_state).is_empty()
            {
                info!(server = %v.name, master = %t.servers[h].name, "no longer diverged: replicates from the master and holds nothing it lacks");
                self.servers[i].note = None;
            }
            if st.read_only && v.role == Role::Replica && replication_stopped_cleanly(st) {
                self.restart_replication(i, &t.servers[h].name).await;
                continue;
            }
            if !st.read_only || !matches!(v.role, Role::Standalone | Role::Stale) {
                continue;
            }
            let follows_other = match st.replication.as_slice() {
                [] => true,
                [link] => roles::master_of(&t.servers, link) != Some(h),
                _ => false,
            };
            if !follows_other {
                continue;
            }
            let extra = st.gtid_binlog_state.extra_over(&master_state);
            if !extra.is_empty() {
                let list: Vec<String> = extra.iter().map(ToString::to_string).collect();
                let note = Note::Diverged {
                    server: v.name.clone(),
                    master: t.servers[h].name.clone(),
                    extra: list.join(","),
                };
                if self.servers[i].note.as_ref() != Some(&note) {
                    warn!(server = %v.name, "{note}");
                    self.servers[i].note = Some(note);
                }
                continue;
            }
            // No transaction at all while the master has some: emptied (a rebuild under
            // way, perhaps another kohaproxy's) or new. Replicating from the master's first
            // binlog would replay into a restore, or fail on purged files: never here.
            let master_has = t.servers[h]
                .status
                .as_ref()
                .is_some_and(|m| !m.gtid_binlog_pos.is_empty());
            if st.gtid_current_pos.is_empty() && master_has {
                let note = Note::Empty {
                    server: v.name.clone(),
                };
                if self.servers[i].note.as_ref() != Some(&note) {
                    info!(server = %v.name, "{note}");
                    self.servers[i].note = Some(note);
                }
                continue;
            }
            let change = sql::change_master(
                &t.servers[h].address,
                &self.config.replication_user,
                &self.config.replication_password,
                "current_pos",
            );
            let result = match self.open(i).await {
                Ok(mut s) => {
                    let _ = s.stop_slave().await;
                    // A fenced old master still holds commits for an ack ([`semi_sync`]).
                    if let Some(sql) = semi_sync::as_replica(self.config.durability) {
                        let _ = s.exec(&sql).await;
                    }
                    match s.exec(&change).await {
                        Ok(()) => s.exec("START SLAVE").await,
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            let note = match result {
                Ok(()) => {
                    info!(server = %v.name, master = %t.servers[h].name, "rejoined as a replica");
                    Note::Rejoined {
                        master: t.servers[h].name.clone(),
                        term: self.term,
                    }
                }
                Err(e) => {
                    let note = Note::StepFailed(format!("rejoin failed: {e}"));
                    if self.servers[i].note.as_ref() != Some(&note) {
                        warn!(server = %v.name, "{note}");
                    }
                    note
                }
            };
            self.servers[i].note = Some(note);
        }
    }

    /// Starts again the stopped replication of server `i`, a replica of the master
    /// `master`: a replica that does not receive leaves acknowledged writes on the master
    /// alone, and under `durability = "replicated"` with no other replica holds every
    /// commit. A server whose replication is meant to stay stopped is put in maintenance.
    async fn restart_replication(&mut self, i: usize, master: &str) {
        let result = match self.open(i).await {
            Ok(mut s) => s.exec("START SLAVE").await,
            Err(e) => Err(e),
        };
        let note = match result {
            Ok(()) => {
                info!(server = %self.servers[i].name, %master, "replication was stopped with no error: started again (MAINTENANCE keeps a server's replication stopped)");
                Note::Said(format!(
                    "replication found stopped with no error; started again (term {})",
                    self.term
                ))
            }
            Err(e) => {
                let note =
                    Note::StepFailed(format!("could not start its stopped replication: {e}"));
                if self.servers[i].note.as_ref() != Some(&note) {
                    warn!(server = %self.servers[i].name, "{note}");
                }
                note
            }
        };
        self.servers[i].note = Some(note);
    }
}

/// Whether a server's one replication link has both threads stopped with no error: stopped
/// by a statement (a switchover interrupted between stopping its target's replication and
/// recording the promotion, or a person), not by a failure.
fn replication_stopped_cleanly(st: &crate::probe::Status) -> bool {
    match st.replication.as_slice() {
        [link] => {
            link.io_thread == ThreadState::Stopped
                && link.sql_thread == ThreadState::Stopped
                && link.last_io_error.is_none()
                && link.last_sql_error.is_none()
        }
        _ => false,
    }
}

/// How often a fence looks again for commits held for a semi-sync ack while its
/// `SET GLOBAL read_only = ON` waits.
const HELD_COMMIT_SWEEP: Duration = Duration::from_millis(50);

/// `SET GLOBAL read_only = ON` on `s`, while `killer` (a second session to the same
/// server) kills every commit held for a semi-sync ack until the SET returns. The SET
/// waits for commits in flight, and clients of a writable server keep sending new ones:
/// killed once before the SET, a server under load had a new held commit each round and
/// took three rounds (over 2 s) to fence (chaos seed 4).
async fn set_read_only_killing_held(
    mut s: sql::Session,
    mut killer: sql::Session,
) -> Result<(), String> {
    let set = s.exec("SET GLOBAL read_only = ON");
    tokio::pin!(set);
    let limit = killer.timeout();
    loop {
        tokio::select! {
            result = &mut set => return result,
            () = tokio::time::sleep(HELD_COMMIT_SWEEP) => {
                kill_held_commits(&mut killer, limit).await;
            }
        }
    }
}

/// Kills the connections whose commit waits for a semi-sync ack on a server being fenced
/// (best effort: one that finished meanwhile is no error). Their clients get an error,
/// never OK; the transaction stays in the server's binlog (a replica that connects later
/// receives it). Killing one can let another held commit be answered OK with no replica
/// having it (measured): harmless only because the fenced server is no longer the term's
/// master and this proxy's sessions already have that term
/// ([`Monitor::publish_term_before_releasing_commits`], called before any kill); a proxy
/// that has not heard of the term yet still forwards such an OK (see ARCHITECTURE's
/// "Not done").
async fn kill_held_commits(s: &mut sql::Session, limit: Duration) {
    let ids = s
        .value(
            "SELECT GROUP_CONCAT(ID) FROM information_schema.PROCESSLIST \
             WHERE STATE = 'Waiting for semi-sync ACK from slave'",
            limit,
        )
        .await;
    let Ok(Some(ids)) = ids else { return };
    for id in ids
        .split(',')
        .filter_map(|id| id.trim().parse::<u64>().ok())
    {
        let _ = s.exec(&format!("KILL CONNECTION {id}")).await;
    }
    info!(
        server = %s.name(),
        connections = %ids,
        "fencing: killed commits held for a semi-sync ack (their clients get an error, not OK)"
    );
}
