//! AFL++ entry point for the `relay` target (see `kohaproxy_fuzz::relay`).
fn main() {
    afl::fuzz!(|data: &[u8]| kohaproxy_fuzz::relay(data));
}
