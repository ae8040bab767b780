//! The device side of TPM attestation, done by a real TPM: what the C and
//! Node SDKs do with the activation blob, spelled with tpm2-tools.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::swtpm::{SoftwareTpm, EK_HANDLE, SRK_HANDLE};

/// The C SDK's SRK template attributes.
const SRK_ATTRIBUTES: &str =
    "restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda";

/// A TPM with an EK (default TCG RSA template) and an SRK, both persistent.
pub(crate) struct Device {
    pub(crate) tpm: SoftwareTpm,
    /// `TPM2B_PUBLIC` of the EK.
    pub(crate) endorsement_key: Vec<u8>,
    /// `TPM2B_PUBLIC` of the SRK.
    pub(crate) storage_root_key: Vec<u8>,
}

impl Device {
    pub(crate) fn provision() -> anyhow::Result<Self> {
        let tpm = SoftwareTpm::start()?;
        tpm.tool(
            "tpm2_createek",
            &["-c", EK_HANDLE, "-G", "rsa", "-u", "ek.pub"],
        )?;
        tpm.tool(
            "tpm2_createprimary",
            &[
                "-C",
                "o",
                "-G",
                "rsa2048:aes128cfb",
                "-g",
                "sha256",
                "-a",
                SRK_ATTRIBUTES,
                "-c",
                "srk.ctx",
            ],
        )?;
        tpm.tool(
            "tpm2_evictcontrol",
            &["-C", "o", "-c", "srk.ctx", SRK_HANDLE],
        )?;
        // Without a resource manager, transient objects stay loaded.
        tpm.tool("tpm2_flushcontext", &["-t"])?;
        tpm.tool("tpm2_readpublic", &["-c", SRK_HANDLE, "-o", "srk.pub"])?;
        let endorsement_key = std::fs::read(tpm.path("ek.pub"))?;
        let storage_root_key = std::fs::read(tpm.path("srk.pub"))?;
        Ok(Device {
            tpm,
            endorsement_key,
            storage_root_key,
        })
    }

    pub(crate) fn endorsement_key_b64(&self) -> String {
        BASE64.encode(&self.endorsement_key)
    }

    pub(crate) fn storage_root_key_b64(&self) -> String {
        BASE64.encode(&self.storage_root_key)
    }

    /// TPM2_ActivateCredential on the blob's credential: the inner wrapper
    /// key, or the tool's complaint.
    pub(crate) fn activate(&self, blob: &Blob) -> anyhow::Result<Result<Vec<u8>, String>> {
        let mut credential = Vec::new();
        credential.extend_from_slice(&0xBADC_C0DEu32.to_be_bytes());
        credential.extend_from_slice(&1u32.to_be_bytes());
        credential.extend_from_slice(&tpm2b(&blob.id_object));
        credential.extend_from_slice(&tpm2b(&blob.encrypted_secret));
        std::fs::write(self.tpm.path("credential.bin"), credential)?;
        let _ = std::fs::remove_file(self.tpm.path("inner.key"));

        self.tpm.tool(
            "tpm2_startauthsession",
            &["--policy-session", "-S", "session.ctx"],
        )?;
        self.tpm
            .tool("tpm2_policysecret", &["-S", "session.ctx", "-c", "e"])?;
        let activation = self.tpm.try_tool(
            "tpm2_activatecredential",
            &[
                "-c",
                SRK_HANDLE,
                "-C",
                EK_HANDLE,
                "-i",
                "credential.bin",
                "-o",
                "inner.key",
                "-P",
                "session:session.ctx",
            ],
        )?;
        self.tpm.tool("tpm2_flushcontext", &["session.ctx"])?;
        if !activation.success {
            return Ok(Err(activation.stderr));
        }
        Ok(Ok(std::fs::read(self.tpm.path("inner.key"))?))
    }

    /// Import the delivered key under the SRK with the inner wrapper key,
    /// load it, and HMAC `data` with it inside the TPM.
    pub(crate) fn import_and_hmac(
        &self,
        blob: &Blob,
        inner_wrap_key: &[u8],
        data: &[u8],
    ) -> anyhow::Result<Vec<u8>> {
        std::fs::write(self.tpm.path("inner.key"), inner_wrap_key)?;
        std::fs::write(self.tpm.path("dup.priv"), tpm2b(&blob.duplicate))?;
        std::fs::write(self.tpm.path("seed.bin"), tpm2b(&blob.in_sym_seed))?;
        std::fs::write(self.tpm.path("idkey.pub"), tpm2b(&blob.id_key_public))?;
        std::fs::write(self.tpm.path("data.bin"), data)?;
        self.tpm.tool(
            "tpm2_import",
            &[
                "-C",
                SRK_HANDLE,
                "-u",
                "idkey.pub",
                "-i",
                "dup.priv",
                "-s",
                "seed.bin",
                "-k",
                "inner.key",
                "-r",
                "idkey.priv",
            ],
        )?;
        self.tpm.tool("tpm2_flushcontext", &["-t"])?;
        self.tpm.tool(
            "tpm2_load",
            &[
                "-C",
                SRK_HANDLE,
                "-u",
                "idkey.pub",
                "-r",
                "idkey.priv",
                "-c",
                "idkey.ctx",
            ],
        )?;
        self.tpm.tool(
            "tpm2_hmac",
            &[
                "-c",
                "idkey.ctx",
                "-g",
                "sha256",
                "-o",
                "hmac.bin",
                "data.bin",
            ],
        )?;
        self.tpm.tool("tpm2_flushcontext", &["-t"])?;
        Ok(std::fs::read(self.tpm.path("hmac.bin"))?)
    }
}

/// The six TPM2B elements of an activation blob (spec §3.5), contents only.
pub(crate) struct Blob {
    pub(crate) id_object: Vec<u8>,
    pub(crate) encrypted_secret: Vec<u8>,
    pub(crate) duplicate: Vec<u8>,
    pub(crate) in_sym_seed: Vec<u8>,
    pub(crate) id_key_public: Vec<u8>,
    pub(crate) enc_uri_data: Vec<u8>,
}

impl Blob {
    /// Split a base64 blob the way the C SDK's `hsm_client_tpm.c` does,
    /// refusing trailing bytes as Node's parser warns about them.
    pub(crate) fn parse(b64: &str) -> anyhow::Result<Self> {
        let bytes = BASE64.decode(b64)?;
        let mut rest = &bytes[..];
        let mut next = || -> anyhow::Result<Vec<u8>> {
            anyhow::ensure!(rest.len() >= 2, "truncated blob");
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            anyhow::ensure!(rest.len() >= 2 + len, "truncated blob element");
            let element = rest[2..2 + len].to_vec();
            rest = &rest[2 + len..];
            Ok(element)
        };
        let blob = Blob {
            id_object: next()?,
            encrypted_secret: next()?,
            duplicate: next()?,
            in_sym_seed: next()?,
            id_key_public: next()?,
            enc_uri_data: next()?,
        };
        anyhow::ensure!(
            rest.is_empty(),
            "{} trailing bytes after the blob",
            rest.len()
        );
        Ok(blob)
    }
}

fn tpm2b(contents: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(contents.len())
        .expect("TPM2B fits")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(contents);
    out
}
