//! Translation of MQTT device requests into pipeline calls (the MQTT twin of
//! `http_api.rs`); bodies are read by [`crate::device::body`] and answers
//! come from [`crate::device::answers`], as on every transport:
//!
//! | topic | pipeline call |
//! |---|---|
//! | `PUT/iotdps-register` | register |
//! | `GET/iotdps-get-operationstatus` | operation status |

use bytes::Bytes;
use dps_model::mqtt::RequestTopic;

use crate::device::{answers, body};
use crate::pipeline::{DeviceRequest, Pipeline};
use crate::respond::{ApiError, WireAnswer};

/// A request taken off a PUBLISH, owning what it needs to outlive the packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Instruction {
    /// Register.
    Register,
    /// Look up an operation.
    OperationStatus {
        /// The operation id, when the topic had one.
        operation_id: Option<String>,
    },
}

impl From<&RequestTopic<'_>> for Instruction {
    fn from(topic: &RequestTopic<'_>) -> Self {
        match topic {
            RequestTopic::Register { .. } => Instruction::Register,
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
    answers::either(match instruction {
        Instruction::Register => register(pipeline, request, &payload, retry_after_seconds).await,
        Instruction::OperationStatus { operation_id } => {
            operation_status(pipeline, request, operation_id, retry_after_seconds).await
        }
    })
}

async fn register(
    pipeline: &Pipeline,
    request: &DeviceRequest,
    payload: &[u8],
    retry_after_seconds: u64,
) -> Result<WireAnswer, ApiError> {
    let body = body::registration_request(&request.registration_id, payload)?;
    let outcome = pipeline.register(request, body).await?;
    Ok(answers::register(&outcome, retry_after_seconds))
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
    Ok(answers::operation_status(&status, retry_after_seconds))
}

/// The answer to a request over the per-connection in-flight cap.
pub(crate) fn throttled(max_in_flight: usize, retry_after_seconds: u64) -> WireAnswer {
    ApiError::throttled(
        format!("More than {max_in_flight} requests in flight on this connection."),
        retry_after_seconds,
    )
    .to_wire()
}
