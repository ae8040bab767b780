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

/// One connection's requests in the pipeline, under a cap (MQTT and AMQP):
/// a request over it is answered 429, and past `max_throttled` such answers
/// the connection is closed (a flood).
#[derive(Debug)]
pub(crate) struct InFlight {
    max: usize,
    max_throttled: u32,
    current: usize,
    throttled: u32,
}

impl InFlight {
    /// At most `max` requests at once, `max_throttled` refusals in all.
    pub(crate) fn new(max: usize, max_throttled: u32) -> Self {
        InFlight {
            max,
            max_throttled,
            current: 0,
            throttled: 0,
        }
    }

    /// Take a place for a new request: `Ok(None)` when it may go to the
    /// pipeline, `Ok(Some(answer))` when it is to be answered with this 429
    /// instead, `Err(reason)` when the connection must be closed.
    pub(crate) fn admit(&mut self, retry_after_seconds: u64) -> Result<Option<WireAnswer>, String> {
        if self.current < self.max {
            self.current += 1;
            return Ok(None);
        }
        self.throttled += 1;
        if self.throttled > self.max_throttled {
            return Err(format!(
                "more than {} requests over the in-flight limit",
                self.max_throttled
            ));
        }
        let max = self.max;
        Ok(Some(
            ApiError::throttled(
                format!("More than {max} requests in flight on this connection."),
                retry_after_seconds,
            )
            .to_wire(),
        ))
    }

    /// A request's answer is back.
    pub(crate) fn finished(&mut self) {
        self.current = self.current.saturating_sub(1);
    }

    /// No request is in the pipeline.
    pub(crate) fn is_empty(&self) -> bool {
        self.current == 0
    }
}
