//! Certificate issuance at registration (issue #17): a register that
//! carries a `csr` (at an api-version that knows it) through an enrollment
//! or group naming a credential policy gets a leaf signed by the policy's
//! tenant CA.
//!
//! Everything that can refuse the request runs in [`prepare`], before the
//! hub is touched or anything is stored: a CSR that does not decode or
//! verify, an enrollment naming no policy, a missing policy, a key the
//! policy refuses are all 400 `ArgumentInvalid` (400004; the specification
//! names no certificate-specific code) with a message naming the problem,
//! and nothing is written. The leaf itself is signed in
//! [`Prepared::issue`] once the device id is known, just before the hub
//! identity is written with its thumbprint; the certificate is recorded in
//! the same storage transaction as the registration record, so none is
//! returned without being recorded.

use std::sync::Arc;

use chrono::Utc;
use dps_model::certificate_issuance::{api_version_supports_issuance, decode_csr};
use dps_model::{
    CredentialPolicy, DeviceId, ErrorCode, IdScope, RegistrationId, RegistrationOperationStatus,
};
use dps_storage::Store;

use super::assign::Failure;
use super::authenticate::MatchedEnrollment;
use crate::certificate_authority::issuing::{
    verify_csr, CsrKey, IssuanceError, IssuedLeaf, Issuer,
};
use crate::certificate_authority::{unseal_authority, KeyEncryptionKey};
use crate::respond::ApiError;

/// A verified CSR and the CA that will sign it.
pub(crate) struct Prepared {
    policy: CredentialPolicy,
    key: CsrKey,
    issuer: Arc<Issuer>,
}

/// Issuers by tenant, CA name and CA etag: unsealing the key and rebuilding
/// the CA's name for rcgen is done once per CA, not per registration. A CA
/// is never replaced (only deleted and created anew, with a new etag), so an
/// entry never goes stale; the map is emptied when it grows past
/// [`IssuerCache::MAX`] (tenants deleting and creating CAs in a loop).
#[derive(Default)]
pub(crate) struct IssuerCache {
    issuers: std::sync::Mutex<std::collections::HashMap<(String, String, String), Arc<Issuer>>>,
}

impl IssuerCache {
    const MAX: usize = 1024;

    fn get_or_build(
        &self,
        key: (String, String, String),
        build: impl FnOnce() -> Result<Issuer, ApiError>,
    ) -> Result<Arc<Issuer>, ApiError> {
        let lock = || {
            self.issuers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(found) = lock().get(&key) {
            return Ok(Arc::clone(found));
        }
        // Built outside the lock: two first registrations may both build it.
        let issuer = Arc::new(build()?);
        let mut issuers = lock();
        if issuers.len() >= Self::MAX {
            issuers.clear();
        }
        issuers.insert(key, Arc::clone(&issuer));
        Ok(issuer)
    }
}

impl Prepared {
    /// Sign the leaf for `device_id` (a fault of the CA, not of the
    /// device, if it fails).
    pub(crate) fn issue(
        &self,
        registration_id: &RegistrationId,
        device_id: &DeviceId,
    ) -> Result<IssuedLeaf, Failure> {
        self.issuer
            .issue(
                &self.key,
                registration_id,
                device_id.as_str(),
                &self.policy,
                Utc::now(),
            )
            .map_err(|err| Failure {
                code: ErrorCode::INTERNAL,
                message: format!("The certificate authority could not issue a certificate: {err}"),
            })
    }
}

/// What [`prepare`] needs to know about the request.
pub(crate) struct IssuanceRequest<'a> {
    pub(crate) store: &'a dyn Store,
    pub(crate) key: Option<&'a Arc<KeyEncryptionKey>>,
    pub(crate) issuers: &'a IssuerCache,
    pub(crate) scope: &'a IdScope,
    pub(crate) registration_id: &'a RegistrationId,
    pub(crate) enrollment: &'a MatchedEnrollment,
    pub(crate) api_version: &'a str,
    pub(crate) csr: Option<&'a str>,
}

