//! TPM 2.0 structures a device sends: the endorsement key and storage root
//! key (`TPM2B_PUBLIC`, base64) through every public function that parses
//! them, and the activation blob the service marshals for them.
//!
//! The input is framed (`dps_fuzz::frames`): EK bytes, then SRK bytes (the
//! SRK defaults to the EK). Invariants: no panic; a key equals itself; the
//! default registration id is lower-case base32 of 52 characters; an
//! activation blob is exactly six well-formed `TPM2B`s whose last but one is
//! the delivered key's public area, and it is only built for keys that parse.
#![no_main]

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use dps_attestation::tpm::{
    registration_id_from_endorsement_key, same_endorsement_key, TpmChallenge,
};
use dps_fuzz::frames;
use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Split a marshalled blob into TPM2Bs; `None` if it is not exactly that.
fn tpm2bs(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len {
            return None;
        }
        out.push(&rest[..len]);
        bytes = &rest[len..];
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let parts = frames(data, 2);
    let Some(ek_bytes) = parts.first() else {
        return;
    };
    let srk_bytes = parts.get(1).unwrap_or(ek_bytes);
    let ek = BASE64.encode(ek_bytes);
    let srk = BASE64.encode(srk_bytes);

    let id = registration_id_from_endorsement_key(&ek);
    if let Ok(id) = &id {
        assert_eq!(id.len(), 52, "base32 of SHA-256 without padding");
        assert!(id.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7')));
    }
    match same_endorsement_key(&ek, &ek) {
        Ok(same) => assert!(same, "a key differs from itself"),
        Err(_) => assert!(
            id.is_err(),
            "an EK parses for one function and not the other"
        ),
    }
    let _ = same_endorsement_key(&ek, &srk);
    // Non-base64 text takes the same paths as bytes that do not parse.
    let _ = same_endorsement_key(&String::from_utf8_lossy(ek_bytes), &srk);

    let mut rng = StdRng::seed_from_u64(7);
    let Ok(challenge) = TpmChallenge::create_with_rng(&ek, &srk, &mut rng) else {
        return;
    };
    assert!(id.is_ok(), "a challenge for an EK that does not parse");
    let blob = BASE64
        .decode(&challenge.authentication_key)
        .expect("the blob is base64");
    let fields = tpm2bs(&blob).expect("the blob is a sequence of TPM2Bs");
    assert_eq!(
        fields.len(),
        6,
        "idObject, encSecret, duplicate, seed, public, encUri"
    );
    assert!(fields[5].is_empty(), "no encUriData");
    assert_eq!(challenge.key.as_bytes().len(), 32);
});
