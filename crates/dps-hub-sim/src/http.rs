//! The registry REST surface (axum) and the one place that renders IoT Hub
//! error replies.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, IF_MATCH, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use dps_attestation::sas::{Audience, ExpiryPolicy, SasToken};
use dps_hub::wire::{Device, ErrorCode, HubErrorBody, Twin, ERROR_CODE_HEADER};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::registry::RegistryError;
use crate::state::{HubState, SimState};
use crate::throttle::Meter;

const JSON: &str = "application/json; charset=utf-8";

/// The hub a request was routed to (set by the connection layer).
#[derive(Clone)]
pub(crate) struct RoutedHub(pub(crate) Arc<HubState>);

pub(crate) fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/devices", get(list_devices).post(bulk_registry))
        // azure-iothub lists with a trailing slash.
        .route("/devices/", get(list_devices))
        .route(
            "/devices/{id}",
            get(get_device).put(put_device).delete(delete_device),
        )
        .route(
            "/twins/{id}",
            get(get_twin).put(replace_twin).patch(patch_twin),
        )
        .route("/statistics/devices", get(statistics))
        .fallback(unknown_path)
        .with_state(state)
}

type Reply = Result<Response, RegistryError>;

fn json_reply(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [(CONTENT_TYPE, HeaderValue::from_static(JSON))],
            body,
        )
            .into_response(),
        Err(err) => RegistryError::new(ErrorCode::ServerError, err.to_string()).into_response(),
    }
}

fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, RegistryError> {
    serde_json::from_slice(body).map_err(|err| {
        RegistryError::new(
            ErrorCode::ArgumentInvalid,
            format!("The request body is not valid: {err}"),
        )
    })
}

fn if_match(headers: &HeaderMap) -> Option<&str> {
    headers.get(IF_MATCH).and_then(|v| v.to_str().ok())
}

async fn put_device(
    State(state): State<Arc<SimState>>,
    Extension(RoutedHub(hub)): Extension<RoutedHub>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let device: Device = parse_body(&body)?;
    let saved = hub.registry().put_device(&id, device, if_match(&headers))?;
    state.mark_changed();
    Ok(json_reply(StatusCode::OK, &saved))
}

