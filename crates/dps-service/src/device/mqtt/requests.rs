//! Translation of MQTT device requests into pipeline calls, and of their
//! outcomes into reply payloads (the MQTT twin of `http_api.rs`):
//!
//! | topic | pipeline call | answers |
//! |---|---|---|
//! | `PUT/iotdps-register` | register | `202` + retry-after (assigning), `200` (synchronous register), 4xx |
//! | `GET/iotdps-get-operationstatus` | operation status | `202` + retry-after (assigning), `200`, 4xx |

use bytes::Bytes;
use dps_model::{ErrorCode, RegistrationStatus};
use http::StatusCode;

use super::topics::RequestTopic;
use crate::device::http_api::parse_body;
use crate::pipeline::{DeviceRequest, Pipeline, RegisterAnswer};
use crate::respond::{ApiError, WireAnswer, MAX_BODY_BYTES};

/// A request taken off a PUBLISH, owning what it needs to outlive the packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Instruction {
    /// Register, with `forceRegistration`.
    Register {
        /// `forceRegistration=true`.
        force: bool,
    },
    /// Look up an operation.
    OperationStatus {
        /// The operation id, when the topic had one.
        operation_id: Option<String>,
    },
}

impl From<&RequestTopic<'_>> for Instruction {
    fn from(topic: &RequestTopic<'_>) -> Self {
        match topic {
            RequestTopic::Register { force, .. } => Instruction::Register { force: *force },
            RequestTopic::OperationStatus { operation_id, .. } => Instruction::OperationStatus {
                operation_id: operation_id.clone(),
            },
        }
    }
}

/// Run one instruction through the pipeline and render its answer.
pub(crate) async fn answer(
    pipeline: &Pipeline,
    request: &DeviceRequest,
    instruction: Instruction,
    payload: Bytes,
    retry_after_seconds: u64,
) -> WireAnswer {
    let result = match instruction {
        Instruction::Register { force } => {
            register(pipeline, request, force, &payload, retry_after_seconds).await
        }
        Instruction::OperationStatus { operation_id } => {
            operation_status(pipeline, request, operation_id, retry_after_seconds).await
        }
    };
    result.unwrap_or_else(|err| err.to_wire())
}

async fn register(
    pipeline: &Pipeline,
    request: &DeviceRequest,
    force: bool,
    payload: &[u8],
    retry_after_seconds: u64,
) -> Result<WireAnswer, ApiError> {
    if payload.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            ErrorCode::PAYLOAD_TOO_LARGE,
            format!("The request body exceeds {MAX_BODY_BYTES} bytes."),
        ));
    }
    // A bare JSON `null` means "no body", as an empty payload does.
    let body: &[u8] = if payload.trim_ascii() == b"null" {
        &[]
    } else {
        payload
    };
    let body = parse_body(&request.registration_id, body)?;
    Ok(match pipeline.register(request, body, force).await? {
        RegisterAnswer::Accepted(status) => {
            WireAnswer::json(StatusCode::ACCEPTED, &status, Some(retry_after_seconds))
        }
        RegisterAnswer::Final(status) => WireAnswer::json(StatusCode::OK, &status, None),
        // Unreachable in practice (CONNECT requires a token or a certificate),
        // but a TPM challenge has no MQTT form.
        RegisterAnswer::TpmChallenge { .. } => {
            return Err(ApiError::bad_request(
                "TPM attestation is not supported over MQTT; use HTTPS.",
            ))
        }
    })
}

async fn operation_status(
    pipeline: &Pipeline,
    request: &DeviceRequest,
    operation_id: Option<String>,
    retry_after_seconds: u64,
) -> Result<WireAnswer, ApiError> {
    let operation_id = operation_id
        .ok_or_else(|| ApiError::bad_request("The operationId topic parameter is required."))?;
    let status = pipeline.operation_status(request, &operation_id).await?;
    Ok(if status.status == RegistrationStatus::Assigning {
        WireAnswer::json(StatusCode::ACCEPTED, &status, Some(retry_after_seconds))
    } else {
        WireAnswer::json(StatusCode::OK, &status, None)
    })
}

/// The answer to a request over the per-connection in-flight cap.
pub(crate) fn throttled(max_in_flight: usize, retry_after_seconds: u64) -> WireAnswer {
    let mut error = ApiError::new(
        ErrorCode::THROTTLED,
        format!("More than {max_in_flight} requests in flight on this connection."),
    );
    error.retry_after = Some(retry_after_seconds);
    error.to_wire()
}
