//! The server settings under which an acknowledged write survives a failover, and the
//! warnings for each one that is missing (see docs/ARCHITECTURE.md, "Failover").

/// One row: the settings [`risks`] reads, in this order.
pub(crate) const QUERY: &str = "SELECT @@log_bin, @@log_slave_updates, @@gtid_strict_mode, \
     @@rpl_semi_sync_master_enabled, @@rpl_semi_sync_slave_enabled, \
     @@rpl_semi_sync_master_wait_point, @@sync_binlog, @@innodb_flush_log_at_trx_commit, \
     @@sync_relay_log";

/// What is risky in a [`QUERY`] row.
pub(crate) fn risks(values: &[Option<String>]) -> Vec<String> {
    let v = |i: usize| values.get(i).cloned().flatten().unwrap_or_default();
    let on = |i: usize| matches!(v(i).trim(), "1" | "ON");
    let mut out = Vec::new();
    let mut loss = |what: String| {
        out.push(format!(
            "{what}: an acknowledged write may be lost on failover"
        ))
    };
    if !on(0) {
        loss("log_bin is off (it cannot be promoted)".to_string());
    }
    if !on(1) {
        loss("log_slave_updates is off".to_string());
    }
    if !on(2) {
        loss("gtid_strict_mode is off".to_string());
    }
    if !on(3) || !on(4) {
        loss(
            "semi-synchronous replication is not enabled both ways \
             (rpl_semi_sync_master_enabled, rpl_semi_sync_slave_enabled)"
                .to_string(),
        );
    }
    if v(5).trim() != "AFTER_SYNC" {
        loss(format!(
            "rpl_semi_sync_master_wait_point is {}, not AFTER_SYNC",
            v(5).trim()
        ));
    }
    if v(6).trim() != "1" {
        loss("sync_binlog is not 1 (a machine crash can lose the binlog tail)".to_string());
    }
    match v(7).trim() {
        "3" => {}
        "1" => loss(
            "innodb_flush_log_at_trx_commit is 1, not 3 (with init_rpl_role=SLAVE, crash \
             recovery rolls back commits InnoDB had not made durable, the last acknowledged \
             ones among them)"
                .to_string(),
        ),
        other => loss(format!(
            "innodb_flush_log_at_trx_commit is {other}, not 3 (a crash loses commits)"
        )),
    }
    if v(8).trim() != "1" {
        loss(
            "sync_relay_log is not 1 (a replica's machine crash can lose received events)"
                .to_string(),
        );
    }
    out
}

/// The warning for a replication link whose heartbeat period (`Slave_heartbeat_period`)
/// is long: a hung master is failed over only once its replicas heard nothing for two
/// periods. Links kohaproxy sets up use [`crate::sql::HEARTBEAT_SECONDS`].
pub(crate) fn heartbeat_risk(period_ms: u64) -> Option<String> {
    let short = crate::sql::HEARTBEAT_SECONDS * 1000;
    (period_ms > short * 2).then(|| {
        format!(
            "the replication heartbeat period is {} s: a hung master is failed over only \
             after {} s without heartbeats (set MASTER_HEARTBEAT_PERIOD={} with CHANGE \
             MASTER; kohaproxy does on the links it sets up)",
            period_ms as f64 / 1000.0,
            period_ms.saturating_mul(2) as f64 / 1000.0,
            crate::sql::HEARTBEAT_SECONDS
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_heartbeat_period_is_a_slow_hang_failover() {
        assert_eq!(heartbeat_risk(1000), None);
        assert_eq!(
            heartbeat_risk(0),
            None,
            "no heartbeat: the IO thread is believed"
        );
        let r = heartbeat_risk(30_000).unwrap_or_default();
        assert!(r.contains("30 s") && r.contains("60 s"), "{r}");
    }

    #[test]
    fn the_safe_settings_raise_nothing() {
        let row = |s: &[&str]| s.iter().map(|x| Some(x.to_string())).collect::<Vec<_>>();
        let safe = row(&["1", "1", "1", "1", "1", "AFTER_SYNC", "1", "3", "1"]);
        assert!(risks(&safe).is_empty());
        let lazy_commit = row(&["1", "1", "1", "1", "1", "AFTER_SYNC", "1", "1", "1"]);
        let r = risks(&lazy_commit);
        assert!(r.len() == 1 && r[0].contains("init_rpl_role"), "{r:?}");
        let lax = row(&["1", "0", "0", "1", "0", "AFTER_COMMIT", "0", "2", "10000"]);
        let r = risks(&lax);
        assert_eq!(r.len(), 7, "{r:?}");
        assert!(r.iter().any(|x| x.contains("AFTER_COMMIT")));
        assert_eq!(risks(&[]).len(), 8);
    }
}
