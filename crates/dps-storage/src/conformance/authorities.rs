//! Certificate authorities (with sealed keys) and credential policies.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use dps_model::{CertificateAuthority, CredentialPolicy, ETag, IdScope, KeyType, Precondition};

use super::assert_err;
use super::fixtures::tenant;
use crate::{Entity, Store, StoreError, StoredCertificateAuthority, WriteOutcome};

const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBCA==\n-----END CERTIFICATE-----\n";

/// A CA named `name` with a recognisable sealed blob.
pub fn certificate_authority(name: &str) -> StoredCertificateAuthority {
    StoredCertificateAuthority {
        authority: CertificateAuthority {
            name: name.to_owned(),
            certificate_chain: PEM.to_owned(),
            etag: ETag::new("client-supplied"),
            created_date_time_utc: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        },
        sealed_private_key: vec![0, 1, 2, 0xfe, 0xff, b'"', b'\\'],
        key_id: "kek-1".to_owned(),
    }
}

/// Create, read (blob and key id intact), list by name, refuse a duplicate
/// name, delete under etags; names are case-sensitive; writes under an
/// unknown tenant are typed.
pub async fn certificate_authority_lifecycle(store: Arc<dyn Store>) {
    let scope = IdScope::new("0ne0000CA01").unwrap();
    let other = IdScope::new("0ne0000CA02").unwrap();
    assert_err!(
        store
            .create_certificate_authority(&scope, certificate_authority("ca"))
            .await,
        StoreError::UnknownTenant { .. }
    );
    store
        .create_tenant(tenant("ca-one", scope.as_str()))
        .await
        .unwrap();
    store
        .create_tenant(tenant("ca-two", other.as_str()))
        .await
        .unwrap();

    let created = store
        .create_certificate_authority(&scope, certificate_authority("zeta"))
        .await
        .unwrap();
    assert_ne!(
        created.authority.etag,
        ETag::new("client-supplied"),
        "the store sets the etag"
    );
    store
        .create_certificate_authority(&scope, certificate_authority("Alpha"))
        .await
        .unwrap();
    assert_err!(
        store
            .create_certificate_authority(&scope, certificate_authority("zeta"))
            .await,
        StoreError::AlreadyExists { entity: Entity::CertificateAuthority, ref id } if id == "zeta"
    );

    let read = store
        .certificate_authority(&scope, "zeta")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, created);
    assert_eq!(
        read.sealed_private_key,
        certificate_authority("x").sealed_private_key
    );
    assert_eq!(read.key_id, "kek-1");
    assert_eq!(
        read.authority.created_date_time_utc,
        certificate_authority("x").authority.created_date_time_utc
    );
    assert!(
        store
            .certificate_authority(&scope, "ZETA")
            .await
            .unwrap()
            .is_none(),
        "names are case-sensitive"
    );
    assert!(
        store
            .certificate_authority(&other, "zeta")
            .await
            .unwrap()
            .is_none(),
        "per tenant"
    );
    let names: Vec<String> = store
        .list_certificate_authorities(&scope)
        .await
        .unwrap()
        .iter()
        .map(|ca| ca.name().to_owned())
        .collect();
    assert_eq!(names, ["Alpha", "zeta"]);
    assert!(store
        .list_certificate_authorities(&other)
        .await
        .unwrap()
        .is_empty());

    assert_err!(
        store
            .delete_certificate_authority(&scope, "zeta", Precondition::Matches(ETag::new("stale")))
            .await,
        StoreError::PreconditionFailed {
            entity: Entity::CertificateAuthority,
            ..
        }
    );
    store
        .delete_certificate_authority(
            &scope,
            "zeta",
            Precondition::Matches(created.authority.etag.clone()),
        )
        .await
        .unwrap();
    assert!(store
        .certificate_authority(&scope, "zeta")
        .await
        .unwrap()
        .is_none());
    assert_err!(
        store
            .delete_certificate_authority(&scope, "zeta", Precondition::None)
            .await,
        StoreError::NotFound {
            entity: Entity::CertificateAuthority,
            ..
        }
    );
}

