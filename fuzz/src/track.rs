//! The session-tracking decoder: OK packets with session state, read, filtered for a
//! client's tracking settings and written again.

use kohaproxy_proxy::protocol::packets::ok_status;
use kohaproxy_proxy::protocol::status::SESSION_STATE_CHANGED;
use kohaproxy_proxy::protocol::track::{ClientTracking, StateOk};

/// Input: a flags byte (bit 0: the client tracks the schema), a length byte `n`, `n` bytes
/// of the client's `session_track_system_variables`, then an OK payload.
pub fn track(data: &[u8]) {
    let ([flags, n], rest) = crate::prefix::<2>(data);
    let n = usize::from(n).min(rest.len());
    let (variables, payload) = rest.split_at(n);
    let tracking = ClientTracking::new(variables, flags & 1 != 0);

    let Ok(ok) = StateOk::parse(payload) else {
        return;
    };
    assert_eq!(ok_status(payload), Some(ok.status), "ok_status disagrees");
    let mut covered = 0;
    let mut all_parse = true;
    for entry in ok.entries() {
        match entry {
            Ok((_, raw)) => {
                assert!(!raw.is_empty());
                covered += raw.len();
            }
            Err(_) => all_parse = false,
        }
    }
    assert!(covered <= ok.state.len());

    let mut out = Vec::new();
    let kept_all = ok.write_filtered(&mut out, |_| true);
    assert_eq!(kept_all.is_ok(), all_parse);
    if kept_all.is_ok() {
        let again = StateOk::parse(&out).expect("a rewritten OK reads back");
        assert_eq!(again.head, ok.head);
        assert_eq!(again.warnings, ok.warnings);
        assert_eq!(again.info, ok.info);
        assert_eq!(
            again.state, ok.state,
            "keeping every entry changed the state"
        );
    }

    out.clear();
    if ok.write_filtered(&mut out, |_| false).is_ok() {
        let again = StateOk::parse(&out).expect("an OK without state reads back");
        assert!(again.state.is_empty());
        assert_eq!(again.status & SESSION_STATE_CHANGED, 0);
    }

    out.clear();
    if ok.write_filtered(&mut out, |c| tracking.shows(c)).is_ok() {
        let again = StateOk::parse(&out).expect("a filtered OK reads back");
        for entry in again.entries() {
            let (change, _) = entry.expect("kept entries read back");
            assert!(tracking.shows(&change));
        }
    }
}
