//! dps's own routes: a tenant's settings, linked hubs, shared access
//! policies, CA certificates and operations report; and, with the operator
//! key, the tenants themselves.

use reqwest::Method;
use serde_json::{json, Value};

use super::{path, AdminClient, Call};
use crate::ClientError;

/// Which key of a shared access policy to regenerate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// The primary key.
    Primary,
    /// The secondary key.
    Secondary,
}

impl KeyType {
    fn as_str(self) -> &'static str {
        match self {
            KeyType::Primary => "primary",
            KeyType::Secondary => "secondary",
        }
    }
}

impl AdminClient {
    /// `GET /settings`.
    pub async fn get_settings(&self) -> Result<Value, ClientError> {
        Ok(self.get("settings".to_owned()).await?.body)
    }

    /// `PUT /settings` (fields left out keep their value).
    pub async fn put_settings(
        &self,
        settings: &Value,
        if_match: Option<&str>,
    ) -> Result<Value, ClientError> {
        Ok(self
            .put("settings".to_owned(), settings, if_match)
            .await?
            .body)
    }

    /// `GET /linkedHubs`.
    pub async fn list_linked_hubs(&self) -> Result<Value, ClientError> {
        Ok(self.get("linkedHubs".to_owned()).await?.body)
    }

    /// `GET /linkedHubs/{hostName}`.
    pub async fn get_linked_hub(&self, host_name: &str) -> Result<Value, ClientError> {
        Ok(self.get(path("linkedHubs", host_name)).await?.body)
    }

    /// `PUT /linkedHubs/{hostName}`: link a hub or replace its settings.
    pub async fn put_linked_hub(
        &self,
        host_name: &str,
        hub: &Value,
        if_match: Option<&str>,
    ) -> Result<Value, ClientError> {
        Ok(self
            .put(path("linkedHubs", host_name), hub, if_match)
            .await?
            .body)
    }

    /// `DELETE /linkedHubs/{hostName}`.
    pub async fn delete_linked_hub(
        &self,
        host_name: &str,
        if_match: Option<&str>,
    ) -> Result<(), ClientError> {
        self.delete(path("linkedHubs", host_name), if_match).await
    }

    /// `GET /accessPolicies` (no keys).
    pub async fn list_policies(&self) -> Result<Value, ClientError> {
        Ok(self.get("accessPolicies".to_owned()).await?.body)
    }

    /// `GET /accessPolicies/{name}` (no keys).
    pub async fn get_policy(&self, name: &str) -> Result<Value, ClientError> {
        Ok(self.get(path("accessPolicies", name)).await?.body)
    }

    /// `PUT /accessPolicies/{name}`: create or replace; the answer has the keys.
    pub async fn put_policy(
        &self,
        name: &str,
        policy: &Value,
        if_match: Option<&str>,
    ) -> Result<Value, ClientError> {
        Ok(self
            .put(path("accessPolicies", name), policy, if_match)
            .await?
            .body)
    }

    /// `DELETE /accessPolicies/{name}`.
    pub async fn delete_policy(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<(), ClientError> {
        self.delete(path("accessPolicies", name), if_match).await
    }

    /// `POST /accessPolicies/{name}/regenerateKey`; the answer has the keys.
    pub async fn regenerate_key(&self, name: &str, key: KeyType) -> Result<Value, ClientError> {
        let body = json!({"keyType": key.as_str()});
        let call = Call::new(
            Method::POST,
            format!("{}/regenerateKey", path("accessPolicies", name)),
        )
        .body(&body);
        Ok(self.call(call).await?.body)
    }

    /// `GET /certificates`.
    pub async fn list_certificates(&self) -> Result<Value, ClientError> {
        Ok(self.get("certificates".to_owned()).await?.body)
    }

    /// `GET /certificates/{name}`.
    pub async fn get_certificate(&self, name: &str) -> Result<Value, ClientError> {
        Ok(self.get(path("certificates", name)).await?.body)
    }

    /// `PUT /certificates/{name}`: upload (PEM or base64 DER) or replace.
    /// `verified` records the CA as verified without a proof.
    pub async fn put_certificate(
        &self,
        name: &str,
        certificate: &str,
        verified: bool,
        if_match: Option<&str>,
    ) -> Result<Value, ClientError> {
        let body = json!({"certificate": certificate, "isVerified": verified});
        Ok(self
            .put(path("certificates", name), &body, if_match)
            .await?
            .body)
    }

    /// `DELETE /certificates/{name}`.
    pub async fn delete_certificate(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<(), ClientError> {
        self.delete(path("certificates", name), if_match).await
    }

    /// `POST /certificates/{name}/generateVerificationCode`: the subject CN
    /// the proof of possession must carry.
    pub async fn generate_verification_code(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<Value, ClientError> {
        let call = Call::new(
            Method::POST,
            format!("{}/generateVerificationCode", path("certificates", name)),
        )
        .if_match(if_match);
        Ok(self.call(call).await?.body)
    }

    /// `POST /certificates/{name}/verify` with the proof (PEM or base64
    /// DER), a certificate whose CN is the verification code, signed by the CA.
    pub async fn verify_certificate(
        &self,
        name: &str,
        proof: &str,
        if_match: Option<&str>,
    ) -> Result<Value, ClientError> {
        let body = json!({"certificate": proof});
        let call = Call::new(
            Method::POST,
            format!("{}/verify", path("certificates", name)),
        )
        .body(&body)
        .if_match(if_match);
        Ok(self.call(call).await?.body)
    }

    /// `GET /operations/report` over `[from, to)` (RFC 3339; the service's
    /// defaults, the last 24 hours, when `None`).
    pub async fn operations_report(
        &self,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Value, ClientError> {
        self.report("operations/report".to_owned(), from, to).await
    }

    /// `GET /tenants` (operator).
    pub async fn list_tenants(&self) -> Result<Value, ClientError> {
        Ok(self.get("tenants".to_owned()).await?.body)
    }

    /// `GET /tenants/{name}` (operator).
    pub async fn get_tenant(&self, name: &str) -> Result<Value, ClientError> {
        Ok(self.get(path("tenants", name)).await?.body)
    }

    /// `PUT /tenants/{name}` (operator): create (the answer carries the
    /// owner's connection string, once) or update the fields given.
    pub async fn put_tenant(
        &self,
        name: &str,
        tenant: &Value,
        if_match: Option<&str>,
    ) -> Result<Value, ClientError> {
        Ok(self
            .put(path("tenants", name), tenant, if_match)
            .await?
            .body)
    }

    /// `DELETE /tenants/{name}` (operator): the tenant and all it owns.
    pub async fn delete_tenant(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<(), ClientError> {
        self.delete(path("tenants", name), if_match).await
    }

    /// `POST /tenants/{name}/listKeys` (operator): every policy with its keys.
    pub async fn list_tenant_keys(&self, name: &str) -> Result<Value, ClientError> {
        let call = Call::new(Method::POST, format!("{}/listKeys", path("tenants", name)));
        Ok(self.call(call).await?.body)
    }

    /// `GET /tenants/{name}/operations/report` (operator).
    pub async fn tenant_report(
        &self,
        name: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Value, ClientError> {
        self.report(
            format!("{}/operations/report", path("tenants", name)),
            from,
            to,
        )
        .await
    }

    async fn report(
        &self,
        path: String,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut call = Call::new(Method::GET, path);
        if let Some(from) = from {
            call.query.push(("from", from.to_owned()));
        }
        if let Some(to) = to {
            call.query.push(("to", to.to_owned()));
        }
        Ok(self.call(call).await?.body)
    }
}