/// Policies: create and replace under etags (creation time kept), a policy
/// naming a missing CA is refused, a CA a policy names cannot be deleted
/// until the policy goes, and deleting the tenant takes both.
pub async fn credential_policies_reference_their_authority(store: Arc<dyn Store>) {
    let scope = IdScope::new("0ne0000CB01").unwrap();
    store
        .create_tenant(tenant("cp-one", scope.as_str()))
        .await
        .unwrap();

    assert_err!(
        store
            .put_credential_policy(&scope, CredentialPolicy::new("p1", "ca1"), Precondition::None)
            .await,
        StoreError::MissingReference {
            entity: Entity::CredentialPolicy,
            missing_entity: Entity::CertificateAuthority,
            ref missing_id,
            ..
        } if missing_id == "ca1"
    );
    assert!(
        store
            .list_credential_policies(&scope)
            .await
            .unwrap()
            .is_empty(),
        "nothing stored"
    );

    store
        .create_certificate_authority(&scope, certificate_authority("ca1"))
        .await
        .unwrap();
    let first = store
        .put_credential_policy(
            &scope,
            CredentialPolicy::new("p1", "ca1"),
            Precondition::Absent,
        )
        .await
        .unwrap();
    assert_eq!(first.outcome, WriteOutcome::Created);
    let etag = first.record.etag.clone().expect("etag set");
    let created = first
        .record
        .created_date_time_utc
        .expect("creation time set");
    assert!(first.record.last_updated_date_time_utc.is_some());
    assert_err!(
        store
            .put_credential_policy(
                &scope,
                CredentialPolicy::new("p1", "ca1"),
                Precondition::Absent
            )
            .await,
        StoreError::AlreadyExists {
            entity: Entity::CredentialPolicy,
            ..
        }
    );

    let mut changed = CredentialPolicy::new("p1", "ca1");
    changed.validity_period_in_days = 365;
    changed.accepted_key_types = vec![KeyType::Rsa4096];
    assert_err!(
        store
            .put_credential_policy(
                &scope,
                changed.clone(),
                Precondition::Matches(ETag::new("stale"))
            )
            .await,
        StoreError::PreconditionFailed {
            entity: Entity::CredentialPolicy,
            ..
        }
    );
    let second = store
        .put_credential_policy(&scope, changed, Precondition::Matches(etag.clone()))
        .await
        .unwrap();
    assert_eq!(second.outcome, WriteOutcome::Replaced);
    assert_ne!(second.record.etag, Some(etag));
    assert_eq!(
        second.record.created_date_time_utc,
        Some(created),
        "creation time kept"
    );
    let read = store
        .credential_policy(&scope, "p1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, second.record);
    assert_eq!(read.accepted_key_types, [KeyType::Rsa4096]);
    assert_eq!(read.validity_period_in_days, 365);
    assert!(store
        .credential_policy(&scope, "P1")
        .await
        .unwrap()
        .is_none());

    store
        .put_credential_policy(
            &scope,
            CredentialPolicy::new("a0", "ca1"),
            Precondition::None,
        )
        .await
        .unwrap();
    let names: Vec<String> = store
        .list_credential_policies(&scope)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["a0", "p1"]);

    assert_err!(
        store
            .delete_certificate_authority(&scope, "ca1", Precondition::None)
            .await,
        StoreError::InUse {
            entity: Entity::CertificateAuthority,
            user_entity: Entity::CredentialPolicy,
            ..
        }
    );
    assert!(
        store
            .certificate_authority(&scope, "ca1")
            .await
            .unwrap()
            .is_some(),
        "kept"
    );
    store
        .delete_credential_policy(&scope, "a0", Precondition::None)
        .await
        .unwrap();
    store
        .delete_credential_policy(&scope, "p1", Precondition::None)
        .await
        .unwrap();
    assert_err!(
        store
            .delete_credential_policy(&scope, "p1", Precondition::None)
            .await,
        StoreError::NotFound {
            entity: Entity::CredentialPolicy,
            ..
        }
    );
    store
        .delete_certificate_authority(&scope, "ca1", Precondition::None)
        .await
        .unwrap();

    // The tenant takes its CAs and policies with it.
    store
        .create_certificate_authority(&scope, certificate_authority("ca2"))
        .await
        .unwrap();
    store
        .put_credential_policy(
            &scope,
            CredentialPolicy::new("p2", "ca2"),
            Precondition::None,
        )
        .await
        .unwrap();
    store
        .delete_tenant(&scope, Precondition::None)
        .await
        .unwrap();
    store
        .create_tenant(tenant("cp-one", scope.as_str()))
        .await
        .unwrap();
    assert!(store
        .list_certificate_authorities(&scope)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_credential_policies(&scope)
        .await
        .unwrap()
        .is_empty());
}

/// A policy write racing the deletion of its CA: one of them wins, never
/// both (no stored policy ever names a deleted CA).
pub async fn policy_and_authority_delete_race_one_winner(store: Arc<dyn Store>) {
    let scope = IdScope::new("0ne0000CC01").unwrap();
    store
        .create_tenant(tenant("race-one", scope.as_str()))
        .await
        .unwrap();
    for round in 0..20 {
        let ca = format!("ca-{round}");
        let policy = format!("p-{round}");
        store
            .create_certificate_authority(&scope, certificate_authority(&ca))
            .await
            .unwrap();
        let put = {
            let (store, scope) = (store.clone(), scope.clone());
            let policy = CredentialPolicy::new(policy.clone(), ca.clone());
            tokio::spawn(async move {
                store
                    .put_credential_policy(&scope, policy, Precondition::None)
                    .await
            })
        };
        let delete = {
            let (store, scope, ca) = (store.clone(), scope.clone(), ca.clone());
            tokio::spawn(async move {
                store
                    .delete_certificate_authority(&scope, &ca, Precondition::None)
                    .await
            })
        };
        let (put, delete) = (put.await.unwrap(), delete.await.unwrap());
        let policy_stored = store.credential_policy(&scope, &policy).await.unwrap();
        let ca_stored = store.certificate_authority(&scope, &ca).await.unwrap();
        match (&put, &delete) {
            (Ok(_), Err(StoreError::InUse { .. })) => {
                assert!(
                    policy_stored.is_some() && ca_stored.is_some(),
                    "round {round}"
                );
            }
            (Err(StoreError::MissingReference { .. }), Ok(())) => {
                assert!(
                    policy_stored.is_none() && ca_stored.is_none(),
                    "round {round}"
                );
            }
            other => panic!("round {round}: both or neither won: {other:?}"),
        }
    }
}
