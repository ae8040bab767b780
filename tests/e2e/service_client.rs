//! A small HTTPS client for the service operations endpoint, signing its own
//! SAS tokens, for the service-API tests that do not need an official SDK.

use anyhow::Result;
use dps_attestation::sas::{create_token, unix_now, SymmetricKey};
use dps_e2e::server::TestSystem;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;

/// The owner policy every test tenant has.
pub(crate) const OWNER: &str = "provisioningserviceowner";

/// A client for one system's service endpoint, with one token.
#[derive(Clone)]
pub(crate) struct Service {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// One answer: status, headers, and the body as JSON (`Null` when empty).
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

impl Reply {
    /// A header as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The Azure error code of an error answer.
    pub(crate) fn error_code(&self) -> Option<i64> {
        self.body["errorCode"].as_i64()
    }
}

/// A token for `host` signed with `key` (base64) under policy `policy`.
pub(crate) fn token(host: &str, policy: &str, key: &str, lifetime_secs: i64) -> String {
    let key = SymmetricKey::from_base64(key).expect("base64 key");
    let expiry = (unix_now() as i64 + lifetime_secs).max(1) as u64;
    create_token(host, &key, expiry, Some(policy))
}

impl Service {
    /// A client with no token.
    pub(crate) fn anonymous(system: &TestSystem) -> Result<Service> {
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(
                system.server.trust_pem().as_bytes(),
            )?)
            .build()?;
        Ok(Service {
            http,
            base: format!("https://{}", system.service_host),
            token: None,
        })
    }

    /// A client with the tenant's owner token (all rights).
    pub(crate) fn owner(system: &TestSystem) -> Result<Service> {
        let key = &system
            .tenant
            .access_policy(OWNER)
            .expect("the test tenant has an owner policy")
            .primary_key;
        Ok(Service::anonymous(system)?.with_token(token(&system.service_host, OWNER, key, 3600)))
    }

    /// A client with the operator token.
    pub(crate) fn operator(system: &TestSystem) -> Result<Service> {
        let token = token(
            &system.service_host,
            "operator",
            system.server.operator_key(),
            3600,
        );
        Ok(Service::anonymous(system)?.with_token(token))
    }

    /// The same client with another token.
    pub(crate) fn with_token(mut self, token: String) -> Service {
        self.token = Some(token);
        self
    }

    /// Send a request; `headers` are extra headers such as `If-Match`.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let url = format!("{}{path}{separator}api-version=2021-10-01", self.base);
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Reply> {
        self.send(Method::GET, path, None, &[]).await
    }

    pub(crate) async fn put(&self, path: &str, body: &Value) -> Result<Reply> {
        self.send(Method::PUT, path, Some(body), &[]).await
    }

    pub(crate) async fn post(&self, path: &str, body: Option<&Value>) -> Result<Reply> {
        self.send(Method::POST, path, body, &[]).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Result<Reply> {
        self.send(Method::DELETE, path, None, &[]).await
    }
}

/// A base64 TPM2B_PUBLIC of an RSA-2048 endorsement key (TCG default EK
/// template), with a modulus derived from `seed`.
pub(crate) fn endorsement_key(seed: &str) -> String {
    let mut modulus = Vec::with_capacity(256);
    let key = SymmetricKey::from_bytes(seed.as_bytes().to_vec());
    for block in 0u8..8 {
        modulus.extend_from_slice(&key.hmac_sha256(&[block]));
    }
    modulus[0] |= 0x80;
    modulus[255] |= 1;
    let policy: [u8; 32] = [
        0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7,
        0x24, 0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14,
        0x69, 0xaa,
    ];
    let mut tpmt = Vec::new();
    tpmt.extend_from_slice(&0x0001u16.to_be_bytes()); // TPM_ALG_RSA
    tpmt.extend_from_slice(&0x000Bu16.to_be_bytes()); // SHA-256 name
    tpmt.extend_from_slice(&0x0003_00B2u32.to_be_bytes()); // EK attributes
    tpmt.extend_from_slice(&(policy.len() as u16).to_be_bytes());
    tpmt.extend_from_slice(&policy);
    tpmt.extend_from_slice(&0x0006u16.to_be_bytes()); // AES
    tpmt.extend_from_slice(&128u16.to_be_bytes());
    tpmt.extend_from_slice(&0x0043u16.to_be_bytes()); // CFB
    tpmt.extend_from_slice(&0x0010u16.to_be_bytes()); // no scheme
    tpmt.extend_from_slice(&2048u16.to_be_bytes());
    tpmt.extend_from_slice(&0u32.to_be_bytes()); // default exponent
    tpmt.extend_from_slice(&(modulus.len() as u16).to_be_bytes());
    tpmt.extend_from_slice(&modulus);
    let mut tpm2b = (tpmt.len() as u16).to_be_bytes().to_vec();
    tpm2b.extend_from_slice(&tpmt);
    SymmetricKey::from_bytes(tpm2b).to_base64()
}
