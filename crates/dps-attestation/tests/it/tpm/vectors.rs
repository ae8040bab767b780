//! TPM key parsing, comparison, default registration ids and the blob's
//! structure, with public areas built in the test (no TPM needed).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use dps_attestation::tpm::{
    registration_id_from_endorsement_key, same_endorsement_key, TpmChallenge, ID_KEY_ATTRIBUTES,
};
use dps_attestation::AttestationError;
use rsa::traits::PublicKeyParts as _;
use rsa::Oaep;

use super::device::Blob;
use crate::pki::rsa_key;

/// The TCG default EK policy (PolicySecret(TPM_RH_ENDORSEMENT)).
const EK_POLICY: &str = "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa";
const EK_ATTRIBUTES: u32 = 0x0003_00B2;

/// Fields of an RSA `TPMT_PUBLIC`, to build variants.
struct Template {
    kind: u16,
    name_alg: u16,
    attributes: u32,
    policy: Vec<u8>,
    symmetric: (u16, u16, u16),
    key_bits: u16,
    exponent: u32,
    modulus: Vec<u8>,
}

impl Template {
    fn ek(modulus: Vec<u8>) -> Self {
        Template {
            kind: 0x0001,
            name_alg: 0x000B,
            attributes: EK_ATTRIBUTES,
            policy: hex::decode(EK_POLICY).unwrap(),
            symmetric: (0x0006, 128, 0x0043),
            key_bits: 2048,
            exponent: 0,
            modulus,
        }
    }

    fn tpmt(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.kind.to_be_bytes());
        out.extend_from_slice(&self.name_alg.to_be_bytes());
        out.extend_from_slice(&self.attributes.to_be_bytes());
        out.extend_from_slice(&(self.policy.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.policy);
        out.extend_from_slice(&self.symmetric.0.to_be_bytes());
        if self.symmetric.0 != 0x0010 {
            out.extend_from_slice(&self.symmetric.1.to_be_bytes());
            out.extend_from_slice(&self.symmetric.2.to_be_bytes());
        }
        out.extend_from_slice(&0x0010u16.to_be_bytes());
        out.extend_from_slice(&self.key_bits.to_be_bytes());
        out.extend_from_slice(&self.exponent.to_be_bytes());
        out.extend_from_slice(&(self.modulus.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.modulus);
        out
    }

    fn tpm2b(&self) -> Vec<u8> {
        let tpmt = self.tpmt();
        let mut out = (tpmt.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&tpmt);
        out
    }

    fn b64(&self) -> String {
        BASE64.encode(self.tpm2b())
    }
}

/// The modulus of a cached RSA key that no TPM in these tests holds.
pub(super) fn other_modulus() -> Vec<u8> {
    rsa_key(2).n().to_bytes_be()
}

/// A `TPM2B_PUBLIC` whose trailing modulus is replaced by one of equal length.
pub(super) fn with_modulus(tpm2b_public: &[u8], modulus: &[u8]) -> Vec<u8> {
    let mut out = tpm2b_public.to_vec();
    let start = out.len() - modulus.len();
    out[start..].copy_from_slice(modulus);
    out
}

/// Known answer, computed independently of this crate:
///
/// ```text
/// python3 -c 'import struct,sys; ...' > ek.bin   # the bytes Template::ek builds
/// sha256sum ek.bin | cut -d" " -f1 | xxd -r -p | base32 | tr -d = | tr A-Z a-z
/// ```
#[test]
fn default_registration_id_is_base32_of_the_ek_hash() {
    let mut modulus: Vec<u8> = (0..=255u8).collect();
    modulus[0] |= 0xC0;
    let ek = Template::ek(modulus).b64();
    assert_eq!(&ek[..24], "AToAAQALAAMAsgAgg3GXZ0SE");
    assert_eq!(
        registration_id_from_endorsement_key(&ek).unwrap(),
        "vpwusj3fil2pd2u7irtet6glihlyf5cjfa7hu75bagnrmdd4udja"
    );
}

#[test]
fn endorsement_keys_compare_by_public_key() {
    let modulus = rsa_key(0).n().to_bytes_be();
    let ek = Template::ek(modulus.clone());
    let same_key_variants = [
        // Bare TPMT_PUBLIC instead of TPM2B_PUBLIC.
        BASE64.encode(ek.tpmt()),
        // Exponent spelled out instead of 0.
        Template {
            exponent: 65537,
            ..Template::ek(modulus.clone())
        }
        .b64(),
        // Other attributes and no policy.
        Template {
            attributes: 0x0003_0072,
            policy: Vec::new(),
            ..Template::ek(modulus.clone())
        }
        .b64(),
        // Surrounding whitespace.
        format!("  {}\n", ek.b64()),
    ];
    for variant in &same_key_variants {
        assert!(
            same_endorsement_key(&ek.b64(), variant).unwrap(),
            "{variant}"
        );
    }
    assert!(!same_endorsement_key(&ek.b64(), &Template::ek(other_modulus()).b64()).unwrap());
    let other_exponent = Template {
        exponent: 3,
        ..Template::ek(modulus)
    };
    assert!(!same_endorsement_key(&ek.b64(), &other_exponent.b64()).unwrap());
}

#[test]
fn unusable_keys_are_refused_with_typed_errors() {
    let modulus = rsa_key(0).n().to_bytes_be();
    let good = Template::ek(modulus.clone()).b64();
    let malformed = |e: &Result<bool, AttestationError>| matches!(e, Err(AttestationError::MalformedTpmKey { key, .. }) if key == "endorsementKey");
    let unsupported = |e: &Result<bool, AttestationError>| matches!(e, Err(AttestationError::UnsupportedTpmKey { key, .. }) if key == "endorsementKey");
    assert!(malformed(&same_endorsement_key(&good, "not base64!")));
    let truncated = BASE64.encode(&Template::ek(modulus.clone()).tpm2b()[..100]);
    assert!(malformed(&same_endorsement_key(&good, &truncated)));
    let mut trailing = Template::ek(modulus.clone()).tpmt();
    trailing.push(0);
    assert!(malformed(&same_endorsement_key(
        &good,
        &BASE64.encode(trailing)
    )));

    for variant in [
        Template {
            kind: 0x0023,
            ..Template::ek(modulus.clone())
        },
        Template {
            name_alg: 0x0004,
            ..Template::ek(modulus.clone())
        },
        Template {
            symmetric: (0x0010, 0, 0),
            ..Template::ek(modulus.clone())
        },
        Template {
            symmetric: (0x0006, 192, 0x0043),
            ..Template::ek(modulus.clone())
        },
        Template {
            symmetric: (0x0006, 128, 0x0044),
            ..Template::ek(modulus.clone())
        },
        Template {
            key_bits: 1024,
            modulus: modulus[..128].to_vec(),
            ..Template::ek(modulus.clone())
        },
        Template {
            key_bits: 2048,
            modulus: modulus[..128].to_vec(),
            ..Template::ek(modulus.clone())
        },
    ] {
        assert!(
            unsupported(&same_endorsement_key(&good, &variant.b64())),
            "{:?}",
            variant.kind
        );
    }
    assert!(matches!(
        TpmChallenge::create(&good, "AAAA"),
        Err(AttestationError::MalformedTpmKey { key, .. }) if key == "storageRootKey"
    ));
}

#[test]
fn arbitrary_bytes_never_panic_the_key_parser() {
    let good = Template::ek(rsa_key(0).n().to_bytes_be()).b64();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for len in 0..400 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let encoded = BASE64.encode(&bytes);
        assert!(same_endorsement_key(&good, &encoded).is_err());
        assert!(registration_id_from_endorsement_key(&encoded).is_err());
        assert!(TpmChallenge::create(&encoded, &good).is_err());
    }
}

