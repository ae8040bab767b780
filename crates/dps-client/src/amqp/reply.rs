//! How the service's AMQP answers read back as the HTTPS-shaped answer the
//! rest of the client works with (docs/amqp.md §5): a reply message
//! carries the status in `iotdps-status` and the wait in `retry-after`; a
//! refused request is a `rejected` disposition whose error description is
//! the Azure error body.

use std::time::Duration;

use fe2o3_amqp::types::definitions::{
    AmqpError, Error as AmqpErrorBody, ErrorCondition, LinkError,
};
use fe2o3_amqp::types::messaging::{Body, Message, MessageId};
use fe2o3_amqp::types::primitives::{SimpleValue, Value};

/// One answer to a request, whatever carried it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Answer {
    /// The HTTPS status it stands for.
    pub(crate) status: u16,
    /// How long the service asked the device to wait.
    pub(crate) retry_after: Option<Duration>,
    /// The JSON body (a status, or an Azure error body).
    pub(crate) body: Vec<u8>,
}

/// The correlation id of a reply, when it is a string (the one form the
/// client sends, and the one form it matches).
pub(crate) fn correlation_id(message: &Message<Body<Value>>) -> Option<&str> {
    match message.properties.as_ref()?.correlation_id.as_ref()? {
        MessageId::String(id) => Some(id),
        _ => None,
    }
}

/// A reply message as an answer: status from `iotdps-status` (200 when
/// absent), wait from `retry-after`, body from its data sections (or an
/// amqp-value string or binary, which Node could not read but we can).
pub(crate) fn answer_of_reply(message: &Message<Body<Value>>) -> Answer {
    let property = |name: &str| {
        message
            .application_properties
            .as_ref()
            .and_then(|p| p.0.get(name))
    };
    let status = property("iotdps-status")
        .and_then(number)
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(200);
    let retry_after = property("retry-after")
        .or_else(|| property("Retry-After"))
        .and_then(number)
        .map(Duration::from_secs);
    let body = match &message.body {
        Body::Data(sections) => sections.iter().flat_map(|d| d.0.iter().copied()).collect(),
        Body::Value(value) => match &value.0 {
            Value::String(text) => text.as_bytes().to_vec(),
            Value::Binary(bytes) => bytes.to_vec(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    Answer {
        status,
        retry_after,
        body,
    }
}

/// A `rejected` outcome as an answer: the description is the Azure error
/// body; the status is its code's first three digits, else the condition's.
pub(crate) fn answer_of_rejection(error: Option<&AmqpErrorBody>) -> Answer {
    let Some(error) = error else {
        return Answer {
            status: 500,
            retry_after: None,
            body: b"{\"message\":\"the service rejected the request without an error\"}".to_vec(),
        };
    };
    let body = error.description.clone().unwrap_or_default().into_bytes();
    let from_code = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|b| b["errorCode"].as_i64())
        .map(|code| code / 1000)
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (400..600).contains(s));
    let retry_after = error.info.as_ref().and_then(|info| {
        info.iter()
            .find(|(key, _)| key.as_str().eq_ignore_ascii_case("retry-after"))
            .and_then(|(_, value)| value_number(value))
            .map(Duration::from_secs)
    });
    Answer {
        status: from_code.unwrap_or_else(|| condition_status(&error.condition)),
        retry_after,
        body,
    }
}

/// The HTTPS status an error condition stands for (docs/amqp.md §5).
pub(crate) fn condition_status(condition: &ErrorCondition) -> u16 {
    match condition {
        ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess) => 401,
        ErrorCondition::AmqpError(AmqpError::NotAllowed) => 403,
        ErrorCondition::AmqpError(AmqpError::NotFound) => 404,
        ErrorCondition::AmqpError(AmqpError::ResourceLimitExceeded) => 429,
        ErrorCondition::AmqpError(AmqpError::InternalError) => 500,
        ErrorCondition::LinkError(LinkError::MessageSizeExceeded) => 413,
        ErrorCondition::Custom(symbol) => match symbol.as_str() {
            "com.microsoft:argument-error" => 400,
            "com.microsoft:precondition-failed" => 412,
            "com.microsoft:device-container-throttled" => 429,
            _ => 500,
        },
        _ => 400,
    }
}

