//! The Azure error body and the numeric error codes (spec §1.9).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::time;

/// `ProvisioningServiceErrorDetails`, used by the device and the service API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// 6-digit code; the first three digits are the HTTP status.
    pub error_code: i32,
    /// Correlation id for logs.
    pub tracking_id: String,
    /// Human-readable cause.
    pub message: String,
    /// When it happened.
    #[serde(with = "time::azure")]
    pub timestamp_utc: DateTime<Utc>,
    /// Extra details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<Map<String, Value>>,
}

impl ErrorBody {
    /// A body with a fresh tracking id and the current time.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error_code: code.0,
            tracking_id: uuid::Uuid::new_v4().to_string(),
            message: message.into(),
            timestamp_utc: Utc::now(),
            info: None,
        }
    }
}

/// A 6-digit Azure error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub i32);

impl ErrorCode {
    /// Generic bad request.
    pub const BAD_REQUEST: ErrorCode = ErrorCode(400000);
    /// An argument is invalid (IoT-Hub-style generic 400).
    pub const ARGUMENT_INVALID: ErrorCode = ErrorCode(400004);
    /// Invalid endorsement key.
    pub const INVALID_ENDORSEMENT_KEY: ErrorCode = ErrorCode(400201);
    /// Invalid registration id.
    pub const INVALID_REGISTRATION_ID: ErrorCode = ErrorCode(400202);
    /// Invalid storage root key.
    pub const INVALID_STORAGE_ROOT_KEY: ErrorCode = ErrorCode(400203);
    /// Invalid enrollment group id.
    pub const INVALID_ENROLLMENT_GROUP_ID: ErrorCode = ErrorCode(400204);
    /// Too many enrollments in one request.
    pub const TOO_MANY_ENROLLMENTS: ErrorCode = ErrorCode(400205);
    /// The same registration id twice in one request.
    pub const REGISTRATION_ID_DEFINED_MULTIPLE_TIMES: ErrorCode = ErrorCode(400206);
    /// The custom allocation webhook failed.
    pub const CUSTOM_ALLOCATION_FAILED: ErrorCode = ErrorCode(400207);
    /// The webhook returned no (or an unlinked) hub.
    pub const CUSTOM_ALLOCATION_IOT_HUB_NOT_SPECIFIED: ErrorCode = ErrorCode(400208);
    /// The webhook refused our call.
    pub const CUSTOM_ALLOCATION_UNAUTHORIZED_ACCESS: ErrorCode = ErrorCode(400209);
    /// The enrollment (or its group) is disabled: recorded on a registration
    /// whose status says `disabled`, never sent as an HTTP status.
    pub const ENROLLMENT_DISABLED: ErrorCode = ErrorCode(401000);
    /// Authentication failed.
    pub const UNAUTHORIZED: ErrorCode = ErrorCode(401002);
    /// The body is too large.
    pub const PAYLOAD_TOO_LARGE: ErrorCode = ErrorCode(413001);
    /// No such resource (a path no route knows, an unnamed entity).
    pub const NOT_FOUND: ErrorCode = ErrorCode(404000);
    /// No enrollment.
    pub const ENROLLMENT_NOT_FOUND: ErrorCode = ErrorCode(404201);
    /// No registration record.
    pub const DEVICE_REGISTRATION_NOT_FOUND: ErrorCode = ErrorCode(404202);
    /// Unknown operation id.
    pub const ASYNC_OPERATION_NOT_FOUND: ErrorCode = ErrorCode(404203);
    /// No enrollment group.
    pub const ENROLLMENT_GROUP_NOT_FOUND: ErrorCode = ErrorCode(404204);
    /// No such provisioning settings (tenant).
    pub const PROVISIONING_SETTINGS_NOT_FOUND: ErrorCode = ErrorCode(404208);
    /// No such linked hub.
    pub const LINKED_HUB_NOT_FOUND: ErrorCode = ErrorCode(404210);
    /// No such CA certificate.
    pub const CERTIFICATE_AUTHORITY_NOT_FOUND: ErrorCode = ErrorCode(404211);
    /// The method is not allowed on this resource.
    pub const METHOD_NOT_ALLOWED: ErrorCode = ErrorCode(405000);
    /// The resource already exists (an entity without a specific code).
    pub const CONFLICT: ErrorCode = ErrorCode(409000);
    /// Enrollment already exists.
    pub const ENROLLMENT_CONFLICT: ErrorCode = ErrorCode(409201);
    /// Group already exists.
    pub const ENROLLMENT_GROUP_CONFLICT: ErrorCode = ErrorCode(409202);
    /// Concurrent registration of one id.
    pub const REGISTRATION_STATUS_CONFLICT: ErrorCode = ErrorCode(409203);
    /// Linked hub already exists.
    pub const LINKED_HUB_CONFLICT: ErrorCode = ErrorCode(409210);
    /// CA certificate already exists.
    pub const CERTIFICATE_AUTHORITY_CONFLICT: ErrorCode = ErrorCode(409211);
    /// Etag mismatch.
    pub const PRECONDITION_FAILED: ErrorCode = ErrorCode(412001);
    /// Unsupported media type.
    pub const UNSUPPORTED_MEDIA_TYPE: ErrorCode = ErrorCode(415001);
    /// Throttled.
    pub const THROTTLED: ErrorCode = ErrorCode(429001);
    /// Internal error.
    pub const INTERNAL: ErrorCode = ErrorCode(500001);
    /// A linked hub failed.
    pub const HUB_FAILURE: ErrorCode = ErrorCode(500201);

    /// The HTTP status the code belongs to (its first three digits).
    pub fn http_status(self) -> u16 {
        u16::try_from(self.0 / 1000).unwrap_or(500)
    }
}
