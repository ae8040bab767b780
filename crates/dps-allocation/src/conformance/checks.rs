//! The checks of the policy battery, one public function per property.

use std::sync::Arc;

use dps_model::enrollment::EnrollmentRef;
use dps_model::{AllocationPolicy, EnrollmentGroup, IndividualEnrollment, RegistrationId};
use serde_json::Value;

use super::inputs::{
    candidate_sets, enrollments, many_hubs, mixed_hubs, odd_devices, odd_payloads, registration_ids,
};
use super::TestPolicy;
use crate::{
    candidate_hubs, Allocation, AllocationError, AllocationRequest, Candidates, DeviceContext,
    HubIndex, HubSet, HubTable,
};

/// A request over `set` for the policy under test.
fn request<'a>(
    fixture: &TestPolicy,
    id: &'a RegistrationId,
    enrollment: EnrollmentRef<'a>,
    hubs: &'a HubTable,
    set: HubSet,
) -> AllocationRequest<'a> {
    AllocationRequest {
        registration_id: id,
        enrollment,
        hubs,
        candidates: Candidates {
            policy: fixture.policy.kind(),
            hubs: set,
        },
        device: DeviceContext::default(),
    }
}

/// The answer's hub, after checking it is a candidate spelled as linked.
fn assert_candidate(request: &AllocationRequest<'_>, answer: &Allocation) -> HubIndex {
    let kind = request.candidates.policy;
    let offered = request.hubs.names(request.candidates.hubs);
    let index = request.hubs.find(&answer.hub_host_name).unwrap_or_else(|| {
        panic!(
            "{kind:?} chose {:?}, which is not linked (offered {offered:?}, device {})",
            answer.hub_host_name, request.registration_id
        )
    });
    assert!(
        request.candidates.hubs.contains(index),
        "{kind:?} chose {:?} outside the candidates {offered:?} (device {})",
        answer.hub_host_name,
        request.registration_id
    );
    assert_eq!(
        answer.hub_host_name,
        request.hubs.get(index).host_name(),
        "{kind:?} must spell the hub as linked"
    );
    index
}

/// A refusal a device can be told about: a 4xx DPS code and a message.
fn assert_clean_error(request: &AllocationRequest<'_>, err: &AllocationError) {
    let status = err.error_code().http_status();
    assert!(
        (400..500).contains(&status),
        "{:?} refused device {} with {:?} ({err}); a refusal must be a 4xx code",
        request.candidates.policy,
        request.registration_id,
        err.error_code()
    );
    assert!(!err.to_string().is_empty(), "an error must say why");
}

/// Ask, and insist on an answer among the candidates.
async fn must_choose(fixture: &TestPolicy, request: &AllocationRequest<'_>) -> HubIndex {
    match fixture.policy.allocate(request).await {
        Ok(answer) => assert_candidate(request, &answer),
        Err(err) => panic!(
            "{:?} refused device {} with candidates {:?}: {err}",
            request.candidates.policy,
            request.registration_id,
            request.hubs.names(request.candidates.hubs)
        ),
    }
}

fn both<'a>(pair: &'a (IndividualEnrollment, EnrollmentGroup)) -> [EnrollmentRef<'a>; 2] {
    [
        EnrollmentRef::Individual(&pair.0),
        EnrollmentRef::Group(&pair.1),
    ]
}

/// Every candidate set gets an answer inside it; a single candidate is the answer.
pub async fn answers_every_candidate_set(fixture: &TestPolicy) {
    let kind = fixture.policy.kind();
    let hubs = HubTable::new(&mixed_hubs()).expect("table");
    let pair = enrollments(fixture.enrollment_members());
    for set in candidate_sets(&hubs, fixture.is_single_candidate_only()) {
        for id in registration_ids(8) {
            for enrollment in both(&pair) {
                let request = request(fixture, &id, enrollment, &hubs, set);
                let chosen = must_choose(fixture, &request).await;
                if set.len() == 1 {
                    assert_eq!(
                        HubSet::only(chosen),
                        set,
                        "a single candidate is the answer"
                    );
                }
            }
        }
    }
    assert_eq!(fixture.policy.kind(), kind, "kind() must not change");
}

