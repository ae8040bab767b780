//! Service API bodies for enrollments: individual enrollments and groups
//! (PUT), through the model's JSON entry points the service calls.
//!
//! The first byte picks the shape, the rest is the body. Invariants: no
//! panic; an accepted record serialises to JSON that is accepted again and
//! means the same — records are stored as that JSON and read back, so a
//! record that cannot be re-read would be a record lost.
#![no_main]

use dps_model::{EnrollmentGroup, IndividualEnrollment, ModelError};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;

fn round_trip<T: Serialize>(body: &[u8], parse: fn(&[u8]) -> Result<T, ModelError>) {
    let Ok(record) = parse(body) else {
        return;
    };
    let first = serde_json::to_value(&record).expect("a parsed record serialises");
    let text = serde_json::to_vec(&record).expect("a parsed record serialises");
    let again = match parse(&text) {
        Ok(again) => again,
        Err(err) => panic!(
            "a record's own JSON is refused: {err}\n{}",
            String::from_utf8_lossy(&text)
        ),
    };
    let second = serde_json::to_value(&again).expect("a parsed record serialises");
    assert_eq!(first, second, "the JSON round trip changed the record");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    if which & 1 == 0 {
        round_trip(body, IndividualEnrollment::from_json);
    } else {
        round_trip(body, EnrollmentGroup::from_json);
    }
});
