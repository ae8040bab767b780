//! Turning a hub's error reply into a [`HubError`].

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::wire::{ErrorCode, HubErrorBody, ERROR_CODE_HEADER};
use crate::HubError;

/// Longest hub message kept in an error (bodies of proxies can be whole pages).
const MAX_MESSAGE: usize = 512;

/// The error a hub reply with `status`, no error code and `message` means.
pub(crate) fn error_from_status(
    host: &str,
    device_id: &str,
    status: u16,
    message: String,
) -> HubError {
    error_from_reply(
        host,
        status,
        &HeaderMap::new(),
        message.as_bytes(),
        device_id,
    )
}

pub(crate) fn error_from_reply(
    host: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    device_id: &str,
) -> HubError {
    let parsed = serde_json::from_slice::<HubErrorBody>(body)
        .ok()
        .filter(|b| !b.message.is_empty());
    let (body_code, message) = match parsed {
        Some(body) => body.code_and_text(),
        None => (None, String::from_utf8_lossy(body).trim().to_owned()),
    };
    let header_code = headers
        .get(ERROR_CODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|c| !c.is_empty());
    let code = header_code.or(body_code);
    let message = truncate(message);
    let host = host.to_owned();
    let device_id = device_id.to_owned();
    let is = |wanted: ErrorCode| code.as_deref() == Some(wanted.name());
    match status {
        401 => HubError::Unauthorized {
            host,
            status,
            code,
            message,
        },
        403 if !is(ErrorCode::IotHubQuotaExceeded) => HubError::Unauthorized {
            host,
            status,
            code,
            message,
        },
        404 if code.is_none() || is(ErrorCode::DeviceNotFound) => HubError::DeviceNotFound {
            host,
            device_id,
            status,
            code,
            message,
        },
        409 => HubError::Conflict {
            host,
            device_id,
            status,
            code,
            message,
        },
        412 => HubError::PreconditionFailed {
            host,
            device_id,
            status,
            code,
            message,
        },
        429 => HubError::Throttled {
            host,
            status,
            retry_after: retry_after(headers),
            code,
            message,
        },
        500..=599 => HubError::Server {
            host,
            status,
            code,
            message,
        },
        _ => HubError::Rejected {
            host,
            status,
            code,
            message,
        },
    }
}

/// `Retry-After` in whole or fractional seconds (HTTP dates are not used by hubs).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let secs = value.parse::<f64>().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn header_code_and_body_text() {
        let mut headers = HeaderMap::new();
        headers.insert(
            ERROR_CODE_HEADER,
            HeaderValue::from_static("DeviceNotFound"),
        );
        let body =
            br#"{"Message":"ErrorCode:DeviceNotFound;Device d1 not found","ExceptionMessage":"x"}"#;
        match error_from_reply("hub", 404, &headers, body, "d1") {
            HubError::DeviceNotFound {
                host,
                device_id,
                status,
                code,
                message,
            } => {
                assert_eq!(
                    (host.as_str(), device_id.as_str(), status),
                    ("hub", "d1", 404)
                );
                assert_eq!(code.as_deref(), Some("DeviceNotFound"));
                assert_eq!(message, "Device d1 not found");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn throttling_reads_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        let err = error_from_reply("hub", 429, &headers, b"", "");
        assert!(matches!(
            err,
            HubError::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(2)
        ));
        assert!(err.is_retryable());
    }

    #[test]
    fn non_json_body_becomes_the_message() {
        let err = error_from_reply(
            "hub",
            502,
            &HeaderMap::new(),
            b"<html>bad gateway</html>",
            "",
        );
        assert!(matches!(
            &err,
            HubError::Server { status: 502, code: None, message, .. } if message == "<html>bad gateway</html>"
        ));
        let long = vec![b'x'; 4000];
        let err = error_from_reply("hub", 400, &HeaderMap::new(), &long, "");
        assert!(matches!(&err, HubError::Rejected { message, .. } if message.len() < 600));
    }

    #[test]
    fn quota_is_rejected_not_unauthorized() {
        let body = br#"{"Message":"ErrorCode:IotHubQuotaExceeded;full"}"#;
        assert!(matches!(
            error_from_reply("hub", 403, &HeaderMap::new(), body, "d"),
            HubError::Rejected { status: 403, .. }
        ));
        assert!(matches!(
            error_from_reply("hub", 403, &HeaderMap::new(), b"", "d"),
            HubError::Unauthorized { status: 403, .. }
        ));
    }
}
