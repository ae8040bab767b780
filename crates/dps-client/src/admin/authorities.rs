//! Certificate issuance administration, dps's own routes
//! (`docs/certificate-issuance.md`): the tenant's certificate authorities,
//! its credential policies, the certificates issued to a registration
//! (list, revoke) and each CA's CRL. Azure keeps CAs and policies in Azure
//! Device Registry, so these work against dps only.

use std::fmt;

use reqwest::Method;
use serde_json::{json, Value};

use super::{error_chain, path, AdminClient, Call, SERVICE_API_VERSION, TOKEN_LIFETIME};
use crate::ClientError;

/// Where a new certificate authority's key and certificate come from.
#[derive(Clone, PartialEq, Eq)]
pub enum CertificateAuthoritySource {
    /// dps generates a self-signed ECDSA P-256 CA.
    Generate {
        /// The CA's subject common name.
        common_name: String,
    },
    /// dps generates a CA signed by the operator's root; the root key is used
    /// for that one signature and not kept.
    Intermediate {
        /// The new CA's subject common name.
        common_name: String,
        /// The root's chain (PEM), the root first.
        root_certificate_chain: String,
        /// The root's private key (PEM, PKCS#8).
        root_private_key: String,
    },
    /// An existing CA: its chain (PEM, the CA first) and key (PEM, PKCS#8).
    Import {
        /// The CA certificate, then its issuers.
        certificate_chain: String,
        /// The CA's private key.
        private_key: String,
    },
}

impl CertificateAuthoritySource {
    /// The `PUT /certificateAuthorities/{name}` body.
    pub fn body(&self) -> Value {
        match self {
            CertificateAuthoritySource::Generate { common_name } => {
                json!({"mode": "generate", "commonName": common_name})
            }
            CertificateAuthoritySource::Intermediate {
                common_name,
                root_certificate_chain,
                root_private_key,
            } => json!({
                "mode": "intermediate",
                "commonName": common_name,
                "rootCertificateChain": root_certificate_chain,
                "rootPrivateKey": root_private_key,
            }),
            CertificateAuthoritySource::Import {
                certificate_chain,
                private_key,
            } => json!({
                "mode": "import",
                "certificateChain": certificate_chain,
                "privateKey": private_key,
            }),
        }
    }
}

impl fmt::Debug for CertificateAuthoritySource {
    // Keys are never printed, whole or in part.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertificateAuthoritySource::Generate { common_name } => f
                .debug_struct("Generate")
                .field("common_name", common_name)
                .finish(),
            CertificateAuthoritySource::Intermediate { common_name, .. } => f
                .debug_struct("Intermediate")
                .field("common_name", common_name)
                .finish_non_exhaustive(),
            CertificateAuthoritySource::Import { .. } => {
                f.debug_struct("Import").finish_non_exhaustive()
            }
        }
    }
}

impl AdminClient {
    /// `GET /certificateAuthorities` (no keys).
    pub async fn list_certificate_authorities(&self) -> Result<Value, ClientError> {
        Ok(self.get("certificateAuthorities".to_owned()).await?.body)
    }

    /// `GET /certificateAuthorities/{name}` (no key).
    pub async fn get_certificate_authority(&self, name: &str) -> Result<Value, ClientError> {
        Ok(self.get(path("certificateAuthorities", name)).await?.body)
    }

    /// `PUT /certificateAuthorities/{name}`: create (a taken name is a 409:
    /// a CA is never replaced).
    pub async fn create_certificate_authority(
        &self,
        name: &str,
        source: &CertificateAuthoritySource,
    ) -> Result<Value, ClientError> {
        Ok(self
            .put(path("certificateAuthorities", name), &source.body(), None)
            .await?
            .body)
    }

