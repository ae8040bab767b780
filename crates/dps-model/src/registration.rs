//! Registration records and the device-side wire shapes (spec §1.5, §1.6, §4.7).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::attestation::{AttestationType, X509CertificateInfo};
use crate::etag::ETag;
use crate::ids::{DeviceId, EnrollmentGroupId, RegistrationId};
use crate::time;

/// `status` of a registration or a registration operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RegistrationStatus {
    /// Not yet assigned (TPM challenge pending).
    Unassigned,
    /// Work in progress.
    Assigning,
    /// Assigned to a hub.
    Assigned,
    /// Allocation or hub work failed.
    Failed,
    /// The enrollment is disabled.
    Disabled,
}

impl RegistrationStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationStatus::Unassigned => "unassigned",
            RegistrationStatus::Assigning => "assigning",
            RegistrationStatus::Assigned => "assigned",
            RegistrationStatus::Failed => "failed",
            RegistrationStatus::Disabled => "disabled",
        }
    }
}

/// `substatus` of an assigned registration (spec §6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RegistrationSubstatus {
    /// First assignment.
    InitialAssignment,
    /// Moved to another hub with its twin.
    DeviceDataMigrated,
    /// Moved to another hub with the twin reset to the initial twin.
    DeviceDataReset,
    /// Re-registered onto the hub where its identity already was.
    ReprovisionedToInitialAssignment,
}

/// The request body of register (D1) and status lookup (D3).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistrationRequest {
    /// Should equal the path's registration id.
    #[serde(default)]
    pub registration_id: Option<String>,
    /// TPM keys (TPM attestation only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmRegistrationRequest>,
    /// Custom data for the allocation webhook; `null` is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// A PKCS#10 request (certificate issuance API versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
}

impl DeviceRegistrationRequest {
    /// Parse a device body; an empty body is an empty request.
    pub fn from_json(body: &[u8]) -> Result<Self, crate::ModelError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(DeviceRegistrationRequest::default());
        }
        // serde would also accept a JSON array for a struct; devices send objects.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(crate::ModelError::Json {
                path: ".".to_owned(),
                message: "the body must be a JSON object".to_owned(),
            });
        }
        let mut request: DeviceRegistrationRequest = crate::from_json(body)?;
        if request.payload == Some(Value::Null) {
            request.payload = None;
        }
        Ok(request)
    }
}

/// `tpm` in a registration request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TpmRegistrationRequest {
    /// base64 `TPM2B_PUBLIC` of the EK.
    pub endorsement_key: String,
    /// base64 `TPM2B_PUBLIC` of the SRK.
    #[serde(default)]
    pub storage_root_key: Option<String>,
}

/// `registrationState.tpm` in a device answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TpmRegistrationResult {
    /// The activation blob carrying the hub key.
    pub authentication_key: String,
}

/// `registrationState.x509` in a device answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509RegistrationResult {
    /// The device certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_info: Option<X509CertificateInfo>,
    /// The group the device registered through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group_id: Option<String>,
    /// The group certificate that signed the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_certificate_info: Option<X509CertificateInfo>,
}

/// `registrationState.symmetricKey` in a device answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeyRegistrationResult {
    /// The group the device registered through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group_id: Option<String>,
}

/// `DeviceRegistrationResult`: the device's view of its registration (D2's
/// `registrationState`, D3's whole body).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistrationResult {
    /// The registration id.
    pub registration_id: String,
    /// First creation of the record.
    #[serde(
        default,
        with = "time::azure_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_date_time_utc: Option<DateTime<Utc>>,
    /// Hub host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_hub: Option<String>,
    /// Hub device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Status.
    pub status: RegistrationStatus,
    /// Substatus (assigned only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substatus: Option<RegistrationSubstatus>,
    /// 6-digit error code (failed only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i32>,
    /// Error text (failed only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Last change.
    #[serde(
        default,
        with = "time::azure_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_updated_date_time_utc: Option<DateTime<Utc>>,
    /// Entity tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<ETag>,
    /// Custom allocation payload returned to the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// TPM result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmRegistrationResult>,
    /// X.509 result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<X509RegistrationResult>,
    /// Symmetric-key result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKeyRegistrationResult>,
    /// The certificate issued for the register's `csr`: base64 DER
    /// certificates, the leaf first, each followed by its issuer. Only for
    /// api-versions that know it ([`api_version_supports_issuance`]) and
    /// never in a status lookup's answer.
    ///
    /// [`api_version_supports_issuance`]: crate::certificate_issuance::api_version_supports_issuance
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_certificate_chain: Option<Vec<String>>,
}

impl DeviceRegistrationResult {
    /// The `registrationState` of an `assigning` poll answer.
    pub fn assigning(registration_id: &RegistrationId) -> Self {
        DeviceRegistrationResult {
            registration_id: registration_id.as_str().to_owned(),
            created_date_time_utc: None,
            assigned_hub: None,
            device_id: None,
            status: RegistrationStatus::Assigning,
            substatus: None,
            error_code: None,
            error_message: None,
            last_updated_date_time_utc: None,
            etag: None,
            payload: None,
            tpm: None,
            x509: None,
            symmetric_key: None,
            issued_certificate_chain: None,
        }
    }
}

