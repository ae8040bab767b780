//! Routes of the device API:
//!
//! | method & path | pipeline call |
//! |---|---|
//! | `PUT /{idScope}/registrations/{registrationId}/register` | register |
//! | `GET /{idScope}/registrations/{registrationId}/operations/{operationId}` | operation status |
//! | `POST /{idScope}/registrations/{registrationId}` | registration status lookup |
//!
//! Translation only: bodies are read by [`super::body`], answers come from
//! [`super::answers`]; this file adds what only HTTP has (the path, the
//! `api-version` query parameter, `Authorization`, `Location`).
//! `forceRegistration=true` (Node SDK) is ignored like any unknown query
//! parameter: every register already re-runs attestation and allocation.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use http::request::Parts;
use http::{header, HeaderValue};

use super::{answers, body};
use crate::listener::ConnectionInfo;
use crate::pipeline::{DeviceCredentials, DeviceRequest, Pipeline, RegisterAnswer};
use crate::respond::{self, ApiError, LimitedBody};

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

/// The device request an HTTPS request stands for: scope and registration id
/// from the path, `api-version` from the query, the token from
/// `Authorization`, the client certificate and address from the connection.
struct Device(DeviceRequest);

impl<S: Send + Sync> FromRequestParts<S> for Device {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(path) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|err| ApiError::bad_request(err.body_text()))?;
        let Query(query) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|err| ApiError::bad_request(err.body_text()))?;
        let connection = parts
            .extensions
            .get::<ConnectionInfo>()
            .cloned()
            .ok_or_else(|| ApiError::internal("device request without connection information"))?;
        let api_version = query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("api-version"))
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::bad_request("The api-version query parameter is required."))?;
        let sas_token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let part = |name: &str| path.get(name).cloned().unwrap_or_default();
        Ok(Device(DeviceRequest {
            id_scope: part("scope"),
            registration_id: part("registration"),
            api_version,
            credentials: DeviceCredentials {
                sas_token,
                client_chain: connection.client_chain.clone(),
            },
            peer: connection.peer.ip(),
            transport: crate::pipeline::TransportKind::Https,
        }))
    }
}

async fn register(
    State(api): State<DeviceApi>,
    Device(request): Device,
    LimitedBody(body): LimitedBody,
) -> Result<Response, ApiError> {
    let body = body::registration_request(&request.registration_id, &body)?;
    let outcome = api.pipeline.register(&request, body).await?;
    let mut response = answers::register(&outcome, api.retry_after_seconds).into_response();
    if let RegisterAnswer::Accepted(_) = outcome {
        // Never the request's `Host`: a client must not choose where this
        // server's answers point.
        let location = format!(
            "https://{}/{}/registrations/{}/register",
            api.location, request.id_scope, request.registration_id
        );
        if let Ok(v) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, v);
        }
    }
    Ok(response)
}

async fn operation_status(
    State(api): State<DeviceApi>,
    Device(request): Device,
    Path(path): Path<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    // GET bodies (the Node SDK sends `{}`) are ignored.
    let operation = path
        .get("operation")
        .map(String::as_str)
        .unwrap_or_default();
    let status = api.pipeline.operation_status(&request, operation).await?;
    Ok(answers::operation_status(&status, api.retry_after_seconds).into_response())
}

async fn registration_status(
    State(api): State<DeviceApi>,
    Device(request): Device,
    LimitedBody(body): LimitedBody,
) -> Result<Response, ApiError> {
    let body = body::status_lookup_request(&request.registration_id, &body)?;
    let result = api.pipeline.registration_status(&request, body).await?;
    Ok(answers::registration_status(&result).into_response())
}
