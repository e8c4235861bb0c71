//! AFL++ entry point for the `classify` target (see `kohaproxy_fuzz::classify`).
fn main() {
    afl::fuzz!(|data: &[u8]| kohaproxy_fuzz::classify(data));
}
