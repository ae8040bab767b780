//! IoT Hub error replies: `{"Message":"ErrorCode:X;text","ExceptionMessage":"…"}`
//! plus the `iothub-errorcode` header.

use serde::{Deserialize, Serialize};

/// Header carrying the error code name on every hub error reply.
pub const ERROR_CODE_HEADER: &str = "iothub-errorcode";

/// The body of an IoT Hub error reply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubErrorBody {
    /// `ErrorCode:<Name>;<text>` (or, from newer hubs, a JSON string with `errorCode`).
    #[serde(rename = "Message", default)]
    pub message: String,
    /// `Tracking ID:…-TimeStamp:…`.
    #[serde(rename = "ExceptionMessage", default)]
    pub exception_message: String,
}

impl HubErrorBody {
    /// The body an emulator or proxy sends for `code` with a human `text`.
    pub fn new(code: ErrorCode, text: &str, exception_message: String) -> Self {
        HubErrorBody {
            message: format!("ErrorCode:{};{text}", code.name()),
            exception_message,
        }
    }

    /// Split `Message` into the error code name and the text. Understands the
    /// `ErrorCode:Name;text` form (what every SDK parses) and the JSON form
    /// `{"errorCode":404001,"message":"…"}` some hubs put inside `Message`.
    pub fn code_and_text(&self) -> (Option<String>, String) {
        let message = self.message.trim();
        if let Some(rest) = strip_prefix_ignore_case(message, "ErrorCode:") {
            return match rest.split_once(';') {
                Some((code, text)) => (Some(code.trim().to_owned()), text.trim().to_owned()),
                None => (Some(rest.trim().to_owned()), String::new()),
            };
        }
        if message.starts_with('{') {
            if let Ok(inner) = serde_json::from_str::<JsonMessage>(message) {
                let code = inner.error_code.map(|n| match ErrorCode::from_number(n) {
                    Some(code) => code.name().to_owned(),
                    None => n.to_string(),
                });
                return (code, inner.message.unwrap_or_default());
            }
        }
        (None, message.to_owned())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonMessage {
    error_code: Option<u32>,
    message: Option<String>,
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The IoT Hub error codes this project sends or recognises, with the HTTP
/// status and the numeric code the hub pairs them with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400004: a malformed body, id or header.
    ArgumentInvalid,
    /// 400xxx: a bulk call names one device twice (sub-code unconfirmed).
    DeviceDefinedMultipleTimes,
    /// 401002: the token is missing, malformed, expired or wrongly signed.
    IotHubUnauthorizedAccess,
    /// 403002: the hub's device quota is used up.
    IotHubQuotaExceeded,
    /// 404001: no such device.
    DeviceNotFound,
    /// 404xxx: no hub with the requested host name (emulator only).
    IotHubNotFound,
    /// 409001: create of an id that exists.
    DeviceAlreadyExists,
    /// 412001: `If-Match` etag mismatch.
    PreconditionFailed,
    /// 413xxx: a bulk call carries more than 100 devices (sub-code unconfirmed).
    TooManyDevices,
    /// 429001: too many requests.
    ThrottlingException,
    /// 500001: internal failure.
    ServerError,
    /// 503001: the hub is temporarily unavailable.
    ServiceUnavailable,
}

impl ErrorCode {
    const ALL: [ErrorCode; 12] = [
        ErrorCode::ArgumentInvalid,
        ErrorCode::DeviceDefinedMultipleTimes,
        ErrorCode::IotHubUnauthorizedAccess,
        ErrorCode::IotHubQuotaExceeded,
        ErrorCode::DeviceNotFound,
        ErrorCode::IotHubNotFound,
        ErrorCode::DeviceAlreadyExists,
        ErrorCode::PreconditionFailed,
        ErrorCode::TooManyDevices,
        ErrorCode::ThrottlingException,
        ErrorCode::ServerError,
        ErrorCode::ServiceUnavailable,
    ];

    /// The name as in `ErrorCode:<Name>` and `iothub-errorcode`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::ArgumentInvalid => "ArgumentInvalid",
            ErrorCode::DeviceDefinedMultipleTimes => "DeviceDefinedMultipleTimes",
            ErrorCode::IotHubUnauthorizedAccess => "IotHubUnauthorizedAccess",
            ErrorCode::IotHubQuotaExceeded => "IotHubQuotaExceeded",
            ErrorCode::DeviceNotFound => "DeviceNotFound",
            ErrorCode::IotHubNotFound => "IotHubNotFound",
            ErrorCode::DeviceAlreadyExists => "DeviceAlreadyExists",
            ErrorCode::PreconditionFailed => "PreconditionFailed",
            ErrorCode::TooManyDevices => "TooManyDevices",
            ErrorCode::ThrottlingException => "ThrottlingException",
            ErrorCode::ServerError => "ServerError",
            ErrorCode::ServiceUnavailable => "ServiceUnavailable",
        }
    }

    /// The six-digit code: HTTP status × 1000 + a sub-code.
    pub fn number(self) -> u32 {
        match self {
            ErrorCode::ArgumentInvalid => 400004,
            ErrorCode::DeviceDefinedMultipleTimes => 400011,
            ErrorCode::IotHubUnauthorizedAccess => 401002,
            ErrorCode::IotHubQuotaExceeded => 403002,
            ErrorCode::DeviceNotFound => 404001,
            ErrorCode::IotHubNotFound => 404103,
            ErrorCode::DeviceAlreadyExists => 409001,
            ErrorCode::PreconditionFailed => 412001,
            ErrorCode::TooManyDevices => 413002,
            ErrorCode::ThrottlingException => 429001,
            ErrorCode::ServerError => 500001,
            ErrorCode::ServiceUnavailable => 503001,
        }
    }

    /// The HTTP status the hub answers this code with.
    pub fn status(self) -> u16 {
        // The numeric codes are built as status * 1000 + n.
        (self.number() / 1000) as u16
    }

    /// The code with this name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// The code with this number.
    pub fn from_number(number: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.number() == number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_message_form() {
        let body = HubErrorBody::new(
            ErrorCode::DeviceNotFound,
            "Device d1 not found",
            "Tracking ID:x".into(),
        );
        assert_eq!(body.message, "ErrorCode:DeviceNotFound;Device d1 not found");
        assert_eq!(
            body.code_and_text(),
            (
                Some("DeviceNotFound".to_owned()),
                "Device d1 not found".to_owned()
            )
        );
    }

    #[test]
    fn json_message_form_maps_numbers_to_names() {
        let body = HubErrorBody {
            message: r#"{"errorCode":412001,"trackingId":"t","message":"etag mismatch","timestampUtc":"x"}"#
                .to_owned(),
            exception_message: String::new(),
        };
        assert_eq!(
            body.code_and_text(),
            (
                Some("PreconditionFailed".to_owned()),
                "etag mismatch".to_owned()
            )
        );
    }

    #[test]
    fn plain_text_has_no_code() {
        let body = HubErrorBody {
            message: "boom".into(),
            exception_message: String::new(),
        };
        assert_eq!(body.code_and_text(), (None, "boom".to_owned()));
    }

    #[test]
    fn codes_are_consistent() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_name(code.name()), Some(code));
            assert_eq!(ErrorCode::from_number(code.number()), Some(code));
        }
        assert_eq!(ErrorCode::DeviceAlreadyExists.status(), 409);
        assert_eq!(ErrorCode::IotHubUnauthorizedAccess.status(), 401);
    }
}