/// Hubs the enrollment leaves out, hubs with `applyAllocationPolicy=false`
/// and hubs named by the payload or a previous assignment are never chosen.
pub async fn never_chooses_a_hub_outside_the_policy(fixture: &TestPolicy) {
    let hubs = HubTable::new(&mixed_hubs()).expect("table");
    let excluded = "excluded.example.net";
    let mut members = fixture.enrollment_members().clone();
    let restriction = [
        "hub-two.example.net",
        "hub-three.EXAMPLE.net",
        excluded,
        "not-linked.example.net",
    ];
    members.insert("iotHubs".to_owned(), serde_json::json!(restriction));
    members.remove("allocationPolicy");
    let pair = enrollments(&members);
    let lure = serde_json::json!({ "hub": excluded, "iotHubHostName": excluded });
    for enrollment in both(&pair) {
        let sets = if fixture.is_single_candidate_only() {
            candidate_sets(&hubs, true)
        } else {
            let candidates =
                candidate_hubs(enrollment.as_enrollment(), &hubs, AllocationPolicy::Hashed)
                    .expect("two of the named hubs are linked and eligible");
            assert_eq!(candidates.hubs.len(), 2, "the restriction leaves two hubs");
            vec![candidates.hubs]
        };
        for set in sets {
            for id in registration_ids(16) {
                let device = DeviceContext {
                    current_hub: Some(excluded),
                    payload: Some(&lure),
                    ..DeviceContext::default()
                };
                let request = request(fixture, &id, enrollment, &hubs, set).with_device(device);
                let chosen = must_choose(fixture, &request).await;
                assert!(hubs.get(chosen).apply_allocation_policy());
            }
        }
    }
}

/// No candidate (none eligible, or no linked hub at all) is a 4xx error.
pub async fn no_candidate_is_a_clean_error(fixture: &TestPolicy) {
    let linked = HubTable::new(&mixed_hubs()).expect("table");
    let none = HubTable::new(&[]).expect("empty table");
    let pair = enrollments(fixture.enrollment_members());
    let id = RegistrationId::new("battery-device").expect("id");
    for hubs in [&linked, &none] {
        for enrollment in both(&pair) {
            let request = request(fixture, &id, enrollment, hubs, HubSet::EMPTY);
            match fixture.policy.allocate(&request).await {
                Ok(answer) => panic!(
                    "{:?} chose {:?} from an empty candidate set",
                    request.candidates.policy, answer.hub_host_name
                ),
                Err(err) => assert_clean_error(&request, &err),
            }
        }
    }
}

/// The same request, asked again or against a freshly prepared table of
/// the same hubs (another process), gets the same answer.
pub async fn same_request_same_hub(fixture: &TestPolicy) {
    let linked = mixed_hubs();
    let hubs = HubTable::new(&linked).expect("table");
    let rebuilt = HubTable::new(&linked).expect("table");
    let pair = enrollments(fixture.enrollment_members());
    for set in candidate_sets(&hubs, fixture.is_single_candidate_only()) {
        for id in registration_ids(8) {
            for enrollment in both(&pair) {
                let first = request(fixture, &id, enrollment, &hubs, set);
                let first = must_choose(fixture, &first).await;
                let again = request(fixture, &id, enrollment, &hubs, set);
                let again = must_choose(fixture, &again).await;
                let elsewhere = request(fixture, &id, enrollment, &rebuilt, set);
                let elsewhere = must_choose(fixture, &elsewhere).await;
                if fixture.is_deterministic() {
                    assert_eq!(first, again, "device {id}: a second ask moved it");
                    assert_eq!(first, elsewhere, "device {id}: a rebuilt table moved it");
                }
            }
        }
    }
}

