//! Failover: promoting the best replica of a failed master, and the steps a switchover
//! shares with it (the topology lock, applying the relay log, recording the term,
//! re-pointing replicas). Each operation holds the topology lock on a majority of the
//! servers (so of several kohaproxy instances only one acts), publishes every step that
//! changes where writes may go, and leaves a note when a step fails half-way. The
//! switchover is in `switchover.rs`, the admin commands in `commands.rs`.

use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::{io_running, replicas_of, Monitor, LOCK};
use crate::crash;
use crate::failover::absent::{self, Absent, MasterSeen};
use crate::failover::{self, Candidate};
use crate::gtid::GtidList;
use crate::note::Note;
use crate::sql::{self, Session, Target};
use crate::term;
use crate::topology::{ServerState, ServerView, Topology};

/// Why a failover runs, which decides what it checks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    /// The master is down: no failover while a replica still receives from it.
    Down,
    /// A person asked for it (`FAILOVER`): the master is down, whatever the replicas see.
    Forced,
    /// The master came back from a crash without transactions a replica holds
    /// ([`failover::ahead_of_master`]): it is up and read-only, and never made writable
    /// again; the replica that holds them is promoted.
    BehindReplicas,
}

impl Monitor {
    /// Opens an acting connection to server `index`.
    pub(super) async fn open(&self, index: usize) -> Result<Session, String> {
        let slot = &self.servers[index];
        let target = Target {
            name: &slot.name,
            address: &slot.address,
        };
        Session::open(
            target,
            &self.config.user,
            &self.config.password,
            self.config.timeout,
        )
        .await
    }

    /// Takes the topology lock on a majority of the servers other than `except` (the
    /// failed master). Returns the connections holding it: dropping them releases it.
    ///
    /// The locks are taken one server at a time in config order, and a lock held by
    /// someone else ends the attempt: two proxies never end up holding half each and
    /// retrying in step forever; the one that got the first reachable server wins.
    pub(super) async fn lock_majority(
        &self,
        except: Option<usize>,
    ) -> Result<Vec<Session>, String> {
        let voters: Vec<usize> = (0..self.servers.len())
            .filter(|&i| Some(i) != except)
            .collect();
        let need = voters.len() / 2 + 1;
        let sql = format!("SELECT GET_LOCK({}, 0)", sql::literal(LOCK));
        let mut held = Vec::new();
        let mut unreachable = Vec::new();
        for i in voters {
            let mut s = match self.open(i).await {
                Ok(s) => s,
                Err(e) => {
                    unreachable.push(e);
                    continue;
                }
            };
            match s.value(&sql, self.config.timeout).await {
                Ok(Some(v)) if v == "1" => held.push(s),
                Ok(_) => {
                    return Err(format!(
                        "the topology lock on {} is held by another kohaproxy",
                        self.servers[i].name
                    ))
                }
                Err(e) => unreachable.push(e),
            }
            if held.len() >= need {
                return Ok(held);
            }
        }
        Err(format!(
            "could not lock a majority of the servers ({} of {need} needed; {})",
            held.len(),
            unreachable.join("; ")
        ))
    }

    /// The servers `indices` as promotion candidates: what each received (applied, raised
    /// to its relay log's `Gtid_IO_Pos`), its priority, and whether it may be promoted.
    pub(super) fn candidates(&self, t: &Topology, indices: &[usize]) -> Vec<Candidate> {
        indices
            .iter()
            // A server whose latest probe failed is not compared on an older status: it
            // is absent (see `failover::absent`).
            .filter(|&&i| self.servers[i].unreachable_since.is_none())
            .filter_map(|&i| {
                let st = t.servers[i].status.as_ref()?;
                let mut received = st.gtid_current_pos.clone();
                if let Some(link) = st.replication.first() {
                    received.raise_all(&link.gtid_io_pos);
                }
                let cfg = self.server_config.get(i);
                Some(Candidate {
                    index: i,
                    name: self.servers[i].name.clone(),
                    server_id: st.server_id,
                    received,
                    priority: cfg.map_or(0, |c| c.priority),
                    eligible: !cfg.is_some_and(|c| c.no_promote) && !self.servers[i].maintenance,
                })
            })
            .collect()
    }

