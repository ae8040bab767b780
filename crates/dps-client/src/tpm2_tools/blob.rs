//! The service's activation blob (`authenticationKey`, spec §3.5), split
//! into the files tpm2-tools reads.

use crate::ClientError;

/// Marker and version of a tpm2-tools credential file (`tpm2_makecredential`'s output).
const CREDENTIAL_FILE_MAGIC: u32 = 0xBADC_C0DE;
const CREDENTIAL_FILE_VERSION: u32 = 1;

/// The six TPM2B elements of an activation blob, contents without size prefixes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ActivationBlob {
    /// `TPM2B_ID_OBJECT`: the credential (integrity HMAC ‖ encrypted identity).
    pub(crate) id_object: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET`: the MakeCredential seed, encrypted to the EK.
    pub(crate) encrypted_secret: Vec<u8>,
    /// `TPM2B_PRIVATE`: the duplicated HMAC key.
    pub(crate) duplicate: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET`: the duplication seed, encrypted to the SRK.
    pub(crate) in_sym_seed: Vec<u8>,
    /// `TPM2B_PUBLIC`: the public area of the HMAC key.
    pub(crate) id_key_public: Vec<u8>,
    /// `TPM2B_DATA`: extra data (empty from dps and Azure).
    pub(crate) enc_uri_data: Vec<u8>,
}

impl ActivationBlob {
    /// Split the decoded blob; refuses truncated elements and trailing bytes.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, ClientError> {
        let mut rest = bytes;
        let mut next = |name: &str| -> Result<Vec<u8>, ClientError> {
            let malformed = |reason: String| ClientError::Protocol {
                reason: format!("TPM activation blob, element {name}: {reason}"),
            };
            let [high, low, tail @ ..] = rest else {
                return Err(malformed("missing size".to_owned()));
            };
            let len = usize::from(u16::from_be_bytes([*high, *low]));
            if tail.len() < len {
                return Err(malformed(format!(
                    "{len} bytes announced, {} left",
                    tail.len()
                )));
            }
            let (element, after) = tail.split_at(len);
            rest = after;
            Ok(element.to_vec())
        };
        let blob = ActivationBlob {
            id_object: next("credentialBlob")?,
            encrypted_secret: next("secret")?,
            duplicate: next("duplicate")?,
            in_sym_seed: next("inSymSeed")?,
            id_key_public: next("idKeyPub")?,
            enc_uri_data: next("encUriData")?,
        };
        if !rest.is_empty() {
            return Err(ClientError::Protocol {
                reason: format!(
                    "TPM activation blob: {} bytes after its six elements",
                    rest.len()
                ),
            });
        }
        Ok(blob)
    }

    /// The blob as the service encodes it (size-prefixed elements in order).
    #[cfg(test)]
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        [
            &self.id_object,
            &self.encrypted_secret,
            &self.duplicate,
            &self.in_sym_seed,
            &self.id_key_public,
            &self.enc_uri_data,
        ]
        .into_iter()
        .flat_map(|element| tpm2b(element))
        .collect()
    }

    /// `tpm2_activatecredential -i`: magic ‖ version ‖ TPM2B_ID_OBJECT ‖ TPM2B_ENCRYPTED_SECRET.
    pub(crate) fn credential_file(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.id_object.len() + self.encrypted_secret.len());
        out.extend_from_slice(&CREDENTIAL_FILE_MAGIC.to_be_bytes());
        out.extend_from_slice(&CREDENTIAL_FILE_VERSION.to_be_bytes());
        out.extend_from_slice(&tpm2b(&self.id_object));
        out.extend_from_slice(&tpm2b(&self.encrypted_secret));
        out
    }
}

/// A TPM2B: big-endian u16 size, then the bytes. Elements come from a blob
/// whose sizes were u16, so they always fit.
pub(crate) fn tpm2b(contents: &[u8]) -> Vec<u8> {
    let len = u16::try_from(contents.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(2 + contents.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&contents[..usize::from(len)]);
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn element() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..300)
    }

    proptest! {
        #[test]
        fn six_elements_round_trip(
            a in element(), b in element(), c in element(),
            d in element(), e in element(), f in element(),
        ) {
            let blob = ActivationBlob {
                id_object: a, encrypted_secret: b, duplicate: c,
                in_sym_seed: d, id_key_public: e, enc_uri_data: f,
            };
            prop_assert_eq!(ActivationBlob::parse(&blob.to_bytes()).unwrap(), blob);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = ActivationBlob::parse(&bytes);
        }

        #[test]
        fn truncation_and_trailing_bytes_are_refused(
            a in element(), b in element(), cut in 1usize..50, extra in 1usize..5,
        ) {
            let blob = ActivationBlob {
                id_object: a, encrypted_secret: b, duplicate: vec![1; 10],
                in_sym_seed: vec![2; 10], id_key_public: vec![3; 10], enc_uri_data: Vec::new(),
            };
            let bytes = blob.to_bytes();
            let cut = cut.min(bytes.len());
            let is_protocol = |r: Result<ActivationBlob, ClientError>| matches!(r, Err(ClientError::Protocol { .. }));
            prop_assert!(is_protocol(ActivationBlob::parse(&bytes[..bytes.len() - cut])));
            let mut longer = bytes.clone();
            longer.extend(std::iter::repeat_n(0u8, extra));
            prop_assert!(is_protocol(ActivationBlob::parse(&longer)));
        }
    }

    #[test]
    fn credential_file_layout() {
        let blob = ActivationBlob {
            id_object: vec![0xAA; 3],
            encrypted_secret: vec![0xBB; 2],
            duplicate: Vec::new(),
            in_sym_seed: Vec::new(),
            id_key_public: Vec::new(),
            enc_uri_data: Vec::new(),
        };
        assert_eq!(
            blob.credential_file(),
            [0xBA, 0xDC, 0xC0, 0xDE, 0, 0, 0, 1, 0, 3, 0xAA, 0xAA, 0xAA, 0, 2, 0xBB, 0xBB]
        );
    }
}
