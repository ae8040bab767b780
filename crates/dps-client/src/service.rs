//! Just enough of the service operations API (spec §4) to prepare a swarm
//! and clean up after it: create, replace or delete individual enrollments
//! and enrollment groups, delete registration records (and, on dps, the
//! certificate authority and credential policy of an issuing swarm), with a
//! SAS token made from the service connection string — the documented Azure
//! routes, so it works against dps and the cloud service alike.

use std::time::Duration;

use dps_attestation::sas::{create_token, unix_now, SymmetricKey};
use serde_json::Value;

use crate::http::encode;
use crate::{ClientError, TlsTrust};

/// The service api-version sent.
pub const SERVICE_API_VERSION: &str = "2021-10-01";

/// Lifetime of the SAS tokens this client makes.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// A client of the service API, authorised by a shared access policy.
#[derive(Debug)]
pub struct ServiceClient {
    endpoint: String,
    host_name: String,
    key_name: String,
    key: SymmetricKey,
    http: reqwest::Client,
}

impl ServiceClient {
    /// From a connection string `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`.
    /// Requests go to `endpoint` (`host[:port]`) when given, else to `HostName`;
    /// the token's audience is always `HostName`.
    pub fn from_connection_string(
        connection_string: &str,
        endpoint: Option<&str>,
        trust: &TlsTrust,
    ) -> Result<Self, ClientError> {
        // One parser for the connection strings of this crate; it never
        // echoes a part, which may be a pasted key.
        let crate::admin::ConnectionString {
            host_name,
            key_name,
            key,
        } = crate::admin::ConnectionString::parse(connection_string)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(trust.client_config(None)?)
            .http1_only()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Config {
                reason: format!("HTTP client: {e}"),
            })?;
        Ok(ServiceClient {
            endpoint: endpoint.unwrap_or(&host_name).to_owned(),
            host_name,
            key_name,
            key,
            http,
        })
    }

    /// `PUT /enrollments/{registrationId}` (create or replace).
    pub async fn put_enrollment(&self, enrollment: &Value) -> Result<Value, ClientError> {
        let id = enrollment["registrationId"]
            .as_str()
            .ok_or_else(|| ClientError::Config {
                reason: "an enrollment without registrationId".to_owned(),
            })?;
        self.put(&format!("enrollments/{}", encode(id)), enrollment)
            .await
    }

    /// `PUT /enrollmentGroups/{enrollmentGroupId}` (create or replace).
    pub async fn put_enrollment_group(&self, group: &Value) -> Result<Value, ClientError> {
        let id = group["enrollmentGroupId"]
            .as_str()
            .ok_or_else(|| ClientError::Config {
                reason: "an enrollment group without enrollmentGroupId".to_owned(),
            })?;
        self.put(&format!("enrollmentGroups/{}", encode(id)), group)
            .await
    }

    /// `DELETE /enrollments/{registrationId}` (with the registration record
    /// of that id); `false` when there was no such enrollment.
    pub async fn delete_enrollment(&self, registration_id: &str) -> Result<bool, ClientError> {
        self.delete(&format!("enrollments/{}", encode(registration_id)))
            .await
    }

    /// `DELETE /enrollmentGroups/{enrollmentGroupId}`; `false` when there was
    /// no such group. Registration records made through it stay.
    pub async fn delete_enrollment_group(&self, group_id: &str) -> Result<bool, ClientError> {
        self.delete(&format!("enrollmentGroups/{}", encode(group_id)))
            .await
    }

    /// `DELETE /registrations/{registrationId}` (the registration record
    /// only); `false` when there was none.
    pub async fn delete_registration(&self, registration_id: &str) -> Result<bool, ClientError> {
        self.delete(&format!("registrations/{}", encode(registration_id)))
            .await
    }

    /// `PUT /certificateAuthorities/{name}` with a CA dps generates (dps's
    /// own route, for certificate issuance); `false` when the name is taken
    /// (a CA is never replaced, so a re-run keeps the first one).
    pub async fn create_certificate_authority(
        &self,
        name: &str,
        common_name: &str,
    ) -> Result<bool, ClientError> {
        let body = serde_json::json!({"mode": "generate", "commonName": common_name});
        match self
            .put(&format!("certificateAuthorities/{}", encode(name)), &body)
            .await
        {
            Ok(_) => Ok(true),
            Err(ClientError::Service { status: 409, .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// `PUT /credentialPolicies/{name}` (create or replace; dps's own route).
    pub async fn put_credential_policy(
        &self,
        name: &str,
        policy: &Value,
    ) -> Result<Value, ClientError> {
        self.put(&format!("credentialPolicies/{}", encode(name)), policy)
            .await
    }

    /// `DELETE /credentialPolicies/{name}`; `false` when there was none.
    pub async fn delete_credential_policy(&self, name: &str) -> Result<bool, ClientError> {
        self.delete(&format!("credentialPolicies/{}", encode(name)))
            .await
    }

    /// `DELETE /certificateAuthorities/{name}`; `false` when there was none.
    pub async fn delete_certificate_authority(&self, name: &str) -> Result<bool, ClientError> {
        self.delete(&format!("certificateAuthorities/{}", encode(name)))
            .await
    }

    async fn delete(&self, path: &str) -> Result<bool, ClientError> {
        match self.send(reqwest::Method::DELETE, path, None).await {
            Ok(_) => Ok(true),
            Err(ClientError::Service { status: 404, .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn put(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let url = format!(
            "https://{}/{path}?api-version={SERVICE_API_VERSION}",
            self.endpoint
        );
        let token = create_token(
            &self.host_name,
            &self.key,
            unix_now() + TOKEN_LIFETIME.as_secs(),
            Some(&self.key_name),
        );
        let mut request = self
            .http
            .request(method, &url)
            .header("authorization", token)
            .header("accept", "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| ClientError::Network {
            endpoint: self.endpoint.clone(),
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(answer);
        }
        let error_code = answer["errorCode"]
            .as_i64()
            .and_then(|c| i32::try_from(c).ok());
        let message = answer["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| text.chars().take(200).collect());
        Err(if status == 401 {
            ClientError::Authentication {
                status,
                error_code,
                message,
            }
        } else {
            ClientError::Service {
                status,
                error_code,
                message,
            }
        })
    }
}
