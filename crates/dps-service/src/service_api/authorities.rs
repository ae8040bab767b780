//! Tenant certificate authorities and credential policies (issue #17; dps's
//! own routes: Azure keeps these in Azure Device Registry, not in the DPS
//! API). Reads need `EnrollmentRead`, writes `EnrollmentWrite`, like the
//! enrollments that name the policies. Nothing here is billed (managing
//! CAs and policies is not a DPS operation Azure meters); every call is
//! throttled like the rest of the tenant's service API.
//!
//! * `PUT /certificateAuthorities/{name}` creates a CA, generated
//!   (`{"mode":"generate","commonName":"…"}`) or imported
//!   (`{"mode":"import","certificateChain":"PEM","privateKey":"PEM"}`) or
//!   generated under the operator's root (`{"mode":"intermediate",
//!   "rootCertificateChain":"PEM","rootPrivateKey":"PEM"}`, the root key
//!   used once and not kept); a CA
//!   is never replaced (a taken name is a 409). Its private key is sealed
//!   before it is stored and never appears in an answer.
//! * `DELETE /certificateAuthorities/{name}` (`If-Match` honoured) is a 409
//!   while a credential policy names the CA.
//! * `PUT /credentialPolicies/{name}` creates or replaces a policy
//!   (`If-Match` honoured); the CA it names must exist (else 400).

use axum::response::Response;
use dps_model::certificate_authority::validate_name;
use dps_model::{CertificateAuthority, CredentialPolicy, IdScope};
use http::Method;
use serde::Deserialize;

use super::routes::{allow, Endpoint};
use super::wire::{self, invalid, Call};
use super::ServiceApi;
use crate::certificate_authority::{seal_authority, CaMaterial, CertificateAuthorityError};
use crate::respond::ApiError;

/// An operation on CAs or credential policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AuthorityOp {
    /// `GET /certificateAuthorities`
    ListAuthorities,
    /// `GET /certificateAuthorities/{name}`
    GetAuthority(String),
    /// `PUT /certificateAuthorities/{name}`
    CreateAuthority(String),
    /// `DELETE /certificateAuthorities/{name}`
    DeleteAuthority(String),
    /// `GET /credentialPolicies`
    ListPolicies,
    /// `GET /credentialPolicies/{name}`
    GetPolicy(String),
    /// `PUT /credentialPolicies/{name}`
    PutPolicy(String),
    /// `DELETE /credentialPolicies/{name}`
    DeletePolicy(String),
}

impl AuthorityOp {
    /// Whether the operation changes anything (needs `EnrollmentWrite`).
    pub(crate) fn writes(&self) -> bool {
        !matches!(
            self,
            AuthorityOp::ListAuthorities
                | AuthorityOp::GetAuthority(_)
                | AuthorityOp::ListPolicies
                | AuthorityOp::GetPolicy(_)
        )
    }
}

/// The endpoint of `method` on `/{collection}/{rest…}` when the collection
/// is one of ours: `None` when it is not, `Some(None)` for another method.
pub(crate) fn resolve(
    method: &Method,
    collection: &str,
    rest: &[String],
) -> Option<Option<Endpoint>> {
    use AuthorityOp::*;
    let found = match (collection, rest) {
        ("certificateauthorities", []) => allow(method, &[(Method::GET, ListAuthorities)]),
        ("certificateauthorities", [name]) => allow(
            method,
            &[
                (Method::GET, GetAuthority(name.clone())),
                (Method::PUT, CreateAuthority(name.clone())),
                (Method::DELETE, DeleteAuthority(name.clone())),
            ],
        ),
        ("credentialpolicies", []) => allow(method, &[(Method::GET, ListPolicies)]),
        ("credentialpolicies", [name]) => allow(
            method,
            &[
                (Method::GET, GetPolicy(name.clone())),
                (Method::PUT, PutPolicy(name.clone())),
                (Method::DELETE, DeletePolicy(name.clone())),
            ],
        ),
        _ => None,
    };
    found.map(|op| op.map(Endpoint::Authority))
}

/// The body of `PUT /certificateAuthorities/{name}`.
#[derive(Deserialize)]
#[serde(tag = "mode", rename_all = "camelCase")]
enum CreateBody {
    /// dps generates the CA (ECDSA P-256, self-signed).
    #[serde(rename_all = "camelCase")]
    Generate {
        /// The CA certificate's subject CN; default the CA's name.
        #[serde(default)]
        common_name: Option<String>,
    },
    /// dps generates an intermediate signed by the operator's root, whose
    /// key is used for this signature only and not kept.
    #[serde(rename_all = "camelCase")]
    Intermediate {
        /// The intermediate's subject CN; default the CA's name.
        #[serde(default)]
        common_name: Option<String>,
        /// The root (signing CA first, then its issuers), PEM.
        root_certificate_chain: String,
        /// The root's PKCS#8 private key, PEM.
        root_private_key: String,
    },
    /// The operator's CA: certificate chain and private key, PEM.
    #[serde(rename_all = "camelCase")]
    Import {
        /// The CA certificate first, then its issuers.
        certificate_chain: String,
        /// The CA's PKCS#8 private key.
        private_key: String,
    },
}

