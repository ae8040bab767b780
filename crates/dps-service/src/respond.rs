//! The one place that turns outcomes into wire answers ([`WireAnswer`]):
//! HTTP status, the Azure error body (`errorCode`, `trackingId`, `message`,
//! `timestampUtc`), `x-ms-error-code`, and `Retry-After` only where clients
//! should retry (some SDKs retry any 4xx that carries it).
//!
//! `refusals` is where each failure gets its Azure error code.

mod refusals;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use dps_model::{ErrorBody, ErrorCode};
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

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// An answer in transport-neutral form: the HTTP status it stands for, the
/// JSON body, the seconds a client should wait, and the Azure error code of
/// a failure. HTTPS renders it as a response ([`IntoResponse`]), MQTT as a
/// reply topic and payload; a new transport renders this, nothing else.
#[derive(Clone, Debug, PartialEq)]
pub struct WireAnswer {
    /// The HTTP status code with the same meaning.
    pub status: u16,
    /// The JSON body (an operation status, a TPM challenge or the Azure error body).
    pub body: Vec<u8>,
    /// Seconds to wait before the next request, when there is a reason to.
    pub retry_after: Option<u64>,
    /// The 6-digit code of a failure (HTTPS also sends it as `x-ms-error-code`).
    pub error_code: Option<ErrorCode>,
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
                error_code: None,
            },
            Err(err) => ApiError::internal(err).to_wire(),
        }
    }
}

impl ApiError {
    /// This error as every transport carries it: its status, the Azure error
    /// body, and the seconds to wait only on 429 and 503 (some SDKs retry
    /// any 4xx that carries a wait).
    pub fn to_wire(&self) -> WireAnswer {
        let status = self.status();
        let body = ErrorBody::new(self.code, self.message.clone());
        WireAnswer {
            status: status.as_u16(),
            body: serde_json::to_vec(&body).unwrap_or_default(),
            retry_after: self.retry_after.filter(|_| {
                status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
            }),
            error_code: Some(self.code),
        }
    }
}

impl IntoResponse for WireAnswer {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(JSON_CONTENT_TYPE),
            )],
            self.body,
        )
            .into_response();
        let headers = response.headers_mut();
        if let Some(code) = self.error_code {
            headers.insert("x-ms-error-code", HeaderValue::from(code.0));
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.to_wire().into_response()
    }
}

/// A JSON answer with the content type every SDK needs.
pub fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    WireAnswer::json(status, value, None).into_response()
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
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if length > MAX_BODY_BYTES {
            return Err(ApiError::payload_too_large());
        }
    }
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => Ok(bytes),
        Err(err) => {
            let text = err.to_string();
            if text.contains("length limit") {
                Err(ApiError::payload_too_large())
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
    ApiError::route_not_found()
}

/// The answer for a known path with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
