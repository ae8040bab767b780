//! Who is this device? Enrollment lookup and attestation (spec §3, §6.1):
//! the individual enrollment first, then groups — symmetric-key groups by
//! derived-key signature, X.509 groups by chain; TPM devices without a token
//! get the endorsement-key challenge.
//!
//! Every refusal is the same 401 whatever the reason an enrollment was not
//! found, so a caller learns nothing about other devices or tenants: the
//! specific texts built here go only to the DEBUG log, and the pipeline's
//! guard (`Pipeline::guarded`) answers every `401` with [`unauthorized`].

use std::sync::Arc;

use dps_attestation::sas::{Audience, ExpiryPolicy, SasToken, SymmetricKey};
use dps_attestation::{keys, tpm, x509, AttestationError};
use dps_model::registration::TpmRegistrationRequest;
use dps_model::{
    AttestationType, EnrollmentGroup, EnrollmentRef, IndividualEnrollment, RegistrationId,
    TpmAttestation, X509CertificateInfo,
};
use dps_storage::Store;
use rustls::pki_types::CertificateDer;

use super::attest_pool::AttestPool;
use super::challenges::ChallengeSeconds;
use super::tenants::TenantView;
use super::DeviceCredentials;
use crate::respond::ApiError;

/// The enrollment a device matched.
// Shared, not copied: the individual enrollment is the one the store lookup
// decoded (kept for the poll, see `recent.rs`), the group the tenant cache's.
#[derive(Clone, Debug)]
pub(crate) enum MatchedEnrollment {
    Individual(Arc<IndividualEnrollment>),
    Group(Arc<EnrollmentGroup>),
}

impl MatchedEnrollment {
    pub(crate) fn as_ref(&self) -> EnrollmentRef<'_> {
        match self {
            MatchedEnrollment::Individual(e) => EnrollmentRef::Individual(e),
            MatchedEnrollment::Group(g) => EnrollmentRef::Group(g),
        }
    }
}

/// What the device proved, as later steps need it.
#[derive(Clone, Debug)]
pub(crate) enum Evidence {
    /// The device signs with these keys (individual keys or group-derived).
    SymmetricKey {
        primary: SymmetricKey,
        secondary: SymmetricKey,
    },
    /// The device's certificate, and the group certificate its chain reached.
    X509 {
        leaf: X509CertificateInfo,
        signing: Option<X509CertificateInfo>,
    },
    /// The TPM's keys.
    Tpm(TpmAttestation),
}

pub(crate) struct AuthenticatedDevice {
    pub(crate) enrollment: MatchedEnrollment,
    pub(crate) evidence: Evidence,
}

// One value per request, moved once: the size difference costs nothing
// worth an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Authentication {
    Device(Box<AuthenticatedDevice>),
    /// A TPM device must first activate this blob (`authenticationKey`).
    TpmChallenge(String),
}

fn refused(reason: impl Into<String>) -> ApiError {
    ApiError::unauthorized(reason)
}

/// The generic refusal: the same for unknown scope, unknown enrollment and
/// a wrong signature.
pub(crate) fn unauthorized() -> ApiError {
    refused("Unauthorized: the credentials do not match an enrollment of this ID scope.")
}

pub(crate) struct Authenticator<'a> {
    pub(crate) store: &'a dyn Store,
    pub(crate) view: &'a TenantView,
    pub(crate) registration_id: &'a RegistrationId,
    pub(crate) expiry: &'a ExpiryPolicy,
    /// The individual enrollment lookup, when a recent one stands in for
    /// the store's (see `recent.rs`).
    pub(crate) known_individual: Option<&'a Option<Arc<IndividualEnrollment>>>,
    /// Where X.509 chains are verified, and within which limits.
    pub(crate) attest: &'a AttestPool,
    /// The TPM challenge seconds this replica handed out.
    pub(crate) challenges: &'a ChallengeSeconds,
}