    /// Promotes the best replica of the failed master `h`: lock, new term (no OK of the
    /// old master is forwarded from now on), choose, apply the relay log, promote,
    /// re-point the other replicas.
    pub(super) async fn failover(&mut self, h: usize, why: Why) -> Result<String, String> {
        let started = Instant::now();
        let old = self.servers[h].name.clone();
        let locks = match self.lock_majority(Some(h)).await {
            Ok(l) => l,
            Err(e) => {
                let op = format!("failover from {old} postponed: {e}");
                self.set_operation(Some(op.clone()));
                return Err(op);
            }
        };
        crash::point("failover:locked");
        // Under the lock, look again: another proxy may have acted meanwhile. A master
        // that is down is not probed (a hung one would cost a whole probe timeout).
        self.probe_except((why != Why::BehindReplicas).then_some(h))
            .await;
        let views: Vec<ServerView> = self.servers.iter().map(super::Slot::view).collect();
        let recorded = term::newest(&views);
        let t = Topology::build_under(views, recorded.master);
        if let Some(m) = t.master {
            drop(locks);
            if let Some(refusal) = self.lacks_acked(&t.servers[m]) {
                return Err(refusal);
            }
            let name = self.servers[m].name.clone();
            self.adopt(
                m,
                recorded.term,
                "another server was made master meanwhile: following it",
            );
            return Ok(format!("{name} is the master now"));
        }
        if let Some(c) = term::unfinished_promotion(&t.servers) {
            // Another kohaproxy (or this one, before a restart) died half-way through
            // promoting `c`: finish that promotion rather than start another.
            let result = self.finish_promotion(c, recorded.term).await;
            drop(locks);
            return result;
        }
        if why == Why::BehindReplicas {
            if t.servers[h].read_only != Some(true) || self.lost_by_master(&t.servers, h).is_none()
            {
                drop(locks);
                return Err(format!(
                    "{old} no longer lacks what its replicas hold: no failover"
                ));
            }
        } else if t.servers[h].state == ServerState::Up {
            drop(locks);
            return Err(format!("{old} answers again: no failover"));
        }
        let replicas = replicas_of(&t, h);
        let now = Instant::now();
        let seeing = replicas
            .iter()
            .any(|&i| io_running(&t.servers[i]) && self.receiving(i, &t.servers[i], now));
        if why == Why::Down && seeing {
            drop(locks);
            return Err(format!(
                "a replica still replicates from {old}: no failover"
            ));
        }

        let candidates = self.candidates(&t, &replicas);
        // A first look, without a new term: a refusal must not cut the old master's
        // sessions off (it may come back, and then it stays the master).
        if let Err(e) = self.choose(h, why, &candidates) {
            let op = format!("failover from {old} refused: {e}; writes wait for {old} to return");
            self.set_operation(Some(op.clone()));
            return Err(op);
        }
        // Above every term the servers record, so other proxies see this promotion as
        // the newest.
        self.term = self.term.max(recorded.term) + 1;
        // Until this failover finishes, `h` is no longer trusted (also when run by hand):
        // should it answer again first, it is confirmed under the lock before a write.
        self.trust = super::Trust::Doubted;
        self.set_operation(Some(format!(
            "failover from {old}: choosing a replica (term {})",
            self.term
        )));
        self.publish();
        crash::point("failover:term");
        // The old master may only seem dead (a hang that ended just after the probe that
        // timed out began): while a replica's IO thread reads from it, it still gets
        // semi-sync acks and answers OK to clients of proxies that have not seen this
        // term yet, for writes the chosen replica may lack (chaos seed 4 lost 13 that
        // way). Every replica is cut off from it first; what they received is then read
        // again and compared.
        let cut = self.cut_off_from(h, &replicas).await;
        crash::point("failover:cut");
        self.probe_except(Some(h)).await;
        let views: Vec<ServerView> = self.servers.iter().map(super::Slot::view).collect();
        let t = Topology::build_under(views, recorded.master);
        let candidates = self.candidates(&t, &replicas);
        // Read after the new term is published: every OK forwarded before it raised this.
        let (choice, acked) = match self.choose(h, why, &candidates) {
            Ok(c) => c,
            Err(e) => {
                self.reconnect_to(h, &cut).await;
                let op =
                    format!("failover from {old} refused: {e}; writes wait for {old} to return");
                self.set_operation(Some(op.clone()));
                return Err(op);
            }
        };
        if let Some(w) = &choice.warning {
            warn!("{w}");
        }
        let c = choice.index;
        let name = self.servers[c].name.clone();
        let received = candidates
            .iter()
            .find(|x| x.index == c)
            .map(|x| x.received.clone())
            .unwrap_or_default();
        if let Err(e) = self
            .promote(c, &received, &acked, choice.catch_up_from)
            .await
        {
            let op = format!("failover from {old} to {name} failed: {e}");
            self.servers[c].note = Some(Note::StepFailed(op.clone()));
            self.set_operation(Some(op.clone()));
            return Err(op);
        }
        crash::point("failover:writable");
        self.master = Some(c);
        self.trust = super::Trust::Confirmed;
        self.set_operation(Some(format!(
            "failover from {old} to {name}: re-pointing replicas"
        )));
        self.publish();
        let promoted_in = started.elapsed();
        info!(
            from = %old, to = %name, term = self.term, acked = %acked,
            ms = promoted_in.as_millis() as u64,
            "failover: {name} promoted"
        );
        self.repoint(&replicas, c, h).await;
        crash::point("failover:repointed");
        self.clear_marks(&cut).await;
        drop(locks);
        self.set_operation(None);
        Ok(format!(
            "failover from {old} to {name} in {} ms (term {}; acknowledged position {acked})",
            promoted_in.as_millis(),
            self.term
        ))
    }