/// An integer, or a string holding one (Node and C# read both).
fn number(value: &SimpleValue) -> Option<u64> {
    match value {
        SimpleValue::String(text) => text.trim().parse().ok(),
        SimpleValue::Int(n) => u64::try_from(*n).ok(),
        SimpleValue::Long(n) => u64::try_from(*n).ok(),
        SimpleValue::Uint(n) => Some(u64::from(*n)),
        SimpleValue::Ulong(n) => Some(*n),
        SimpleValue::Short(n) => u64::try_from(*n).ok(),
        SimpleValue::Ushort(n) => Some(u64::from(*n)),
        _ => None,
    }
}

fn value_number(value: &Value) -> Option<u64> {
    SimpleValue::try_from(value.clone())
        .ok()
        .as_ref()
        .and_then(number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp::types::messaging::{ApplicationProperties, Data, Properties};
    use fe2o3_amqp::types::primitives::{Binary, OrderedMap, Symbol};
    use proptest::prelude::*;

    fn reply(status: Option<i32>, retry: Option<SimpleValue>, body: &[u8]) -> Message<Body<Value>> {
        let mut properties = ApplicationProperties::builder();
        if let Some(status) = status {
            properties = properties.insert("iotdps-status", status);
        }
        if let Some(retry) = retry {
            properties = properties.insert("retry-after", retry);
        }
        Message::builder()
            .properties(
                Properties::builder()
                    .correlation_id(MessageId::String("c-1".to_owned()))
                    .build(),
            )
            .application_properties(properties.build())
            .body(Body::Data(vec![Data(Binary::from(body.to_vec()))].into()))
            .build()
    }

    #[test]
    fn replies_carry_status_wait_and_body() {
        let message = reply(Some(202), Some(SimpleValue::String("3".into())), b"{}");
        assert_eq!(correlation_id(&message), Some("c-1"));
        assert_eq!(
            answer_of_reply(&message),
            Answer {
                status: 202,
                retry_after: Some(Duration::from_secs(3)),
                body: b"{}".to_vec()
            }
        );
        let plain = reply(None, Some(SimpleValue::Int(2)), b"x");
        assert_eq!(answer_of_reply(&plain).status, 200);
        assert_eq!(
            answer_of_reply(&plain).retry_after,
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn rejections_read_the_azure_code_first() {
        let mut info = OrderedMap::new();
        info.insert(Symbol::from("retry-after"), Value::String("5".into()));
        let throttled = AmqpErrorBody::new(
            ErrorCondition::Custom(Symbol::from("com.microsoft:device-container-throttled")),
            Some(r#"{"errorCode":429001,"message":"slow down"}"#.to_owned()),
            Some(info),
        );
        let answer = answer_of_rejection(Some(&throttled));
        assert_eq!(
            (answer.status, answer.retry_after),
            (429, Some(Duration::from_secs(5)))
        );
        let challenge = AmqpErrorBody::new(
            AmqpError::UnauthorizedAccess,
            Some(r#"{"authenticationKey":"a","keyName":"k"}"#.to_owned()),
            None,
        );
        assert_eq!(answer_of_rejection(Some(&challenge)).status, 401);
        let odd_code = AmqpErrorBody::new(
            ErrorCondition::Custom(Symbol::from("com.microsoft:argument-error")),
            Some(r#"{"errorCode":7}"#.to_owned()),
            None,
        );
        assert_eq!(answer_of_rejection(Some(&odd_code)).status, 400);
        assert_eq!(answer_of_rejection(None).status, 500);
    }

    proptest! {
        #[test]
        fn any_description_reads_as_a_status(description in ".{0,200}", code in any::<i64>()) {
            for text in [description.clone(), format!("{{\"errorCode\":{code}}}")] {
                let error = AmqpErrorBody::new(AmqpError::NotFound, Some(text), None);
                let answer = answer_of_rejection(Some(&error));
                prop_assert!((400..600).contains(&answer.status));
            }
        }
    }
}
