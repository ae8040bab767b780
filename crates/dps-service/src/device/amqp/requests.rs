//! AMQP messages to pipeline calls and [`WireAnswer`]s back to AMQP
//! (docs/amqp.md §4, §5). The pipeline calls are MQTT's (the same
//! instructions, the same bodies); only the framing differs:
//!
//! | `iotdps-operation-type` | pipeline call |
//! |---|---|
//! | `iotdps-register` | register (body: data section(s) with the JSON) |
//! | `iotdps-get-operationstatus` | operation status (`iotdps-operation-id`) |
//! | `iotdps-get-registration` | registration status lookup |
//!
//! A 2xx answer is a reply message (data section, `iotdps-status`,
//! `retry-after`); anything else rejects the request delivery with an AMQP
//! error whose description is the Azure error body.

use bytes::Bytes;
use fe2o3_amqp::types::definitions::{AmqpError, ErrorCondition, Fields, LinkError};
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Body, Data, Message, MessageId, Properties,
};
use fe2o3_amqp::types::primitives::{OrderedMap, SimpleValue, Symbol, Value};

use crate::device::mqtt::requests::{self as shared, Instruction};
use crate::device::{answers, body};
use crate::pipeline::{DeviceRequest, Pipeline};
use crate::respond::{ApiError, WireAnswer};

/// The application property naming the operation.
const OPERATION_TYPE: &str = "iotdps-operation-type";
/// The application property carrying the operation id.
const OPERATION_ID: &str = "iotdps-operation-id";

/// A request taken off a delivery.
#[derive(Debug)]
pub(crate) struct Request {
    /// What to do (or why it cannot be done).
    pub(crate) instruction: Result<Operation, ApiError>,
    /// The body bytes.
    pub(crate) body: Bytes,
    /// The correlation id, echoed on the reply.
    pub(crate) correlation_id: Option<MessageId>,
}

/// The operations a device may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Operation {
    /// Register or poll: MQTT's instructions.
    Shared(Instruction),
    /// Look up the registration.
    RegistrationStatus,
}

/// Read a request message.
pub(crate) fn read(message: Message<Body<Value>>) -> Request {
    let correlation_id = message.properties.and_then(|p| p.correlation_id);
    let properties = message.application_properties.map(|p| p.0);
    let text = |name: &str| match properties.as_ref().and_then(|p| p.get(name)) {
        Some(SimpleValue::String(s)) => Some(s.clone()),
        Some(SimpleValue::Symbol(s)) => Some(s.as_str().to_owned()),
        _ => None,
    };
    let instruction = match text(OPERATION_TYPE).as_deref() {
        Some("iotdps-register") => Ok(Operation::Shared(Instruction::Register)),
        Some("iotdps-get-operationstatus") => Ok(Operation::Shared(Instruction::OperationStatus {
            operation_id: text(OPERATION_ID),
        })),
        Some("iotdps-get-registration") => Ok(Operation::RegistrationStatus),
        Some(other) => Err(ApiError::bad_request(format!(
            "Unknown {OPERATION_TYPE} {other:?}."
        ))),
        None => Err(ApiError::bad_request(format!(
            "The {OPERATION_TYPE} application property is required."
        ))),
    };
    let (body, instruction) = match body_bytes(message.body) {
        Ok(body) => (body, instruction),
        Err(err) => (Bytes::new(), Err(err)),
    };
    Request {
        instruction,
        body,
        correlation_id,
    }
}

/// The body as bytes: data sections joined, or an amqp-value string or
/// binary; nothing for no body or a null value.
fn body_bytes(body: Body<Value>) -> Result<Bytes, ApiError> {
    match body {
        Body::Data(sections) => {
            let mut all = Vec::new();
            for Data(bytes) in sections {
                all.extend_from_slice(&bytes);
            }
            Ok(Bytes::from(all))
        }
        Body::Value(value) => match value.0 {
            Value::String(s) => Ok(Bytes::from(s)),
            Value::Binary(b) => Ok(Bytes::from(b.into_vec())),
            Value::Null => Ok(Bytes::new()),
            _ => Err(ApiError::bad_request(
                "The body must be JSON in a data section.",
            )),
        },
        Body::Empty => Ok(Bytes::new()),
        Body::Sequence(_) => Err(ApiError::bad_request(
            "The body must be JSON in a data section.",
        )),
    }
}

/// Run a request through the pipeline.
pub(crate) async fn answer(
    pipeline: &Pipeline,
    request: &DeviceRequest,
    operation: Operation,
    payload: Bytes,
    retry_after_seconds: u64,
) -> WireAnswer {
    match operation {
        Operation::Shared(instruction) => {
            shared::answer(pipeline, request, instruction, payload, retry_after_seconds).await
        }
        Operation::RegistrationStatus => answers::either(
            async {
                let body = body::status_lookup_request(&request.registration_id, &payload)?;
                let result = pipeline.registration_status(request, body).await?;
                Ok(answers::registration_status(&result))
            }
            .await,
        ),
    }
}

