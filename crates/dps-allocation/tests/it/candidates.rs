//! Which policy applies and which hubs it may choose (spec §6.2), and the
//! static policy's hub.

use dps_allocation::{candidate_hubs, AllocationError, HubTable};
use dps_model::{AllocationPolicy, ErrorCode, LinkedHub};
use proptest::prelude::*;

use crate::support::{individual, linked};

fn table(hubs: &[LinkedHub]) -> HubTable {
    HubTable::new(hubs).unwrap()
}

fn excluded(name: &str) -> LinkedHub {
    LinkedHub {
        apply_allocation_policy: false,
        ..linked(name)
    }
}

fn names(
    enrollment_extra: &str,
    hubs: &HubTable,
    default: AllocationPolicy,
) -> Result<(AllocationPolicy, Vec<String>), AllocationError> {
    let enrollment = individual(enrollment_extra);
    candidate_hubs(&enrollment, hubs, default).map(|c| (c.policy, hubs.names(c.hubs)))
}

#[test]
fn policy_is_the_enrollments_else_the_tenant_default() {
    let hubs = table(&[linked("a"), linked("b")]);
    let (policy, _) = names("", &hubs, AllocationPolicy::GeoLatency).unwrap();
    assert_eq!(policy, AllocationPolicy::GeoLatency);
    let (policy, _) = names(
        r#""allocationPolicy":"hashed""#,
        &hubs,
        AllocationPolicy::GeoLatency,
    )
    .unwrap();
    assert_eq!(policy, AllocationPolicy::Hashed);
}

#[test]
fn no_iot_hubs_means_every_linked_hub_that_applies_the_policy() {
    let hubs = table(&[linked("a"), excluded("b"), linked("c")]);
    let (_, got) = names("", &hubs, AllocationPolicy::Hashed).unwrap();
    assert_eq!(got, ["a", "c"]);
    let (_, got) = names(r#""iotHubs":[]"#, &hubs, AllocationPolicy::Hashed).unwrap();
    assert_eq!(got, ["a", "c"]);
}

#[test]
fn iot_hubs_select_a_subset_case_insensitively_and_ignore_unlinked_names() {
    let hubs = table(&[
        linked("hub-a.net"),
        linked("hub-b.net"),
        linked("hub-c.net"),
    ]);
    let (_, got) = names(
        r#""iotHubs":["HUB-C.net","gone.net","hub-a.net"]"#,
        &hubs,
        AllocationPolicy::Hashed,
    )
    .unwrap();
    assert_eq!(got, ["hub-a.net", "hub-c.net"]);
}

#[test]
fn only_unlinked_names_is_an_error_naming_them() {
    let hubs = table(&[linked("hub-a.net")]);
    let err = names(
        r#""iotHubs":["gone.net","old.net"]"#,
        &hubs,
        AllocationPolicy::Hashed,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        AllocationError::NoCandidateHub {
            policy: AllocationPolicy::Hashed,
            ..
        }
    ));
    assert_eq!(err.error_code(), ErrorCode::LINKED_HUB_NOT_FOUND);
    assert!(err.to_string().contains("gone.net, old.net"), "{err}");
}

