//! The activation blob DPS answers a TPM device's first registration with.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use super::crypto::{hmac_sha256, oaep_encrypt, AesKey};
use super::marshal::Writer;
use super::public::{name_sha256, RsaPublicArea, TPM_ALG_KEYEDHASH, TPM_ALG_SHA256};
use crate::sas::SymmetricKey;
use crate::AttestationError;

/// `userWithAuth | sign`: an HMAC key the device uses without a policy, and
/// that is neither fixedTPM nor fixedParent because it arrives by import.
pub const ID_KEY_ATTRIBUTES: u32 = 0x0004_0040;
/// `TPM_ALG_HMAC`, the keyed-hash scheme of the delivered key.
const TPM_ALG_HMAC: u16 = 0x0005;
/// Length of the delivered HMAC key `K`.
const ID_KEY_LEN: usize = 32;
/// The inner wrapper is AES-128: the C SDK hard-codes it for TPM2_Import.
const INNER_WRAP_KEY_LEN: usize = 16;

/// A fresh symmetric key sealed to one device's TPM.
///
/// The service sends [`authentication_key`](Self::authentication_key) to the
/// device (401 body `authenticationKey`, and `registrationState.tpm.authenticationKey`)
/// and keeps [`key`](Self::key) to verify the device's SAS tokens with
/// [`crate::sas`]; only the TPM holding the endorsement key and the storage
/// root key can recover it.
#[derive(Debug)]
pub struct TpmChallenge {
    /// The 6-element activation blob, standard base64.
    pub authentication_key: String,
    /// `K`: the HMAC key inside the blob.
    pub key: SymmetricKey,
}

impl TpmChallenge {
    /// Build a challenge for the device's endorsement key and storage root
    /// key (both base64 `TPM2B_PUBLIC`, as sent in the registration request).
    pub fn create(endorsement_key: &str, storage_root_key: &str) -> Result<Self, AttestationError> {
        Self::create_with_rng(endorsement_key, storage_root_key, &mut rand::rngs::OsRng)
    }

    /// [`create`](Self::create) with a chosen random source (deterministic tests).
    pub fn create_with_rng<R: RngCore + CryptoRng>(
        endorsement_key: &str,
        storage_root_key: &str,
        rng: &mut R,
    ) -> Result<Self, AttestationError> {
        let mut key = [0u8; ID_KEY_LEN];
        rng.fill_bytes(&mut key);
        Self::build(endorsement_key, storage_root_key, key, rng)
    }

    /// A challenge delivering a chosen 32-byte key (the service derives
    /// challenge keys from a secret, so any replica can verify the answer).
    pub fn with_key(
        endorsement_key: &str,
        storage_root_key: &str,
        key: [u8; ID_KEY_LEN],
    ) -> Result<Self, AttestationError> {
        Self::build(
            endorsement_key,
            storage_root_key,
            key,
            &mut rand::rngs::OsRng,
        )
    }

    fn build<R: RngCore + CryptoRng>(
        endorsement_key: &str,
        storage_root_key: &str,
        key: [u8; ID_KEY_LEN],
        rng: &mut R,
    ) -> Result<Self, AttestationError> {
        let ek = RsaPublicArea::from_base64(endorsement_key, "endorsementKey")?;
        let srk = RsaPublicArea::from_base64(storage_root_key, "storageRootKey")?;

        let mut seed_value = [0u8; 32];
        let mut inner_wrap_key = [0u8; INNER_WRAP_KEY_LEN];
        rng.fill_bytes(&mut seed_value);
        rng.fill_bytes(&mut inner_wrap_key);

        let (id_object, encrypted_secret) =
            make_credential(rng, &ek, &srk.name(), &inner_wrap_key)?;
        let id_key_public = id_key_public(&key, &seed_value);
        let id_key_name = name_sha256(&id_key_public);
        let (duplicate, in_sym_seed) = duplicate(
            rng,
            &srk,
            &id_key_name,
            &id_key_sensitive(&key, &seed_value),
            &inner_wrap_key,
        )?;

        let blob = Writer::default()
            .tpm2b(&id_object)
            .tpm2b(&encrypted_secret)
            .tpm2b(&duplicate)
            .tpm2b(&in_sym_seed)
            .tpm2b(&id_key_public)
            .tpm2b(&[]) // encUriData: none
            .finish();
        Ok(TpmChallenge {
            authentication_key: BASE64.encode(blob),
            key: SymmetricKey::from_bytes(key.to_vec()),
        })
    }
}