/// The reply message of a 2xx answer.
pub(crate) fn reply(answer: &WireAnswer, correlation_id: Option<MessageId>) -> Message<Data> {
    let mut properties = OrderedMap::new();
    properties.insert(
        "iotdps-status".to_owned(),
        SimpleValue::Int(i32::from(answer.status)),
    );
    if let Some(seconds) = answer.retry_after {
        // Node reads `retry-after`, C# `Retry-After`.
        for key in ["retry-after", "Retry-After"] {
            properties.insert(key.to_owned(), SimpleValue::String(seconds.to_string()));
        }
    }
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(Properties {
            correlation_id,
            content_type: Some(Symbol::from("application/json")),
            content_encoding: Some(Symbol::from("utf-8")),
            ..Properties::default()
        }),
        application_properties: Some(ApplicationProperties(properties)),
        body: Data(answer.body.clone().into()),
        footer: None,
    }
}

/// The rejection error of a non-2xx answer: condition by status, the Azure
/// error body as description, the wait in `info` when there is one.
pub(crate) fn rejection(answer: &WireAnswer) -> fe2o3_amqp::types::definitions::Error {
    let condition = match answer.status {
        400 => ErrorCondition::Custom(Symbol::from("com.microsoft:argument-error")),
        401 => ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess),
        403 => ErrorCondition::AmqpError(AmqpError::NotAllowed),
        404 => ErrorCondition::AmqpError(AmqpError::NotFound),
        409 | 412 => ErrorCondition::Custom(Symbol::from("com.microsoft:precondition-failed")),
        413 => ErrorCondition::LinkError(LinkError::MessageSizeExceeded),
        429 => ErrorCondition::Custom(Symbol::from("com.microsoft:device-container-throttled")),
        status if status >= 500 => ErrorCondition::AmqpError(AmqpError::InternalError),
        _ => ErrorCondition::AmqpError(AmqpError::NotAllowed),
    };
    let info = answer.retry_after.map(|seconds| {
        let mut info = Fields::new();
        for key in ["retry-after", "Retry-After"] {
            info.insert(Symbol::from(key), Value::String(seconds.to_string()));
        }
        Box::new(info)
    });
    fe2o3_amqp::types::definitions::Error {
        condition,
        description: Some(String::from_utf8_lossy(&answer.body).into_owned()),
        info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp::types::messaging::AmqpValue;

    fn message(properties: &[(&str, &str)], body: Body<Value>) -> Message<Body<Value>> {
        let mut map = OrderedMap::new();
        for (k, v) in properties {
            map.insert((*k).to_owned(), SimpleValue::String((*v).to_owned()));
        }
        Message {
            header: None,
            delivery_annotations: None,
            message_annotations: None,
            properties: Some(Properties {
                correlation_id: Some(MessageId::String("c-1".to_owned())),
                ..Properties::default()
            }),
            application_properties: Some(ApplicationProperties(map)),
            body,
            footer: None,
        }
    }

    #[test]
    fn node_requests_become_instructions() {
        let register = read(message(
            &[(OPERATION_TYPE, "iotdps-register")],
            Body::Data(vec![Data(br#"{"registrationId":"d"}"#.to_vec().into())].into()),
        ));
        assert_eq!(
            register.instruction.unwrap(),
            Operation::Shared(Instruction::Register)
        );
        assert_eq!(&register.body[..], br#"{"registrationId":"d"}"#);
        assert_eq!(
            register.correlation_id,
            Some(MessageId::String("c-1".to_owned()))
        );
        let poll = read(message(
            &[
                (OPERATION_TYPE, "iotdps-get-operationstatus"),
                (OPERATION_ID, "4.abc"),
            ],
            Body::Value(AmqpValue(Value::String(String::new()))),
        ));
        assert_eq!(
            poll.instruction.unwrap(),
            Operation::Shared(Instruction::OperationStatus {
                operation_id: Some("4.abc".to_owned())
            })
        );
        let unknown = read(message(&[(OPERATION_TYPE, "x")], Body::Empty));
        assert_eq!(unknown.instruction.unwrap_err().code.http_status(), 400);
        let none = read(message(&[], Body::Empty));
        assert!(none.instruction.is_err());
    }

    #[test]
    fn answers_become_replies_and_rejections() {
        let ok = WireAnswer {
            status: 202,
            body: b"{}".to_vec(),
            retry_after: Some(3),
            error_code: None,
        };
        let reply = reply(&ok, Some(MessageId::String("c".to_owned())));
        let props = reply.application_properties.unwrap().0;
        assert_eq!(
            props.get("retry-after"),
            Some(&SimpleValue::String("3".to_owned()))
        );
        assert_eq!(props.get("iotdps-status"), Some(&SimpleValue::Int(202)));
        let refused = ApiError::unauthorized("no").to_wire();
        let error = rejection(&refused);
        assert_eq!(
            error.condition,
            ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess)
        );
        let description: serde_json::Value =
            serde_json::from_str(error.description.as_deref().unwrap()).unwrap();
        assert_eq!(description["errorCode"], 401002);
        assert!(error.info.is_none());
        let throttled = rejection(&ApiError::throttled("slow", 5).to_wire());
        assert!(throttled
            .info
            .unwrap()
            .contains_key(&Symbol::from("retry-after")));
    }
}
