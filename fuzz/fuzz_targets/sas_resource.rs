//! The `sr` and query grammar of SAS tokens, structured: tokens built from
//! arbitrary resources, key names and expiries (as the SDKs build them, and
//! with raw, unencoded `sr` as some clients send), then parsed and checked
//! against arbitrary audiences.
//!
//! Invariants: a created token parses back to exactly its parts and verifies
//! for its own resource; the audience check is case-insensitive, tolerates a
//! trailing `/` and a `:port` on the host, and nothing more — a resource whose
//! path differs from the audience's (ignoring case) never matches.
#![no_main]

use arbitrary::Arbitrary;
use dps_attestation::sas::{
    create_token, registration_resource, Audience, ExpiryPolicy, SasToken, SymmetricKey,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    scope: String,
    registration_id: String,
    host_resource: Option<String>,
    key_name: Option<String>,
    expiry: u64,
    audience: String,
    raw_query: Vec<(String, String)>,
}

fuzz_target!(|input: Input| {
    let key = SymmetricKey::from_bytes(b"0123456789abcdef0123456789abcdef".to_vec());
    let resource = match &input.host_resource {
        Some(host) => host.clone(),
        None => registration_resource(&input.scope, &input.registration_id),
    };
    if !resource.is_empty() {
        let token = create_token(&resource, &key, input.expiry, input.key_name.as_deref());
        let parsed = SasToken::parse(&token).expect("a created token parses");
        assert_eq!(parsed.resource, resource);
        assert_eq!(parsed.expiry, input.expiry);
        assert_eq!(parsed.key_name, input.key_name);
        parsed
            .verify(
                &Audience(&resource),
                &[&key],
                &ExpiryPolicy::at(input.expiry),
            )
            .expect("a created token verifies for its own resource");

        let matches = parsed.check_audience(&Audience(&input.audience)).is_ok();
        if matches {
            let path = |s: &str| {
                let s = s.trim_end_matches('/');
                s.split_once('/')
                    .map(|(_, p)| p.to_ascii_lowercase())
                    .unwrap_or_default()
            };
            assert_eq!(
                path(&resource),
                path(&input.audience),
                "an audience with another path matched"
            );
        }
        let upper = resource.to_ascii_uppercase();
        assert!(
            parsed.check_audience(&Audience(&upper)).is_ok(),
            "the audience check ignores ASCII case"
        );
    }

    // A query-string of arbitrary fields, as a hostile client sends it.
    let mut text = String::from("SharedAccessSignature ");
    for (i, (name, value)) in input.raw_query.iter().enumerate() {
        if i > 0 {
            text.push('&');
        }
        text.push_str(name);
        text.push('=');
        text.push_str(value);
    }
    if let Ok(parsed) = SasToken::parse(&text) {
        assert!(!parsed.resource_raw.is_empty());
        let _ = parsed.verify(
            &Audience(&input.audience),
            &[&key],
            &ExpiryPolicy::at(input.expiry),
        );
    }
});
