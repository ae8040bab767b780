//! The records dps keeps and the JSON it exchanges, in the exact shapes of the
//! Azure IoT Hub Device Provisioning Service (camelCase, same field names and
//! enum spellings).
//!
//! * [`ids`]: validated identifiers ([`IdScope`], [`RegistrationId`], [`DeviceId`],
//!   [`EnrollmentGroupId`]); registration and group ids are case-insensitive.
//! * [`enrollment`]: [`IndividualEnrollment`], [`EnrollmentGroup`] and their policies.
//! * [`attestation`]: TPM, X.509 and symmetric-key mechanisms.
//! * [`registration`]: registration records, device requests and answers.
//! * [`operation`]: the billing unit and the table of what is billed.
//! * [`tenant`]: a provisioning service instance and its settings.
//! * [`certificate_authority`]: tenant CAs and credential policies for
//!   certificate issuance at registration; [`certificate_issuance`]: the
//!   register body's `csr` and the api-versions that know it.
//! * [`mqtt`]: the MQTT username and topic grammar, for server and client.
//! * [`bulk`], [`error_body`], [`etag`], [`twin`], [`time`].
//!
//! Parse untrusted JSON with the `from_json` constructors or [`from_json`]:
//! unknown fields are ignored, and a missing required field, a wrong enum
//! spelling or an invalid id becomes [`ModelError::Json`] naming the path.
//!
//! ```
//! use dps_model::IndividualEnrollment;
//! let body = br#"{"registrationId":"dev-1","attestation":{"type":"symmetricKey"},"extra":1}"#;
//! let enrollment = IndividualEnrollment::from_json(body).unwrap();
//! assert_eq!(enrollment.registration_id.as_str(), "dev-1");
//! let err = IndividualEnrollment::from_json(br#"{"registrationId":"dev 1","attestation":{"type":"x"}}"#)
//!     .unwrap_err();
//! assert!(err.to_string().contains("registrationId"));
//! ```
//!
//! This crate is plain data and grammar: no I/O, no async.

#![deny(missing_docs)]

pub mod attestation;
pub mod bulk;
pub mod certificate_authority;
pub mod certificate_issuance;
pub mod enrollment;
mod error;
pub mod error_body;
pub mod etag;
pub mod ids;
pub mod issued_certificate;
pub mod mqtt;
pub mod operation;
pub mod registration;
pub mod tenant;
pub mod time;
pub mod twin;

pub use attestation::{
    AttestationMechanism, AttestationType, SymmetricKeyAttestation, TpmAttestation,
    X509Attestation, X509CaReferences, X509CertificateInfo, X509CertificateWithInfo,
    X509Certificates,
};
pub use bulk::{
    BulkEnrollmentGroupOperation, BulkEnrollmentOperation, BulkEnrollmentOperationError,
    BulkEnrollmentOperationResult, BulkOperationMode, QuerySpecification,
};
pub use certificate_authority::{
    CertificateAuthority, CredentialPolicy, ExtendedKeyUsage, KeyType, SubjectName,
};
pub use enrollment::{
    AllocationPolicy, CustomAllocationDefinition, DeviceCapabilities, Enrollment, EnrollmentGroup,
    EnrollmentRef, IndividualEnrollment, ProvisioningStatus, ReprovisionPolicy,
};
pub use error::ModelError;
pub use error_body::{ErrorBody, ErrorCode};
pub use etag::{ETag, Precondition};
pub use ids::{DeviceId, EnrollmentGroupId, IdScope, RegistrationId};
pub use issued_certificate::{IssuedCertificate, IssuedCertificateStatus};
pub use operation::{OperationKind, OperationRecord};
pub use registration::{
    DeviceRegistrationRequest, DeviceRegistrationResult, DeviceRegistrationState,
    RegistrationOperation, RegistrationOperationStatus, RegistrationRecord, RegistrationStatus,
    RegistrationSubstatus,
};
pub use tenant::{AccessRight, CaCertificate, LinkedHub, SharedAccessPolicy, Tenant};
pub use twin::{InitialTwin, TwinCollection};

/// Parse JSON into `T`; on failure the error names the path of the offending
/// field (`attestation.type`) and what is wrong with it.
pub fn from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ModelError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        ModelError::Json {
            path,
            message: strip_position(&inner.to_string()),
        }
    })
}

/// serde_json appends " at line L column C"; the path already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}
