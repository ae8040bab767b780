//! The one error type of this crate.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the emulator could not start or persist its state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubSimError {
    /// The configuration is unusable (no hub, duplicate host, bad key…).
    #[error("invalid hub emulator configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Certificate generation or loading failed.
    #[error("TLS setup failed: {reason}")]
    Tls {
        /// What failed.
        reason: String,
    },
    /// The data file could not be read, parsed or written.
    #[error("data file {path}: {reason}")]
    DataFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}
