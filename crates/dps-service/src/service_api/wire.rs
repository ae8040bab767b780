//! What every service-API handler reads from a request (If-Match, paging
//! headers, query parameters, JSON bodies) and the shapes of its answers.

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use dps_model::{ETag, ModelError, Precondition};
use dps_storage::{ContinuationToken, PageRequest};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::respond::{json_response, ApiError};

/// Page size of a query that sends no `x-ms-max-item-count`.
pub(crate) const DEFAULT_PAGE_SIZE: usize = 100;

/// One request as handlers see it, after routing and authorization.
pub(crate) struct Call {
    /// Request headers.
    pub(crate) headers: HeaderMap,
    /// The raw query string.
    pub(crate) query: Option<String>,
    /// The body (at most `MAX_BODY_BYTES`).
    pub(crate) body: Bytes,
}

impl Call {
    /// A header as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `If-Match` precondition (absent: unconditional).
    pub(crate) fn if_match(&self) -> Precondition {
        Precondition::from_if_match(self.header("if-match"))
    }

    /// `x-ms-max-item-count` and `x-ms-continuation` as a page request.
    pub(crate) fn page_request(&self) -> Result<PageRequest, ApiError> {
        let size = match self.header("x-ms-max-item-count").map(str::trim) {
            None | Some("") => DEFAULT_PAGE_SIZE,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "x-ms-max-item-count must be a positive integer, not {text:?}."
                    )))
                }
            },
        };
        Ok(match self.header("x-ms-continuation").map(str::trim) {
            None | Some("") => PageRequest::first(size),
            Some(text) => PageRequest::after(ContinuationToken::parse(text)?, size),
        })
    }

    /// A query-string parameter (percent-decoded), by case-insensitive name.
    pub(crate) fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            key.eq_ignore_ascii_case(name).then(|| {
                percent_encoding::percent_decode_str(&value.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    }

    /// The body as JSON of type `T`; errors name the offending field.
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("The request body is empty."));
        }
        dps_model::from_json(&self.body).map_err(ApiError::from)
    }
}

/// `200` with a JSON body.
pub(crate) fn ok<T: Serialize>(value: &T) -> Response {
    json_response(StatusCode::OK, value)
}

/// `200` with a JSON body and an `ETag` header.
pub(crate) fn ok_tagged<T: Serialize>(value: &T, etag: Option<&ETag>) -> Response {
    let mut response = ok(value);
    if let Some(v) = etag.and_then(|e| HeaderValue::from_str(e.as_str()).ok()) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// `204` without a body.
pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// One page of a query: a JSON array with `x-ms-item-type`, the page size
/// used, and `x-ms-continuation` only when more pages follow (spec §4.10).
pub(crate) fn page<T: Serialize>(
    items: &[T],
    item_type: &'static str,
    request: &PageRequest,
    continuation: Option<&ContinuationToken>,
) -> Response {
    let mut response = ok(&items);
    let headers = response.headers_mut();
    headers.insert("x-ms-item-type", HeaderValue::from_static(item_type));
    headers.insert(
        "x-ms-max-item-count",
        HeaderValue::from(request.effective_size()),
    );
    if let Some(v) = continuation.and_then(|t| HeaderValue::from_str(t.as_str()).ok()) {
        headers.insert("x-ms-continuation", v);
    }
    response
}

/// A field error the model's conversion will render as a 400 naming `field`.
pub(crate) fn invalid(
    field: &'static str,
    value: impl Into<String>,
    reason: impl Into<String>,
) -> ApiError {
    ModelError::InvalidField {
        field,
        value: value.into(),
        reason: reason.into(),
    }
    .into()
}