/// Check everything about the CSR and load the CA: `None` when there is
/// nothing to issue (no `csr`, or an api-version older than issuance,
/// which never sees the feature), a 400 for the device's mistakes, a 500
/// for the CA's.
pub(crate) async fn prepare(request: IssuanceRequest<'_>) -> Result<Option<Prepared>, ApiError> {
    let Some(csr) = request.csr else {
        return Ok(None);
    };
    if !api_version_supports_issuance(request.api_version) {
        return Ok(None);
    }
    let der = decode_csr(csr)?;
    let (kind, id, policy_name) = match request.enrollment {
        MatchedEnrollment::Individual(e) => (
            "individual enrollment",
            e.registration_id.as_str(),
            e.credential_policy_name.as_deref(),
        ),
        MatchedEnrollment::Group(g) => (
            "enrollment group",
            g.enrollment_group_id.as_str(),
            g.credential_policy_name.as_deref(),
        ),
    };
    let Some(policy_name) = policy_name else {
        return Err(ApiError::bad_request(format!(
            "The registration carries a csr, but its {kind} {id:?} names no \
             credentialPolicyName: no certificate can be issued."
        )));
    };
    let policy = request
        .store
        .credential_policy(request.scope, policy_name)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "The registration carries a csr, but the credential policy {policy_name:?} \
                 named by its {kind} {id:?} does not exist."
            ))
        })?;
    let key = verify_csr(&der, request.registration_id, &policy).map_err(refusal)?;
    let stored = request
        .store
        .certificate_authority(request.scope, &policy.certificate_authority_name)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::internal(format!(
                "credential policy {:?} names certificate authority {:?}, which is missing",
                policy.name, policy.certificate_authority_name
            ))
        })?;
    let kek = request.key.ok_or_else(|| {
        ApiError::internal("certificate issuance has no key-encryption key configured")
    })?;
    let cache_key = (
        request.scope.key(),
        stored.name().to_owned(),
        stored.authority.etag.as_str().to_owned(),
    );
    let issuer = request.issuers.get_or_build(cache_key, || {
        let material = unseal_authority(kek, request.scope, &stored).map_err(ApiError::internal)?;
        Issuer::new(stored.name(), &material).map_err(ApiError::internal)
    })?;
    Ok(Some(Prepared {
        policy,
        key,
        issuer,
    }))
}

fn refusal(err: IssuanceError) -> ApiError {
    if err.is_request_error() {
        ApiError::bad_request(format!("{}{}", capitalised(&err.to_string()), "."))
    } else {
        ApiError::internal(err)
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// An operation's answer as a device at `api_version` may see it: an
/// api-version older than certificate issuance never sees
/// `issuedCertificateChain`.
pub(crate) fn for_version(
    mut status: RegistrationOperationStatus,
    api_version: &str,
) -> RegistrationOperationStatus {
    if !api_version_supports_issuance(api_version) {
        if let Some(state) = status.registration_state.as_mut() {
            state.issued_certificate_chain = None;
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::certificate_authority::CaMaterial;

    #[test]
    fn an_issuer_is_built_once_per_ca_version() {
        let material = CaMaterial::generate("Fleet CA").unwrap();
        let cache = IssuerCache::default();
        let built = Cell::new(0);
        let build = || {
            built.set(built.get() + 1);
            Issuer::new("fleet", &material).map_err(ApiError::internal)
        };
        let key = |etag: &str| ("scope".to_owned(), "fleet".to_owned(), etag.to_owned());
        let first = cache.get_or_build(key("e1"), build).unwrap();
        let again = cache.get_or_build(key("e1"), build).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(built.get(), 1);
        cache.get_or_build(key("e2"), build).unwrap();
        assert_eq!(built.get(), 2, "a recreated CA (new etag) is built anew");
        let failing = cache.get_or_build(key("e3"), || Err(ApiError::bad_request("no")));
        assert!(failing.is_err());
        cache.get_or_build(key("e3"), build).unwrap();
        assert_eq!(built.get(), 3, "a failure is not cached");
    }
}
