//! The one error type of this crate: it tells authentication failures from
//! network failures from service failures, which the official SDKs do not.

/// Why provisioning did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The service refused the device's credentials (HTTP 401): wrong key,
    /// expired token, untrusted certificate, unknown enrollment or ID scope.
    #[error("authentication refused ({status}{}): {message}", code_suffix(*error_code))]
    Authentication {
        /// HTTP status.
        status: u16,
        /// The service's 6-digit code, if it sent one.
        error_code: Option<i32>,
        /// The service's message.
        message: String,
    },
    /// The service could not be reached or the connection broke (DNS, TCP,
    /// TLS, timeouts of single requests).
    #[error("network error talking to {endpoint}: {reason}")]
    Network {
        /// The endpoint.
        endpoint: String,
        /// What failed.
        reason: String,
    },
    /// The service answered with an error other than 401 (bad request,
    /// not found, throttling beyond the deadline, server errors).
    #[error("service error ({status}{}): {message}", code_suffix(*error_code))]
    Service {
        /// HTTP status.
        status: u16,
        /// The service's 6-digit code, if any.
        error_code: Option<i32>,
        /// The service's message.
        message: String,
    },
    /// The registration ran and failed (allocation or hub), as the service reported.
    #[error("registration failed{}: {message}", registration_code(*error_code))]
    RegistrationFailed {
        /// The service's 6-digit code.
        error_code: Option<i32>,
        /// The service's message.
        message: String,
    },
    /// The enrollment is disabled.
    #[error("the enrollment is disabled")]
    Disabled,
    /// The whole register → poll exchange took longer than allowed.
    #[error("provisioning did not complete within {seconds} s")]
    Timeout {
        /// The configured limit.
        seconds: u64,
    },
    /// The answer was not what the protocol allows.
    #[error("unexpected answer from the service: {reason}")]
    Protocol {
        /// What was wrong.
        reason: String,
    },
    /// The client was configured wrongly (missing credential, bad PEM, bad key).
    #[error("invalid client configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The TPM failed an operation.
    #[error("TPM: {command}: {reason}")]
    Tpm {
        /// The operation or tool that failed (e.g. `tpm2_activatecredential`).
        command: String,
        /// What failed (the tool's own message when there is one).
        reason: String,
    },
}

impl ClientError {
    /// The error of a non-2xx answer with body `text` (HTTPS device API and
    /// service API alike): the Azure error body's code and message when they
    /// are there, else the start of the body; a 401 is `Authentication`.
    pub(crate) fn from_answer(status: u16, text: &str) -> Self {
        let answer: serde_json::Value =
            serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
        let error_code = answer["errorCode"]
            .as_i64()
            .and_then(|c| i32::try_from(c).ok());
        let message = answer["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| text.chars().take(200).collect());
        if status == 401 {
            ClientError::Authentication {
                status,
                error_code,
                message,
            }
        } else {
            ClientError::Service {
                status,
                error_code,
                message,
            }
        }
    }

    /// The service's answer broke the protocol in the way `reason` says.
    pub(crate) fn protocol(reason: impl Into<String>) -> Self {
        ClientError::Protocol {
            reason: reason.into(),
        }
    }

    /// True for failures worth retrying later (network, throttling, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Network { .. } | ClientError::Timeout { .. } => true,
            ClientError::Service { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// A short name of the variant (`authentication`, `network`, …), for
    /// grouping failures in reports.
    pub fn class(&self) -> &'static str {
        match self {
            ClientError::Authentication { .. } => "authentication",
            ClientError::Network { .. } => "network",
            ClientError::Service { .. } => "service",
            ClientError::RegistrationFailed { .. } => "registration-failed",
            ClientError::Disabled => "disabled",
            ClientError::Timeout { .. } => "timeout",
            ClientError::Protocol { .. } => "protocol",
            ClientError::Config { .. } => "config",
            ClientError::Tpm { .. } => "tpm",
        }
    }

    /// The service's 6-digit error code, when there is one.
    pub fn error_code(&self) -> Option<i32> {
        match self {
            ClientError::Authentication { error_code, .. }
            | ClientError::Service { error_code, .. }
            | ClientError::RegistrationFailed { error_code, .. } => *error_code,
            _ => None,
        }
    }
}

/// `", code 404000"`, or nothing when the service sent no code: the
/// message is read by people, so no `Some(…)`/`None` from Rust's `Debug`.
fn code_suffix(error_code: Option<i32>) -> String {
    error_code
        .map(|code| format!(", code {code}"))
        .unwrap_or_default()
}

/// `" (code 400207)"`, or nothing.
fn registration_code(error_code: Option<i32>) -> String {
    error_code
        .map(|code| format!(" (code {code})"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_show_the_code_as_a_number_or_not_at_all() {
        let service = |error_code| ClientError::Service {
            status: 404,
            error_code,
            message: "Not found.".to_owned(),
        };
        assert_eq!(
            service(Some(404000)).to_string(),
            "service error (404, code 404000): Not found."
        );
        assert_eq!(service(None).to_string(), "service error (404): Not found.");
        let refused = ClientError::Authentication {
            status: 401,
            error_code: Some(401002),
            message: "Unauthorized".to_owned(),
        };
        assert_eq!(
            refused.to_string(),
            "authentication refused (401, code 401002): Unauthorized"
        );
        let failed = |error_code| ClientError::RegistrationFailed {
            error_code,
            message: "no hub".to_owned(),
        };
        assert_eq!(
            failed(Some(400207)).to_string(),
            "registration failed (code 400207): no hub"
        );
        assert_eq!(failed(None).to_string(), "registration failed: no hub");
        for error in [service(Some(1)), service(None), refused, failed(None)] {
            let text = error.to_string();
            assert!(!text.contains("Some(") && !text.contains("None"), "{text}");
        }
    }
}
