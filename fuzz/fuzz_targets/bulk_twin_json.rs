//! The other service API bodies: bulk operations over enrollments and groups,
//! the initial twin, and query specifications, through `dps_model::from_json`
//! (the service's JSON entry point); each bulk item also goes through the
//! record parser, as the bulk handler does with every item.
//!
//! The first byte picks the shape. Invariants: no panic; accepted values
//! survive a JSON round trip unchanged.
#![no_main]

use dps_model::{
    BulkEnrollmentGroupOperation, BulkEnrollmentOperation, EnrollmentGroup, IndividualEnrollment,
    InitialTwin, QuerySpecification,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn round_trip<T: Serialize + DeserializeOwned>(body: &[u8]) -> Option<T> {
    let value: T = dps_model::from_json(body).ok()?;
    let first = serde_json::to_value(&value).expect("a parsed body serialises");
    let text = serde_json::to_vec(&value).expect("a parsed body serialises");
    let again: T = dps_model::from_json(&text).expect("its own JSON parses again");
    let second = serde_json::to_value(&again).expect("a parsed body serialises");
    assert_eq!(first, second, "the JSON round trip changed the body");
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            if let Some(bulk) = round_trip::<BulkEnrollmentOperation>(body) {
                for item in &bulk.enrollments {
                    let text = serde_json::to_vec(item).expect("an item serialises");
                    let _ = IndividualEnrollment::from_json(&text);
                }
            }
        }
        1 => {
            if let Some(bulk) = round_trip::<BulkEnrollmentGroupOperation>(body) {
                for item in &bulk.enrollment_groups {
                    let text = serde_json::to_vec(item).expect("an item serialises");
                    let _ = EnrollmentGroup::from_json(&text);
                }
            }
        }
        2 => {
            if let Some(twin) = round_trip::<InitialTwin>(body) {
                let _ = (twin.tags_or_empty(), twin.desired_or_empty());
            }
        }
        3 => {
            let _ = round_trip::<QuerySpecification>(body);
        }
        _ => {
            // The bulk handler reads the body as a JSON value first.
            let _ = round_trip::<serde_json::Value>(body);
        }
    }
});
