//! The config loader: TOML text to a validated `Config`, or an error that can be shown.

use kohaproxy_config::Config;

/// Input: the text of a config file. Text that is not UTF-8 is skipped (the loader reads
/// the file with `read_to_string`, which refuses it first). Files the config names are
/// looked up relative to a folder that does not exist.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("/nonexistent/kohaproxy-fuzz/kohaproxy.toml");
    match Config::parse(text, path) {
        Ok(config) => {
            for user in &config.users {
                assert!(config.user(&user.name).is_some());
            }
            for server in &config.servers {
                assert!(config.server(&server.name).is_some());
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.is_empty());
            let _ = (e.key(), e.line());
        }
    }
}
