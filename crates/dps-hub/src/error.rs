//! The one error type of this crate.

use std::time::Duration;

/// Why an operation on a linked IoT hub failed.
///
/// Every variant that comes from a hub reply carries the hub host, the HTTP
/// status and the hub's own error code and message (from the
/// `{"Message":"ErrorCode:X;text"}` body or the `iothub-errorcode` header), so a
/// failed registration can say exactly what the hub refused.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// A connection string lacks one of `HostName`, `SharedAccessKeyName`, `SharedAccessKey`.
    #[error("connection string has no {part}")]
    MissingConnectionStringPart {
        /// The missing part, in connection-string spelling.
        part: &'static str,
    },
    /// A connection string part is present but unusable.
    #[error("connection string part {part} is invalid: {reason}")]
    InvalidConnectionStringPart {
        /// The offending part, in connection-string spelling.
        part: &'static str,
        /// What is wrong with it (never the secret itself).
        reason: String,
    },
    /// The client options cannot be turned into an HTTP client (e.g. a bad CA PEM).
    #[error("invalid hub client options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },
    /// 401/403: the hub refused our token or our policy lacks the right.
    #[error("hub {host} refused access ({status}, {code:?}): {message}")]
    Unauthorized {
        /// Hub host name.
        host: String,
        /// HTTP status (401 or 403).
        status: u16,
        /// The hub's error code (`IotHubUnauthorizedAccess`…).
        code: Option<String>,
        /// The hub's message.
        message: String,
    },
    /// 404: the device (or its twin) does not exist on the hub.
    #[error("device {device_id:?} not found on hub {host} ({code:?}): {message}")]
    DeviceNotFound {
        /// Hub host name.
        host: String,
        /// The device asked for.
        device_id: String,
        /// HTTP status (404).
        status: u16,
        /// The hub's error code (`DeviceNotFound`).
        code: Option<String>,
        /// The hub's message.
        message: String,
    },
    /// 409: the device already exists (a create without `If-Match`).
    #[error("device {device_id:?} already exists on hub {host} ({code:?}): {message}")]
    Conflict {
        /// Hub host name.
        host: String,
        /// The device written.
        device_id: String,
        /// HTTP status (409).
        status: u16,
        /// The hub's error code (`DeviceAlreadyExists`).
        code: Option<String>,
        /// The hub's message.
        message: String,
    },
    /// 412: the `If-Match` etag no longer matches.
    #[error("etag precondition failed for {device_id:?} on hub {host} ({code:?}): {message}")]
    PreconditionFailed {
        /// Hub host name.
        host: String,
        /// The device written.
        device_id: String,
        /// HTTP status (412).
        status: u16,
        /// The hub's error code (`PreconditionFailed`).
        code: Option<String>,
        /// The hub's message.
        message: String,
    },
    /// 429: the hub throttled us (still so when the retry deadline ran out).
    #[error("hub {host} is throttling ({code:?}, retry after {retry_after:?}): {message}")]
    Throttled {
        /// Hub host name.
        host: String,
        /// HTTP status (429).
        status: u16,
        /// The `Retry-After` the hub asked for.
        retry_after: Option<Duration>,
        /// The hub's error code (`ThrottlingException`).
        code: Option<String>,
        /// The hub's message.
        message: String,
    },
    /// 5xx: the hub failed (still so when the retry deadline ran out).
    #[error("hub {host} failed with {status} ({code:?}): {message}")]
    Server {
        /// Hub host name.
        host: String,
        /// HTTP status (500..=599).
        status: u16,
        /// The hub's error code (`ServerError`, `ServiceUnavailable`…).
        code: Option<String>,
        /// The hub's message.
        message: String,
    },
    /// Any other 4xx: the hub refused the request as such (`ArgumentInvalid`, quota…).
    #[error("hub {host} rejected the request with {status} ({code:?}): {message}")]
    Rejected {
        /// Hub host name.
        host: String,
        /// HTTP status.
        status: u16,
        /// The hub's error code.
        code: Option<String>,
        /// The hub's message.
        message: String,
    },
    /// No reply: connection refused or reset, TLS failure, timeout.
    #[error("cannot reach hub {host}: {reason}")]
    Transport {
        /// Hub host name.
        host: String,
        /// The request timed out (as opposed to failing to connect or being cut).
        timed_out: bool,
        /// The transport failure, with its causes.
        reason: String,
    },
    /// The hub answered with a success status but a body we cannot use.
    #[error("hub {host} sent an invalid {status} reply: {reason}")]
    InvalidResponse {
        /// Hub host name.
        host: String,
        /// HTTP status.
        status: u16,
        /// What is wrong with it.
        reason: String,
    },
}

impl HubError {
    /// Worth trying again: throttling, server failures, transport failures.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            HubError::Throttled { .. } | HubError::Server { .. } | HubError::Transport { .. }
        )
    }

    /// The hub host the error is about, if it concerns one.
    pub fn host(&self) -> Option<&str> {
        match self {
            HubError::Unauthorized { host, .. }
            | HubError::DeviceNotFound { host, .. }
            | HubError::Conflict { host, .. }
            | HubError::PreconditionFailed { host, .. }
            | HubError::Throttled { host, .. }
            | HubError::Server { host, .. }
            | HubError::Rejected { host, .. }
            | HubError::Transport { host, .. }
            | HubError::InvalidResponse { host, .. } => Some(host),
            HubError::MissingConnectionStringPart { .. }
            | HubError::InvalidConnectionStringPart { .. }
            | HubError::InvalidOptions { .. } => None,
        }
    }

    /// The HTTP status the hub answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            HubError::Unauthorized { status, .. }
            | HubError::DeviceNotFound { status, .. }
            | HubError::Conflict { status, .. }
            | HubError::PreconditionFailed { status, .. }
            | HubError::Throttled { status, .. }
            | HubError::Server { status, .. }
            | HubError::Rejected { status, .. }
            | HubError::InvalidResponse { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The hub's error code (`DeviceNotFound`…), if it sent one.
    pub fn hub_code(&self) -> Option<&str> {
        match self {
            HubError::Unauthorized { code, .. }
            | HubError::DeviceNotFound { code, .. }
            | HubError::Conflict { code, .. }
            | HubError::PreconditionFailed { code, .. }
            | HubError::Throttled { code, .. }
            | HubError::Server { code, .. }
            | HubError::Rejected { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}
