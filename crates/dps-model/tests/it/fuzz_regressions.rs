//! Inputs the coverage-guided fuzzers (`fuzz/`) found, kept as regression
//! tests in the normal suite.

use dps_model::{DeviceRegistrationRequest, InitialTwin};
use serde_json::Value;

/// `register_request`: a number in a device's payload must mean the same after
/// the JSON round trip every stored record and webhook call goes through.
/// serde_json's default float parser may be off by one unit in the last place
/// (`2.2222222222222222e23` read back as `…25e23`), so each store-and-read
/// cycle could change a device's data; exact parsing keeps it.
#[test]
fn payload_numbers_survive_the_json_round_trip() {
    let body = br#"{"registrationId":"dev1","payload":{"n":[1,2.5,222222222222222222222222]}}"#;
    let first = DeviceRegistrationRequest::from_json(body).unwrap();
    let n = &first.payload.as_ref().unwrap()["n"][2];
    assert_eq!(
        n.as_f64(),
        Some("222222222222222222222222".parse::<f64>().unwrap())
    );

    let text = serde_json::to_vec(&first).unwrap();
    let second = DeviceRegistrationRequest::from_json(&text).unwrap();
    assert_eq!(second, first, "{}", String::from_utf8_lossy(&text));
}

/// `bulk_twin_json`: the same for desired properties of an initial twin,
/// and for any JSON value the service reads first (bulk bodies).
#[test]
fn twin_numbers_survive_the_json_round_trip() {
    let body = br#"{"properties":{"desired":{"x":555555555555555555555555555555555,"y":1.7976931348623157e308,"z":5e-324}}}"#;
    let first: InitialTwin = dps_model::from_json(body).unwrap();
    let text = serde_json::to_vec(&first).unwrap();
    let second: InitialTwin = dps_model::from_json(&text).unwrap();
    assert_eq!(second, first, "{}", String::from_utf8_lossy(&text));

    let value: Value = dps_model::from_json(b"555555555555555555555555555555555").unwrap();
    let again: Value = dps_model::from_json(value.to_string().as_bytes()).unwrap();
    assert_eq!(again, value);
    assert_eq!(
        value.as_f64(),
        Some("555555555555555555555555555555555".parse::<f64>().unwrap()),
        "the nearest double, as Rust's own parser finds it"
    );
}
