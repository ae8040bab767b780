//! [`TpmDevice`] over the tpm2-tools command-line programs.
//!
//! Why tpm2-tools and not `tss-esapi`: `tss-esapi` binds the C TSS libraries
//! (`libtss2-esys`, found with pkg-config at build time), so every build of
//! this crate — and of everything that depends on it, including users who
//! never touch a TPM — would need the TSS development packages installed.
//! tpm2-tools is a run-time dependency only of devices that use a TPM, is
//! packaged by every Linux distribution, speaks to any TCTI (`device:`,
//! `tabrmd:`, `swtpm:`, `mssim:`) and is easy to reproduce by hand when
//! debugging a device. The cost — a process per TPM command, some tens of
//! milliseconds each — is paid a handful of times per provisioning.
//!
//! Layout in the TPM, as the C SDK does it: the endorsement key (TCG default
//! RSA template) persistent at `0x81010001`, the storage root key (RSA-2048,
//! AES-128-CFB, the SDK's attributes) at `0x81000001` — both created when
//! absent — and the imported DPS key at `0x81000100` (configurable).

mod blob;
mod process;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

pub(crate) use blob::ActivationBlob;

use crate::{ClientError, TpmDevice};

/// Persistent handle of the endorsement key.
pub const EK_HANDLE: &str = "0x81010001";
/// Persistent handle of the storage root key.
pub const SRK_HANDLE: &str = "0x81000001";
/// Persistent handle the imported DPS key is kept at (the C SDK's choice).
pub const DEFAULT_KEY_HANDLE: &str = "0x81000100";

/// The SRK attributes of the C SDK's template.
const SRK_ATTRIBUTES: &str =
    "restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda";

/// Default limit for one tpm2-tools command.
const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// A TPM reached through tpm2-tools.
///
/// ```no_run
/// # fn run() -> Result<(), dps_client::ClientError> {
/// use std::sync::Arc;
/// use dps_client::{Credential, Tpm2Tools};
/// let tpm = Tpm2Tools::new("device:/dev/tpmrm0")?;
/// let registration_id = tpm.registration_id()?; // the SDKs' default id
/// let credential = Credential::Tpm(Arc::new(tpm));
/// # let _ = (registration_id, credential); Ok(()) }
/// ```
pub struct Tpm2Tools {
    tcti: String,
    work_dir: WorkDir,
    tool_timeout: Duration,
    key_handle: String,
    /// Serialises TPM use: one command at a time, and the cached public keys.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    keys_ready: bool,
    endorsement_key: Option<Vec<u8>>,
    storage_root_key: Option<Vec<u8>>,
    key_imported: bool,
}

enum WorkDir {
    Temporary(tempfile::TempDir),
    Given(PathBuf),
}

impl WorkDir {
    fn path(&self) -> &Path {
        match self {
            WorkDir::Temporary(dir) => dir.path(),
            WorkDir::Given(path) => path,
        }
    }
}

impl std::fmt::Debug for Tpm2Tools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tpm2Tools")
            .field("tcti", &self.tcti)
            .field("work_dir", &self.work_dir.path())
            .field("key_handle", &self.key_handle)
            .finish()
    }
}

impl Tpm2Tools {
    /// A TPM at this TCTI (`device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`,
    /// `tabrmd`, …), with scratch files in a private temporary directory.
    /// Nothing is sent to the TPM until it is first used.
    pub fn new(tcti: impl Into<String>) -> Result<Self, ClientError> {
        let dir = tempfile::Builder::new()
            .prefix("dps-tpm-")
            .tempdir()
            .map_err(|e| ClientError::Config {
                reason: format!("a scratch directory for tpm2-tools: {e}"),
            })?;
        Ok(Self::with_work_dir(tcti, WorkDir::Temporary(dir)))
    }

    /// Like [`Tpm2Tools::new`], keeping scratch files (public areas, the
    /// wrapped imported key) in `dir`.
    pub fn in_dir(tcti: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        Self::with_work_dir(tcti, WorkDir::Given(dir.into()))
    }