/// Answer one operation for the tenant `scope`.
pub(crate) async fn handle(
    api: &ServiceApi,
    scope: &IdScope,
    op: AuthorityOp,
    call: &Call,
) -> Result<Response, ApiError> {
    let store = &api.store;
    match op {
        AuthorityOp::ListAuthorities => {
            let all = store.list_certificate_authorities(scope).await?;
            let views: Vec<&CertificateAuthority> = all.iter().map(|ca| &ca.authority).collect();
            Ok(wire::ok(&views))
        }
        AuthorityOp::GetAuthority(name) => {
            let ca = store
                .certificate_authority(scope, &name)
                .await?
                .ok_or_else(|| authority_not_found(&name))?;
            Ok(wire::ok_tagged(&ca.authority, Some(&ca.authority.etag)))
        }
        AuthorityOp::CreateAuthority(name) => {
            validate_name("name", &name)?;
            let kek = api.certificate_key()?;
            let material = match call.json::<CreateBody>()? {
                CreateBody::Generate { common_name } => {
                    CaMaterial::generate(common_name.as_deref().unwrap_or(&name))
                }
                CreateBody::Intermediate {
                    common_name,
                    root_certificate_chain,
                    root_private_key,
                } => CaMaterial::generate_intermediate(
                    common_name.as_deref().unwrap_or(&name),
                    &root_certificate_chain,
                    &root_private_key,
                ),
                CreateBody::Import {
                    certificate_chain,
                    private_key,
                } => CaMaterial::import(&certificate_chain, &private_key),
            }
            .map_err(refused)?;
            let stored = seal_authority(&kek, scope, &name, &material).map_err(refused)?;
            let created = store.create_certificate_authority(scope, stored).await?;
            Ok(wire::ok_tagged(
                &created.authority,
                Some(&created.authority.etag),
            ))
        }
        AuthorityOp::DeleteAuthority(name) => {
            store
                .delete_certificate_authority(scope, &name, call.if_match())
                .await?;
            Ok(wire::no_content())
        }
        AuthorityOp::ListPolicies => Ok(wire::ok(&store.list_credential_policies(scope).await?)),
        AuthorityOp::GetPolicy(name) => {
            let policy = store
                .credential_policy(scope, &name)
                .await?
                .ok_or_else(|| policy_not_found(&name))?;
            Ok(wire::ok_tagged(&policy, policy.etag.as_ref()))
        }
        AuthorityOp::PutPolicy(name) => {
            let policy = policy_body(&name, call)?;
            let written = store
                .put_credential_policy(scope, policy, call.if_match())
                .await?;
            Ok(wire::ok_tagged(
                &written.record,
                written.record.etag.as_ref(),
            ))
        }
        AuthorityOp::DeletePolicy(name) => {
            store
                .delete_credential_policy(scope, &name, call.if_match())
                .await?;
            Ok(wire::no_content())
        }
    }
}

/// An enrollment or group naming `credentialPolicyName` is written only when
/// that policy exists (400 otherwise).
pub(crate) async fn check_policy_exists(
    api: &ServiceApi,
    scope: &IdScope,
    name: Option<&str>,
) -> Result<(), ApiError> {
    let Some(name) = name else {
        return Ok(());
    };
    if api.store.credential_policy(scope, name).await?.is_some() {
        return Ok(());
    }
    Err(invalid(
        "credentialPolicyName",
        name,
        "no credential policy of this name exists in this provisioning service \
         (create it with PUT /credentialPolicies/{name} first)",
    ))
}

/// The policy in a PUT body, named by the path (a body `name`, if any, must
/// agree), validated.
fn policy_body(name: &str, call: &Call) -> Result<CredentialPolicy, ApiError> {
    validate_name("name", name)?;
    let mut body: serde_json::Value = call.json()?;
    let Some(fields) = body.as_object_mut() else {
        return Err(ApiError::bad_request(
            "A credential policy is a JSON object.",
        ));
    };
    match fields.get("name").and_then(|v| v.as_str()) {
        Some(given) if given != name => {
            return Err(invalid(
                "name",
                given,
                format!("the body names another policy than the path ({name:?})"),
            ))
        }
        _ => {
            fields.insert("name".to_owned(), name.into());
        }
    }
    let bytes = serde_json::to_vec(&body).map_err(ApiError::internal)?;
    Ok(CredentialPolicy::from_json(&bytes)?)
}

/// A CA that could not be made from the request: the caller's fault (400),
/// except a failure of dps's own key handling (500).
fn refused(err: CertificateAuthorityError) -> ApiError {
    match err {
        CertificateAuthorityError::InvalidCertificate { .. }
        | CertificateAuthorityError::InvalidKey { .. } => ApiError::bad_request(format!("{err}.")),
        other => ApiError::internal(other),
    }
}

fn authority_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Certificate authority {name:?} not found."))
}

fn policy_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Credential policy {name:?} not found."))
}

#[cfg(test)]
#[path = "authorities_tests.rs"]
mod tests;
