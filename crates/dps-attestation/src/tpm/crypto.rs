//! The primitives of TPM credential protection (TPM 2.0 Part 1, §11.4 and
//! §24): KDFa, AES-CFB with a zero IV, HMAC-SHA256 and RSA-OAEP with a TPM label.

use aes::{Aes128, Aes256};
use cfb_mode::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use rand::{CryptoRng, RngCore};
use rsa::{BigUint, Oaep, RsaPublicKey};
use sha2::Sha256;

use super::public::RsaPublicArea;
use crate::AttestationError;

/// SP 800-108 counter-mode KDF with HMAC-SHA256, as TPM2 `KDFa`:
/// blocks `HMAC(key, u32be(i) ‖ label ‖ 0x00 ‖ context_u ‖ context_v ‖ u32be(bits))`.
pub(crate) fn kdfa(
    key: &[u8],
    label: &str,
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let bytes = (bits as usize).div_ceil(8);
    let mut out = Vec::with_capacity(bytes + 32);
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let mut mac = new_hmac(key);
        mac.update(&counter.to_be_bytes());
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(context_u);
        mac.update(context_v);
        mac.update(&bits.to_be_bytes());
        out.extend_from_slice(&mac.finalize().into_bytes());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = new_hmac(key);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn new_hmac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length")
}

/// AES key sizes a TPM symmetric definition may name here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AesBits {
    Aes128,
    Aes256,
}

impl AesBits {
    pub(crate) fn bits(self) -> u32 {
        match self {
            AesBits::Aes128 => 128,
            AesBits::Aes256 => 256,
        }
    }
}

/// An AES key for CFB mode with the all-zero IV TPM wrappers use.
pub(crate) enum AesKey {
    Aes128([u8; 16]),
    Aes256([u8; 32]),
}

impl AesKey {
    /// `KDFa(seed, label, context_u, "", bits)` as an AES key.
    pub(crate) fn derive(seed: &[u8], label: &str, context_u: &[u8], size: AesBits) -> Self {
        let bytes = kdfa(seed, label, context_u, &[], size.bits());
        match size {
            AesBits::Aes128 => AesKey::Aes128(fixed(&bytes)),
            AesBits::Aes256 => AesKey::Aes256(fixed(&bytes)),
        }
    }

    /// AES-CFB (128-bit feedback), zero IV, in place.
    pub(crate) fn encrypt_cfb(&self, data: &mut [u8]) {
        let iv = [0u8; 16];
        match self {
            AesKey::Aes128(key) => {
                cfb_mode::Encryptor::<Aes128>::new(key.into(), &iv.into()).encrypt(data)
            }
            AesKey::Aes256(key) => {
                cfb_mode::Encryptor::<Aes256>::new(key.into(), &iv.into()).encrypt(data)
            }
        }
    }
}

/// The first N bytes of `bytes` (kdfa returns exactly the requested size).
fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// RSA-OAEP (SHA-256, MGF1-SHA-256) with a TPM label such as `"IDENTITY\0"`.
pub(crate) fn oaep_encrypt<R: RngCore + CryptoRng>(
    rng: &mut R,
    recipient: &RsaPublicArea,
    key: &str,
    label: &str,
    message: &[u8],
) -> Result<Vec<u8>, AttestationError> {
    let public = RsaPublicKey::new(
        BigUint::from_bytes_be(&recipient.modulus),
        BigUint::from(recipient.exponent),
    )
    .map_err(|e| AttestationError::UnsupportedTpmKey {
        key: key.to_owned(),
        reason: format!("not a usable RSA key: {e}"),
    })?;
    public
        .encrypt(rng, Oaep::new_with_label::<Sha256, _>(label), message)
        .map_err(|e| AttestationError::UnsupportedTpmKey {
            key: key.to_owned(),
            reason: format!("RSA-OAEP encryption failed: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdfa_truncates_and_chains_blocks() {
        let long = kdfa(b"key", "STORAGE", b"u", b"v", 512);
        assert_eq!(long.len(), 64);
        // Different `bits` are part of every block, so outputs are not prefixes.
        let short = kdfa(b"key", "STORAGE", b"u", b"v", 128);
        assert_eq!(short.len(), 16);
        assert_ne!(&long[..16], &short[..]);
        // Block 1 by hand.
        let expected = hmac_sha256(
            b"key",
            &[
                &1u32.to_be_bytes(),
                b"STORAGE\0",
                b"u",
                b"v",
                &256u32.to_be_bytes(),
            ],
        );
        assert_eq!(kdfa(b"key", "STORAGE", b"u", b"v", 256), expected);
    }

    #[test]
    fn cfb_is_a_stream_cipher_of_any_length() {
        let key = AesKey::Aes128([7u8; 16]);
        let mut data = *b"seventeen bytes!!";
        key.encrypt_cfb(&mut data);
        assert_ne!(&data, b"seventeen bytes!!");
        let mut again = *b"seventeen bytes!!";
        key.encrypt_cfb(&mut again);
        assert_eq!(data, again);
        // CFB: the first block is plaintext XOR AES(key, IV = 0).
        let mut zeros = [0u8; 16];
        key.encrypt_cfb(&mut zeros);
        let mut first = *b"seventeen bytes!";
        for (byte, pad) in first.iter_mut().zip(zeros) {
            *byte ^= pad;
        }
        assert_eq!(first, data[..16]);
    }
}
