//! The operations meter: exact counts per kind and hour.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use dps_model::{IdScope, OperationKind, OperationRecord};

use super::fixtures::tenant;
use crate::{HourlyCount, Store};

fn at(hour: u32, minute: u32, micros: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 10, hour, minute, 0).unwrap() + Duration::microseconds(micros)
}

fn row(
    scope: &IdScope,
    kind: OperationKind,
    at: DateTime<Utc>,
    subject: Option<&str>,
) -> OperationRecord {
    OperationRecord {
        id_scope: scope.clone(),
        kind,
        at,
        subject: subject.map(str::to_owned),
    }
}

/// Counts per kind and per hour are exact; the range is `from..to`; tenants
/// are counted apart.
pub async fn meter_counts_exact_per_kind_and_hour(store: Arc<dyn Store>) {
    let scope = store
        .create_tenant(tenant("metered", "0ne00000M0M"))
        .await
        .unwrap()
        .id_scope;
    let other = store
        .create_tenant(tenant("elsewhere", "0ne00000E0E"))
        .await
        .unwrap()
        .id_scope;
    let kinds = OperationKind::ALL;
    let mut expected: BTreeMap<(DateTime<Utc>, OperationKind), u64> = BTreeMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    // Hours 10, 11 and 12; kind i recorded (i + hour) % 5 + 1 times per hour.
    for hour in 10..13u32 {
        for (i, kind) in kinds.iter().enumerate() {
            let times = (i as u32 + hour) % 5 + 1;
            for n in 0..times {
                let when = at(hour, (n * 7) % 60, i64::from(n));
                *expected.entry((at(hour, 0, 0), *kind)).or_insert(0) += 1;
                let (store, r) = (
                    Arc::clone(&store),
                    row(&scope, *kind, when, Some("subject")),
                );
                tasks.spawn(async move { store.record_operation(r).await });
            }
        }
    }
    // Noise: another tenant, and rows just outside the range.
    for r in [
        row(&other, OperationKind::Registration, at(11, 0, 0), None),
        row(
            &scope,
            OperationKind::Registration,
            at(9, 59, 59_999_999),
            None,
        ),
        row(&scope, OperationKind::Registration, at(13, 0, 0), None),
    ] {
        let store = Arc::clone(&store);
        tasks.spawn(async move { store.record_operation(r).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task ran").unwrap();
    }

    let report = store
        .operation_report(&scope, at(10, 0, 0), at(13, 0, 0))
        .await
        .unwrap();
    let hourly: Vec<HourlyCount> = expected
        .iter()
        .map(|(&(hour, kind), &count)| HourlyCount { hour, kind, count })
        .collect();
    assert_eq!(report.hourly, hourly);
    let mut totals: BTreeMap<OperationKind, u64> = BTreeMap::new();
    for ((_, kind), count) in &expected {
        *totals.entry(*kind).or_insert(0) += count;
    }
    assert_eq!(report.totals, totals);
    assert_eq!(report.total, expected.values().sum::<u64>());
    assert_eq!(report.id_scope, scope);

    // Boundaries: `from` inclusive, `to` exclusive, to the microsecond.
    let edge = store
        .operation_report(&scope, at(9, 59, 59_999_999), at(13, 0, 1))
        .await
        .unwrap();
    assert_eq!(edge.total, report.total + 2);
    let edge = store
        .operation_report(&scope, at(9, 59, 59_999_999), at(13, 0, 0))
        .await
        .unwrap();
    assert_eq!(edge.total, report.total + 1);
    let none = store
        .operation_report(&scope, at(14, 0, 0), at(15, 0, 0))
        .await
        .unwrap();
    assert!(none.hourly.is_empty() && none.totals.is_empty() && none.total == 0);
    let elsewhere = store
        .operation_report(&other, at(0, 0, 0), at(23, 0, 0))
        .await
        .unwrap();
    assert_eq!(elsewhere.total, 1);
    assert_eq!(elsewhere.totals.get(&OperationKind::Registration), Some(&1));
}

/// Billing rows come back oldest first, cut at the limit, with their fields.
pub async fn meter_rows_listed_in_time_order(store: Arc<dyn Store>) {
    let scope = store
        .create_tenant(tenant("metered", "0ne00000M0M"))
        .await
        .unwrap()
        .id_scope;
    let rows: Vec<OperationRecord> = (0..10)
        .rev()
        .map(|i| {
            row(
                &scope,
                OperationKind::EnrollmentRead,
                at(8, i, 123),
                Some(&format!("dev-{i}")),
            )
        })
        .collect();
    for r in rows {
        store.record_operation(r).await.unwrap();
    }
    store
        .record_operation(row(&scope, OperationKind::GroupQuery, at(8, 30, 0), None))
        .await
        .unwrap();
    let listed = store
        .operations(&scope, at(8, 0, 0), at(9, 0, 0), 5)
        .await
        .unwrap();
    let expected: Vec<OperationRecord> = (0..5)
        .map(|i| {
            row(
                &scope,
                OperationKind::EnrollmentRead,
                at(8, i, 123),
                Some(&format!("dev-{i}")),
            )
        })
        .collect();
    assert_eq!(listed, expected);
    let all = store
        .operations(&scope, at(8, 0, 0), at(9, 0, 0), 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 11);
    assert_eq!(
        all.last().map(|r| (r.kind, r.subject.clone())),
        Some((OperationKind::GroupQuery, None))
    );
}
