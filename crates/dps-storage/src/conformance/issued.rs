//! Issued certificates: stored with their registration record in one
//! commit, superseded by the next, revoked, listed per CA; and credential
//! policies that enrollments still name cannot be deleted.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use dps_model::{
    CredentialPolicy, IdScope, IssuedCertificate, IssuedCertificateStatus, OperationKind,
    OperationRecord, Precondition,
};

use super::assert_err;
use super::authorities::certificate_authority;
use super::fixtures::{enrollment, group, reg, registration, scope_of};
use super::registrations::rows_by_subject;
use crate::{Entity, Store, StoreError};

/// A certificate of `registration_id` signed by CA `authority`, serial `serial`.
pub fn issued_certificate(
    registration_id: &str,
    authority: &str,
    serial: &str,
    at: DateTime<Utc>,
) -> IssuedCertificate {
    let at = crate::time::truncate(at);
    IssuedCertificate {
        serial_number: serial.to_owned(),
        registration_id: reg(registration_id),
        device_id: registration_id.to_owned(),
        certificate_authority_name: authority.to_owned(),
        credential_policy_name: "devices".to_owned(),
        sha256_thumbprint: format!("{serial:0>64}"),
        sha1_thumbprint: format!("{serial:0>40}"),
        not_before: at,
        not_after: at + Duration::days(30),
        issued_date_time_utc: at,
        status: IssuedCertificateStatus::Active,
        superseded_date_time_utc: None,
        revoked_date_time_utc: None,
        certificate: "MIIBCgYJKoZIhvcNAQEL".to_owned(),
    }
}

pub(super) fn bill(scope: &IdScope, id: &str) -> Option<OperationRecord> {
    Some(OperationRecord::now(
        scope,
        OperationKind::Registration,
        Some(id.to_owned()),
    ))
}

pub(super) async fn commit(
    store: &Arc<dyn Store>,
    scope: &IdScope,
    id: &str,
    operation: &str,
    cert: IssuedCertificate,
) -> Result<(), StoreError> {
    let (record, op) = registration(id, None, operation, cert.issued_date_time_utc);
    store
        .commit_registration_with_certificate(scope, record, op, bill(scope, id), cert)
        .await
}

