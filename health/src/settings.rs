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
    if v(7).trim() != "1" {
        loss("innodb_flush_log_at_trx_commit is not 1".to_string());
    }
    if v(8).trim() != "1" {
        loss(
            "sync_relay_log is not 1 (a replica's machine crash can lose received events)"
                .to_string(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_safe_settings_raise_nothing() {
        let row = |s: &[&str]| s.iter().map(|x| Some(x.to_string())).collect::<Vec<_>>();
        let safe = row(&["1", "1", "1", "1", "1", "AFTER_SYNC", "1", "1", "1"]);
        assert!(risks(&safe).is_empty());
        let lax = row(&["1", "0", "0", "1", "0", "AFTER_COMMIT", "0", "2", "10000"]);
        let r = risks(&lax);
        assert_eq!(r.len(), 7, "{r:?}");
        assert!(r.iter().any(|x| x.contains("AFTER_COMMIT")));
        assert_eq!(risks(&[]).len(), 8);
    }
}
