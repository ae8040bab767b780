//! Issued certificates: the checks every backend makes before storing one
//! with its registration record.

use chrono::{DateTime, Utc};
use dps_model::{
    IdScope, IssuedCertificate, OperationRecord, RegistrationRecord, RegistrationStatus,
};

use crate::error::{Entity, StoreError, StoreResult};

/// A certificate stored with `record` must name the record's registration,
/// and a billing row must belong to the tenant.
pub(crate) fn check_commit(
    id_scope: &IdScope,
    record: &RegistrationRecord,
    billing: Option<&OperationRecord>,
    certificate: Option<&IssuedCertificate>,
) -> StoreResult<()> {
    if let Some(row) = billing {
        if row.id_scope != *id_scope {
            return Err(StoreError::ScopeMismatch {
                id_scope: id_scope.clone(),
                billing_scope: row.id_scope.clone(),
            });
        }
    }
    if let Some(cert) = certificate {
        if cert.registration_id.key() != record.registration_id.key() {
            return Err(StoreError::MissingReference {
                entity: Entity::IssuedCertificate,
                id: cert.serial_number.clone(),
                missing_entity: Entity::Registration,
                missing_id: cert.registration_id.as_str().to_owned(),
            });
        }
    }
    Ok(())
}

/// When a registration commit supersedes the registration's `active`
/// certificates, if at all: at the new certificate's issue time when it
/// carries one; at the record's last update for an assignment without one
/// (the hub identity went back to the onboarding credential, so the last
/// issued certificate no longer opens a hub connection); never for a failed
/// or disabled registration, which leaves the hub identity as it was.
pub(crate) fn superseded_at(
    record: &RegistrationRecord,
    certificate: Option<&IssuedCertificate>,
) -> Option<DateTime<Utc>> {
    match certificate {
        Some(cert) => Some(cert.issued_date_time_utc),
        None => (record.status == RegistrationStatus::Assigned).then_some(record.last_updated),
    }
}

/// The error for a serial number a CA already issued.
pub(crate) fn duplicate(cert: &IssuedCertificate) -> StoreError {
    StoreError::AlreadyExists {
        entity: Entity::IssuedCertificate,
        id: format!(
            "{} (CA {})",
            cert.serial_number, cert.certificate_authority_name
        ),
    }
}

/// The error for a serial number the registration was never issued.
pub(crate) fn not_found(serial_number: &str) -> StoreError {
    StoreError::NotFound {
        entity: Entity::IssuedCertificate,
        id: serial_number.to_owned(),
    }
}

/// Newest first; equal times by serial, so every backend lists alike.
pub(crate) fn sort_newest_first(certs: &mut [IssuedCertificate]) {
    certs.sort_by(|a, b| {
        b.issued_date_time_utc
            .cmp(&a.issued_date_time_utc)
            .then_with(|| a.serial_number.cmp(&b.serial_number))
    });
}

/// Oldest revocation first, then by serial.
pub(crate) fn sort_by_revocation(certs: &mut [IssuedCertificate]) {
    certs.sort_by(|a, b| {
        a.revoked_date_time_utc
            .cmp(&b.revoked_date_time_utc)
            .then_with(|| a.serial_number.cmp(&b.serial_number))
    });
}
