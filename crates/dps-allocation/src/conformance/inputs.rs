//! The hubs, enrollments, devices and payloads the battery asks about.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dps_model::{EnrollmentGroup, IndividualEnrollment, LinkedHub, RegistrationId};
use serde_json::{json, Map, Value};

use crate::{DeviceAttestation, DeviceContext, HubIndex, HubSet, HubTable};

/// A linked hub (the connection string is a placeholder: policies never use it).
pub fn linked_hub(
    host_name: &str,
    allocation_weight: u32,
    apply_allocation_policy: bool,
    location: Option<&str>,
) -> LinkedHub {
    LinkedHub {
        host_name: host_name.to_owned(),
        connection_string: format!(
            "HostName={host_name};SharedAccessKeyName=iothubowner;SharedAccessKey=eA=="
        ),
        allocation_weight,
        apply_allocation_policy,
        location: location.map(str::to_owned),
    }
}

/// Six hubs, spelled in mixed case, with odd weights and locations; the
/// heaviest and best placed one has `applyAllocationPolicy=false`.
pub(crate) fn mixed_hubs() -> Vec<LinkedHub> {
    vec![
        linked_hub("Hub-One.example.net", 1, true, Some("westus")),
        linked_hub("hub-two.example.net", 3, true, Some("eastus")),
        linked_hub("HUB-THREE.example.net", 1000, true, None),
        linked_hub("excluded.example.net", 1000, false, Some("westus")),
        linked_hub("hub-four.example.net", 0, true, Some("westeurope")),
        linked_hub("hub-five.example.net", u32::MAX, true, Some("")),
    ]
}

/// 64 hubs (the most a table holds) with every kind of odd weight and location.
pub(crate) fn many_hubs() -> Vec<LinkedHub> {
    const WEIGHTS: [u32; 7] = [0, 1, 2, 999, 1000, 1001, u32::MAX];
    const LOCATIONS: [Option<&str>; 4] = [None, Some(""), Some("westus"), Some("Mars-1")];
    (0..HubTable::MAX_HUBS)
        .map(|i| {
            let name = if i % 5 == 0 {
                format!("HUB-{i}.Example.NET")
            } else {
                format!("hub-{i}.{}.example.net", "a".repeat(i))
            };
            linked_hub(&name, WEIGHTS[i % 7], true, LOCATIONS[i % 4])
        })
        .collect()
}

/// The sets the battery offers: each eligible hub alone, and (unless the
/// policy serves single candidates only) pairs, all eligible hubs, and all
/// but the first.
pub(crate) fn candidate_sets(table: &HubTable, single_only: bool) -> Vec<HubSet> {
    let eligible: Vec<HubIndex> = table.policy_eligible().iter().collect();
    let mut sets: Vec<HubSet> = eligible.iter().map(|&i| HubSet::only(i)).collect();
    if single_only {
        return sets;
    }
    for pair in eligible.windows(2) {
        let mut set = HubSet::only(pair[0]);
        set.insert(pair[1]);
        sets.push(set);
    }
    sets.push(table.policy_eligible());
    let mut rest = HubSet::EMPTY;
    for &index in eligible.iter().skip(1) {
        rest.insert(index);
    }
    sets.push(rest);
    sets
}

/// Registration ids: short, long (128 characters), every allowed character.
pub(crate) fn registration_ids(count: usize) -> Vec<RegistrationId> {
    let mut ids: Vec<String> = (0..count).map(|i| format!("battery-device-{i}")).collect();
    ids.push("a".to_owned());
    ids.push("X".repeat(128));
    ids.push("Dev.1_b:c-".to_owned());
    ids.iter()
        .map(|id| RegistrationId::new(id).expect("battery registration ids are valid"))
        .collect()
}

/// An individual enrollment and a group, both carrying `members`.
pub(crate) fn enrollments(members: &Map<String, Value>) -> (IndividualEnrollment, EnrollmentGroup) {
    let attestation = json!({
        "type": "symmetricKey",
        "symmetricKey": {
            "primaryKey": "cHJpbWFyeS1zZWNyZXQ=",
            "secondaryKey": "c2Vjb25kYXJ5LXNlY3JldA=="
        }
    });
    let build = |id_member: &str, id: &str| {
        let mut object = members.clone();
        object.insert(id_member.to_owned(), Value::String(id.to_owned()));
        object.insert("attestation".to_owned(), attestation.clone());
        serde_json::to_vec(&Value::Object(object)).expect("JSON serialises")
    };
    let individual = IndividualEnrollment::from_json(&build("registrationId", "battery-device"))
        .expect("battery enrollment is valid");
    let group = EnrollmentGroup::from_json(&build("enrollmentGroupId", "battery-group"))
        .expect("battery group is valid");
    (individual, group)
}

/// Device payloads a policy may be handed: absent, empty, typed wrongly,
/// naming hubs (inside and outside the candidates), deep and large.
pub fn odd_payloads(hub_names: &[&str]) -> Vec<Option<Value>> {
    let mut deep = json!("bottom");
    for _ in 0..64 {
        deep = json!([deep]);
    }
    let mut payloads = vec![
        None,
        Some(Value::Null),
        Some(json!({})),
        Some(json!([])),
        Some(json!(42)),
        Some(json!(f64::MAX)),
        Some(json!("a string")),
        Some(json!({"region": 7, "hub": ["x"], "tag": {"nested": null}})),
        Some(json!({"region": "westus", "tag": "gold"})),
        Some(json!({"region": "Mars-1"})),
        Some(json!({"hub": "not-linked.example.net"})),
        Some(json!({"unicode": "\u{1F600}\u{0}\u{202E}é", "empty": ""})),
        Some(json!({ "big": "x".repeat(64 * 1024) })),
        Some(deep),
    ];
    for name in hub_names {
        payloads.push(Some(json!({ "hub": name, "iotHubHostName": name })));
        payloads.push(Some(json!({ "hub": name.to_ascii_uppercase() })));
    }
    payloads
}

/// Device contexts a policy may be handed: no history, a previous hub
/// outside the candidates or no longer linked, odd addresses and attestations.
pub(crate) fn odd_devices<'a>(
    outside_hub: &'a str,
    payload: Option<&'a Value>,
) -> Vec<DeviceContext<'a>> {
    let plain = DeviceContext {
        payload,
        ..DeviceContext::default()
    };
    vec![
        plain,
        DeviceContext {
            current_hub: Some(outside_hub),
            current_device_id: Some("battery-device"),
            source_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ..plain
        },
        DeviceContext {
            current_hub: Some("gone.example.net"),
            current_device_id: Some(""),
            source_ip: Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            attestation: DeviceAttestation::X509 {
                certificate: None,
                signing_certificate: None,
            },
            ..plain
        },
        DeviceContext {
            source_ip: Some(IpAddr::V4(Ipv4Addr::BROADCAST)),
            attestation: DeviceAttestation::Tpm {
                endorsement_key: "",
                storage_root_key: None,
            },
            ..plain
        },
    ]
}