/// `POST /devices`: the bulk registry operation (see `bulk.rs`).
async fn bulk_registry(
    State(state): State<Arc<SimState>>,
    Extension(RoutedHub(hub)): Extension<RoutedHub>,
    body: Bytes,
) -> Reply {
    let entries = crate::bulk::parse_request(&body)?;
    // One identity registry operation per entry, as IoT Hub counts them.
    let cost = u32::try_from(entries.len()).unwrap_or(u32::MAX);
    if let Err(retry_after) = hub.charge(Meter::Registry, cost) {
        return Ok(throttled_reply(&retry_after));
    }
    let result = crate::bulk::apply(&mut hub.registry(), entries);
    state.mark_changed();
    let status = if result.is_successful {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok(json_reply(status, &result))
}

async fn get_device(
    Extension(RoutedHub(hub)): Extension<RoutedHub>,
    Path(id): Path<String>,
) -> Reply {
    Ok(json_reply(StatusCode::OK, &hub.registry().get_device(&id)?))
}

async fn delete_device(
    State(state): State<Arc<SimState>>,
    Extension(RoutedHub(hub)): Extension<RoutedHub>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Reply {
    hub.registry().delete_device(&id, if_match(&headers))?;
    state.mark_changed();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_twin(
    Extension(RoutedHub(hub)): Extension<RoutedHub>,
    Path(id): Path<String>,
) -> Reply {
    Ok(json_reply(StatusCode::OK, &hub.registry().get_twin(&id)?))
}

async fn write_twin(
    state: &SimState,
    hub: &HubState,
    id: &str,
    headers: &HeaderMap,
    body: &Bytes,
    replace: bool,
) -> Reply {
    let twin: Twin = parse_body(body)?;
    let saved = hub
        .registry()
        .write_twin(id, twin, if_match(headers), replace)?;
    state.mark_changed();
    Ok(json_reply(StatusCode::OK, &saved))
}

async fn replace_twin(
    State(state): State<Arc<SimState>>,
    Extension(RoutedHub(hub)): Extension<RoutedHub>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    write_twin(&state, &hub, &id, &headers, &body, true).await
}

async fn patch_twin(
    State(state): State<Arc<SimState>>,
    Extension(RoutedHub(hub)): Extension<RoutedHub>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    write_twin(&state, &hub, &id, &headers, &body, false).await
}

async fn list_devices(
    Extension(RoutedHub(hub)): Extension<RoutedHub>,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    let top = match query.get("top") {
        None => 1000,
        Some(top) => top.parse::<usize>().map_err(|_| {
            RegistryError::new(
                ErrorCode::ArgumentInvalid,
                format!("top={top:?} is not a count"),
            )
        })?,
    };
    Ok(json_reply(StatusCode::OK, &hub.registry().list(top)))
}

async fn statistics(Extension(RoutedHub(hub)): Extension<RoutedHub>) -> Reply {
    Ok(json_reply(StatusCode::OK, &hub.registry().statistics()))
}

async fn unknown_path() -> RegistryError {
    RegistryError::new(
        ErrorCode::ArgumentInvalid,
        "This emulator serves /devices, /twins and /statistics/devices only.",
    )
}

/// Check the service SAS token against the hub's policy key.
pub(crate) fn authorize(hub: &HubState, authorization: Option<&str>) -> Result<(), RegistryError> {
    let refuse = |why: String| {
        RegistryError::new(
            ErrorCode::IotHubUnauthorizedAccess,
            format!("Unauthorized: {why}"),
        )
    };
    let header = authorization.ok_or_else(|| refuse("no Authorization header".to_owned()))?;
    let token = SasToken::parse(header).map_err(|e| refuse(e.to_string()))?;
    if let Some(name) = &token.key_name {
        if !name.eq_ignore_ascii_case(&hub.key_name) {
            return Err(refuse(format!("unknown shared access policy {name:?}")));
        }
    }
    token
        .verify(
            &Audience(&hub.host_name),
            &[&hub.key],
            &ExpiryPolicy::default(),
        )
        .map(|_| ())
        .map_err(|e| refuse(e.to_string()))
}

/// An injected status fault, rendered like a real hub failure.
pub(crate) fn fault_reply(status: u16, retry_after_secs: Option<u64>) -> Response {
    let code = match status {
        429 => ErrorCode::ThrottlingException,
        503 => ErrorCode::ServiceUnavailable,
        s if s >= 500 => ErrorCode::ServerError,
        s => ErrorCode::from_number(u32::from(s) * 1000 + 1).unwrap_or(ErrorCode::ArgumentInvalid),
    };
    let mut response = error_reply(
        StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
        code,
        &format!("Injected fault: the hub answers {status}."),
    );
    if let Some(secs) = retry_after_secs.or((status == 429).then_some(1)) {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// The throttling model's refusal: `429 ThrottlingException` with `Retry-After`.
pub(crate) fn throttled_reply(retry_after: &str) -> Response {
    let mut response = error_reply(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::ThrottlingException,
        "The IoT hub's identity registry or twin throttle is exceeded; retry later.",
    );
    if let Ok(value) = HeaderValue::from_str(retry_after) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}

/// `{"Message":"ErrorCode:X;text","ExceptionMessage":"Tracking ID:…-TimeStamp:…"}`
/// with the `iothub-errorcode` header.
fn error_reply(status: StatusCode, code: ErrorCode, text: &str) -> Response {
    let tracking = format!(
        "Tracking ID:{}-G:0-TimeStamp:{}",
        uuid::Uuid::new_v4().simple(),
        chrono::Utc::now().format("%m/%d/%Y %H:%M:%S")
    );
    let mut response = json_reply(status, &HubErrorBody::new(code, text, tracking));
    response
        .headers_mut()
        .insert(ERROR_CODE_HEADER, HeaderValue::from_static(code.name()));
    response
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        error_reply(status, self.code, &self.message)
    }
}

/// The reply when no hub matches the request.
pub(crate) fn unknown_hub(authority: Option<&str>) -> Response {
    RegistryError::new(
        ErrorCode::IotHubNotFound,
        format!(
            "No emulated hub is named {:?}.",
            authority.unwrap_or("(no host)")
        ),
    )
    .into_response()
}
