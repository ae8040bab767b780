//! Certificates issued at registration (issue #17; dps's own routes, like
//! the CAs and policies): listing a registration's certificates, revoking
//! one, and each CA's CRL. Reads need `EnrollmentRead`, revocation
//! `EnrollmentWrite`; none is billed (Azure meters certificate management
//! in Azure Device Registry, not as DPS operations).
//!
//! * `GET /registrations/{id}/issuedCertificates`: newest first.
//! * `POST /registrations/{id}/issuedCertificates/{serialNumber}/revoke`:
//!   the record, revoked (a second revocation changes nothing).
//! * `GET /certificateAuthorities/{name}/crl`: DER, `application/pkix-crl`,
//!   built and signed on each request from the revoked certificates.

use axum::response::{IntoResponse, Response};
use chrono::Utc;
use dps_model::{IdScope, RegistrationId};
use http::{header, HeaderValue, Method, StatusCode};

use super::routes::{allow, Endpoint};
use super::wire::{self, Call};
use super::ServiceApi;
use crate::certificate_authority::issuing::Issuer;
use crate::certificate_authority::unseal_authority;
use crate::respond::ApiError;

/// An operation on issued certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum IssuedOp {
    /// `GET /registrations/{id}/issuedCertificates`
    List(String),
    /// `POST /registrations/{id}/issuedCertificates/{serial}/revoke`
    Revoke(String, String),
    /// `GET /certificateAuthorities/{name}/crl`
    Crl(String),
}

impl IssuedOp {
    /// Whether the operation changes anything (needs `EnrollmentWrite`).
    pub(crate) fn writes(&self) -> bool {
        matches!(self, IssuedOp::Revoke(..))
    }
}

/// The endpoint of `method` on `/registrations/{rest…}` when it is one of
/// ours: `None` when it is not, `Some(None)` for another method.
pub(crate) fn resolve_registration(method: &Method, rest: &[String]) -> Option<Option<Endpoint>> {
    let is = |i: usize, word: &str| rest.get(i).is_some_and(|s| s.eq_ignore_ascii_case(word));
    let found = match rest.len() {
        2 if is(1, "issuedCertificates") => {
            allow(method, &[(Method::GET, IssuedOp::List(rest[0].clone()))])
        }
        4 if is(1, "issuedCertificates") && is(3, "revoke") => allow(
            method,
            &[(
                Method::POST,
                IssuedOp::Revoke(rest[0].clone(), rest[2].clone()),
            )],
        ),
        _ => None,
    };
    found.map(|op| op.map(Endpoint::Issued))
}

/// The endpoint of `method` on `/certificateAuthorities/{name}/crl`.
pub(crate) fn resolve_crl(method: &Method, rest: &[String]) -> Option<Option<Endpoint>> {
    match rest {
        [name, crl] if crl.eq_ignore_ascii_case("crl") => {
            allow(method, &[(Method::GET, IssuedOp::Crl(name.clone()))])
                .map(|op| op.map(Endpoint::Issued))
        }
        _ => None,
    }
}

/// Answer one operation for the tenant `scope`.
pub(crate) async fn handle(
    api: &ServiceApi,
    scope: &IdScope,
    op: IssuedOp,
    _call: &Call,
) -> Result<Response, ApiError> {
    let store = &api.store;
    match op {
        IssuedOp::List(id) => {
            let id = RegistrationId::new(id.as_str())?;
            Ok(wire::ok(&store.issued_certificates(scope, &id).await?))
        }
        IssuedOp::Revoke(id, serial) => {
            let id = RegistrationId::new(id.as_str())?;
            // Serials are stored as uppercase hex without separators;
            // accept the colon-separated lowercase form tools print.
            let serial: String = serial
                .chars()
                .filter(|c| *c != ':')
                .map(|c| c.to_ascii_uppercase())
                .collect();
            let revoked = store
                .revoke_issued_certificate(scope, &id, &serial, Utc::now())
                .await
                .map_err(|err| match err {
                    dps_storage::StoreError::NotFound { .. } => ApiError::not_found(format!(
                        "No certificate with serial number {serial:?} was issued to registration {:?}.",
                        id.as_str()
                    )),
                    other => other.into(),
                })?;
            Ok(wire::ok(&revoked))
        }
        IssuedOp::Crl(name) => {
            let stored = store
                .certificate_authority(scope, &name)
                .await?
                .ok_or_else(|| {
                    ApiError::not_found(format!("Certificate authority {name:?} not found."))
                })?;
            let revoked = store.revoked_certificates(scope, &name).await?;
            let kek = api.certificate_key()?;
            let material = unseal_authority(&kek, scope, &stored).map_err(ApiError::internal)?;
            let crl = Issuer::new(&name, &material)
                .and_then(|issuer| issuer.crl(&revoked, Utc::now()))
                .map_err(ApiError::internal)?;
            Ok((
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/pkix-crl"),
                )],
                crl,
            )
                .into_response())
        }
    }
}
