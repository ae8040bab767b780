//! An assignment without a certificate (a re-registration without a CSR,
//! which puts the onboarding credential back on the hub identity) records
//! the device's active certificate as superseded, in the same commit as the
//! registration record.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use dps_model::{IdScope, IssuedCertificateStatus, RegistrationStatus};

use super::assert_err;
use super::fixtures::{reg, registration, scope_of};
use super::issued::{bill, commit, issued_certificate};
use super::registrations::join_refusing;
use crate::{Entity, Store, StoreError};

/// `(serial, status, superseded at)` of a registration's certificates,
/// newest first.
async fn statuses(
    store: &Arc<dyn Store>,
    scope: &IdScope,
    id: &str,
) -> Vec<(String, IssuedCertificateStatus, Option<DateTime<Utc>>)> {
    store
        .issued_certificates(scope, &reg(id))
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.serial_number, c.status, c.superseded_date_time_utc))
        .collect()
}

/// An assigned record without a certificate supersedes the registration's
/// active certificate at the record's last update (billed or not, alone or
/// in a batch of concurrent commits); a failed or disabled record, or a
/// refused commit, supersedes nothing; a revoked certificate stays revoked;
/// a superseded one keeps its first supersession time.
pub async fn assignment_without_certificate_supersedes_it(store: Arc<dyn Store>) {
    use IssuedCertificateStatus::{Active, Revoked, Superseded};
    let scope = scope_of(&store).await;
    let t0 = crate::time::truncate(Utc::now() - Duration::minutes(30));
    let at = |minutes: i64| t0 + Duration::minutes(minutes);
    let serial = |s: &str| s.to_owned();
    for (id, op, cert, when) in [
        ("dev-1", "op-1", "0A", at(0)),
        ("dev-1", "op-2", "0B", at(1)),
        ("dev-2", "op-3", "0C", at(1)),
    ] {
        commit(
            &store,
            &scope,
            id,
            op,
            issued_certificate(id, "ca", cert, when),
        )
        .await
        .unwrap();
    }

    // Failed and disabled registrations leave the hub identity as it was.
    for (op, status) in [
        ("op-4", RegistrationStatus::Failed),
        ("op-5", RegistrationStatus::Disabled),
    ] {
        let (mut record, operation) = registration("dev-1", None, op, at(2));
        record.status = status;
        store
            .commit_registration(&scope, record, operation, None)
            .await
            .unwrap();
    }
    let before = vec![
        (serial("0B"), Active, None),
        (serial("0A"), Superseded, Some(at(1))),
    ];
    assert_eq!(statuses(&store, &scope, "dev-1").await, before);

    // A refused assignment (its operation id is taken) supersedes nothing.
    let (record, operation) = registration("dev-1", None, "op-1", at(3));
    assert_err!(
        store
            .commit_registration(&scope, record, operation, bill(&scope, "dev-1"))
            .await,
        StoreError::AlreadyExists {
            entity: Entity::RegistrationOperation,
            ..
        }
    );
    assert_eq!(statuses(&store, &scope, "dev-1").await, before);

    // The assignment without a certificate, billed.
    let (record, operation) = registration("Dev-1", None, "op-6", at(3));
    store
        .commit_registration(&scope, record, operation, bill(&scope, "Dev-1"))
        .await
        .unwrap();
    assert_eq!(
        statuses(&store, &scope, "dev-1").await,
        [
            (serial("0B"), Superseded, Some(at(3))),
            (serial("0A"), Superseded, Some(at(1))),
        ],
        "the last one superseded at the record's time, the older one untouched"
    );
    assert_eq!(
        statuses(&store, &scope, "dev-2").await,
        [(serial("0C"), Active, None)],
        "another device's certificate is untouched"
    );

    // Unbilled, over a revoked certificate: it stays revoked.
    store
        .revoke_issued_certificate(&scope, &reg("dev-2"), "0C", at(4))
        .await
        .unwrap();
    let (record, operation) = registration("dev-2", None, "op-7", at(5));
    store
        .commit_registration(&scope, record, operation, None)
        .await
        .unwrap();
    let listed = store.issued_certificates(&scope, &reg("dev-2")).await;
    let revoked = &listed.unwrap()[0];
    assert_eq!(revoked.status, Revoked);
    assert_eq!(revoked.superseded_date_time_utc, None);
    assert_eq!(revoked.revoked_date_time_utc, Some(at(4)));

    // A device that never had a certificate registers as before.
    let (record, operation) = registration("dev-3", None, "op-8", at(5));
    store
        .commit_registration(&scope, record, operation, bill(&scope, "dev-3"))
        .await
        .unwrap();
    assert!(statuses(&store, &scope, "dev-3").await.is_empty());

    // A later certificate is active again beside the superseded ones.
    commit(
        &store,
        &scope,
        "dev-1",
        "op-9",
        issued_certificate("dev-1", "ca", "0D", at(6)),
    )
    .await
    .unwrap();
    let serials: Vec<_> = statuses(&store, &scope, "dev-1")
        .await
        .into_iter()
        .map(|(serial, status, _)| (serial, status))
        .collect();
    assert_eq!(
        serials,
        [
            (serial("0D"), Active),
            (serial("0B"), Superseded),
            (serial("0A"), Superseded)
        ]
    );

    // Batches a backend groups (SQLite's multi-row path), then batches it
    // must take apart because some commits in them are refused.
    concurrent_assignments(&store, &scope, "swarm", at(10), |_| false).await;
    concurrent_assignments(&store, &scope, "mixed", at(20), |i| i % 3 == 1).await;
}

/// Many devices with a certificate each, then concurrent commits without
/// one: the `refused` ones with a taken operation id, every fifth one
/// failed; only the stored assignments supersede, each at its own record's
/// time.
async fn concurrent_assignments(
    store: &Arc<dyn Store>,
    scope: &IdScope,
    prefix: &'static str,
    start: DateTime<Utc>,
    refused: fn(usize) -> bool,
) {
    const DEVICES: usize = 60;
    let id = move |i: usize| format!("{prefix}-{i:02}");
    for i in 0..DEVICES {
        let cert = issued_certificate(&id(i), "ca", &format!("{prefix}{i:03}"), start);
        commit(store, scope, &id(i), &format!("{prefix}-issue-{i}"), cert)
            .await
            .unwrap();
    }
    let failed = |i: usize| i.is_multiple_of(5);
    let when = move |i: usize| start + Duration::seconds(1 + i as i64);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..DEVICES {
        let (store, scope) = (Arc::clone(store), scope.clone());
        tasks.spawn(async move {
            let op = if refused(i) {
                format!("{prefix}-issue-{i}")
            } else {
                format!("{prefix}-again-{i}")
            };
            let (mut record, operation) = registration(&id(i), None, &op, when(i));
            let billing = if failed(i) {
                record.status = RegistrationStatus::Failed;
                None
            } else {
                bill(&scope, &id(i))
            };
            let result = store
                .commit_registration(&scope, record, operation, billing)
                .await;
            (i, result)
        });
    }
    join_refusing(tasks, refused).await;
    for i in 0..DEVICES {
        let listed = statuses(store, scope, &id(i)).await;
        let expected = if refused(i) || failed(i) {
            (IssuedCertificateStatus::Active, None)
        } else {
            (IssuedCertificateStatus::Superseded, Some(when(i)))
        };
        assert_eq!(listed.len(), 1, "{}", id(i));
        assert_eq!((listed[0].1, listed[0].2), expected, "{}", id(i));
    }
}
