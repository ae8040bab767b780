//! Verified CA certificates (right `ServiceConfig`): upload (PEM or base64
//! DER), list, read, delete, and proof of possession — a verification code,
//! then a certificate with CN = that code signed by the CA's key marks the CA
//! verified. Each certificate has its own etag, which `If-Match` is compared
//! with.
//!
//! An upload cannot declare a CA verified (issue #15 finding 11): a policy
//! with `ServiceConfig` would otherwise make any CA trusted for the tenant's
//! X.509 groups without holding its key. (Azure accepts `isVerified: true`
//! only through its resource manager, from the subscription owner.)
//! `isVerified: true` is accepted only where it restates an earlier proof for
//! the same certificate: a GET–edit–PUT round trip of a verified CA.

use axum::response::Response;
use chrono::Utc;
use dps_attestation::sas::unix_now;
use dps_attestation::x509::{
    certificate_info, generate_verification_code, verify_proof_of_possession,
};
use dps_model::{CaCertificate, ETag, IdScope, X509CertificateInfo};
use serde::{Deserialize, Serialize};

use super::routes::SettingsOp;
use super::settings::{check_if_match, load_tenant, modify_tenant};
use super::wire::{self, invalid, Call};
use super::ServiceApi;
use crate::respond::ApiError;

/// Most CA certificates per tenant (the cloud's limit).
const MAX_CERTIFICATES: usize = 25;

/// Answer one certificate operation.
pub(crate) async fn handle(
    api: &ServiceApi,
    scope: &IdScope,
    op: SettingsOp,
    call: &Call,
) -> Result<Response, ApiError> {
    match op {
        SettingsOp::ListCertificates => {
            let tenant = load_tenant(api, scope).await?;
            let views: Vec<CertificateView<'_>> = tenant
                .ca_certificates
                .iter()
                .map(CertificateView::of)
                .collect();
            Ok(wire::ok_tagged(&views, Some(&tenant.etag)))
        }
        SettingsOp::GetCertificate(name) => {
            let tenant = load_tenant(api, scope).await?;
            let ca = tenant
                .ca_certificate(&name)
                .ok_or_else(|| not_found(&name))?;
            Ok(wire::ok_tagged(&CertificateView::of(ca), Some(&ca.etag)))
        }
        SettingsOp::PutCertificate(name) => {
            check_name(&name)?;
            let body: UploadBody = call.json()?;
            let info = certificate_info(body.certificate.as_bytes())
                .map_err(|e| invalid("certificate", "(certificate text)", e.to_string()))?;
            let precondition = call.if_match();
            let (_, ca) = modify_tenant(api, scope, |tenant| {
                let now = Utc::now();
                let position = tenant
                    .ca_certificates
                    .iter()
                    .position(|c| c.name.eq_ignore_ascii_case(&name));
                let existing = position.map(|i| &tenant.ca_certificates[i]);
                match existing {
                    Some(existing) => check_if_match(&precondition, &existing.etag)?,
                    None => check_if_match_absent(&precondition)?,
                }
                let is_verified = body.is_verified && already_proven(existing, &info, &name)?;
                let ca = CaCertificate {
                    name: existing.map_or_else(|| name.clone(), |c| c.name.clone()),
                    certificate: body.certificate.clone(),
                    info: Some(info.clone()),
                    is_verified,
                    verification_code: None,
                    etag: ETag::generate(),
                    created: existing.map_or(now, |c| c.created),
                    updated: now,
                };
                match position {
                    Some(i) => tenant.ca_certificates[i] = ca.clone(),
                    None if tenant.ca_certificates.len() >= MAX_CERTIFICATES => {
                        return Err(invalid(
                            "name",
                            name.clone(),
                            format!("a service keeps at most {MAX_CERTIFICATES} CA certificates"),
                        ))
                    }
                    None => tenant.ca_certificates.push(ca.clone()),
                }
                Ok(ca)
            })
            .await?;
            Ok(wire::ok_tagged(&CertificateView::of(&ca), Some(&ca.etag)))
        }
        SettingsOp::DeleteCertificate(name) => {
            let precondition = call.if_match();
            modify_tenant(api, scope, |tenant| {
                let position = tenant
                    .ca_certificates
                    .iter()
                    .position(|c| c.name.eq_ignore_ascii_case(&name))
                    .ok_or_else(|| not_found(&name))?;
                check_if_match(&precondition, &tenant.ca_certificates[position].etag)?;
                tenant.ca_certificates.remove(position);
                Ok(())
            })
            .await?;
            Ok(wire::no_content())
        }
        SettingsOp::GenerateVerificationCode(name) => {
            let precondition = call.if_match();
            let (_, ca) = modify_tenant(api, scope, |tenant| {
                let ca = find_mut(&mut tenant.ca_certificates, &name)?;
                check_if_match(&precondition, &ca.etag)?;
                ca.verification_code = Some(generate_verification_code());
                ca.etag = ETag::generate();
                ca.updated = Utc::now();
                Ok(ca.clone())
            })
            .await?;
            Ok(wire::ok_tagged(
                &VerificationCode {
                    name: &ca.name,
                    verification_code: ca.verification_code.as_deref().unwrap_or_default(),
                    etag: &ca.etag,
                },
                Some(&ca.etag),
            ))
        }
        SettingsOp::VerifyCertificate(name) => {
            let body: ProofBody = call.json()?;
            let precondition = call.if_match();
            let (_, ca) = modify_tenant(api, scope, |tenant| {
                let ca = find_mut(&mut tenant.ca_certificates, &name)?;
                check_if_match(&precondition, &ca.etag)?;
                let code = ca.verification_code.clone().ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "No verification code was issued for {name:?}: call generateVerificationCode first."
                    ))
                })?;
                verify_proof_of_possession(
                    ca.certificate.as_bytes(),
                    body.certificate.as_bytes(),
                    &code,
                    unix_now(),
                )
                .map_err(|e| invalid("certificate", "(proof certificate)", e.to_string()))?;
                ca.is_verified = true;
                ca.verification_code = None;
                ca.etag = ETag::generate();
                ca.updated = Utc::now();
                Ok(ca.clone())
            })
            .await?;
            Ok(wire::ok_tagged(&CertificateView::of(&ca), Some(&ca.etag)))
        }
        other => Err(ApiError::internal(format!(
            "certificates::handle called for {other:?}"
        ))),
    }
}