#[test]
fn hubs_that_do_not_apply_the_policy_are_left_out_even_when_named() {
    let hubs = table(&[linked("a"), excluded("b")]);
    let (_, got) = names(r#""iotHubs":["a","b"]"#, &hubs, AllocationPolicy::Hashed).unwrap();
    assert_eq!(got, ["a"]);
    let err = names(r#""iotHubs":["b"]"#, &hubs, AllocationPolicy::GeoLatency).unwrap_err();
    assert!(
        err.to_string()
            .contains("(b) all have applyAllocationPolicy=false"),
        "{err}"
    );
}

#[test]
fn no_linked_hub_at_all_is_an_error() {
    let hubs = table(&[]);
    let err = names("", &hubs, AllocationPolicy::Hashed).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no hub available for the hashed policy: this provisioning service has no linked hub"
    );
}

#[test]
fn static_takes_the_one_named_hub_even_if_it_does_not_apply_the_policy() {
    let hubs = table(&[linked("a"), excluded("b")]);
    let (policy, got) = names(
        r#""allocationPolicy":"static","iotHubs":["B"]"#,
        &hubs,
        AllocationPolicy::Hashed,
    )
    .unwrap();
    assert_eq!(policy, AllocationPolicy::Static);
    assert_eq!(got, ["b"]);
}

#[test]
fn static_falls_back_to_the_legacy_host_name() {
    let hubs = table(&[linked("a"), linked("b")]);
    let (_, got) = names(
        r#""allocationPolicy":"static","iotHubHostName":"b""#,
        &hubs,
        AllocationPolicy::Hashed,
    )
    .unwrap();
    assert_eq!(got, ["b"]);
    // The legacy field is read by static only.
    let (_, got) = names(r#""iotHubHostName":"b""#, &hubs, AllocationPolicy::Hashed).unwrap();
    assert_eq!(got, ["a", "b"]);
}

#[test]
fn static_needs_exactly_one_linked_hub() {
    let hubs = table(&[linked("a"), linked("b")]);
    let err = names(
        r#""allocationPolicy":"static""#,
        &hubs,
        AllocationPolicy::Hashed,
    )
    .unwrap_err();
    assert_eq!(err, AllocationError::StaticHubCount { named: vec![] });
    assert_eq!(err.error_code(), ErrorCode::ARGUMENT_INVALID);
    assert!(err.to_string().ends_with("it names none"), "{err}");

    let err = names(
        r#""allocationPolicy":"static","iotHubs":["a","b"]"#,
        &hubs,
        AllocationPolicy::Hashed,
    )
    .unwrap_err();
    assert_eq!(
        err,
        AllocationError::StaticHubCount {
            named: vec!["a".into(), "b".into()]
        }
    );
    assert!(err.to_string().ends_with("it names 2 (a, b)"), "{err}");

    let err = names(
        r#""allocationPolicy":"static","iotHubs":["gone"]"#,
        &hubs,
        AllocationPolicy::Hashed,
    )
    .unwrap_err();
    assert_eq!(
        err,
        AllocationError::StaticHubNotLinked { hub: "gone".into() }
    );
    assert_eq!(err.error_code(), ErrorCode::LINKED_HUB_NOT_FOUND);
    assert!(err.to_string().contains("\"gone\""), "{err}");
}

#[test]
fn tables_hold_at_most_64_hubs() {
    let many: Vec<_> = (0..65).map(|i| linked(&format!("h{i}"))).collect();
    assert_eq!(
        HubTable::new(&many).unwrap_err(),
        AllocationError::TooManyLinkedHubs { count: 65, max: 64 }
    );
    let table = HubTable::new(&many[..64]).unwrap();
    assert_eq!(table.all().len(), 64);
    assert_eq!(table.get(table.find("H63").unwrap()).host_name(), "h63");
}

proptest! {
    /// Whatever the enrollment names, static never yields a hub that is not
    /// linked: either the one linked hub it names, or an error.
    #[test]
    fn static_never_chooses_an_unlinked_hub(
        linked_names in prop::collection::btree_set("[a-e]", 0..4),
        named in prop::collection::vec("[a-h]", 0..3),
        legacy in prop::option::of("[a-h]"),
    ) {
        let linked_hubs: Vec<_> = linked_names.iter().map(|n| linked(n)).collect();
        let hubs = table(&linked_hubs);
        let mut extra = format!(
            r#""allocationPolicy":"static","iotHubs":{}"#,
            serde_json::to_string(&named).unwrap()
        );
        if let Some(legacy) = &legacy {
            extra.push_str(&format!(r#","iotHubHostName":"{legacy}""#));
        }
        match names(&extra, &hubs, AllocationPolicy::Hashed) {
            Ok((_, got)) => {
                prop_assert_eq!(got.len(), 1);
                prop_assert!(linked_names.contains(&got[0]));
                let wanted = named.first().or(legacy.as_ref()).unwrap();
                prop_assert_eq!(&got[0], wanted);
            }
            Err(AllocationError::StaticHubCount { .. }) => {
                prop_assert!(named.len() != 1 && !(named.is_empty() && legacy.is_some()));
            }
            Err(AllocationError::StaticHubNotLinked { hub }) => {
                prop_assert!(!linked_names.contains(&hub));
            }
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }
}
