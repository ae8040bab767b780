//! SAS tokens as a device or an operator sends them: `SasToken::parse` on
//! any text, then every check the server runs on a parsed token.
//!
//! Invariants: parsing never panics; a parsed token has a non-empty `sr` and
//! `sig`; verification against a fixed key never panics and never accepts a
//! signature that the key did not make; a token re-created from the parsed
//! resource and expiry parses back to the same resource and verifies.
#![no_main]

use dps_attestation::sas::{create_token, Audience, ExpiryPolicy, SasToken, SymmetricKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(token) = SasToken::parse(text) else {
        return;
    };
    assert!(!token.resource_raw.is_empty() && !token.signature.is_empty());
    let key = SymmetricKey::from_bytes(b"fuzzing-key-fuzzing-key-fuzzing!".to_vec());
    let other = SymmetricKey::from_bytes(vec![0u8; 64]);
    let policy = ExpiryPolicy::at(1_700_000_000);
    let audience = Audience(&token.resource);
    // The fuzzer cannot forge HMAC-SHA256: any success means the check is broken.
    let signed_by_us = key.sign(token.string_to_sign().as_bytes());
    let verdict = token.verify(&audience, &[&other, &key], &policy);
    if verdict.is_ok() {
        assert_eq!(
            token.signature, signed_by_us,
            "accepted a signature the key did not make"
        );
    }
    let _ = token.check_audience(&Audience("0ne00000A0A/registrations/dev1"));
    let _ = token.check_expiry(&ExpiryPolicy::at(u64::MAX));

    // Re-sign what was parsed: the SDKs' form of the same token must round-trip.
    let again = create_token(
        &token.resource,
        &key,
        token.expiry,
        token.key_name.as_deref(),
    );
    let parsed = SasToken::parse(&again).expect("a created token parses");
    assert_eq!(parsed.resource, token.resource);
    assert_eq!(parsed.expiry, token.expiry);
    assert_eq!(parsed.key_name, token.key_name);
    let index = parsed
        .verify(
            &Audience(&token.resource),
            &[&other, &key],
            &ExpiryPolicy::at(token.expiry),
        )
        .expect("a created token verifies with its key");
    assert_eq!(index, 1);
});
