//! The device request body, read the same way whatever carried it (an HTTPS
//! body, an MQTT payload, an AMQP message): at most
//! [`MAX_BODY_BYTES`](crate::respond::MAX_BODY_BYTES), empty or a bare JSON
//! `null` meaning "no body", and a `registrationId` inside that must name
//! the device the request is addressed to.

use dps_model::DeviceRegistrationRequest;

use crate::respond::{ApiError, MAX_BODY_BYTES};

/// The body of a register request addressed to `registration_id`.
pub(crate) fn registration_request(
    registration_id: &str,
    body: &[u8],
) -> Result<DeviceRegistrationRequest, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::payload_too_large());
    }
    // A bare JSON `null` means "no body", as an empty one does (Python's
    // MQTT client sends it).
    let body: &[u8] = if body.trim_ascii() == b"null" {
        &[]
    } else {
        body
    };
    let request = DeviceRegistrationRequest::from_json(body)?;
    if let Some(id) = &request.registration_id {
        if !id.eq_ignore_ascii_case(registration_id) {
            return Err(ApiError::invalid_registration_id(format!(
                "The registrationId in the body ({id:?}) does not match the one the request is addressed to ({registration_id:?})."
            )));
        }
    }
    Ok(request)
}

/// The body of a registration status lookup: a register body without `csr`.
pub(crate) fn status_lookup_request(
    registration_id: &str,
    body: &[u8],
) -> Result<DeviceRegistrationRequest, ApiError> {
    let request = registration_request(registration_id, body)?;
    if request.csr.is_some() {
        return Err(ApiError::bad_request(
            "A status lookup must not carry a csr.",
        ));
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_model::ErrorCode;

    #[test]
    fn empty_and_null_bodies_are_no_body() {
        for body in [&b""[..], b"null", b" null\n"] {
            let request = registration_request("dev-1", body).expect("no body");
            assert_eq!(request.registration_id, None, "{body:?}");
        }
    }

    #[test]
    fn refusals_carry_their_codes() {
        let other = registration_request("dev-1", br#"{"registrationId":"dev-2"}"#).unwrap_err();
        assert_eq!(other.code, ErrorCode::INVALID_REGISTRATION_ID);
        let same = registration_request("dev-1", br#"{"registrationId":"DEV-1"}"#);
        assert!(same.is_ok(), "registration ids compare case-insensitively");
        let large = vec![b' '; MAX_BODY_BYTES + 1];
        let large = registration_request("dev-1", &large).unwrap_err();
        assert_eq!(large.code, ErrorCode::PAYLOAD_TOO_LARGE);
        let malformed = registration_request("dev-1", b"{not json").unwrap_err();
        assert_eq!(malformed.code.http_status(), 400);
        let csr = status_lookup_request("dev-1", br#"{"csr":"MIIB"}"#).unwrap_err();
        assert_eq!(csr.code, ErrorCode::ARGUMENT_INVALID);
    }
}
