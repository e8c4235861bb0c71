//! Parsing and validation (placeholder until implemented).
use crate::Config;
use std::path::Path;

/// Why a configuration file was refused: always names the file and, where there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

pub(crate) fn parse(_text: &str, _path: &Path) -> Result<Config, ConfigError> {
    unimplemented!("config parsing")
}
