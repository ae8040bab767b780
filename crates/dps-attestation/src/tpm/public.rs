//! RSA public areas (`TPM2B_PUBLIC`) of a device's endorsement and storage
//! root keys, and object Names.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::crypto::AesBits;
use super::marshal::Reader;
use crate::AttestationError;

pub(crate) const TPM_ALG_RSA: u16 = 0x0001;
pub(crate) const TPM_ALG_AES: u16 = 0x0006;
pub(crate) const TPM_ALG_KEYEDHASH: u16 = 0x0008;
pub(crate) const TPM_ALG_SHA256: u16 = 0x000B;
pub(crate) const TPM_ALG_NULL: u16 = 0x0010;
pub(crate) const TPM_ALG_CFB: u16 = 0x0043;

/// The parts of an RSA storage/endorsement key the activation protocol uses.
#[derive(Clone, Debug)]
pub(crate) struct RsaPublicArea {
    /// The marshalled `TPMT_PUBLIC` (without the TPM2B size): what the Name hashes.
    tpmt: Vec<u8>,
    /// AES key size of the key's symmetric definition.
    pub(crate) aes: AesBits,
    /// RSA exponent, with the TPM's 0 already replaced by 65537.
    pub(crate) exponent: u32,
    /// Big-endian modulus.
    pub(crate) modulus: Vec<u8>,
}

impl RsaPublicArea {
    /// Decode base64 and parse. `key` names the field in errors.
    pub(crate) fn from_base64(encoded: &str, key: &str) -> Result<Self, AttestationError> {
        let bytes = BASE64
            .decode(encoded.trim())
            .map_err(|_| malformed(key, "not valid base64"))?;
        Self::parse(&bytes, key)
    }

    /// Parse a `TPM2B_PUBLIC`, or a bare `TPMT_PUBLIC` (some tools store that),
    /// holding an RSA key with nameAlg SHA-256 and an AES-CFB symmetric
    /// definition — the shape of TCG EK templates and of the SDKs' SRK.
    pub(crate) fn parse(bytes: &[u8], key: &str) -> Result<Self, AttestationError> {
        let tpmt = match bytes {
            [hi, lo, rest @ ..] if usize::from(u16::from_be_bytes([*hi, *lo])) == rest.len() => {
                rest
            }
            // A bare TPMT_PUBLIC starts with its type: RSA, KEYEDHASH, ECC or SYMCIPHER.
            [0x00, 0x01 | 0x08 | 0x23 | 0x25, ..] => bytes,
            _ => {
                return Err(malformed(
                    key,
                    "TPM2B_PUBLIC size does not match its contents",
                ))
            }
        };
        let mut r = Reader::new(tpmt);
        let short = || malformed(key, "truncated TPMT_PUBLIC");
        let kind = r.u16().ok_or_else(short)?;
        if kind != TPM_ALG_RSA {
            return Err(unsupported(
                key,
                format!("type 0x{kind:04X} is not RSA (0x0001)"),
            ));
        }
        let name_alg = r.u16().ok_or_else(short)?;
        if name_alg != TPM_ALG_SHA256 {
            return Err(unsupported(
                key,
                format!("nameAlg 0x{name_alg:04X} is not SHA-256 (0x000B)"),
            ));
        }
        let _attributes = r.u32().ok_or_else(short)?;
        let _auth_policy = r.tpm2b().ok_or_else(short)?;
        let symmetric = r.u16().ok_or_else(short)?;
        if symmetric != TPM_ALG_AES {
            return Err(unsupported(
                key,
                format!("symmetric algorithm 0x{symmetric:04X} is not AES (0x0006)"),
            ));
        }
        let aes_bits = r.u16().ok_or_else(short)?;
        let mode = r.u16().ok_or_else(short)?;
        let aes = match (aes_bits, mode) {
            (128, TPM_ALG_CFB) => AesBits::Aes128,
            (256, TPM_ALG_CFB) => AesBits::Aes256,
            _ => {
                return Err(unsupported(
                    key,
                    format!("symmetric AES-{aes_bits} mode 0x{mode:04X} is not AES-128/256-CFB"),
                ))
            }
        };
        let scheme = r.u16().ok_or_else(short)?;
        if scheme != TPM_ALG_NULL {
            // A storage or endorsement key has no signing/encryption scheme;
            // skip a scheme's hash algorithm all the same.
            r.u16().ok_or_else(short)?;
        }
        let key_bits = r.u16().ok_or_else(short)?;
        let exponent = match r.u32().ok_or_else(short)? {
            0 => 65537,
            e => e,
        };
        let modulus = r.tpm2b().ok_or_else(short)?;
        if !r.rest().is_empty() {
            return Err(malformed(key, "trailing bytes after TPMT_PUBLIC"));
        }
        if !(2048..=4096).contains(&key_bits) || modulus.len() * 8 != usize::from(key_bits) {
            return Err(unsupported(
                key,
                format!(
                    "RSA keyBits {key_bits} with a {}-byte modulus (2048 to 4096 bits are supported)",
                    modulus.len()
                ),
            ));
        }
        Ok(RsaPublicArea {
            tpmt: tpmt.to_vec(),
            aes,
            exponent,
            modulus: modulus.to_vec(),
        })
    }

    /// `Name = nameAlg ‖ H(TPMT_PUBLIC)`.
    pub(crate) fn name(&self) -> Vec<u8> {
        name_sha256(&self.tpmt)
    }
}

/// The Name of an object with nameAlg SHA-256 and public area `tpmt`.
pub(crate) fn name_sha256(tpmt: &[u8]) -> Vec<u8> {
    let mut name = TPM_ALG_SHA256.to_be_bytes().to_vec();
    name.extend_from_slice(&Sha256::digest(tpmt));
    name
}

fn malformed(key: &str, reason: &str) -> AttestationError {
    AttestationError::MalformedTpmKey {
        key: key.to_owned(),
        reason: reason.to_owned(),
    }
}

fn unsupported(key: &str, reason: String) -> AttestationError {
    AttestationError::UnsupportedTpmKey {
        key: key.to_owned(),
        reason,
    }
}
