//! The body of a device's register request (HTTPS PUT and MQTT PUBLISH):
//! `DeviceRegistrationRequest::from_json`, exactly as both transports call it.
//!
//! Invariants: no panic; an accepted body re-serialises into JSON that is
//! accepted again and means the same (what the server stores for the
//! custom-allocation webhook and echoes is what it read).
#![no_main]

use dps_model::DeviceRegistrationRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = DeviceRegistrationRequest::from_json(data) else {
        return;
    };
    let first = serde_json::to_value(&request).expect("a parsed request serialises");
    let text = serde_json::to_vec(&request).expect("a parsed request serialises");
    let again = DeviceRegistrationRequest::from_json(&text).expect("its own JSON parses again");
    let second = serde_json::to_value(&again).expect("a parsed request serialises");
    assert_eq!(first, second, "the JSON round trip changed the request");
});
