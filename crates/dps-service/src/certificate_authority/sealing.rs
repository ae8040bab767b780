//! CA private keys at rest: AES-256-GCM under a key-encryption key.
//!
//! A sealed blob is `version (1) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`. The
//! nonce is random per seal (a key seals few CA keys, far below the 2^32
//! bound for random 96-bit nonces). The associated data binds the blob to
//! its tenant and CA name, so a blob copied onto another CA (or tenant) in
//! the database fails to open instead of lending that CA its key.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use dps_model::IdScope;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use super::CertificateAuthorityError;

/// The file a generated key-encryption key is kept in, under the data directory.
pub const KEY_ENCRYPTION_KEY_FILE: &str = "certificate-kek.key";

const BLOB_VERSION: u8 = 1;
const KEY_LEN: usize = 32;

/// The key that seals tenant CA private keys. `Debug` shows its id only.
pub struct KeyEncryptionKey {
    key: LessSafeKey,
    id: String,
}

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEncryptionKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl KeyEncryptionKey {
    /// A key from base64 of exactly 32 bytes (what the key file holds).
    pub fn from_base64(text: &str) -> Result<Self, CertificateAuthorityError> {
        let bad = || CertificateAuthorityError::KeyEncryptionKey {
            reason: "expected base64 of exactly 32 bytes".to_owned(),
        };
        let bytes = STANDARD.decode(text.trim()).map_err(|_| bad())?;
        if bytes.len() != KEY_LEN {
            return Err(bad());
        }
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, CertificateAuthorityError> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| {
            CertificateAuthorityError::KeyEncryptionKey {
                reason: "not an AES-256 key".to_owned(),
            }
        })?;
        // The id names the key without revealing it: a hash under a fixed
        // label, truncated. It tells which key sealed a blob after rotation.
        let mut labelled = b"dps certificate key-encryption key id\0".to_vec();
        labelled.extend_from_slice(bytes);
        let digest = ring::digest::digest(&ring::digest::SHA256, &labelled);
        let id = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(KeyEncryptionKey {
            key: LessSafeKey::new(unbound),
            id,
        })
    }

    /// A fresh random key and its base64 text.
    pub fn generate() -> Result<(Self, String), CertificateAuthorityError> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| CertificateAuthorityError::Crypto("no system randomness"))?;
        let text = STANDARD.encode(bytes);
        Ok((Self::from_bytes(&bytes)?, text))
    }

    /// The key in `{data_dir}/certificate-kek.key`, generated there (mode
    /// 0600) when the file does not exist yet.
    pub fn load_or_generate(data_dir: &Path) -> Result<Self, CertificateAuthorityError> {
        let path = data_dir.join(KEY_ENCRYPTION_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_base64(&text).map_err(|err| match err {
                CertificateAuthorityError::KeyEncryptionKey { reason } => {
                    CertificateAuthorityError::KeyEncryptionKey {
                        reason: format!("{}: {reason}", path.display()),
                    }
                }
                other => other,
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let (key, text) = Self::generate()?;
                crate::tls::write_private(&path, &text).map_err(|err| {
                    CertificateAuthorityError::KeyEncryptionKey {
                        reason: err.to_string(),
                    }
                })?;
                tracing::info!(path = %path.display(), key_id = %key.id, "certificate key-encryption key generated");
                Ok(key)
            }
            Err(err) => Err(CertificateAuthorityError::KeyEncryptionKey {
                reason: format!("{}: {err}", path.display()),
            }),
        }
    }

    /// The key's id (stored next to every blob it seals).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seal `secret` (a PEM private key) for the CA `name` of tenant `id_scope`.
    pub fn seal(
        &self,
        id_scope: &IdScope,
        name: &str,
        secret: &[u8],
    ) -> Result<Vec<u8>, CertificateAuthorityError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| CertificateAuthorityError::Crypto("no system randomness"))?;
        let mut sealed = secret.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(id_scope, name)),
                &mut sealed,
            )
            .map_err(|_| CertificateAuthorityError::Crypto("sealing failed"))?;
        let mut blob = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        blob.push(BLOB_VERSION);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }

    /// Open a blob sealed for the CA `name` of tenant `id_scope` by this key.
    pub fn open(
        &self,
        id_scope: &IdScope,
        name: &str,
        key_id: &str,
        blob: &[u8],
    ) -> Result<Vec<u8>, CertificateAuthorityError> {
        if key_id != self.id {
            return Err(CertificateAuthorityError::WrongKey {
                sealed_with: key_id.to_owned(),
                have: self.id.clone(),
            });
        }
        let unreadable = || CertificateAuthorityError::Crypto("sealed key does not open");
        let (&version, rest) = blob.split_first().ok_or_else(unreadable)?;
        if version != BLOB_VERSION || rest.len() < NONCE_LEN {
            return Err(unreadable());
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| unreadable())?;
        let mut buffer = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(
                nonce,
                Aad::from(associated_data(id_scope, name)),
                &mut buffer,
            )
            .map_err(|_| unreadable())?;
        Ok(plain.to_vec())
    }
}