    /// `DELETE /certificateAuthorities/{name}` (409 while a policy names it).
    pub async fn delete_certificate_authority(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<(), ClientError> {
        self.delete(path("certificateAuthorities", name), if_match)
            .await
    }

    /// `GET /certificateAuthorities/{name}/crl`: the CA's current CRL, DER.
    pub async fn get_crl(&self, name: &str) -> Result<Vec<u8>, ClientError> {
        let url = format!(
            "https://{}/{}/crl",
            self.endpoint,
            path("certificateAuthorities", name)
        );
        let network = |e: reqwest::Error| ClientError::Network {
            endpoint: self.endpoint.clone(),
            reason: error_chain(&e),
        };
        let response = self
            .http
            .get(&url)
            .query(&[("api-version", SERVICE_API_VERSION)])
            .header(
                "authorization",
                self.credentials.token(&self.endpoint, TOKEN_LIFETIME),
            )
            .send()
            .await
            .map_err(network)?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response.bytes().await.map_err(network)?.to_vec());
        }
        let text = response.text().await.unwrap_or_default();
        Err(ClientError::from_answer(status, &text))
    }

    /// `GET /credentialPolicies`.
    pub async fn list_credential_policies(&self) -> Result<Value, ClientError> {
        Ok(self.get("credentialPolicies".to_owned()).await?.body)
    }

    /// `GET /credentialPolicies/{name}`.
    pub async fn get_credential_policy(&self, name: &str) -> Result<Value, ClientError> {
        Ok(self.get(path("credentialPolicies", name)).await?.body)
    }

    /// `PUT /credentialPolicies/{name}`: create or replace (the CA must exist).
    pub async fn put_credential_policy(
        &self,
        name: &str,
        policy: &Value,
        if_match: Option<&str>,
    ) -> Result<Value, ClientError> {
        Ok(self
            .put(path("credentialPolicies", name), policy, if_match)
            .await?
            .body)
    }

    /// `DELETE /credentialPolicies/{name}`.
    pub async fn delete_credential_policy(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<(), ClientError> {
        self.delete(path("credentialPolicies", name), if_match)
            .await
    }

    /// `GET /registrations/{id}/issuedCertificates`: newest first.
    pub async fn list_issued_certificates(
        &self,
        registration_id: &str,
    ) -> Result<Value, ClientError> {
        let route = format!(
            "{}/issuedCertificates",
            path("registrations", registration_id)
        );
        Ok(self.get(route).await?.body)
    }

    /// `POST /registrations/{id}/issuedCertificates/{serial}/revoke`: the
    /// revoked record (revoking twice changes nothing).
    pub async fn revoke_issued_certificate(
        &self,
        registration_id: &str,
        serial_number: &str,
    ) -> Result<Value, ClientError> {
        let route = format!(
            "{}/{}/revoke",
            path("registrations", registration_id),
            path("issuedCertificates", serial_number)
        );
        Ok(self.call(Call::new(Method::POST, route)).await?.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_become_the_routes_bodies_and_never_show_keys() {
        let generate = CertificateAuthoritySource::Generate {
            common_name: "Fleet CA".to_owned(),
        };
        assert_eq!(
            generate.body(),
            json!({"mode": "generate", "commonName": "Fleet CA"})
        );
        let import = CertificateAuthoritySource::Import {
            certificate_chain: "CHAIN".to_owned(),
            private_key: "SECRET-KEY".to_owned(),
        };
        assert_eq!(import.body()["privateKey"], "SECRET-KEY");
        let intermediate = CertificateAuthoritySource::Intermediate {
            common_name: "Issuing".to_owned(),
            root_certificate_chain: "ROOT".to_owned(),
            root_private_key: "ROOT-SECRET".to_owned(),
        };
        assert_eq!(intermediate.body()["mode"], "intermediate");
        assert_eq!(intermediate.body()["rootPrivateKey"], "ROOT-SECRET");
        for source in [import, intermediate] {
            assert!(!format!("{source:?}").contains("SECRET"), "{source:?}");
        }
    }
}