/// Whether `existing` is this very certificate, verified by proof of
/// possession; otherwise `isVerified: true` is refused with 400.
fn already_proven(
    existing: Option<&CaCertificate>,
    uploaded: &X509CertificateInfo,
    name: &str,
) -> Result<bool, ApiError> {
    let proven = existing.is_some_and(|ca| {
        ca.is_verified
            && certificate_info(ca.certificate.as_bytes())
                .is_ok_and(|info| info.sha256_thumbprint == uploaded.sha256_thumbprint)
    });
    if proven {
        return Ok(true);
    }
    tracing::info!(
        certificate = name,
        "CA upload declaring isVerified refused: only a proof of possession verifies a CA"
    );
    Err(invalid(
        "isVerified",
        "true",
        "an upload cannot declare a CA verified: call generateVerificationCode, then verify with a certificate signed by the CA's key",
    ))
}

fn find_mut<'a>(
    certificates: &'a mut [CaCertificate],
    name: &str,
) -> Result<&'a mut CaCertificate, ApiError> {
    certificates
        .iter_mut()
        .find(|c| c.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| not_found(name))
}

/// `If-Match` on a certificate that does not exist yet fails unless absent.
fn check_if_match_absent(precondition: &dps_model::Precondition) -> Result<(), ApiError> {
    if precondition.allows(None) {
        Ok(())
    } else {
        Err(ApiError::precondition_failed(
            "Precondition failed: there is no certificate of this name.",
        ))
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            name.to_owned(),
            "1 to 128 letters, digits, '-', '_' or '.'",
        ))
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::ca_certificate_not_found(name)
}

/// A CA certificate as answered (the PEM is public; the pending code is not shown).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CertificateView<'a> {
    name: &'a str,
    certificate: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<&'a X509CertificateInfo>,
    is_verified: bool,
    etag: &'a ETag,
    #[serde(with = "dps_model::time::azure")]
    created: chrono::DateTime<Utc>,
    #[serde(with = "dps_model::time::azure")]
    updated: chrono::DateTime<Utc>,
}

impl<'a> CertificateView<'a> {
    fn of(ca: &'a CaCertificate) -> Self {
        CertificateView {
            name: &ca.name,
            certificate: &ca.certificate,
            info: ca.info.as_ref(),
            is_verified: ca.is_verified,
            etag: &ca.etag,
            created: ca.created,
            updated: ca.updated,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VerificationCode<'a> {
    name: &'a str,
    verification_code: &'a str,
    etag: &'a ETag,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadBody {
    certificate: String,
    #[serde(default)]
    is_verified: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProofBody {
    certificate: String,
}
