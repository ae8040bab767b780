//! SAS tokens: a known-answer vector and property tests for the
//! create → parse → verify round trip, tampering and parser robustness.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use dps_attestation::keys::derive_device_key;
use dps_attestation::sas::{
    create_token, registration_resource, Audience, ExpiryPolicy, SasToken, SymmetricKey,
};
use dps_attestation::AttestationError;
use proptest::prelude::*;

/// The key from the DPS HTTPS documentation (spec §3.2).
const DOC_KEY: &str =
    "18RQk/hOPJR9EbsJlk2j8WA6vWaj/yi+oaYg7zmxfQNdOyMSu+SJ8O7TSlZhDJCYmn4rzEiVKIzNiVAWjLxrGA==";

/// Registration SAS for scope `0ne000EEBBD`, registration id `FirstDevice`,
/// expiry 1591921306, signed with [`DOC_KEY`]. The expected signature was
/// computed independently with openssl (no newline after `se`):
///
/// ```text
/// printf '%s\n%s' "0ne000EEBBD%2Fregistrations%2FFirstDevice" 1591921306 \
///   | openssl dgst -sha256 -mac HMAC -macopt hexkey:$(printf %s "$DOC_KEY" | base64 -d | xxd -p -c 256) -binary \
///   | base64
/// # aeJhSZ0wi0LKlctpPaX5WpPxQZvJ960EOTRfVb7P6W4=
/// ```
#[test]
fn registration_sas_known_answer() {
    let key = SymmetricKey::from_base64(DOC_KEY).unwrap();
    let resource = registration_resource("0ne000EEBBD", "FirstDevice");
    let token = create_token(&resource, &key, 1591921306, Some("registration"));
    assert_eq!(
        token,
        "SharedAccessSignature sr=0ne000EEBBD%2Fregistrations%2FFirstDevice\
         &sig=aeJhSZ0wi0LKlctpPaX5WpPxQZvJ960EOTRfVb7P6W4%3D&se=1591921306&skn=registration"
    );
    let parsed = SasToken::parse(&token).unwrap();
    assert_eq!(
        parsed.string_to_sign(),
        "0ne000EEBBD%2Fregistrations%2FFirstDevice\n1591921306"
    );
    assert_eq!(
        parsed.signature,
        "aeJhSZ0wi0LKlctpPaX5WpPxQZvJ960EOTRfVb7P6W4="
    );
    assert_eq!(
        parsed.verify(
            &Audience("0ne000eebbd/registrations/firstdevice"),
            &[&key],
            &ExpiryPolicy::at(1591921306)
        ),
        Ok(0)
    );
    // Five minutes of clock skew, and not one second more.
    assert_eq!(
        parsed.check_expiry(&ExpiryPolicy::at(1591921306 + 300)),
        Ok(())
    );
    assert_eq!(
        parsed.check_expiry(&ExpiryPolicy::at(1591921306 + 301)),
        Err(AttestationError::TokenExpired {
            expiry: 1591921306,
            now: 1591921306 + 301
        })
    );
}

/// A token with its `&`-separated fields put in the order given by `order`.
fn reorder(token: &str, order: &[usize]) -> String {
    let (scheme, fields) = token.split_once(' ').unwrap();
    let fields: Vec<&str> = fields.split('&').collect();
    let reordered: Vec<&str> = order.iter().map(|&i| fields[i]).collect();
    format!("{scheme} {}", reordered.join("&"))
}

fn registration_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9][a-z0-9.:_-]{0,63}",
        // Anything printable, including characters that need percent-encoding.
        "\\PC{1,40}",
    ]
}

