//! Cutting replicas off from a master a failover replaces, and undoing the cut when the
//! failover does not promote: refused by this proxy, or left half-way by a proxy that
//! died (found by any proxy through the mark each cut replica holds, see [`crate::cut`]).

use tracing::{debug, info, warn};

use super::{replicas_of, Monitor, Slot};
use crate::cut::{self, CutMark};
use crate::note::Note;
use crate::probe::ThreadState;
use crate::sql::Session;
use crate::topology::{ServerView, Topology};

impl Monitor {
    /// Stops the IO thread of every replica in `replicas` that still has one, so that the
    /// old master `h` gets no more semi-sync acks; their SQL threads are started first
    /// (while the IO thread runs, so the relay log is kept) and go on applying it. Each
    /// is marked cut off from `h` first ([`crate::cut`]). Returns the replicas cut off;
    /// one that cannot be reached is left as it is (it is compared as absent).
    pub(super) async fn cut_off_from(&self, h: usize, replicas: &[usize]) -> Vec<usize> {
        let old_id = self.servers[h].view().status.map(|s| s.server_id);
        let term = self.term;
        let cuts = replicas.iter().map(|&r| async move {
            let view = self.servers[r].view();
            let reading = view
                .status
                .as_ref()
                .and_then(|s| s.replication.first())
                .is_some_and(|l| l.io_thread != ThreadState::Stopped);
            if !reading {
                return None;
            }
            let result = async {
                let mut s = self.open(r).await?;
                // Marked before the cut: a proxy that dies between the two leaves a mark
                // on a replica that still reads, which is never acted on (`looks_cut`).
                if let Some(id) = old_id {
                    if let Err(e) = mark(&mut s, id, term).await {
                        warn!(server = %self.servers[r].name, "could not mark the cut: only this proxy can undo it: {e}");
                    }
                }
                s.exec("START SLAVE SQL_THREAD").await?;
                s.stop_io_thread().await
            }
            .await;
            match result {
                Ok(()) => Some(r),
                Err(e) => {
                    warn!(server = %self.servers[r].name, old = %self.servers[h].name, "could not be cut off from the old master before the failover: {e}");
                    None
                }
            }
        });
        futures::future::join_all(cuts)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Undoes [`Self::cut_off_from`]: the old master `h`, still (or again) the master,
    /// has its replicas again. Each replica first applies its relay log: starting the IO
    /// thread discards it in GTID mode, and its tail may hold writes acknowledged while
    /// only the old master, now gone, has them too. One whose relay log is not applied
    /// within `catchup_timeout` stays cut off (its note says so).
    pub(super) async fn reconnect_to(&mut self, h: usize, cut: &[usize]) {
        for &r in cut {
            let result = async {
                let mut s = self.open(r).await?;
                self.drain_relay_log(&mut s).await?;
                s.exec("START SLAVE IO_THREAD").await?;
                clear_mark(&mut s).await;
                Ok::<(), String>(())
            }
            .await;
            match result {
                Ok(()) => {
                    info!(server = %self.servers[r].name, master = %self.servers[h].name, "reconnected to the master it was cut off from for a failover that did not promote");
                }
                Err(e) => {
                    let note = format!(
                        "cut off from {} for a failover that did not promote, and not reconnected: {e}",
                        self.servers[h].name
                    );
                    warn!(server = %self.servers[r].name, "{note}");
                    self.servers[r].note = Some(Note::StepFailed(note));
                }
            }
        }
    }

    /// Clears the marks of the replicas a finished failover cut off (best effort: a mark
    /// left names the old master, and counts only if that server is the master again
    /// while the replica's IO thread is stopped).
    pub(super) async fn clear_marks(&self, cut: &[usize]) {
        let clears = cut.iter().map(|&r| async move {
            if let Ok(mut s) = self.open(r).await {
                clear_mark(&mut s).await;
            }
        });
        futures::future::join_all(clears).await;
    }

    /// Reconnects the replicas of the master `h` that a failover cut off from it and left
    /// cut (a proxy died between the cut and the promotion, and `h` answers again). Only
    /// a replica that [`cut::looks_cut`] has its mark read; the reconnection runs under
    /// the topology lock, after a fresh probe, so never while a failover is under way.
    pub(super) async fn reconnect_cut_off(&mut self, t: &Topology, h: usize) {
        let Some(master_id) = t.servers[h].status.as_ref().map(|s| s.server_id) else {
            return;
        };
        let mut marked = Vec::new();
        for r in self.looking_cut(t, h) {
            if cut::cut_from(self.read_mark(r).await, master_id) {
                marked.push(r);
            }
        }
        if marked.is_empty() {
            return;
        }
        let _locks = match self.lock_majority(None).await {
            Ok(locks) => locks,
            Err(e) => {
                debug!("replicas cut off from the master by an unfinished failover; not reconnected this round: {e}");
                return;
            }
        };
        self.probe().await;
        let views: Vec<ServerView> = self.servers.iter().map(Slot::view).collect();
        let (_, under) = crate::term::master_to_follow(&views, self.master);
        let t = Topology::build_under(views, under);
        if t.master != Some(h) {
            return;
        }
        let still = self.looking_cut(&t, h);
        marked.retain(|r| still.contains(r));
        let names: Vec<&str> = marked
            .iter()
            .map(|&r| self.servers[r].name.as_str())
            .collect();
        warn!(master = %self.servers[h].name, replicas = ?names, "replicas were cut off from the master by a failover that never promoted (its proxy died): reconnecting them");
        self.reconnect_to(h, &marked).await;
    }

    /// The replicas of `h` (not in maintenance) whose link is in the state a cut leaves.
    fn looking_cut(&self, t: &Topology, h: usize) -> Vec<usize> {
        replicas_of(t, h)
            .into_iter()
            .filter(|&r| !self.servers[r].maintenance && link_looks_cut(&t.servers[r]))
            .collect()
    }

    /// The mark server `r` holds (`None`: none, or it could not be read).
    async fn read_mark(&self, r: usize) -> Option<CutMark> {
        let mut s = self.open(r).await.ok()?;
        let row = s.row(cut::READ_SQL, s.timeout()).await.ok()?;
        cut::parse(&row)
    }
}

/// Whether a server's one replication link is in the state a cut leaves.
fn link_looks_cut(v: &ServerView) -> bool {
    v.status
        .as_ref()
        .is_some_and(|st| matches!(st.replication.as_slice(), [link] if cut::looks_cut(link)))
}

/// Marks the replica behind `s` cut off from the master `master_id` by the failover of
/// `term`.
async fn mark(s: &mut Session, master_id: u32, term: u64) -> Result<(), String> {
    s.exec(cut::NO_BINLOG_SQL).await?;
    for sql in cut::CREATE_SQL {
        s.exec(sql).await?;
    }
    s.exec(&cut::mark_sql(master_id, term)).await
}

/// Clears the mark of the replica behind `s` (best effort: no table is no mark).
async fn clear_mark(s: &mut Session) {
    if s.exec(cut::NO_BINLOG_SQL).await.is_ok() {
        let _ = s.exec(cut::CLEAR_SQL).await;
    }
}