/// Commit with a certificate, roll it over (the old one superseded at the
/// new one's issue time), revoke (idempotent; unknown serials and other
/// registrations' serials are `NotFound`), list revoked per CA; everything
/// goes with the tenant.
pub async fn issued_certificates_roll_over_and_revoke(store: Arc<dyn Store>) {
    let scope = scope_of(&store).await;
    let t0 = Utc::now() - Duration::minutes(10);
    let t1 = t0 + Duration::minutes(1);
    commit(
        &store,
        &scope,
        "Dev-1",
        "op-1",
        issued_certificate("Dev-1", "ca", "0A", t0),
    )
    .await
    .unwrap();
    let listed = store
        .issued_certificates(&scope, &reg("dev-1"))
        .await
        .unwrap();
    assert_eq!(listed, vec![issued_certificate("Dev-1", "ca", "0A", t0)]);
    assert!(store
        .registration(&scope, &reg("dev-1"))
        .await
        .unwrap()
        .is_some());

    commit(
        &store,
        &scope,
        "dev-1",
        "op-2",
        issued_certificate("dev-1", "ca", "0B", t1),
    )
    .await
    .unwrap();
    commit(
        &store,
        &scope,
        "dev-2",
        "op-3",
        issued_certificate("dev-2", "ca", "0C", t1),
    )
    .await
    .unwrap();
    let listed = store
        .issued_certificates(&scope, &reg("DEV-1"))
        .await
        .unwrap();
    let serials: Vec<_> = listed.iter().map(|c| c.serial_number.as_str()).collect();
    assert_eq!(serials, ["0B", "0A"], "newest first");
    assert_eq!(listed[0].status, IssuedCertificateStatus::Active);
    assert_eq!(listed[1].status, IssuedCertificateStatus::Superseded);
    assert_eq!(
        listed[1].superseded_date_time_utc,
        Some(crate::time::truncate(t1))
    );
    let other = store
        .issued_certificates(&scope, &reg("dev-2"))
        .await
        .unwrap();
    assert_eq!(
        other[0].status,
        IssuedCertificateStatus::Active,
        "untouched"
    );
    let billed = rows_by_subject(&store, &scope).await;
    assert_eq!(
        billed["dev-1"].len() + billed["Dev-1"].len(),
        2,
        "one row per commit"
    );

    let at = crate::time::truncate(Utc::now());
    let revoked = store
        .revoke_issued_certificate(&scope, &reg("dev-1"), "0A", at)
        .await
        .unwrap();
    assert_eq!(revoked.status, IssuedCertificateStatus::Revoked);
    assert_eq!(revoked.revoked_date_time_utc, Some(at));
    let again = store
        .revoke_issued_certificate(&scope, &reg("dev-1"), "0A", at + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(again, revoked, "a second revocation changes nothing");
    assert_err!(
        store
            .revoke_issued_certificate(&scope, &reg("dev-1"), "0C", at)
            .await,
        StoreError::NotFound {
            entity: Entity::IssuedCertificate,
            ..
        }
    );
    assert_err!(
        store
            .revoke_issued_certificate(&scope, &reg("dev-1"), "FF", at)
            .await,
        StoreError::NotFound { .. }
    );
    store
        .revoke_issued_certificate(&scope, &reg("dev-2"), "0C", at + Duration::seconds(1))
        .await
        .unwrap();
    let crl: Vec<_> = store
        .revoked_certificates(&scope, "ca")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.serial_number)
        .collect();
    assert_eq!(crl, ["0A", "0C"], "oldest revocation first");
    assert!(store
        .revoked_certificates(&scope, "CA")
        .await
        .unwrap()
        .is_empty());

    // A rollover after a revocation keeps the revoked one revoked.
    let t2 = t1 + Duration::minutes(1);
    commit(
        &store,
        &scope,
        "dev-2",
        "op-4",
        issued_certificate("dev-2", "ca", "0D", t2),
    )
    .await
    .unwrap();
    let listed = store
        .issued_certificates(&scope, &reg("dev-2"))
        .await
        .unwrap();
    assert_eq!(listed[1].status, IssuedCertificateStatus::Revoked);

    let nowhere = IdScope::new("0ne0000FFFF").unwrap();
    assert_err!(
        commit(
            &store,
            &nowhere,
            "dev-1",
            "op-9",
            issued_certificate("dev-1", "ca", "0E", t2)
        )
        .await,
        StoreError::UnknownTenant { .. }
    );
    assert_err!(
        store
            .revoke_issued_certificate(&nowhere, &reg("dev-1"), "0A", at)
            .await,
        StoreError::UnknownTenant { .. }
    );
    assert!(store
        .issued_certificates(&nowhere, &reg("dev-1"))
        .await
        .unwrap()
        .is_empty());

    store
        .delete_tenant(&scope, Precondition::None)
        .await
        .unwrap();
    scope_of(&store).await;
    assert!(store
        .issued_certificates(&scope, &reg("dev-1"))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .revoked_certificates(&scope, "ca")
        .await
        .unwrap()
        .is_empty());
}

