//! AFL++ entry point for the `codec` target (see `kohaproxy_fuzz::codec`).
fn main() {
    afl::fuzz!(|data: &[u8]| kohaproxy_fuzz::codec(data));
}
