//! The monitor on a Galera cluster: it follows the writer recorded on the cluster
//! ([`crate::galera::WRITER_TABLE`]) and, when the recorded writer may no longer write,
//! claims the role for the node the rule chooses. Several kohaproxy instances do the
//! same against the same row, so they agree on one writer, also after a restart.
//!
//! The choice is pure ([`crate::galera::writer_step`]); this module reads the row, runs
//! the compare-and-set, and runs the admin's switchover and maintenance on Galera.

use tracing::{debug, info, warn};

use super::{Monitor, DRAIN_BOUND};
use crate::galera::{self, WriterCandidate, WriterRecord, WriterStep};
use crate::sql::Session;
use crate::topology::{Role, Topology};

/// What the monitor keeps about a Galera cluster beyond the probes.
pub(super) struct GaleraState {
    /// `cluster.failback`.
    failback: bool,
    /// `cluster.donor_serves_reads`.
    donor_serves_reads: bool,
    /// `cluster.max_recv_queue`.
    max_recv_queue: u64,
    /// The connection the writer row is read on (node index), kept between rounds.
    record_conn: Option<(usize, Session)>,
}

impl GaleraState {
    /// The state for `cluster`'s settings.
    pub(super) fn new(cluster: &kohaproxy_config::ClusterConfig) -> GaleraState {
        GaleraState {
            failback: cluster.failback,
            donor_serves_reads: cluster.donor_serves_reads,
            max_recv_queue: cluster.max_recv_queue,
            record_conn: None,
        }
    }
}

impl Monitor {
    /// The snapshot of a Galera cluster with `writer` as the writer.
    pub(super) fn galera_topology(&self, g: &GaleraState, writer: Option<usize>) -> Topology {
        Topology::galera(
            self.servers.iter().map(super::Slot::view).collect(),
            writer,
            g.max_recv_queue,
            g.donor_serves_reads,
        )
    }

    /// One Galera round: read the writer row, follow it, or claim the role for the node
    /// the rule chooses (when this monitor acts).
    pub(super) async fn act_galera(&mut self) {
        let Some(mut g) = self.galera.take() else {
            return;
        };
        // A failed round has set the operation people see; nothing else to do with it.
        let _ = self.galera_round(&mut g, None).await;
        self.galera = Some(g);
    }

    /// Reads the record and follows it or claims; `wanted`: the admin asked for this
    /// node (a switchover), which is claimed if usable.
    async fn galera_round(
        &mut self,
        g: &mut GaleraState,
        wanted: Option<usize>,
    ) -> Result<String, String> {
        let t = self.galera_topology(g, None);
        let candidates: Vec<WriterCandidate> = t
            .servers
            .iter()
            .enumerate()
            .map(|(index, v)| WriterCandidate {
                index,
                priority: self.server_config.get(index).map_or(0, |s| s.priority),
                // A node whose last probe failed is not Replica (see `Topology::galera`):
                // one failed probe moves the writer, as a move loses nothing on Galera.
                usable: v.role == Role::Replica && !v.maintenance,
            })
            .collect();
        let usable: Vec<usize> = candidates
            .iter()
            .filter(|c| c.usable)
            .map(|c| c.index)
            .collect();
        if usable.is_empty() {
            return Err(self.no_writer(g, self.no_node_reason(&t)));
        }
        // Owned: the round changes `self` while it names nodes.
        let owned: Vec<String> = self.servers.iter().map(|s| s.name.clone()).collect();
        let names: Vec<&str> = owned.iter().map(String::as_str).collect();
        // Twice at most: a claim that lost reads the winner's record and follows it.
        for _ in 0..2 {
            let record = match self.read_record(g, &usable).await {
                Ok(record) => record,
                Err(e) => {
                    return Err(self.no_writer(g, format!("cannot read the writer record: {e}")))
                }
            };
            let step = match wanted {
                Some(w) if candidates.get(w).is_some_and(|c| c.usable) => {
                    match record
                        .as_ref()
                        .and_then(|r| names.iter().position(|n| *n == r.writer))
                    {
                        Some(current) if current == w => WriterStep::Follow {
                            index: w,
                            term: record.as_ref().map_or(0, |r| r.term),
                        },
                        _ => WriterStep::Claim {
                            index: w,
                            term: record.as_ref().map_or(1, |r| r.term + 1),
                            replaces: record.clone(),
                        },
                    }
                }
                Some(w) => return Err(format!("{} is not a usable node", names[w])),
                None => galera::writer_step(record.as_ref(), &names, &candidates, g.failback),
            };
            match step {
                WriterStep::Follow { index, term } => {
                    self.follow_writer(index, term);
                    return Ok(format!("{} is the writer (term {term})", names[index]));
                }
                WriterStep::NoWriter(reason) => return Err(self.no_writer(g, reason)),
                WriterStep::Claim { .. } if !self.acts => {
                    // An observer (a tool beside the proxy) changes nothing: it follows
                    // a recorded writer that is usable, else there is none.
                    let r = record.as_ref();
                    match r.and_then(|r| names.iter().position(|n| *n == r.writer)) {
                        Some(index) if candidates[index].usable => {
                            self.follow_writer(index, r.map_or(0, |r| r.term));
                            return Ok(String::new());
                        }
                        _ => return Err(self.no_writer(g, "no writer is recorded".into())),
                    }
                }
                WriterStep::Claim {
                    index,
                    term,
                    replaces,
                } => {
                    // Terms only rise, also if the row was lost.
                    let term = term.max(self.term + 1);
                    match self.claim(index, term, replaces.as_ref()).await {
                        Ok(true) => {
                            let why = match &replaces {
                                Some(old) => {
                                    let left = if wanted.is_some() {
                                        "switchover".to_string()
                                    } else {
                                        why_left(&t, &names, &old.writer)
                                    };
                                    format!(
                                        "Galera writer moved from {} ({left}) to {} (term {term})",
                                        old.writer, names[index]
                                    )
                                }
                                None => {
                                    format!("Galera writer chosen: {} (term {term})", names[index])
                                }
                            };
                            self.term = term;
                            self.master = Some(index);
                            self.set_operation(None);
                            info!(writer = %names[index], term, "{why}");
                            return Ok(why);
                        }
                        Ok(false) => {
                            debug!(writer = %names[index], "another kohaproxy changed the writer first: reading its choice");
                        }
                        Err(e) => {
                            warn!(node = %names[index], "cannot record the new writer: {e}");
                            return Err(self.no_writer(
                                g,
                                format!("cannot record {} as the writer: {e}", names[index]),
                            ));
                        }
                    }
                }
            }
        }
        Err("the writer record kept changing under this kohaproxy".into())
    }

