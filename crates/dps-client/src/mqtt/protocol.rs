//! The client's side of the device protocol over MQTT: request ids and how
//! answers become results or typed errors (the topic grammar itself is
//! [`dps_model::mqtt`]).

use dps_model::{ErrorBody, RegistrationOperationStatus};
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet};

use super::Answer;
use crate::ClientError;

/// A request id unique within the connection, shaped like the SDKs' UUIDs.
pub(super) fn uuid_like(n: u16) -> String {
    format!("00000000-0000-4000-8000-{:012x}", n)
}

pub(super) fn parse_status(body: &[u8]) -> Result<RegistrationOperationStatus, ClientError> {
    dps_model::from_json(body).map_err(|e| ClientError::protocol(e.to_string()))
}

pub(super) fn is_transient(status: u16) -> bool {
    status == 429 || status >= 500
}

pub(super) fn error_of(answer: &Answer) -> ClientError {
    let body = serde_json::from_slice::<ErrorBody>(&answer.body).ok();
    let error_code = body.as_ref().map(|b| b.error_code);
    let message = body.map(|b| b.message).unwrap_or_else(|| {
        String::from_utf8_lossy(&answer.body)
            .chars()
            .take(200)
            .collect()
    });
    if answer.status == 401 {
        ClientError::Authentication {
            status: answer.status,
            error_code,
            message,
        }
    } else {
        ClientError::Service {
            status: answer.status,
            error_code,
            message,
        }
    }
}

/// A CONNACK refusal as the matching HTTP-shaped error.
pub(super) fn refusal(code: ConnectReturnCode) -> ClientError {
    match code {
        ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword => {
            ClientError::Authentication {
                status: 401,
                error_code: None,
                message: format!("the service refused the MQTT connection ({code:?})"),
            }
        }
        ConnectReturnCode::ServiceUnavailable => ClientError::Service {
            status: 503,
            error_code: None,
            message: "the service refused the MQTT connection (ServiceUnavailable)".to_owned(),
        },
        other => ClientError::protocol(format!(
            "the service refused the MQTT connection ({other:?})"
        )),
    }
}

/// A packet's type, for error messages: the variant name its `Debug` form
/// starts with (only ever formatted on the way to an error).
pub(super) fn kind(packet: &Packet) -> String {
    let debug = format!("{packet:?}");
    debug
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_kinds_are_variant_names() {
        assert_eq!(kind(&Packet::PingResp), "PingResp");
        let ack = rumqttc::mqttbytes::v4::SubAck::new(7, vec![]);
        assert_eq!(kind(&Packet::SubAck(ack)), "SubAck");
    }

    #[test]
    fn request_ids_are_unique_per_packet_id() {
        assert_ne!(uuid_like(1), uuid_like(2));
        assert_eq!(uuid_like(255).len(), 36);
    }
}