/// `TPMT_PUBLIC` of the delivered HMAC key.
fn id_key_public(key: &[u8], seed_value: &[u8]) -> Vec<u8> {
    let unique = Sha256::new()
        .chain_update(seed_value)
        .chain_update(key)
        .finalize();
    Writer::default()
        .u16(TPM_ALG_KEYEDHASH)
        .u16(TPM_ALG_SHA256)
        .u32(ID_KEY_ATTRIBUTES)
        .tpm2b(&[]) // authPolicy
        .u16(TPM_ALG_HMAC)
        .u16(TPM_ALG_SHA256)
        .tpm2b(&unique)
        .finish()
}

/// `TPMT_SENSITIVE` of the delivered HMAC key.
fn id_key_sensitive(key: &[u8], seed_value: &[u8]) -> Vec<u8> {
    Writer::default()
        .u16(TPM_ALG_KEYEDHASH)
        .tpm2b(&[]) // authValue
        .tpm2b(seed_value)
        .tpm2b(key)
        .finish()
}

/// TPM2_MakeCredential done in software: protects `credential` so that only
/// the TPM holding `ek` can release it, and only for the object `object_name`.
/// Returns the `TPM2B_ID_OBJECT` contents and the encrypted seed.
fn make_credential<R: RngCore + CryptoRng>(
    rng: &mut R,
    ek: &RsaPublicArea,
    object_name: &[u8],
    credential: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), AttestationError> {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let secret = oaep_encrypt(rng, ek, "endorsementKey", "IDENTITY\0", &seed)?;

    let mut enc_identity = Writer::default().tpm2b(credential).finish();
    AesKey::derive(&seed, "STORAGE", object_name, ek.aes).encrypt_cfb(&mut enc_identity);
    let hmac_key = super::crypto::kdfa(&seed, "INTEGRITY", &[], &[], 256);
    let integrity = hmac_sha256(&hmac_key, &[&enc_identity, object_name]);

    let id_object = Writer::default()
        .tpm2b(&integrity)
        .bytes(&enc_identity)
        .finish();
    Ok((id_object, secret))
}

/// Duplicate an object (Name `name`, sensitive area `sensitive`) to the new
/// parent `srk`, with an inner AES-128-CFB wrapper under `inner_wrap_key` and
/// the outer wrapper from a seed encrypted to the SRK. Returns the
/// `TPM2B_PRIVATE` contents and the encrypted seed.
fn duplicate<R: RngCore + CryptoRng>(
    rng: &mut R,
    srk: &RsaPublicArea,
    name: &[u8],
    sensitive: &[u8],
    inner_wrap_key: &[u8; INNER_WRAP_KEY_LEN],
) -> Result<(Vec<u8>, Vec<u8>), AttestationError> {
    let sensitive_2b = Writer::default().tpm2b(sensitive).finish();
    let inner_integrity = Sha256::new()
        .chain_update(&sensitive_2b)
        .chain_update(name)
        .finalize();
    let mut enc_sensitive = Writer::default()
        .tpm2b(&inner_integrity)
        .bytes(&sensitive_2b)
        .finish();
    AesKey::Aes128(*inner_wrap_key).encrypt_cfb(&mut enc_sensitive);

    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let in_sym_seed = oaep_encrypt(rng, srk, "storageRootKey", "DUPLICATE\0", &seed)?;
    AesKey::derive(&seed, "STORAGE", name, srk.aes).encrypt_cfb(&mut enc_sensitive);
    let outer_hmac_key = super::crypto::kdfa(&seed, "INTEGRITY", &[], &[], 256);
    let outer_hmac = hmac_sha256(&outer_hmac_key, &[&enc_sensitive, name]);

    let private = Writer::default()
        .tpm2b(&outer_hmac)
        .bytes(&enc_sensitive)
        .finish();
    Ok((private, in_sym_seed))
}
