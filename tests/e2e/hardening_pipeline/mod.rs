//! Issue #15, the pipeline's part: throttling charged after authentication
//! (and failed authentications on budgets of their own), one lock per
//! (tenant, device) so a tenant's hanging hub delays only its own devices,
//! a fresh TPM challenge per attempt, and refusals that say nothing about
//! which scopes exist.

mod isolation;
mod refusals;
mod throttling;
mod tpm;

use std::net::{IpAddr, Ipv4Addr};

use dps_attestation::keys::generate_key;
use dps_attestation::sas::{create_token, registration_resource, unix_now, SymmetricKey};
use dps_e2e::server::TestSystem;
use dps_model::{IdScope, IndividualEnrollment, LinkedHub, Precondition, Tenant};
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

/// An HTTPS client trusting the system's CA, sending from `source`
/// (any 127.x.y.z: the whole block is loopback), so a test can play
/// several devices or an attacker at distinct addresses.
pub(crate) fn client_from(system: &TestSystem, source: Ipv4Addr) -> Client {
    let ca = reqwest::Certificate::from_pem(system.server.trust_pem().as_bytes()).expect("CA");
    Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca)
        .local_address(IpAddr::V4(source))
        .build()
        .expect("client")
}

/// A symmetric-key individual enrollment in `scope`; returns its key.
pub(crate) async fn enroll(system: &TestSystem, scope: &IdScope, id: &str, extra: Value) -> String {
    let key = generate_key();
    let mut body = json!({"registrationId": id, "attestation": {"type": "symmetricKey",
        "symmetricKey": {"primaryKey": key}}});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let enrollment = IndividualEnrollment::from_json(body.to_string().as_bytes()).unwrap();
    system
        .server
        .store()
        .put_enrollment(scope, enrollment, Precondition::None)
        .await
        .unwrap();
    key
}

/// A second tenant of the same server, linked to `hubs` only.
pub(crate) async fn second_tenant(system: &TestSystem, name: &str, hubs: &[&str]) -> Tenant {
    let mut tenant = Tenant::new(name, format!("{name}.localhost")).unwrap();
    tenant.linked_hubs = hubs
        .iter()
        .map(|h| LinkedHub::new(*h, system.hubs.connection_string(h).expect("hub exists")))
        .collect();
    system.server.store().create_tenant(tenant).await.unwrap()
}

/// A registration token for `id` in `scope`, valid for ten minutes.
pub(crate) fn device_token(scope: &str, id: &str, key: &str) -> String {
    create_token(
        &registration_resource(scope, id),
        &SymmetricKey::from_base64(key).unwrap(),
        unix_now() + 600,
        Some("registration"),
    )
}

/// One raw answer of the device endpoint.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub(crate) fn retry_after(&self) -> Option<&str> {
        self.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
    }
}

/// `PUT …/register` with an optional `Authorization` and this body.
pub(crate) async fn register(
    http: &Client,
    system: &TestSystem,
    scope: &str,
    id: &str,
    token: Option<&str>,
    body: &Value,
) -> Answer {
    let mut request = http
        .put(format!(
            "https://{}/{scope}/registrations/{id}/register?api-version=2021-06-01",
            system.device_host
        ))
        .json(body);
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    answer(request).await
}

/// `GET …/operations/{operation}` with this token.
pub(crate) async fn poll(
    http: &Client,
    system: &TestSystem,
    scope: &str,
    id: &str,
    token: &str,
    operation: &str,
) -> Answer {
    let request = http
        .get(format!(
            "https://{}/{scope}/registrations/{id}/operations/{operation}?api-version=2021-06-01",
            system.device_host
        ))
        .header("authorization", token);
    answer(request).await
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("the server answers");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body").to_vec();
    Answer {
        status,
        headers,
        body,
    }
}
