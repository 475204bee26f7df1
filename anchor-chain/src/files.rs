//! The JSON file and output formats of the chain's tools (genesis specs, governance actions,
//! approvals, audit summaries), so every front end reads and writes them the same way.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A JSON file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JsonFileError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The content is not the expected JSON.
    #[error("{path}: {source}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// Reads a JSON file into `T`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, JsonFileError> {
    let bytes = std::fs::read(path).map_err(|source| JsonFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| JsonFileError::Format {
        path: path.to_owned(),
        source,
    })
}

/// Writes `value` as pretty JSON.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), JsonFileError> {
    let text = serde_json::to_vec_pretty(value).map_err(|source| JsonFileError::Format {
        path: path.to_owned(),
        source,
    })?;
    std::fs::write(path, text).map_err(|source| JsonFileError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Pretty JSON for printing; values of this crate always serialize.
pub fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value)
        .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"))
}