impl Authenticator<'_> {
    pub(crate) async fn authenticate(
        &self,
        credentials: &DeviceCredentials,
        tpm_request: Option<&TpmRegistrationRequest>,
        allow_challenge: bool,
    ) -> Result<Authentication, ApiError> {
        if let Some(token) = &credentials.sas_token {
            return self
                .by_token(token)
                .await
                .map(|d| Authentication::Device(Box::new(d)));
        }
        if !credentials.client_chain.is_empty() {
            return self
                .by_certificate(&credentials.client_chain)
                .await
                .map(|d| Authentication::Device(Box::new(d)));
        }
        match tpm_request {
            Some(tpm) if allow_challenge => self.tpm_challenge(tpm).await,
            _ => Err(refused(
                "Unauthorized: no SAS token in Authorization and no client certificate.",
            )),
        }
    }

    async fn individual(&self) -> Result<Option<Arc<IndividualEnrollment>>, ApiError> {
        if let Some(known) = self.known_individual {
            return Ok(known.clone());
        }
        self.store
            .enrollment(&self.view.tenant.id_scope, self.registration_id)
            .await
            .map(|found| found.map(Arc::new))
            .map_err(ApiError::internal)
    }

    async fn by_token(&self, token: &str) -> Result<AuthenticatedDevice, ApiError> {
        let token = SasToken::parse(token).map_err(|e| refused(format!("Unauthorized: {e}.")))?;
        let audience = format!(
            "{}/registrations/{}",
            self.view.tenant.id_scope,
            self.registration_id.as_str()
        );
        token
            .check_audience(&Audience(&audience))
            .map_err(|e| refused(format!("Unauthorized: {e}.")))?;
        token
            .check_expiry(self.expiry)
            .map_err(|e| refused(format!("Unauthorized: {e}.")))?;

        if let Some(enrollment) = self.individual().await? {
            let evidence = match enrollment.attestation.kind {
                AttestationType::SymmetricKey => {
                    let (primary, secondary) = enrollment_keys(
                        enrollment
                            .attestation
                            .symmetric_key
                            .as_ref()
                            .and_then(|k| k.primary_key.as_deref()),
                        enrollment
                            .attestation
                            .symmetric_key
                            .as_ref()
                            .and_then(|k| k.secondary_key.as_deref()),
                    )
                    .ok_or_else(unauthorized)?;
                    // Specific for the operator's log; the device gets the
                    // generic refusal (`Pipeline::guarded`).
                    token
                        .check_signature(&[&primary, &secondary])
                        .map_err(|_| {
                            refused("Unauthorized: the token's signature matches neither key of the individual enrollment.")
                        })?;
                    Evidence::SymmetricKey { primary, secondary }
                }
                AttestationType::Tpm => {
                    let tpm = enrollment
                        .attestation
                        .tpm
                        .clone()
                        .ok_or_else(unauthorized)?;
                    // Signed with the key of a challenge still alive (any
                    // replica's: the keys derive from the tenant's secret).
                    self.challenge_keys(&tpm.endorsement_key)?
                        .find(self.expiry.now(), |key| {
                            token.check_signature(&[key]).is_ok()
                        })
                        .ok_or_else(|| {
                            refused("Unauthorized: no live TPM challenge key signed the token.")
                        })?;
                    Evidence::Tpm(tpm)
                }
                _ => return Err(unauthorized()),
            };
            return Ok(AuthenticatedDevice {
                enrollment: MatchedEnrollment::Individual(enrollment),
                evidence,
            });
        }

        for group in &self.view.symmetric_key_groups {
            let Some(keys) = group.attestation.symmetric_key.as_ref() else {
                continue;
            };
            let Some((group_primary, group_secondary)) =
                enrollment_keys(keys.primary_key.as_deref(), keys.secondary_key.as_deref())
            else {
                continue;
            };
            // The device derives its key from the registration id exactly as it presents it.
            let id = self.registration_id.as_str();
            let primary = keys::derive_device_key(&group_primary, id);
            let secondary = keys::derive_device_key(&group_secondary, id);
            if token.check_signature(&[&primary, &secondary]).is_ok() {
                return Ok(AuthenticatedDevice {
                    enrollment: MatchedEnrollment::Group(group.clone()),
                    evidence: Evidence::SymmetricKey { primary, secondary },
                });
            }
        }
        Err(refused(
            "Unauthorized: no individual enrollment, and no symmetric-key group's derived key signed the token.",
        ))
    }

    async fn by_certificate(
        &self,
        chain: &Arc<Vec<CertificateDer<'static>>>,
    ) -> Result<AuthenticatedDevice, ApiError> {
        // The leaf's CN must equal the registration id: `verify_individual`
        // and `verify_groups` both check it on the one parse each makes of
        // the leaf (a check here first parsed the leaf once more per request).
        let now = self.expiry.now();
        let individual = self.individual().await?;
        if let Some(enrollment) = &individual {
            let client_certificates = enrollment
                .attestation
                .x509
                .as_ref()
                .and_then(|x| x.client_certificates.as_ref());
            if let (AttestationType::X509, Some(certificates)) =
                (enrollment.attestation.kind, client_certificates)
            {
                let verified = x509::verify_individual(
                    chain,
                    certificates,
                    self.registration_id.as_str(),
                    now,
                )
                .map_err(certificate_refusal)?;
                return Ok(AuthenticatedDevice {
                    enrollment: MatchedEnrollment::Individual(enrollment.clone()),
                    evidence: Evidence::X509 {
                        leaf: verified.leaf,
                        signing: None,
                    },
                });
            }
        }
        // Groups authenticate the chain; an individual enrollment of another
        // type with this id still decides the outcome (the documented way to
        // block one device of a group is a disabled individual enrollment).
        if self.view.x509_anchors.iter().all(Vec::is_empty) {
            return Err(unauthorized());
        }
        // One search over every group, on the attestation pool, within the
        // configured limits; a chain over the length cap costs nothing.
        let limits = *self.attest.limits();
        if chain.len() > limits.max_chain_certificates {
            return Err(certificate_refusal(AttestationError::ChainTooLong {
                presented: chain.len(),
                max: limits.max_chain_certificates,
            }));
        }
        let job = {
            let chain = Arc::clone(chain);
            let anchors = Arc::clone(&self.view.x509_anchors);
            let registration_id = self.registration_id.as_str().to_owned();
            move || {
                x509::verify_groups(
                    chain.as_slice(),
                    anchors.as_slice(),
                    Some(&registration_id),
                    now,
                    &limits,
                )
            }
        };
        let found = self.attest.run(job).await?.map_err(|err| {
            tracing::debug!(registration = %self.registration_id, %err, "X.509 chain refused");
            certificate_refusal(err)
        })?;
        let group = &self.view.x509_groups[found.group];
        let signing = self.view.x509_anchors[found.group]
            .get(found.device.matched)
            .map(|a| a.info().clone());
        let enrollment = match individual {
            Some(individual) if !individual.provisioning_status_enabled() => {
                MatchedEnrollment::Individual(individual)
            }
            Some(_) => return Err(unauthorized()),
            None => MatchedEnrollment::Group(group.clone()),
        };
        Ok(AuthenticatedDevice {
            enrollment,
            evidence: Evidence::X509 {
                leaf: found.device.leaf,
                signing,
            },
        })
    }

    async fn tpm_challenge(
        &self,
        tpm_request: &TpmRegistrationRequest,
    ) -> Result<Authentication, ApiError> {
        let enrollment = self.individual().await?.ok_or_else(unauthorized)?;
        let enrolled = enrollment
            .attestation
            .tpm
            .as_ref()
            .filter(|_| enrollment.attestation.kind == AttestationType::Tpm)
            .ok_or_else(unauthorized)?;
        if !tpm::same_endorsement_key(&enrolled.endorsement_key, &tpm_request.endorsement_key)
            .unwrap_or(false)
        {
            return Err(unauthorized());
        }
        let storage_root_key = tpm_request
            .storage_root_key
            .as_deref()
            .or(enrolled.storage_root_key.as_deref())
            .ok_or_else(|| {
                ApiError::invalid_storage_root_key("The TPM challenge needs tpm.storageRootKey.")
            })?;
        let issued_at = self.challenges.reserve(
            &self.view.tenant.id_scope,
            self.registration_id,
            self.expiry.now(),
        )?;
        let key = self
            .challenge_keys(&enrolled.endorsement_key)?
            .key(issued_at);
        tracing::debug!(registration = %self.registration_id, issued_at, "TPM challenge issued");
        let challenge =
            tpm::TpmChallenge::with_key(&tpm_request.endorsement_key, storage_root_key, key)
                .map_err(|e| ApiError::invalid_endorsement_key(format!("{e}.")))?;
        Ok(Authentication::TpmChallenge(challenge.authentication_key))
    }

    /// The challenge keys of this device, one per issue second: derived from
    /// the tenant's secret, so any replica verifies the answer without
    /// session state, yet fresh per challenge and expiring (see
    /// `dps_attestation::tpm::ChallengeKeys`).
    fn challenge_keys(&self, endorsement_key: &str) -> Result<tpm::ChallengeKeys, ApiError> {
        let secret = SymmetricKey::from_base64(&self.view.tenant.challenge_secret)
            .map_err(|_| ApiError::internal("tenant challenge secret is not base64"))?;
        Ok(tpm::ChallengeKeys::new(
            secret,
            &self.registration_id.key(),
            endorsement_key,
        ))
    }
}

trait EnabledExt {
    fn provisioning_status_enabled(&self) -> bool;
}

impl EnabledExt for IndividualEnrollment {
    fn provisioning_status_enabled(&self) -> bool {
        self.provisioning_status == dps_model::ProvisioningStatus::Enabled
    }
}

fn enrollment_keys(
    primary: Option<&str>,
    secondary: Option<&str>,
) -> Option<(SymmetricKey, SymmetricKey)> {
    let primary = SymmetricKey::from_base64(primary?).ok()?;
    let secondary = secondary
        .and_then(|k| SymmetricKey::from_base64(k).ok())
        .unwrap_or_else(|| primary.clone());
    Some((primary, secondary))
}

fn certificate_refusal(err: AttestationError) -> ApiError {
    match err {
        AttestationError::CaNotVerified { .. } => {
            refused(format!("CA certificate not verified: {err}."))
        }
        AttestationError::ChainDoesNotReachAnchor { .. } => refused("CA certificate not found."),
        other => refused(format!("Invalid certificate: {other}.")),
    }
}
