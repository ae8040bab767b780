//! Errors of building and running the service (configuration, TLS, I/O).
//! Request failures are [`crate::respond::ApiError`]s.

use std::path::PathBuf;

/// Why the service could not start or keep running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The configuration is invalid.
    #[error("configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// Certificate or key material is unusable.
    #[error("TLS: {reason}")]
    Tls {
        /// What is wrong.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{}: {reason}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        reason: String,
    },
    /// The store failed to open or migrate.
    #[error("storage: {0}")]
    Storage(String),
    /// The embedded mode's hub emulator or sample devices failed.
    #[error("embedded mode: {reason}")]
    Embedded {
        /// What failed.
        reason: String,
    },
}