/// 32 concurrent calls from separate tasks all answer among the
/// candidates, and (if deterministic) as a lone call does.
pub async fn concurrent_calls_stay_in_candidates(fixture: &TestPolicy) {
    let hubs = Arc::new(HubTable::new(&mixed_hubs()).expect("table"));
    let pair = Arc::new(enrollments(fixture.enrollment_members()));
    let set = if fixture.is_single_candidate_only() {
        HubSet::only(hubs.find("hub-two.example.net").expect("linked"))
    } else {
        hubs.policy_eligible()
    };
    let kind = fixture.policy.kind();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let (policy, hubs, pair) = (fixture.policy.clone(), hubs.clone(), pair.clone());
        tasks.spawn(async move {
            let id = RegistrationId::new(format!("concurrent-{}", i % 8)).expect("id");
            let enrollment = EnrollmentRef::Individual(&pair.0);
            let request = AllocationRequest {
                registration_id: &id,
                enrollment,
                hubs: &hubs,
                candidates: Candidates {
                    policy: kind,
                    hubs: set,
                },
                device: DeviceContext::default(),
            };
            let answer = policy.allocate(&request).await;
            let answer = answer.map(|a| assert_candidate(&request, &a));
            (id.clone(), answer)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (id, answer) = joined.expect("a policy call panicked");
        let answer = answer.unwrap_or_else(|err| panic!("{kind:?} refused {id}: {err}"));
        if fixture.is_deterministic() {
            let alone = request(fixture, &id, EnrollmentRef::Individual(&pair.0), &hubs, set);
            assert_eq!(must_choose(fixture, &alone).await, answer, "device {id}");
        }
    }
}

/// 64 hubs with weights 0, 1, 1000, u32::MAX and odd locations: answers stay
/// among the candidates.
pub async fn many_hubs_and_odd_weights(fixture: &TestPolicy) {
    let hubs = HubTable::new(&many_hubs()).expect("64 hubs fit a table");
    let pair = enrollments(fixture.enrollment_members());
    let sets: Vec<HubSet> = if fixture.is_single_candidate_only() {
        hubs.all().iter().map(HubSet::only).collect()
    } else {
        vec![hubs.all()]
    };
    let ids = registration_ids(16);
    for (n, set) in sets.into_iter().enumerate() {
        // Singles: one device each is enough; the whole set: every id.
        for id in ids.iter().skip(n.min(1) * (ids.len() - 1)) {
            let request = request(fixture, id, EnrollmentRef::Individual(&pair.0), &hubs, set);
            must_choose(fixture, &request).await;
        }
    }
}

/// Odd payloads, previous hubs, addresses and attestations: either an answer
/// among the candidates or a clean 4xx refusal, never a panic.
pub async fn odd_device_input_is_handled(fixture: &TestPolicy) {
    let linked = mixed_hubs();
    let hubs = HubTable::new(&linked).expect("table");
    let pair = enrollments(fixture.enrollment_members());
    let one = hubs.find("hub-one.example.net").expect("linked");
    let mut set = HubSet::only(one);
    if !fixture.is_single_candidate_only() {
        set.insert(hubs.find("hub-two.example.net").expect("linked"));
    }
    let names: Vec<&str> = linked.iter().map(|h| h.host_name.as_str()).collect();
    let payloads: Vec<Option<Value>> = odd_payloads(&names);
    let id = RegistrationId::new("odd-device").expect("id");
    for payload in &payloads {
        for device in odd_devices("HUB-THREE.example.net", payload.as_ref()) {
            for enrollment in both(&pair) {
                let request = request(fixture, &id, enrollment, &hubs, set).with_device(device);
                match fixture.policy.allocate(&request).await {
                    Ok(answer) => {
                        assert_candidate(&request, &answer);
                    }
                    Err(err) => assert_clean_error(&request, &err),
                }
            }
        }
    }
}