    /// Follows the recorded writer `index` in `term`.
    fn follow_writer(&mut self, index: usize, term: u64) {
        if self.master != Some(index) || self.term != term {
            info!(writer = %self.servers[index].name, term, "following the Galera writer recorded on the cluster");
        }
        self.master = Some(index);
        // A restarted proxy takes the record's term; terms never go back.
        self.term = self.term.max(term);
        if self.operation.is_some() && !self.holding {
            self.set_operation(None);
        }
    }

    /// No node can be the writer: writes wait, and people see why.
    fn no_writer(&mut self, g: &mut GaleraState, reason: String) -> String {
        if self.master.is_some() {
            warn!("no Galera writer: {reason}");
        }
        self.master = None;
        g.record_conn = None;
        self.set_operation(Some(format!("no Galera writer: {reason}")));
        reason
    }

    /// Why no node is usable, naming each.
    fn no_node_reason(&self, t: &Topology) -> String {
        let each: Vec<String> = t
            .servers
            .iter()
            .map(|v| match (&v.note, v.state) {
                _ if v.maintenance => format!("{} in maintenance", v.name),
                (Some(note), crate::topology::ServerState::Up) => format!("{}: {note}", v.name),
                (_, state) => format!("{}: {state}", v.name),
            })
            .collect();
        format!("no Galera node can take writes ({})", each.join("; "))
    }

    /// Reads the writer row on a usable node (the current writer first), with
    /// `wsrep_sync_wait` so the node has applied every change committed before. Creates
    /// the table when it is missing (an acting monitor only).
    async fn read_record(
        &mut self,
        g: &mut GaleraState,
        usable: &[usize],
    ) -> Result<Option<WriterRecord>, String> {
        if g.record_conn
            .as_ref()
            .is_some_and(|(i, _)| !usable.contains(i))
        {
            g.record_conn = None;
        }
        // The node of the kept connection first, then the writer, then the others.
        let mut order: Vec<usize> = g
            .record_conn
            .as_ref()
            .map(|(i, _)| *i)
            .into_iter()
            .collect();
        for i in self.master.into_iter().chain(usable.iter().copied()) {
            if usable.contains(&i) && !order.contains(&i) {
                order.push(i);
            }
        }
        let mut errors = Vec::new();
        // Two nodes at most: while the cluster reconfigures every node stalls alike, and
        // trying each in turn would only multiply the wait.
        for i in order.into_iter().take(2) {
            let kept = g
                .record_conn
                .take_if(|(j, _)| *j == i)
                .map(|(_, conn)| conn);
            let mut conn = match kept {
                Some(conn) => conn,
                None => match self.open(i).await {
                    Ok(mut s) => match s.exec("SET SESSION wsrep_sync_wait = 1").await {
                        Ok(()) => s,
                        Err(e) => {
                            errors.push(e);
                            continue;
                        }
                    },
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                },
            };
            match self.read_record_on(&mut conn).await {
                Ok(record) => {
                    g.record_conn = Some((i, conn));
                    return Ok(record);
                }
                Err(e) => errors.push(e),
            }
        }
        Err(errors.join("; "))
    }

