//! The TPM operations a device needs for provisioning, behind a trait so the
//! flow can run against a hardware TPM, a software TPM or a test double.

use crate::ClientError;

/// A TPM 2.0 holding the device's endorsement key (EK) and storage root key
/// (SRK). Calls are blocking; the client runs them off the async runtime.
pub trait TpmDevice: Send + Sync {
    /// The EK's `TPM2B_PUBLIC`, marshalled (size prefix included).
    fn endorsement_key(&self) -> Result<Vec<u8>, ClientError>;
    /// The SRK's `TPM2B_PUBLIC`, marshalled.
    fn storage_root_key(&self) -> Result<Vec<u8>, ClientError>;
    /// Activate the service's blob (`authenticationKey`): ActivateCredential
    /// with the EK, Import under the SRK, Load — and keep the imported HMAC
    /// key for [`TpmDevice::hmac_sha256`], replacing any previous one.
    fn import_activation_blob(&self, blob: &[u8]) -> Result<(), ClientError>;
    /// HMAC-SHA256 of `data` with the imported key, computed inside the TPM.
    fn hmac_sha256(&self, data: &[u8]) -> Result<Vec<u8>, ClientError>;
}
