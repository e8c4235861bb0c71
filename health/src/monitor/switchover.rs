//! The planned switchover: writes held, the master made read-only, the target caught up
//! to its exact position and promoted, the old master made its replica, writes released;
//! undone if the target cannot catch up.

use std::time::Instant;

use tracing::{info, warn};

use super::{Monitor, DRAIN_BOUND};
use crate::crash;
use crate::failover;
use crate::gtid::GtidList;
use crate::note::Note;
use crate::semi_sync;
use crate::sql::{self};
use crate::term;
use crate::topology::{Role, ServerState, Topology};

impl Monitor {
    /// Planned switchover to `target` (or the best replica): writes held, the master made
    /// read-only, the target caught up to its exact position, promoted, the old master
    /// made its replica, writes released. Undone if the target cannot catch up.
    pub(super) async fn switchover(&mut self, target: Option<String>) -> Result<String, String> {
        let t = Topology::build_under(
            self.servers.iter().map(super::Slot::view).collect(),
            self.master,
        );
        let h = match (t.master, self.master) {
            (Some(m), Some(h)) if m == h => h,
            _ => return Err("there is no master to switch over from".into()),
        };
        let c = match target {
            Some(name) => {
                let i = self.index_of(&name)?;
                if t.servers[i].role != Role::Replica || t.servers[i].state != ServerState::Up {
                    return Err(format!("{name} is not an up replica of the master"));
                }
                i
            }
            None => {
                let replicas: Vec<usize> = (0..t.servers.len())
                    .filter(|&i| t.servers[i].role == Role::Replica)
                    .collect();
                let candidates = self.candidates(&t, &replicas);
                failover::choose(&candidates, &GtidList::default())?.index
            }
        };
        let old = self.servers[h].name.clone();
        let name = self.servers[c].name.clone();
        let locks = self.lock_majority(None).await?;
        let mut old_conn = self.open(h).await?;
        let mut new_conn = self.open(c).await?;

        let started = Instant::now();
        self.holding = true;
        self.set_operation(Some(format!(
            "switchover from {old} to {name}: writes held"
        )));
        self.publish();
        // Statements that looked at the master before the hold finish first; every later
        // one sees the hold and waits, so none meets the read-only master.
        if !self
            .handle
            .drain_master(DRAIN_BOUND.min(self.config.catchup_timeout))
            .await
        {
            warn!("switchover from {old} to {name}: statements still running on {old}; making it read-only anyway");
        }
        let caught_up = async {
            old_conn.exec("SET GLOBAL read_only = ON").await?;
            crash::point("switchover:read_only");
            let pos: GtidList = old_conn
                .value("SELECT @@gtid_binlog_pos", self.config.timeout)
                .await?
                .unwrap_or_default()
                .parse()
                .map_err(|e| format!("{e}"))?;
            self.wait_for(&mut new_conn, &pos).await?;
            Ok::<GtidList, String>(pos)
        }
        .await;
        let pos = match caught_up {
            Ok(pos) => pos,
            Err(e) => {
                let undo = old_conn.exec("SET GLOBAL read_only = OFF").await;
                self.holding = false;
                let msg = match undo {
                    Ok(()) => format!("switchover to {name} abandoned, {old} stays master: {e}"),
                    Err(u) => format!(
                        "switchover to {name} abandoned ({e}) and {old} could not be made writable again ({u})"
                    ),
                };
                self.set_operation(None);
                self.publish();
                warn!("{msg}");
                return Err(msg);
            }
        };
        crash::point("switchover:caught_up");
        // From here no OK of the old master's connections is forwarded.
        self.term = self.term.max(term::newest(&t.servers).term) + 1;
        self.publish();
        let promoted = async {
            new_conn.stop_slave().await?;
            crash::point("switchover:stopped");
            new_conn.exec("RESET SLAVE ALL").await
        }
        .await;
        let promoted = match promoted {
            Ok(()) => {
                crash::point("switchover:reset");
                self.record_term(&mut new_conn, c).await;
                crash::point("switchover:recorded");
                self.semi_sync_as_master(&mut new_conn, c).await;
                new_conn.exec("SET GLOBAL read_only = OFF").await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = promoted {
            let msg = format!("switchover from {old} to {name} failed half-way at {pos}: {e}");
            self.servers[c].note = Some(Note::StepFailed(msg.clone()));
            self.holding = false;
            self.set_operation(Some(msg.clone()));
            return Err(msg);
        }
        if let Some(st) = self.servers[c].status.as_mut() {
            st.read_only = false;
            st.replication.clear();
        }
        if let Some(st) = self.servers[h].status.as_mut() {
            st.read_only = true;
        }
        self.master = Some(c);
        self.holding = false;
        self.set_operation(None);
        self.publish();
        let pause = started.elapsed();
        info!(from = %old, to = %name, term = self.term, position = %pos, pause_ms = pause.as_millis() as u64, "switchover done");
        crash::point("switchover:writable");

        let change = sql::change_master(
            &self.servers[c].address,
            &self.config.replication_user,
            &self.config.replication_password,
            "current_pos",
        );
        let demoted = async {
            // As a replica it must not hold its applied commits for an ack.
            if let Some(sql) = semi_sync::as_replica(self.config.durability) {
                old_conn.exec(&sql).await?;
            }
            old_conn.exec(&change).await?;
            old_conn.exec("START SLAVE").await
        }
        .await;
        if let Err(e) = demoted {
            let note = format!("could not be made a replica of {name}: {e}");
            warn!(server = %old, "{note}");
            self.servers[h].note = Some(Note::StepFailed(note));
        }
        crash::point("switchover:demoted");
        let others: Vec<usize> = t
            .replicas()
            .filter_map(|v| self.servers.iter().position(|s| s.name == v.name))
            .collect();
        self.repoint(&others, c, h).await;
        drop(locks);
        Ok(format!(
            "switched over from {old} to {name} at {pos}; writes were held {} ms (term {})",
            pause.as_millis(),
            self.term
        ))
    }
}