    /// Reads the record on one connection, creating the table if it is missing.
    async fn read_record_on(&self, conn: &mut Session) -> Result<Option<WriterRecord>, String> {
        let limit = self.config.timeout;
        let row = match conn.row(galera::READ_WRITER, limit).await {
            Ok(row) => row,
            Err(e) if self.acts && e.contains("1146") => {
                for sql in galera::CREATE_WRITER_TABLE {
                    conn.exec(sql).await?;
                }
                conn.row(galera::READ_WRITER, limit).await?
            }
            Err(e) if e.contains("1146") || e.contains("1049") => Vec::new(),
            Err(e) => return Err(e),
        };
        match row.as_slice() {
            [] => Ok(None),
            [Some(writer), Some(term)] => Ok(Some(WriterRecord {
                writer: writer.clone(),
                term: term
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad writer term {term:?}"))?,
            })),
            _ => Err("the writer row is malformed".into()),
        }
    }

    /// Records node `index` as the writer in `term`, on that node (its commit follows
    /// every write set committed before it, so the new writer has them all). True when
    /// this claim won.
    async fn claim(
        &self,
        index: usize,
        term: u64,
        replaces: Option<&WriterRecord>,
    ) -> Result<bool, String> {
        let mut conn = self.open(index).await?;
        let sql = galera::claim_sql(&self.servers[index].name, term, replaces);
        // While the cluster evicts a dead node every commit waits: give the claim
        // longer than a probe rather than time out on a claim that then commits.
        match conn.affected(&sql, self.config.timeout * 3).await {
            Ok(n) => Ok(n == 1),
            // Two claims at once: one commits, the other fails certification (1213) or
            // meets the row the first inserted (1062). Lost, not failed.
            Err(e) if e.contains("1213") || e.contains("1062") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `SWITCHOVER [TO name]` on Galera: moves the writer with writes held meanwhile.
    pub(super) async fn galera_switchover(
        &mut self,
        target: Option<String>,
    ) -> Result<String, String> {
        let Some(mut g) = self.galera.take() else {
            return Err("not a Galera cluster".into());
        };
        let result = self.galera_switchover_with(&mut g, target).await;
        self.galera = Some(g);
        result
    }

    async fn galera_switchover_with(
        &mut self,
        g: &mut GaleraState,
        target: Option<String>,
    ) -> Result<String, String> {
        self.probe().await;
        let t = self.galera_topology(g, self.master);
        let h = self
            .master
            .ok_or("there is no writer to switch over from")?;
        let c = match target {
            Some(name) => {
                let i = self.index_of(&name)?;
                if i == h {
                    return Ok(format!("{name} is already the writer"));
                }
                if t.servers[i].role != Role::Replica || t.servers[i].maintenance {
                    return Err(format!("{name} is not a usable Galera node"));
                }
                i
            }
            None => t
                .servers
                .iter()
                .enumerate()
                .filter(|(i, v)| *i != h && v.role == Role::Replica && !v.maintenance)
                .max_by(|(a, _), (b, _)| {
                    let p = |i: &usize| self.server_config.get(*i).map_or(0, |s| s.priority);
                    p(a).cmp(&p(b)).then(b.cmp(a))
                })
                .map(|(i, _)| i)
                .ok_or("no other usable Galera node")?,
        };
        let (old, name) = (self.servers[h].name.clone(), self.servers[c].name.clone());
        self.holding = true;
        self.set_operation(Some(format!(
            "switchover from {old} to {name}: writes held"
        )));
        self.publish();
        if !self.handle.drain_master(DRAIN_BOUND).await {
            warn!(
                "switchover from {old} to {name}: statements still running on {old}; moving anyway"
            );
        }
        let result = self.galera_round(g, Some(c)).await;
        self.holding = false;
        if result.is_err() {
            self.set_operation(None);
        }
        self.publish();
        result
    }
}

impl Monitor {
    /// The admin's commands on a Galera cluster.
    pub(super) async fn galera_command(
        &mut self,
        command: crate::control::Command,
    ) -> Result<String, String> {
        use crate::control::Command;
        match command {
            Command::Switchover { target } => self.galera_switchover(target).await,
            Command::Failover => Err(
                "on Galera the writer moves by itself when it fails: use SWITCHOVER to move it"
                    .into(),
            ),
            Command::Maintenance { server, on } => {
                let i = self.index_of(&server)?;
                let mut moved = String::new();
                if on && self.master == Some(i) {
                    // The writer is moved first, with writes held, then drained.
                    moved = self.galera_switchover(None).await?;
                    moved.push_str("; ");
                }
                let done = self.set_maintenance(i, on);
                Ok(format!("{moved}{done}"))
            }
        }
    }
}

/// Why the writer `old` was left, for the log line that says it moved: maintenance, the
/// node's note (why it may not serve), or its last probe error.
fn why_left(t: &Topology, names: &[&str], old: &str) -> String {
    let Some(v) = names
        .iter()
        .position(|n| *n == old)
        .and_then(|i| t.servers.get(i))
    else {
        return "no longer configured".into();
    };
    match (&v.note, &v.last_error) {
        _ if v.maintenance => "in maintenance".into(),
        (Some(note), _) => note.to_string(),
        (None, Some(e)) => e.clone(),
        (None, None) => format!("{:?}", v.role),
    }
}