/// A serial number the CA already issued, a duplicate operation id or a
/// certificate of another registration store nothing: no record, no
/// operation, no billing row, no certificate, nothing superseded.
pub async fn issued_certificate_commit_is_all_or_nothing(store: Arc<dyn Store>) {
    let scope = scope_of(&store).await;
    let t0 = Utc::now() - Duration::minutes(10);
    let t1 = t0 + Duration::minutes(1);
    commit(
        &store,
        &scope,
        "dev-1",
        "op-1",
        issued_certificate("dev-1", "ca", "01", t0),
    )
    .await
    .unwrap();
    let before = store.registration(&scope, &reg("dev-1")).await.unwrap();

    // Serial 01 again from the same CA, for another device.
    assert_err!(
        commit(
            &store,
            &scope,
            "dev-2",
            "op-2",
            issued_certificate("dev-2", "ca", "01", t1)
        )
        .await,
        StoreError::AlreadyExists {
            entity: Entity::IssuedCertificate,
            ..
        }
    );
    assert!(store
        .registration(&scope, &reg("dev-2"))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .registration_operation(&scope, "op-2")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .issued_certificates(&scope, &reg("dev-2"))
        .await
        .unwrap()
        .is_empty());

    // Serial 01 again for the same device: the first is not superseded.
    assert_err!(
        commit(
            &store,
            &scope,
            "dev-1",
            "op-3",
            issued_certificate("dev-1", "ca", "01", t1)
        )
        .await,
        StoreError::AlreadyExists { .. }
    );
    assert_eq!(
        store.registration(&scope, &reg("dev-1")).await.unwrap(),
        before
    );
    let listed = store
        .issued_certificates(&scope, &reg("dev-1"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, IssuedCertificateStatus::Active);

    // A duplicate operation id stores no certificate.
    assert_err!(
        commit(
            &store,
            &scope,
            "dev-1",
            "op-1",
            issued_certificate("dev-1", "ca", "02", t1)
        )
        .await,
        StoreError::AlreadyExists {
            entity: Entity::RegistrationOperation,
            ..
        }
    );
    assert_eq!(
        store
            .issued_certificates(&scope, &reg("dev-1"))
            .await
            .unwrap()
            .len(),
        1
    );

    // The certificate must be the record's.
    let (record, op) = registration("dev-3", None, "op-4", t1);
    assert_err!(
        store
            .commit_registration_with_certificate(
                &scope,
                record,
                op,
                None,
                issued_certificate("dev-4", "ca", "03", t1),
            )
            .await,
        StoreError::MissingReference { .. }
    );
    assert!(store
        .registration(&scope, &reg("dev-3"))
        .await
        .unwrap()
        .is_none());

    // Same serial from another CA is fine.
    commit(
        &store,
        &scope,
        "dev-2",
        "op-5",
        issued_certificate("dev-2", "other-ca", "01", t1),
    )
    .await
    .unwrap();
    let billed = rows_by_subject(&store, &scope).await;
    assert_eq!(billed.get("dev-1").map(Vec::len), Some(1), "{billed:?}");
    assert_eq!(billed.get("dev-2").map(Vec::len), Some(1), "{billed:?}");
}

/// A credential policy named by an enrollment or a group cannot be
/// deleted (`InUse`, naming the user); once nothing names it, it can.
pub async fn credential_policy_in_use_by_enrollments(store: Arc<dyn Store>) {
    let scope = scope_of(&store).await;
    store
        .create_certificate_authority(&scope, certificate_authority("ca"))
        .await
        .unwrap();
    for name in ["devices", "spare"] {
        store
            .put_credential_policy(
                &scope,
                CredentialPolicy::new(name, "ca"),
                Precondition::None,
            )
            .await
            .unwrap();
    }
    let mut named = enrollment("Dev-1");
    named.credential_policy_name = Some("devices".to_owned());
    store
        .put_enrollment(&scope, named.clone(), Precondition::None)
        .await
        .unwrap();
    assert_err!(
        store
            .delete_credential_policy(&scope, "devices", Precondition::None)
            .await,
        StoreError::InUse {
            entity: Entity::CredentialPolicy,
            user_entity: Entity::Enrollment,
            ref user_id,
            ..
        } if user_id == "Dev-1"
    );
    named.credential_policy_name = None;
    store
        .put_enrollment(&scope, named, Precondition::None)
        .await
        .unwrap();
    let mut grouped = group("Grp-1");
    grouped.credential_policy_name = Some("devices".to_owned());
    store
        .put_enrollment_group(&scope, grouped, Precondition::None)
        .await
        .unwrap();
    assert_err!(
        store
            .delete_credential_policy(&scope, "devices", Precondition::None)
            .await,
        StoreError::InUse {
            user_entity: Entity::EnrollmentGroup,
            ref user_id,
            ..
        } if user_id == "Grp-1"
    );
    // Case-sensitive: a policy named like another in a different case is free.
    store
        .delete_credential_policy(&scope, "spare", Precondition::None)
        .await
        .unwrap();
    store
        .delete_enrollment_group(
            &scope,
            &dps_model::EnrollmentGroupId::new("grp-1").unwrap(),
            Precondition::None,
        )
        .await
        .unwrap();
    store
        .delete_credential_policy(&scope, "devices", Precondition::None)
        .await
        .unwrap();
}
