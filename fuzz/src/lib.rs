//! Fuzz harnesses. Each target is a plain `fn(&[u8])` that feeds the bytes to one part of
//! the proxy and panics when a cheap invariant fails; a panic anywhere (the code under test
//! or the harness) is a finding. The AFL++ entry points (`fuzz/afl`, outside the workspace)
//! call these functions, and `tests/replay.rs` runs every corpus file and every reproducer
//! through them in `cargo test`.
//!
//! Inputs that need a mode (a command byte, capabilities, a chunk size) take it from their
//! first bytes, so one corpus file is one complete test case.
#![forbid(unsafe_code)]

mod codec;
mod config;
mod handshake;
mod relay;
mod track;

pub use codec::codec;
pub use config::config;
pub use handshake::handshake;
pub use relay::relay;
pub use track::track;

/// The classifier: any statement text, no panic, and the same answer twice (it is a pure
/// function of its input).
pub fn classify(data: &[u8]) {
    use kohaproxy_proxy::route::classify::classify;
    let class = classify(data);
    assert_eq!(class, classify(data), "classify is not deterministic");
}

/// A fuzz target: its name (the corpus folder and the AFL binary) and its harness.
pub struct Target {
    /// Name of the target, `fuzz/corpus/<name>` and `fuzz/regressions/<name>`.
    pub name: &'static str,
    /// The harness.
    pub run: fn(&[u8]),
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "codec",
        run: codec,
    },
    Target {
        name: "relay",
        run: relay,
    },
    Target {
        name: "handshake",
        run: handshake,
    },
    Target {
        name: "classify",
        run: classify,
    },
    Target {
        name: "track",
        run: track,
    },
    Target {
        name: "config",
        run: config,
    },
];

/// Splits a mode prefix of `N` bytes off `data` (zeros when it is shorter).
fn prefix<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut head = [0u8; N];
    let n = data.len().min(N);
    head[..n].copy_from_slice(&data[..n]);
    (head, &data[n..])
}