    fn with_work_dir(tcti: impl Into<String>, work_dir: WorkDir) -> Self {
        Tpm2Tools {
            tcti: tcti.into(),
            work_dir,
            tool_timeout: DEFAULT_TOOL_TIMEOUT,
            key_handle: DEFAULT_KEY_HANDLE.to_owned(),
            state: Mutex::new(State::default()),
        }
    }

    /// Limit for each tpm2-tools command (default 30 s).
    pub fn tool_timeout(mut self, limit: Duration) -> Self {
        self.tool_timeout = limit;
        self
    }

    /// Persistent handle for the imported DPS key (default `0x81000100`).
    pub fn key_handle(mut self, handle: impl Into<String>) -> Self {
        self.key_handle = handle.into();
        self
    }

    /// The TCTI this TPM is reached at.
    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    /// Make sure the EK and SRK exist at their persistent handles, creating
    /// them (C SDK templates) when absent.
    pub fn provision_keys(&self) -> Result<(), ClientError> {
        let mut state = self.lock();
        self.ensure_keys(&mut state)
    }

    /// The registration id the SDKs use by default for this TPM: base32 of
    /// SHA-256 over the EK.
    pub fn registration_id(&self) -> Result<String, ClientError> {
        let ek = BASE64.encode(self.endorsement_key()?);
        dps_attestation::tpm::registration_id_from_endorsement_key(&ek).map_err(|e| {
            ClientError::Tpm {
                command: "registration id".to_owned(),
                reason: e.to_string(),
            }
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tool(&self, program: &str, args: &[&str]) -> Result<process::Finished, ClientError> {
        process::run(
            program,
            args,
            self.work_dir.path(),
            &self.tcti,
            self.tool_timeout,
        )
    }

    fn write(&self, file: &str, contents: &[u8]) -> Result<(), ClientError> {
        std::fs::write(self.work_dir.path().join(file), contents).map_err(|e| ClientError::Tpm {
            command: format!("writing {file}"),
            reason: e.to_string(),
        })
    }

    fn read(&self, file: &str) -> Result<Vec<u8>, ClientError> {
        std::fs::read(self.work_dir.path().join(file)).map_err(|e| ClientError::Tpm {
            command: format!("reading {file}"),
            reason: e.to_string(),
        })
    }

    fn persistent_handles(&self) -> Result<Vec<String>, ClientError> {
        let listing = self.tool("tpm2_getcap", &["handles-persistent"])?;
        Ok(listing
            .stdout
            .lines()
            .filter_map(|line| line.trim().strip_prefix("- "))
            .map(|handle| handle.trim().to_ascii_lowercase())
            .collect())
    }

    fn ensure_keys(&self, state: &mut State) -> Result<(), ClientError> {
        if state.keys_ready {
            return Ok(());
        }
        let handles = self.persistent_handles()?;
        let present = |handle: &str| handles.iter().any(|h| h == handle);
        if !present(EK_HANDLE) {
            self.tool(
                "tpm2_createek",
                &["-c", EK_HANDLE, "-G", "rsa", "-u", "ek.pub"],
            )?;
        }
        if !present(SRK_HANDLE) {
            self.tool(
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
            self.tool(
                "tpm2_evictcontrol",
                &["-C", "o", "-c", "srk.ctx", SRK_HANDLE],
            )?;
            self.flush_transient()?;
        }
        state.key_imported = present(&self.key_handle.to_ascii_lowercase());
        state.keys_ready = true;
        Ok(())
    }

    /// Without a resource manager (raw `swtpm:`/`device:/dev/tpm0`) loaded
    /// objects stay in the TPM's few transient slots until flushed.
    fn flush_transient(&self) -> Result<(), ClientError> {
        self.tool("tpm2_flushcontext", &["-t"]).map(|_| ())
    }

    fn public_area(
        &self,
        handle: &str,
        file: &str,
        cached: fn(&mut State) -> &mut Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ClientError> {
        let mut state = self.lock();
        if let Some(bytes) = cached(&mut state) {
            return Ok(bytes.clone());
        }
        self.ensure_keys(&mut state)?;
        self.tool("tpm2_readpublic", &["-c", handle, "-o", file])?;
        let bytes = self.read(file)?;
        *cached(&mut state) = Some(bytes.clone());
        Ok(bytes)
    }

    fn activate(&self) -> Result<(), ClientError> {
        self.tool(
            "tpm2_startauthsession",
            &["--policy-session", "-S", "session.ctx"],
        )?;
        let activated = self
            .tool("tpm2_policysecret", &["-S", "session.ctx", "-c", "e"])
            .and_then(|_| {
                self.tool(
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
                )
            });
        // The session is flushed whatever happened, or it would hold a slot.
        let flushed = self.tool("tpm2_flushcontext", &["session.ctx"]);
        activated?;
        flushed.map(|_| ())
    }
}

impl TpmDevice for Tpm2Tools {
    fn endorsement_key(&self) -> Result<Vec<u8>, ClientError> {
        self.public_area(EK_HANDLE, "ek.pub", |s| &mut s.endorsement_key)
    }

    fn storage_root_key(&self) -> Result<Vec<u8>, ClientError> {
        self.public_area(SRK_HANDLE, "srk.pub", |s| &mut s.storage_root_key)
    }

    fn import_activation_blob(&self, blob: &[u8]) -> Result<(), ClientError> {
        let blob = ActivationBlob::parse(blob)?;
        let mut state = self.lock();
        self.ensure_keys(&mut state)?;
        self.write("credential.bin", &blob.credential_file())?;
        self.write("dup.priv", &blob::tpm2b(&blob.duplicate))?;
        self.write("seed.bin", &blob::tpm2b(&blob.in_sym_seed))?;
        self.write("idkey.pub", &blob::tpm2b(&blob.id_key_public))?;
        let _ = std::fs::remove_file(self.work_dir.path().join("inner.key"));

        // ActivateCredential: only the TPM holding the EK recovers the inner
        // wrapper key, and only for our SRK's Name.
        self.activate()?;
        // Import the duplicated HMAC key under the SRK, unwrapping it with
        // the inner key, and load it.
        self.tool(
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
        let _ = std::fs::remove_file(self.work_dir.path().join("inner.key"));
        self.flush_transient()?;
        self.tool(
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
        // Persist it where the SDK keeps it, replacing the previous key.
        if state.key_imported || self.persistent_handles()?.contains(&self.key_handle) {
            self.tool("tpm2_evictcontrol", &["-C", "o", "-c", &self.key_handle])?;
        }
        self.tool(
            "tpm2_evictcontrol",
            &["-C", "o", "-c", "idkey.ctx", &self.key_handle],
        )?;
        self.flush_transient()?;
        state.key_imported = true;
        Ok(())
    }

    fn hmac_sha256(&self, data: &[u8]) -> Result<Vec<u8>, ClientError> {
        let mut state = self.lock();
        self.ensure_keys(&mut state)?;
        if !state.key_imported {
            return Err(ClientError::Tpm {
                command: "tpm2_hmac".to_owned(),
                reason: format!(
                    "no key at {}: import an activation blob first",
                    self.key_handle
                ),
            });
        }
        self.write("hmac.in", data)?;
        self.tool(
            "tpm2_hmac",
            &[
                "-c",
                &self.key_handle,
                "-g",
                "sha256",
                "-o",
                "hmac.out",
                "hmac.in",
            ],
        )?;
        let mac = self.read("hmac.out")?;
        if mac.len() != 32 {
            return Err(ClientError::Tpm {
                command: "tpm2_hmac".to_owned(),
                reason: format!("{} bytes instead of 32", mac.len()),
            });
        }
        Ok(mac)
    }
}
