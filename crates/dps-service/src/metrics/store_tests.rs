//! Tests of the timed and metered store decorator.

use dps_storage::MemoryStore;
use prometheus_client::registry::Registry;

use super::*;

fn render(metrics: &StoreMetrics) -> String {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
    text
}

fn enrollment(id: &str) -> IndividualEnrollment {
    let body = serde_json::json!({"registrationId": id, "attestation": {
        "type": "symmetricKey", "symmetricKey": {"primaryKey": "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5"}}});
    IndividualEnrollment::from_json(body.to_string().as_bytes()).unwrap()
}

#[tokio::test]
async fn calls_are_timed_and_billing_is_counted_by_kind_once_stored() {
    let metrics = Arc::new(StoreMetrics::default());
    let store = InstrumentedStore::wrap(Arc::new(MemoryStore::new()), metrics.clone());
    let tenant = store
        .create_tenant(Tenant::new("metered", "metered.localhost").unwrap())
        .await
        .unwrap();
    let scope = &tenant.id_scope;
    store
        .put_enrollment(scope, enrollment("dev-1"), Precondition::None)
        .await
        .unwrap();
    store
        .put_enrollment(scope, enrollment("dev-1"), Precondition::None)
        .await
        .unwrap();
    let unknown = IdScope::new("0ne00000000").unwrap();
    assert!(store
        .put_enrollment(&unknown, enrollment("dev-2"), Precondition::None)
        .await
        .is_err());
    store
        .delete_enrollment(
            scope,
            &RegistrationId::new("dev-1").unwrap(),
            Precondition::None,
        )
        .await
        .unwrap();
    let text = render(&metrics);
    for (kind, count) in [
        ("enrollmentCreate", 1),
        ("enrollmentUpdate", 1),
        ("enrollmentDelete", 1),
    ] {
        let line = format!("dps_billing_operations_total{{kind=\"{kind}\"}} {count}\n");
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    assert!(text.contains(
        "dps_store_operation_duration_seconds_count{operation=\"put_enrollment\",result=\"ok\"} 2\n"
    ));
    assert!(text.contains(
        "dps_store_operation_duration_seconds_count{operation=\"put_enrollment\",result=\"error\"} 1\n"
    ));
    assert_eq!(store.writer_stats(), None, "the memory store has no writer");
}
