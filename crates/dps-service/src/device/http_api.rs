//! Routes of the device API:
//!
//! | method & path | pipeline call |
//! |---|---|
//! | `PUT /{idScope}/registrations/{registrationId}/register` | register |
//! | `GET /{idScope}/registrations/{registrationId}/operations/{operationId}` | operation status |
//! | `POST /{idScope}/registrations/{registrationId}` | registration status lookup |

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use dps_model::{DeviceRegistrationRequest, ErrorCode, RegistrationStatus};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;

use crate::listener::ConnectionInfo;
use crate::pipeline::{DeviceCredentials, DeviceRequest, Pipeline, RegisterAnswer};
use crate::respond::{self, json_response, ApiError, LimitedBody};

#[derive(Clone)]
struct DeviceApi {
    pipeline: Arc<Pipeline>,
    retry_after_seconds: u64,
    /// `host[:port]` of `Location` headers: from configuration or the
    /// server certificate, never from the request.
    location: Arc<str>,
}

/// The device endpoint's router; `location` is the `host[:port]` its
/// `Location` headers name (see `[device] public_host`).
pub fn router(pipeline: Arc<Pipeline>, retry_after_seconds: u64, location: String) -> Router {
    let api = DeviceApi {
        pipeline,
        retry_after_seconds,
        location: location.into(),
    };
    Router::new()
        .route(
            "/{scope}/registrations/{registration}/register",
            put(register),
        )
        .route(
            "/{scope}/registrations/{registration}/operations/{operation}",
            get(operation_status),
        )
        .route(
            "/{scope}/registrations/{registration}",
            post(registration_status),
        )
        .fallback(respond::not_found)
        .method_not_allowed_fallback(respond::method_not_allowed)
        .with_state(api)
}

/// The TPM challenge answer (spec §3.5): exactly these fields, no `status`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TpmChallengeBody<'a> {
    authentication_key: &'a str,
    key_name: &'static str,
    message: &'static str,
}

fn device_request(
    scope: String,
    registration: String,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    connection: &ConnectionInfo,
) -> Result<DeviceRequest, ApiError> {
    let api_version = query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("api-version"))
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad_request("The api-version query parameter is required."))?;
    let sas_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(DeviceRequest {
        id_scope: scope,
        registration_id: registration,
        api_version,
        credentials: DeviceCredentials {
            sas_token,
            client_chain: connection.client_chain.clone(),
        },
        peer: connection.peer.ip(),
        transport: crate::pipeline::TransportKind::Https,
    })
}

pub(super) fn parse_body(
    registration: &str,
    body: &[u8],
) -> Result<DeviceRegistrationRequest, ApiError> {
    let request = DeviceRegistrationRequest::from_json(body)?;
    if let Some(id) = &request.registration_id {
        if !id.eq_ignore_ascii_case(registration) {
            return Err(ApiError::new(
                ErrorCode::INVALID_REGISTRATION_ID,
                format!(
                    "The registrationId in the body ({id:?}) does not match the one in the path ({registration:?})."
                ),
            ));
        }
    }
    Ok(request)
}

async fn register(
    State(api): State<DeviceApi>,
    Path((scope, registration)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    Extension(connection): Extension<ConnectionInfo>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Result<Response, ApiError> {
    let request = device_request(scope, registration, &query, &headers, &connection)?;
    let body = parse_body(&request.registration_id, &body)?;
    let force = query
        .get("forceRegistration")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let answer = api.pipeline.register(&request, body, force).await?;
    Ok(match answer {
        RegisterAnswer::Accepted(status) => {
            let mut response = json_response(StatusCode::ACCEPTED, &status);
            let h = response.headers_mut();
            h.insert(
                header::RETRY_AFTER,
                HeaderValue::from(api.retry_after_seconds),
            );
            // Never the request's `Host`: a client must not choose where
            // this server's answers point.
            let location = format!(
                "https://{}/{}/registrations/{}/register",
                api.location, request.id_scope, request.registration_id
            );
            if let Ok(v) = HeaderValue::from_str(&location) {
                h.insert(header::LOCATION, v);
            }
            response
        }
        RegisterAnswer::Final(status) => json_response(StatusCode::OK, &status),
        RegisterAnswer::TpmChallenge { authentication_key } => json_response(
            StatusCode::UNAUTHORIZED,
            &TpmChallengeBody {
                authentication_key: &authentication_key,
                key_name: "registration",
                message: "Sign a registration token with the key in authenticationKey.",
            },
        ),
    })
}

async fn operation_status(
    State(api): State<DeviceApi>,
    Path((scope, registration, operation)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    Extension(connection): Extension<ConnectionInfo>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // GET bodies (the Node SDK sends `{}`) are ignored.
    let request = device_request(scope, registration, &query, &headers, &connection)?;
    let status = api.pipeline.operation_status(&request, &operation).await?;
    Ok(if status.status == RegistrationStatus::Assigning {
        let mut response = json_response(StatusCode::ACCEPTED, &status);
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(api.retry_after_seconds),
        );
        response
    } else {
        json_response(StatusCode::OK, &status)
    })
}

async fn registration_status(
    State(api): State<DeviceApi>,
    Path((scope, registration)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    Extension(connection): Extension<ConnectionInfo>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Result<Response, ApiError> {
    let request = device_request(scope, registration, &query, &headers, &connection)?;
    let body = parse_body(&request.registration_id, &body)?;
    if body.csr.is_some() {
        return Err(ApiError::bad_request(
            "A status lookup must not carry a csr.",
        ));
    }
    let result = api.pipeline.registration_status(&request, body).await?;
    Ok(json_response(StatusCode::OK, &result).into_response())
}
