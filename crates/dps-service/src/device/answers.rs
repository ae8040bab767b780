//! The one mapping from pipeline outcomes to device answers, for every
//! transport: status, body and the seconds to wait. HTTPS, MQTT and MQTT over
//! WebSocket render these [`WireAnswer`]s; none decides a status of its own.
//!
//! | outcome | status | wait |
//! |---|---|---|
//! | register accepted, still assigning | 202 | the configured retry-after |
//! | register finished at once, any operation status but `assigning` | 200 | — |
//! | operation status `assigning` | 202 | the configured retry-after |
//! | TPM challenge | 401, body `{authenticationKey, keyName, message}` | — |
//! | failure ([`ApiError`]) | its code's status, the Azure error body | 429 and 503 only |
//!
//! The TPM challenge is 401 wherever it is sent, as on Azure's HTTPS
//! endpoint (spec §3.5). Azure offers TPM over HTTPS and AMQP only; an MQTT
//! device that connects without a token and asks anyway gets the same 401
//! challenge, though the token it leads to needs a new CONNECT.

use dps_model::{DeviceRegistrationResult, RegistrationOperationStatus, RegistrationStatus};
use http::StatusCode;
use serde::Serialize;

use crate::pipeline::RegisterAnswer;
use crate::respond::{ApiError, WireAnswer};

/// The TPM challenge answer (spec §3.5): exactly these fields, no `status`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TpmChallengeBody<'a> {
    authentication_key: &'a str,
    key_name: &'static str,
    message: &'static str,
}

/// The answer to a register request.
pub(crate) fn register(answer: &RegisterAnswer, retry_after_seconds: u64) -> WireAnswer {
    match answer {
        RegisterAnswer::Accepted(status) => {
            WireAnswer::json(StatusCode::ACCEPTED, status, Some(retry_after_seconds))
        }
        RegisterAnswer::Final(status) => WireAnswer::json(StatusCode::OK, status, None),
        RegisterAnswer::TpmChallenge { authentication_key } => WireAnswer::json(
            StatusCode::UNAUTHORIZED,
            &TpmChallengeBody {
                authentication_key,
                key_name: "registration",
                message: "Sign a registration token with the key in authenticationKey.",
            },
            None,
        ),
    }
}

/// The answer to an operation status request.
pub(crate) fn operation_status(
    status: &RegistrationOperationStatus,
    retry_after_seconds: u64,
) -> WireAnswer {
    if status.status == RegistrationStatus::Assigning {
        WireAnswer::json(StatusCode::ACCEPTED, status, Some(retry_after_seconds))
    } else {
        WireAnswer::json(StatusCode::OK, status, None)
    }
}

/// The answer to a registration status lookup.
pub(crate) fn registration_status(result: &DeviceRegistrationResult) -> WireAnswer {
    WireAnswer::json(StatusCode::OK, result, None)
}

/// The answer to any request: the outcome's, or the failure's.
pub(crate) fn either(result: Result<WireAnswer, ApiError>) -> WireAnswer {
    result.unwrap_or_else(|err| err.to_wire())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_model::ErrorCode;

    fn assigning() -> RegistrationOperationStatus {
        dps_model::from_json(br#"{"operationId":"4.x","status":"assigning"}"#).unwrap()
    }

    #[test]
    fn statuses_and_waits_follow_the_table() {
        let accepted = register(&RegisterAnswer::Accepted(assigning()), 3);
        assert_eq!((accepted.status, accepted.retry_after), (202, Some(3)));
        let polled = operation_status(&assigning(), 2);
        assert_eq!((polled.status, polled.retry_after), (202, Some(2)));
        let challenge = register(
            &RegisterAnswer::TpmChallenge {
                authentication_key: "AAAA".to_owned(),
            },
            3,
        );
        assert_eq!((challenge.status, challenge.retry_after), (401, None));
        let body: serde_json::Value = serde_json::from_slice(&challenge.body).unwrap();
        assert_eq!(body["authenticationKey"], "AAAA");
        assert_eq!(body["keyName"], "registration");
        assert!(body.get("status").is_none(), "{body}");
    }

    #[test]
    fn failures_wait_only_when_throttled_or_unavailable() {
        let throttled = either(Err(ApiError::throttled("slow down", 7)));
        assert_eq!(
            (
                throttled.status,
                throttled.retry_after,
                throttled.error_code
            ),
            (429, Some(7), Some(ErrorCode::THROTTLED))
        );
        let mut refused = ApiError::unauthorized("no");
        refused.retry_after = Some(7);
        let refused = either(Err(refused));
        assert_eq!((refused.status, refused.retry_after), (401, None));
    }
}
