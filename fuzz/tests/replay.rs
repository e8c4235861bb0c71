//! Replays every corpus file and every crash or hang reproducer through its harness, so a
//! plain `cargo test` (no AFL++ needed) keeps what the fuzzer found fixed.

use std::path::Path;

/// Runs every file under `fuzz/<folder>/<target>/` through the target's harness; returns
/// how many ran.
fn replay(folder: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    let mut count = 0;
    for target in kohaproxy_fuzz::TARGETS {
        let dir = root.join(target.name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for file in files.iter().filter(|f| f.is_file()) {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let run = std::panic::catch_unwind(|| (target.run)(&data));
            assert!(run.is_ok(), "{} failed its harness", file.display());
            count += 1;
        }
    }
    count
}

#[test]
fn every_corpus_file_passes_its_harness() {
    let n = replay("corpus");
    assert!(n > 0, "no corpus found");
}

#[test]
fn every_reproducer_passes_its_harness() {
    replay("regressions");
}

#[test]
fn every_target_has_a_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for target in kohaproxy_fuzz::TARGETS {
        let dir = root.join(target.name);
        let files = std::fs::read_dir(&dir).map(Iterator::count).unwrap_or(0);
        assert!(files > 0, "{} is empty", dir.display());
    }
}