    /// The replica to promote, with the position it must hold: this proxy's acknowledged
    /// position ([`Self::required`]) raised to what an absent server may hold
    /// ([`failover::absent`]).
    fn choose(
        &self,
        h: usize,
        why: Why,
        candidates: &[Candidate],
    ) -> Result<(failover::Choice, GtidList), String> {
        let acked = self.required(why, candidates);
        let absent: Vec<Absent> = self
            .servers
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != h)
            .filter_map(|(_, s)| {
                Some(Absent {
                    name: s.name.clone(),
                    since: s.out_of_sight_since?,
                })
            })
            .collect();
        let master = &self.servers[h];
        let seen = master
            .answered_at
            .zip(master.status.as_ref())
            .map(|(at, st)| MasterSeen {
                name: master.name.clone(),
                probed_at: at,
                clients: st.dump_clients.clone(),
                binlog: st.gtid_binlog_pos.clone(),
            });
        // What this proxy knows it acknowledged first: its refusal says more.
        let choice = failover::choose(candidates, &acked)?;
        let compared: Vec<u32> = candidates.iter().map(|c| c.server_id).collect();
        let bound = absent::bound(&absent, seen.as_ref(), &compared)?;
        if bound.is_empty() {
            return Ok((choice, acked));
        }
        let mut required = acked.clone();
        required.raise_all(&bound);
        match failover::choose(candidates, &required) {
            Ok(choice) => Ok((choice, required)),
            Err(_) => {
                let names: Vec<&str> = absent.iter().map(|a| a.name.as_str()).collect();
                Err(format!(
                    "{} stopped replicating from {} (unreachable, or restarted and so without \
                     what it had received) and may have held writes up to {bound} (what {} \
                     had written when it last showed them disconnected) that no reachable \
                     replica has",
                    names.join(", "),
                    master.name,
                    master.name
                ))
            }
        }
    }

    /// The acknowledged position the promoted replica must hold: this proxy's. Except when
    /// the old master is up and behind its replicas ([`Why::BehindReplicas`]): every copy
    /// is then in sight, and if no replica holds the whole position either, the missing
    /// writes are gone from every server (both copies were lost at once). Stopping writes
    /// for good would bring nothing back, so the replica holding the most is promoted and
    /// the loss is logged as an error.
    fn required(&self, why: Why, candidates: &[Candidate]) -> GtidList {
        let acked = self.acked.get();
        if why != Why::BehindReplicas || candidates.iter().any(|c| c.received.contains(&acked)) {
            return acked;
        }
        error!(
            acked = %acked,
            "no server has every write this kohaproxy acknowledged (the master came back \
             without them and no replica has them): they are lost; promoting the replica \
             that has the most"
        );
        GtidList::default()
    }

    /// Applies the relay log candidate `c` already has (bounded by `catchup_timeout`),
    /// checks it holds `acked`, then makes it a writable master replicating from nobody.
    /// The IO thread is never restarted before that (it would purge the relay log).
    async fn promote(
        &mut self,
        c: usize,
        received: &GtidList,
        acked: &GtidList,
        catch_up_from: Option<usize>,
    ) -> Result<(), String> {
        let mut s = self.open(c).await?;
        // Apply all the relay log holds, not only what the last probe saw received: that
        // view can be older than the relay log's tail, and the tail may hold a write
        // another kohaproxy acknowledged (this one's `acked` does not know it). The IO
        // thread is left running meanwhile (the old master is gone, it receives nothing):
        // in GTID mode, starting the SQL thread with both threads stopped discards the
        // relay log. START SLAVE SQL_THREAD runs whatever the probe said: another proxy's
        // failed attempt may have stopped it since.
        let began = Instant::now();
        s.exec("START SLAVE SQL_THREAD").await?;
        self.drain_relay_log(&mut s).await?;
        let drained = began.elapsed();
        self.wait_for(&mut s, received).await?;
        debug!(server = %s.name(), drained_ms = drained.as_millis() as u64, waited_ms = began.elapsed().as_millis() as u64, %received, "candidate applied its relay log");
        crash::point("failover:drained");
        if let Some(x) = catch_up_from {
            self.catch_up(&mut s, x).await?;
        }
        let now: GtidList = s
            .value("SELECT @@gtid_current_pos", self.config.timeout)
            .await?
            .unwrap_or_default()
            .parse()
            .map_err(|e| format!("{e}"))?;
        if !now.contains(acked) {
            return Err(format!(
                "after applying its relay log it has {now}, not every acknowledged write ({acked})"
            ));
        }
        s.stop_slave().await?;
        crash::point("failover:stopped");
        // The term is recorded before the link is removed: should this proxy die from
        // here on, the record names the server that has drained its relay log, and the
        // next kohaproxy to look finishes this promotion ([`term::unfinished_promotion`]).
        self.record_term(&mut s, c).await;
        crash::point("failover:recorded");
        s.exec("RESET SLAVE ALL").await?;
        crash::point("failover:reset");
        self.semi_sync_as_master(&mut s, c).await;
        s.exec("SET GLOBAL read_only = OFF").await?;
        if let Some(st) = self.servers[c].status.as_mut() {
            st.read_only = false;
            st.replication.clear();
        }
        self.servers[c].note = None;
        Ok(())
    }

    /// Finishes the promotion of `c` that a kohaproxy left half-way (see
    /// [`term::unfinished_promotion`]; the caller holds the topology lock and has just
    /// probed): `c` holds the newest term record and has applied its relay log, so it is
    /// made a writable master replicating from nobody, as [`Self::promote`] would have.
    /// Only the steps not yet done remain, and none of them can lose a write: nothing is
    /// re-chosen, no relay log is discarded. The other replicas are re-pointed by the
    /// rounds' rejoin. Refused if `c` lacks a write this proxy acknowledged.
    pub(super) async fn finish_promotion(
        &mut self,
        c: usize,
        recorded: u64,
    ) -> Result<String, String> {
        let name = self.servers[c].name.clone();
        let view = self.servers[c].view();
        if self.lacks_acked(&view).is_some() {
            let op = format!(
                "the promotion of {name} (term {recorded}) left half-way is not finished: it \
                 lacks writes this kohaproxy acknowledged ({}); writes wait",
                self.acked.get()
            );
            self.set_operation(Some(op.clone()));
            return Err(op);
        }
        self.set_operation(Some(format!(
            "finishing the promotion of {name} (term {recorded}) that a kohaproxy left half-way"
        )));
        let mut s = self.open(c).await?;
        s.stop_slave().await?;
        s.exec("RESET SLAVE ALL").await?;
        self.semi_sync_as_master(&mut s, c).await;
        s.exec("SET GLOBAL read_only = OFF").await?;
        if let Some(st) = self.servers[c].status.as_mut() {
            st.read_only = false;
            st.replication.clear();
        }
        self.servers[c].note = None;
        self.adopt(
            c,
            recorded,
            &format!(
                "finished the promotion of {name} (term {recorded}) a kohaproxy left half-way"
            ),
        );
        self.set_operation(None);
        self.publish();
        Ok(format!(
            "{name} is the master now (its unfinished promotion in term {recorded} finished)"
        ))
    }

    /// Records this proxy's term, with server `c` as its master, on `s` (the new master,
    /// still read-only: the monitor's user may write there), before anyone may write to
    /// it: the row replicates to every server that follows it, and tells every other
    /// kohaproxy that this promotion is newer than the master it replaces ([`term`]).
    /// A failure is logged, not fatal: writes must not wait on bookkeeping, and a single
    /// proxy does not need the record.
    pub(super) async fn record_term(&mut self, s: &mut Session, c: usize) {
        let Some(server_id) = self.servers[c].status.as_ref().map(|st| st.server_id) else {
            warn!(server = %self.servers[c].name, "no server_id known: term {} not recorded", self.term);
            return;
        };
        let timeout = self.config.timeout;
        let result: Result<term::TermRecord, String> = async {
            for sql in term::CREATE_SQL {
                s.exec(sql).await?;
            }
            // Read after the DDL above (which is binlogged too): the record is then the
            // one transaction past this position.
            let binlog_before: GtidList = s
                .value("SELECT @@gtid_binlog_pos", timeout)
                .await?
                .unwrap_or_default()
                .parse()
                .map_err(|e| format!("{e}"))?;
            s.exec(&term::write_sql(self.term, server_id, &binlog_before))
                .await?;
            Ok(term::TermRecord {
                term: self.term,
                server_id,
                binlog_before: Some(binlog_before),
            })
        }
        .await;
        match result {
            Ok(record) => {
                if let Some(st) = self.servers[c].status.as_mut() {
                    st.master_term = Some(record);
                }
            }
            Err(e) => warn!(
                server = %self.servers[c].name,
                "cannot record term {} on the new master (other kohaproxy instances may not \
                 see that it is newer than the old one): {e}",
                self.term
            ),
        }
    }

    /// Brings the candidate behind `s` (its relay log applied) up to replica `x`, which
    /// may not be promoted (`no_promote`, maintenance) but received transactions the
    /// candidate lacks (failover.md scenario 3): `x` applies its own relay log (its binlog
    /// serves only what it applied), then the candidate replicates from `x` until it has
    /// everything `x` has. Each wait is bounded by `catchup_timeout`. The candidate's link
    /// to `x` is removed with the rest of its replication by the promotion.
    async fn catch_up(&self, s: &mut Session, x: usize) -> Result<(), String> {
        let from = self.servers[x].name.clone();
        let in_from = |e: String| format!("catching up from {from}: {e}");
        let mut d = self.open(x).await.map_err(in_from)?;
        d.exec("START SLAVE SQL_THREAD").await.map_err(in_from)?;
        self.drain_relay_log(&mut d).await.map_err(in_from)?;
        let target: GtidList = d
            .value("SELECT @@gtid_current_pos", self.config.timeout)
            .await
            .map_err(in_from)?
            .unwrap_or_default()
            .parse()
            .map_err(|e| in_from(format!("{e}")))?;
        let change = sql::change_master(
            &self.servers[x].address,
            &self.config.replication_user,
            &self.config.replication_password,
            "slave_pos",
        );
        s.stop_slave().await?;
        s.exec(&change).await?;
        s.exec("START SLAVE").await?;
        self.wait_for(s, &target).await.map_err(in_from)?;
        info!(server = %s.name(), from = %from, position = %target, "caught up from a replica that may not be promoted");
        Ok(())
    }

    /// Waits until the replica behind `s`, whose master is gone (its IO thread receives
    /// nothing more), has applied every whole transaction in its relay log: its SQL thread
    /// says it has read it all (bounded by `catchup_timeout`). A transaction the dead master sent only part of stays unapplied,
    /// as it must: no client was told it committed.
    pub(super) async fn drain_relay_log(&self, s: &mut Session) -> Result<(), String> {
        const ALL_READ: &str = "Slave has read all relay log";
        let until = Instant::now() + self.config.catchup_timeout;
        loop {
            let state = s
                .column(
                    "SHOW SLAVE STATUS",
                    "Slave_SQL_Running_State",
                    self.config.timeout,
                )
                .await?
                .unwrap_or_default();
            if state.starts_with(ALL_READ) {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(format!(
                    "its relay log was not applied within {} ms (SQL thread: {state:?})",
                    self.config.catchup_timeout.as_millis()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the server behind `s` has applied `position` (bounded).
    pub(super) async fn wait_for(
        &self,
        s: &mut Session,
        position: &GtidList,
    ) -> Result<(), String> {
        if position.is_empty() {
            return Ok(());
        }
        let limit = self.config.catchup_timeout;
        let sql = format!(
            "SELECT MASTER_GTID_WAIT({}, {:.3})",
            sql::literal(&position.to_string()),
            limit.as_secs_f64()
        );
        match s.value(&sql, limit + Duration::from_secs(2)).await? {
            Some(v) if v == "0" => Ok(()),
            _ => Err(format!(
                "did not reach {position} within {} ms",
                limit.as_millis()
            )),
        }
    }

    /// Points every server in `replicas` but `c` (and `h`) at the new master `c`. A
    /// failure is noted on the server; the next rounds rejoin it.
    pub(super) async fn repoint(&mut self, replicas: &[usize], c: usize, h: usize) {
        let address = self.servers[c].address.clone();
        let change = sql::change_master(
            &address,
            &self.config.replication_user,
            &self.config.replication_password,
            "slave_pos",
        );
        for &r in replicas.iter().filter(|&&r| r != c && r != h) {
            let result = match self.open(r).await {
                Ok(mut s) => match s.stop_slave().await {
                    Ok(()) => match s.exec(&change).await {
                        Ok(()) => s.exec("START SLAVE").await,
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                let note = format!("could not be re-pointed to {}: {e}", self.servers[c].name);
                warn!(server = %self.servers[r].name, "{note}");
                self.servers[r].note = Some(Note::StepFailed(note));
            }
        }
    }
}
