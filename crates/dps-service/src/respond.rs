//! The one place that turns failures into wire answers: HTTP status, the
//! Azure error body (`errorCode`, `trackingId`, `message`, `timestampUtc`),
//! `x-ms-error-code`, and `Retry-After` only where clients should retry
//! (some SDKs retry any 4xx that carries it).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use dps_model::{ErrorBody, ErrorCode, ModelError};
use dps_storage::{Entity, StoreError};
use http::{header, HeaderValue, StatusCode};

/// The largest body the device and service APIs accept (the cloud's 96 KB).
pub const MAX_BODY_BYTES: usize = 96 * 1024;

/// `Content-Type` of every JSON answer (the Node SDK parses only with it).
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// A request that failed, ready to be rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// 6-digit Azure code; its first three digits are the HTTP status.
    pub code: ErrorCode,
    /// What went wrong, for the client.
    pub message: String,
    /// Seconds the client should wait (429 and 503 only).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 with the generic argument-invalid code.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::ARGUMENT_INVALID, message)
    }

    /// 401 with the Azure unauthorized code.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::UNAUTHORIZED, message)
    }

    /// 500 without internal details (they go to the log).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        let tracking = uuid::Uuid::new_v4();
        tracing::error!(%tracking, %detail, "internal error");
        ApiError::new(
            ErrorCode::INTERNAL,
            format!("Internal error (tracking id {tracking})."),
        )
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// An answer as a message-oriented transport (MQTT) carries it: the HTTP
/// status it stands for, the JSON body, and the seconds a client should wait.
#[derive(Clone, Debug, PartialEq)]
pub struct WireAnswer {
    /// The HTTP status code with the same meaning.
    pub status: u16,
    /// The JSON body (an operation status or the Azure error body).
    pub body: Vec<u8>,
    /// Seconds to wait before the next request, when there is a reason to.
    pub retry_after: Option<u64>,
}

impl WireAnswer {
    /// A JSON answer.
    pub fn json<T: serde::Serialize>(
        status: StatusCode,
        value: &T,
        retry_after: Option<u64>,
    ) -> WireAnswer {
        match serde_json::to_vec(value) {
            Ok(body) => WireAnswer {
                status: status.as_u16(),
                body,
                retry_after,
            },
            Err(err) => ApiError::internal(err).to_wire(),
        }
    }
}

impl ApiError {
    /// This error as a message-oriented transport carries it: the same status,
    /// body and retry rule as the HTTP rendering.
    pub fn to_wire(&self) -> WireAnswer {
        let status = self.status();
        let body = ErrorBody::new(self.code, self.message.clone());
        WireAnswer {
            status: status.as_u16(),
            body: serde_json::to_vec(&body).unwrap_or_default(),
            retry_after: self.retry_after.filter(|_| {
                status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
            }),
        }
    }
}

impl From<ModelError> for ApiError {
    fn from(err: ModelError) -> Self {
        let code = match &err {
            ModelError::InvalidId {
                kind: "registrationId",
                ..
            } => ErrorCode::INVALID_REGISTRATION_ID,
            ModelError::InvalidId {
                kind: "enrollmentGroupId",
                ..
            } => ErrorCode::INVALID_ENROLLMENT_GROUP_ID,
            _ => ErrorCode::ARGUMENT_INVALID,
        };
        ApiError::new(code, err.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let code = match &err {
            StoreError::NotFound { entity, .. } => match entity {
                Entity::Enrollment => ErrorCode::ENROLLMENT_NOT_FOUND,
                Entity::EnrollmentGroup => ErrorCode::ENROLLMENT_GROUP_NOT_FOUND,
                Entity::Registration => ErrorCode::DEVICE_REGISTRATION_NOT_FOUND,
                Entity::RegistrationOperation => ErrorCode::ASYNC_OPERATION_NOT_FOUND,
                Entity::Tenant => ErrorCode::PROVISIONING_SETTINGS_NOT_FOUND,
                _ => ErrorCode(404000),
            },
            StoreError::AlreadyExists { entity, .. } => match entity {
                Entity::Enrollment => ErrorCode::ENROLLMENT_CONFLICT,
                Entity::EnrollmentGroup => ErrorCode::ENROLLMENT_GROUP_CONFLICT,
                Entity::Registration => ErrorCode::REGISTRATION_STATUS_CONFLICT,
                _ => ErrorCode(409000),
            },
            StoreError::PreconditionFailed { .. } => ErrorCode::PRECONDITION_FAILED,
            StoreError::UnknownTenant { .. } => ErrorCode::PROVISIONING_SETTINGS_NOT_FOUND,
            StoreError::InvalidContinuationToken { .. } => ErrorCode::ARGUMENT_INVALID,
            _ => return ApiError::internal(err),
        };
        ApiError::new(code, sentence(&err.to_string()))
    }
}

/// A message as a sentence: capital first letter, final full stop.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody::new(self.code, self.message);
        let mut response = json_response(status, &body);
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.code.0.to_string()) {
            headers.insert("x-ms-error-code", v);
        }
        if let Some(seconds) = self.retry_after {
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
            {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
        }
        response
    }
}

/// A JSON answer with the content type every SDK needs.
pub fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(JSON_CONTENT_TYPE),
            )],
            body,
        )
            .into_response(),
        Err(err) => ApiError::internal(err).into_response(),
    }
}

/// The request body, at most [`MAX_BODY_BYTES`]; over the limit is a 413 in
/// the Azure error shape rather than the framework's text.
pub struct LimitedBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        read_limited_body(&parts.headers, body)
            .await
            .map(LimitedBody)
    }
}

/// Read a request body of at most [`MAX_BODY_BYTES`]; over the limit is a 413
/// in the Azure error shape rather than the framework's text.
pub async fn read_limited_body(
    headers: &http::HeaderMap,
    body: axum::body::Body,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::PAYLOAD_TOO_LARGE,
            format!("The request body exceeds {MAX_BODY_BYTES} bytes."),
        )
    };
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if length > MAX_BODY_BYTES {
            return Err(too_large());
        }
    }
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => Ok(bytes),
        Err(err) => {
            let text = err.to_string();
            if text.contains("length limit") {
                Err(too_large())
            } else {
                Err(ApiError::bad_request(format!(
                    "The request body could not be read: {text}"
                )))
            }
        }
    }
}

/// The answer for paths no route knows.
pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode(404000), "The requested resource does not exist.")
}

/// The answer for a known path with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode(405000),
        "The method is not allowed on this resource.",
    )
}