fn key_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..80)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn create_parse_verify_round_trips(
        scope in "0ne[0-9A-F]{8}",
        id in registration_id(),
        key in key_bytes(),
        other_key in key_bytes(),
        expiry in 1u64..=4_000_000_000,
        key_name in proptest::option::of("[A-Za-z0-9 &=%+/-]{1,20}"),
        order_seed in Just(vec![0usize, 1, 2, 3]).prop_shuffle(),
    ) {
        let key = SymmetricKey::from_bytes(key);
        let resource = registration_resource(&scope, &id);
        let token = create_token(&resource, &key, expiry, key_name.as_deref());
        let field_count = if key_name.is_some() { 4 } else { 3 };
        let order: Vec<usize> = order_seed.into_iter().filter(|&i| i < field_count).collect();
        let token = reorder(&token, &order);

        let parsed = SasToken::parse(&token).unwrap();
        prop_assert_eq!(&parsed.resource, &resource);
        prop_assert_eq!(parsed.expiry, expiry);
        prop_assert_eq!(parsed.key_name.as_deref(), key_name.as_deref());
        prop_assert_eq!(
            parsed.verify(&Audience(&resource), &[&key], &ExpiryPolicy::at(expiry)),
            Ok(0)
        );
        // The same token verifies when its key is the secondary candidate,
        // and never with an unrelated key alone.
        let other_key = SymmetricKey::from_bytes(other_key);
        if other_key != key {
            prop_assert_eq!(parsed.check_signature(&[&other_key, &key]), Ok(1));
            prop_assert_eq!(
                parsed.check_signature(&[&other_key]),
                Err(AttestationError::BadSignature)
            );
        }
    }

    #[test]
    fn group_derived_tokens_round_trip(
        group_key in key_bytes(),
        id in registration_id(),
        expiry in 1u64..=4_000_000_000,
    ) {
        let group_key = SymmetricKey::from_bytes(group_key);
        let device_key = derive_device_key(&group_key, &id);
        let resource = registration_resource("0ne00000A0A", &id);
        let token = create_token(&resource, &device_key, expiry, Some("registration"));
        let parsed = SasToken::parse(&token).unwrap();
        // The service re-derives the key from the presented id.
        let rederived = derive_device_key(&group_key, &id);
        prop_assert_eq!(
            parsed.verify(&Audience(&resource), &[&rederived], &ExpiryPolicy::at(expiry)),
            Ok(0)
        );
        // The group key itself is not the device key.
        prop_assert_eq!(
            parsed.check_signature(&[&group_key]),
            Err(AttestationError::BadSignature)
        );
    }

    /// Changing any one byte of a signed token either makes it unparsable,
    /// makes verification fail, or leaves everything the signature covers
    /// (raw `sr`, raw `se`) and the decoded signature unchanged — the only
    /// neutral edits are case changes in the scheme, field names and escape
    /// digits of `sig`, and edits to the unsigned `skn`.
    #[test]
    fn single_byte_change_breaks_the_signature(
        id in "[a-z0-9-]{1,32}",
        key in key_bytes(),
        expiry in 1_000_000u64..=4_000_000_000,
        position in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        let key = SymmetricKey::from_bytes(key);
        let resource = registration_resource("0ne0000ABCD", &id);
        let token = create_token(&resource, &key, expiry, Some("registration"));
        let original = SasToken::parse(&token).unwrap();
        let mut bytes = token.clone().into_bytes();
        let at = position.index(bytes.len());
        prop_assume!(bytes[at] != replacement);
        bytes[at] = replacement;

        let Ok(mutated) = String::from_utf8(bytes) else { return Ok(()) };
        let Ok(parsed) = SasToken::parse(&mutated) else { return Ok(()) };
        let verdict = parsed.verify(&Audience(&resource), &[&key], &ExpiryPolicy::at(expiry));
        if verdict.is_ok() {
            prop_assert_eq!(&parsed.resource_raw, &original.resource_raw);
            prop_assert_eq!(&parsed.expiry_raw, &original.expiry_raw);
            prop_assert_eq!(
                BASE64.decode(&parsed.signature).unwrap(),
                BASE64.decode(&original.signature).unwrap()
            );
        }

        // A change inside the signed values themselves never verifies.
        let sr_start = token.find("sr=").unwrap() + 3;
        let sr_end = sr_start + original.resource_raw.len();
        let se_start = token.find("se=").unwrap() + 3;
        let se_end = se_start + original.expiry_raw.len();
        if (sr_start..sr_end).contains(&at) || (se_start..se_end).contains(&at) {
            prop_assert!(verdict.is_err(), "edit at {at} of {token:?} verified: {mutated:?}");
        }
    }

    #[test]
    fn parser_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(token) = SasToken::parse(&text) {
            let _ = token.verify(&Audience("x"), &[&SymmetricKey::from_bytes(vec![1])], &ExpiryPolicy::at(0));
        }
    }

    #[test]
    fn parser_never_panics_on_token_like_text(
        text in "(?i)(SharedAccessSignature)? ?((sr|sig|se|skn|x)=[A-Za-z0-9%+/=&. -]{0,30}&?){0,6}",
    ) {
        if let Ok(token) = SasToken::parse(&text) {
            prop_assert!(!token.resource_raw.is_empty());
            let _ = token.string_to_sign();
            let _ = token.verify(
                &Audience(&token.resource.clone()),
                &[&SymmetricKey::from_bytes(vec![1, 2, 3])],
                &ExpiryPolicy::at(token.expiry),
            );
        }
    }
}
