//! AFL++ entry point for the `track` target (see `kohaproxy_fuzz::track`).
fn main() {
    afl::fuzz!(|data: &[u8]| kohaproxy_fuzz::track(data));
}