/// `RegistrationOperationStatus`: answer of register (D1) and poll (D2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationOperationStatus {
    /// Opaque operation id (`[A-Za-z0-9.-]`).
    pub operation_id: String,
    /// Operation status.
    pub status: RegistrationStatus,
    /// The registration as it stands (omitted on the first 202).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_state: Option<DeviceRegistrationResult>,
}

/// `DeviceRegistrationState`: the administrator's view of a registration record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistrationState {
    /// The registration id.
    pub registration_id: String,
    /// First creation of the record.
    #[serde(
        default,
        with = "time::azure_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_date_time_utc: Option<DateTime<Utc>>,
    /// Hub host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_hub: Option<String>,
    /// Hub device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Status.
    pub status: RegistrationStatus,
    /// Substatus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substatus: Option<RegistrationSubstatus>,
    /// 6-digit error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i32>,
    /// Error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Last change.
    #[serde(
        default,
        with = "time::azure_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_updated_date_time_utc: Option<DateTime<Utc>>,
    /// Entity tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<ETag>,
    /// Custom allocation payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

/// The registration record the service keeps: created only by a device
/// registration, deleted by an administrator, never updated by one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationRecord {
    /// The registration id, as the device presented it.
    pub registration_id: RegistrationId,
    /// The group it registered through, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group_id: Option<EnrollmentGroupId>,
    /// How the device attested.
    pub attestation_type: AttestationType,
    /// First creation.
    #[serde(with = "time::azure")]
    pub created: DateTime<Utc>,
    /// Last change.
    #[serde(with = "time::azure")]
    pub last_updated: DateTime<Utc>,
    /// Hub host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_hub: Option<String>,
    /// Hub device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<DeviceId>,
    /// Status.
    pub status: RegistrationStatus,
    /// Substatus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substatus: Option<RegistrationSubstatus>,
    /// 6-digit error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i32>,
    /// Error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Entity tag (changes on every write).
    pub etag: ETag,
    /// Custom allocation payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// TPM activation blob of the hub key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmRegistrationResult>,
    /// X.509 details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<X509RegistrationResult>,
}

impl RegistrationRecord {
    /// The administrator's view (service API).
    pub fn to_state(&self) -> DeviceRegistrationState {
        DeviceRegistrationState {
            registration_id: self.registration_id.as_str().to_owned(),
            created_date_time_utc: Some(self.created),
            assigned_hub: self.assigned_hub.clone(),
            device_id: self.device_id.as_ref().map(|d| d.as_str().to_owned()),
            status: self.status,
            substatus: self.substatus,
            error_code: self.error_code,
            error_message: self.error_message.clone(),
            last_updated_date_time_utc: Some(self.last_updated),
            etag: Some(self.etag.clone()),
            payload: self.payload.clone(),
        }
    }

    /// The device's view (device API).
    pub fn to_result(&self) -> DeviceRegistrationResult {
        let group = self
            .enrollment_group_id
            .as_ref()
            .map(|g| g.as_str().to_owned());
        DeviceRegistrationResult {
            registration_id: self.registration_id.as_str().to_owned(),
            created_date_time_utc: Some(self.created),
            assigned_hub: self.assigned_hub.clone(),
            device_id: self.device_id.as_ref().map(|d| d.as_str().to_owned()),
            status: self.status,
            substatus: self.substatus,
            error_code: self.error_code,
            error_message: self.error_message.clone(),
            last_updated_date_time_utc: Some(self.last_updated),
            etag: Some(self.etag.clone()),
            payload: self.payload.clone(),
            tpm: self.tpm.clone(),
            x509: match self.attestation_type {
                AttestationType::X509 => Some(self.x509.clone().unwrap_or_default()),
                _ => None,
            },
            symmetric_key: match self.attestation_type {
                AttestationType::SymmetricKey => Some(SymmetricKeyRegistrationResult {
                    enrollment_group_id: group,
                }),
                _ => None,
            },
            // Issuance answers carry the chain; a stored record does not.
            issued_certificate_chain: None,
        }
    }
}

/// A device's asynchronous registration operation: what a poll (D2) answers.
/// Kept at least 24 hours.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationOperation {
    /// The operation id handed to the device.
    pub operation_id: String,
    /// The device it belongs to.
    pub registration_id: RegistrationId,
    /// When it was created.
    #[serde(with = "time::azure")]
    pub created: DateTime<Utc>,
    /// The final answer of the operation.
    pub status: RegistrationOperationStatus,
}

/// A fresh operation id in the cloud's shape `{n}.{16 hex}.{uuid}`.
pub fn new_operation_id() -> String {
    format!(
        "5.{:016x}.{}",
        rand::random::<u64>(),
        uuid::Uuid::new_v4().hyphenated()
    )
}