/// What a blob is bound to: format label, tenant (lower-case scope) and CA name.
fn associated_data(id_scope: &IdScope, name: &str) -> Vec<u8> {
    format!("dps-ca-key-v1\0{}\0{name}", id_scope.key()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(text: &str) -> IdScope {
        IdScope::new(text).unwrap()
    }

    #[test]
    fn seals_and_opens_bound_to_tenant_and_name() {
        let (kek, _) = KeyEncryptionKey::generate().unwrap();
        let secret = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let a = scope("0ne000000A1");
        let blob = kek.seal(&a, "ca1", secret).unwrap();
        assert!(!blob.windows(4).any(|w| w == b"AAAA"), "ciphertext");
        assert_eq!(kek.open(&a, "ca1", kek.id(), &blob).unwrap(), secret);
        // The same scope in another case is the same tenant.
        assert_eq!(
            kek.open(&scope("0NE000000a1"), "ca1", kek.id(), &blob)
                .unwrap(),
            secret
        );
        // Moved to another CA or tenant: refused.
        assert!(kek.open(&a, "ca2", kek.id(), &blob).is_err());
        assert!(kek
            .open(&scope("0ne000000B2"), "ca1", kek.id(), &blob)
            .is_err());
        // Tampered: refused.
        let mut tampered = blob.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(kek.open(&a, "ca1", kek.id(), &tampered).is_err());
        assert!(kek.open(&a, "ca1", kek.id(), &blob[..5]).is_err());
        // A fresh nonce each time.
        assert_ne!(kek.seal(&a, "ca1", secret).unwrap(), blob);
    }

    proptest::proptest! {
        #[test]
        fn any_secret_opens_only_under_its_own_name(
            secret in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            name in "[a-z0-9]{1,12}",
            other in "[a-z0-9]{1,12}",
        ) {
            let kek = KeyEncryptionKey::from_base64(&STANDARD.encode([9u8; 32])).unwrap();
            let a = scope("0ne000000A1");
            let blob = kek.seal(&a, &name, &secret).unwrap();
            proptest::prop_assert_eq!(blob.len(), 1 + NONCE_LEN + secret.len() + 16);
            proptest::prop_assert_eq!(kek.open(&a, &name, kek.id(), &blob).unwrap(), secret);
            proptest::prop_assert_eq!(kek.open(&a, &other, kek.id(), &blob).is_ok(), name == other);
        }
    }

    #[test]
    fn another_key_is_named_not_tried() {
        let (kek, _) = KeyEncryptionKey::generate().unwrap();
        let (other, _) = KeyEncryptionKey::generate().unwrap();
        let a = scope("0ne000000A1");
        let blob = kek.seal(&a, "ca1", b"k").unwrap();
        let err = other.open(&a, "ca1", kek.id(), &blob).unwrap_err();
        assert!(
            matches!(err, CertificateAuthorityError::WrongKey { .. }),
            "{err:?}"
        );
        assert!(other.open(&a, "ca1", other.id(), &blob).is_err());
    }

    #[test]
    fn key_file_is_generated_once_and_reread() {
        let dir = tempfile::tempdir().unwrap();
        let first = KeyEncryptionKey::load_or_generate(dir.path()).unwrap();
        let again = KeyEncryptionKey::load_or_generate(dir.path()).unwrap();
        assert_eq!(first.id(), again.id());
        let path = dir.path().join(KEY_ENCRYPTION_KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "c2hvcnQ=").unwrap();
        let err = KeyEncryptionKey::load_or_generate(dir.path()).unwrap_err();
        assert!(err.to_string().contains("32 bytes"), "{err}");
        assert!(!format!("{first:?}").contains(&std::fs::read_to_string(&path).unwrap()));
    }
}