/// The blob has the six elements with the sizes the SDKs expect, and its two
/// seeds are OAEP-encrypted to the EK and the SRK with the TPM labels.
#[test]
fn blob_structure_and_seed_encryption() {
    let (ek_key, srk_key) = (rsa_key(0), rsa_key(1));
    let ek = Template::ek(ek_key.n().to_bytes_be()).b64();
    let srk = Template {
        attributes: 0x0003_0472,
        policy: Vec::new(),
        ..Template::ek(srk_key.n().to_bytes_be())
    }
    .b64();
    let challenge = TpmChallenge::create(&ek, &srk).unwrap();
    assert_eq!(challenge.key.as_bytes().len(), 32);
    let blob = Blob::parse(&challenge.authentication_key).unwrap();

    // TPM2B_DIGEST integrityHMAC (2 + 32) ‖ encIdentity (2 + 16).
    assert_eq!(blob.id_object.len(), 52);
    assert_eq!(&blob.id_object[..2], &[0, 32]);
    assert_eq!(blob.encrypted_secret.len(), 256);
    assert_eq!(blob.in_sym_seed.len(), 256);
    assert!(blob.enc_uri_data.is_empty());
    // outerHMAC (2 + 32) ‖ encrypted (2 + 32 inner integrity ‖ 2 + TPMT_SENSITIVE).
    assert_eq!(&blob.duplicate[..2], &[0, 32]);
    // TPMT_SENSITIVE: type 2 ‖ authValue 2 ‖ seedValue 2+32 ‖ sensitive 2+32 = 72.
    assert_eq!(blob.duplicate.len(), 34 + 34 + 2 + 72);

    let public = &blob.id_key_public;
    assert_eq!(
        &public[..4],
        &[0x00, 0x08, 0x00, 0x0B],
        "KEYEDHASH, SHA-256"
    );
    assert_eq!(&public[4..8], &ID_KEY_ATTRIBUTES.to_be_bytes());
    assert_eq!(&public[8..10], &[0, 0], "no auth policy");
    assert_eq!(
        &public[10..14],
        &[0x00, 0x05, 0x00, 0x0B],
        "HMAC with SHA-256"
    );
    assert_eq!(&public[14..16], &[0, 32]);
    assert_eq!(public.len(), 48);

    let identity_seed = ek_key
        .decrypt(
            Oaep::new_with_label::<sha2::Sha256, _>("IDENTITY\0"),
            &blob.encrypted_secret,
        )
        .unwrap();
    assert_eq!(identity_seed.len(), 32);
    let duplication_seed = srk_key
        .decrypt(
            Oaep::new_with_label::<sha2::Sha256, _>("DUPLICATE\0"),
            &blob.in_sym_seed,
        )
        .unwrap();
    assert_eq!(duplication_seed.len(), 32);

    // Every challenge is fresh.
    let again = TpmChallenge::create(&ek, &srk).unwrap();
    assert_ne!(again.key, challenge.key);
    assert_ne!(again.authentication_key, challenge.authentication_key);
}
