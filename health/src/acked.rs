//! The highest GTID the proxy acknowledged to any client: written by the data path before
//! it forwards a write's OK, read by the monitor before it promotes a replica (a candidate
//! that lacks it would lose a write a client was told is saved).

use std::sync::{Arc, Mutex};

use crate::gtid::{Gtid, GtidList};

/// Shared acknowledged position, one per proxy.
#[derive(Debug, Clone, Default)]
pub struct Acked(Arc<Mutex<GtidList>>);

impl Acked {
    /// A write with `gtid` is about to be acknowledged to a client.
    pub fn raise(&self, gtid: Gtid) {
        if let Ok(mut acked) = self.0.lock() {
            acked.raise(gtid);
        }
    }

    /// Copies the position into `out` (reusing its allocation).
    pub fn copy_into(&self, out: &mut GtidList) {
        match self.0.lock() {
            Ok(acked) => out.clone_from(&acked),
            // Nothing panics while the lock is held; if it did, an empty position makes
            // reads go to the master and never blocks a promotion by itself.
            Err(_) => *out = GtidList::default(),
        }
    }

    /// The position now.
    pub fn get(&self) -> GtidList {
        let mut out = GtidList::default();
        self.copy_into(&mut out);
        out
    }
}
