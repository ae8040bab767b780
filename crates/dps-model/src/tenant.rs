//! A tenant: one provisioning service instance and its settings (the part
//! Azure keeps in its management plane).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::attestation::X509CertificateInfo;
use crate::enrollment::AllocationPolicy;
use crate::etag::ETag;
use crate::ids::IdScope;
use crate::{time, ModelError};

/// A provisioning service instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    /// Instance name, unique (`[a-z0-9-]`, 3..=64).
    pub name: String,
    /// The device-side selector.
    pub id_scope: IdScope,
    /// Host name of the service operations endpoint; service-API tokens carry it in `sr`.
    pub service_host_name: String,
    /// Policy used when an enrollment names none (never `custom`).
    #[serde(default)]
    pub default_allocation_policy: AllocationPolicy,
    /// Hubs devices can be assigned to.
    #[serde(default)]
    pub linked_hubs: Vec<LinkedHub>,
    /// Keys for the service API.
    #[serde(default)]
    pub access_policies: Vec<SharedAccessPolicy>,
    /// CA certificates for X.509 groups.
    #[serde(default)]
    pub ca_certificates: Vec<CaCertificate>,
    /// Answer register with the final result instead of `202 assigning`.
    #[serde(default)]
    pub synchronous_register: bool,
    /// Server-side secret (base64) from which TPM challenge keys are derived,
    /// so that every replica can verify a device's answer without shared
    /// session state. Never returned by the API.
    #[serde(default)]
    pub challenge_secret: String,
    /// Entity tag.
    pub etag: ETag,
    /// Creation time.
    #[serde(with = "time::azure")]
    pub created: DateTime<Utc>,
}

impl Tenant {
    /// A new tenant: a generated ID scope, an owner policy
    /// (`provisioningserviceowner`, every right, generated keys), a challenge
    /// secret, no hubs yet, `hashed` as the default policy.
    pub fn new(
        name: impl Into<String>,
        service_host_name: impl Into<String>,
    ) -> Result<Self, ModelError> {
        let name = name.into();
        Tenant::validate_name(&name)?;
        Ok(Tenant {
            name,
            id_scope: IdScope::generate(),
            service_host_name: service_host_name.into(),
            default_allocation_policy: AllocationPolicy::Hashed,
            linked_hubs: Vec::new(),
            access_policies: vec![SharedAccessPolicy {
                key_name: OWNER_POLICY.to_owned(),
                primary_key: random_key(),
                secondary_key: random_key(),
                rights: AccessRight::ALL.to_vec(),
            }],
            ca_certificates: Vec::new(),
            synchronous_register: false,
            challenge_secret: random_key(),
            etag: ETag::generate(),
            created: Utc::now(),
        })
    }

    /// The connection string of a policy: `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`.
    pub fn connection_string(&self, key_name: &str) -> Option<String> {
        self.access_policy(key_name).map(|p| {
            format!(
                "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
                self.service_host_name, p.key_name, p.primary_key
            )
        })
    }

    /// Check a tenant name: 3..=64 of lower-case letters, digits and `-`.
    pub fn validate_name(name: &str) -> Result<(), ModelError> {
        let ok = (3..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if ok {
            Ok(())
        } else {
            Err(ModelError::InvalidField {
                field: "name",
                value: name.to_owned(),
                reason: "3 to 64 lower-case letters, digits or inner hyphens".to_owned(),
            })
        }
    }

    /// The linked hub with this host name (case-insensitive).
    pub fn linked_hub(&self, host_name: &str) -> Option<&LinkedHub> {
        self.linked_hubs
            .iter()
            .find(|h| h.host_name.eq_ignore_ascii_case(host_name))
    }

    /// The access policy with this name (case-insensitive).
    pub fn access_policy(&self, key_name: &str) -> Option<&SharedAccessPolicy> {
        self.access_policies
            .iter()
            .find(|p| p.key_name.eq_ignore_ascii_case(key_name))
    }

    /// The CA certificate with this name (case-insensitive).
    pub fn ca_certificate(&self, name: &str) -> Option<&CaCertificate> {
        self.ca_certificates
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// An IoT hub linked to a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkedHub {
    /// Hub host name (its identity).
    pub host_name: String,
    /// `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…` (secret).
    pub connection_string: String,
    /// Weight for evenly weighted distribution, 1..=1000.
    #[serde(default = "default_weight")]
    pub allocation_weight: u32,
    /// Whether allocation policies may choose this hub.
    #[serde(default = "default_true")]
    pub apply_allocation_policy: bool,
    /// Region, used by the lowest-latency policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// The name of the all-rights policy every tenant starts with.
pub const OWNER_POLICY: &str = "provisioningserviceowner";

/// 64 random bytes in base64, the size the cloud service generates.
fn random_key() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    let more: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode([bytes, more].concat())
}

fn default_weight() -> u32 {
    1
}
fn default_true() -> bool {
    true
}

impl LinkedHub {
    /// A hub linked with weight 1 and the allocation policy applied to it.
    pub fn new(host_name: impl Into<String>, connection_string: impl Into<String>) -> Self {
        LinkedHub {
            host_name: host_name.into(),
            connection_string: connection_string.into(),
            allocation_weight: 1,
            apply_allocation_policy: true,
            location: None,
        }
    }

    /// Check the weight range.
    pub fn validate(&self) -> Result<(), ModelError> {
        if !(1..=1000).contains(&self.allocation_weight) {
            return Err(ModelError::InvalidField {
                field: "allocationWeight",
                value: self.allocation_weight.to_string(),
                reason: "must be between 1 and 1000".to_owned(),
            });
        }
        Ok(())
    }
}

/// Rights of a shared access policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AccessRight {
    /// Manage service settings.
    ServiceConfig,
    /// Read enrollments and groups.
    EnrollmentRead,
    /// Write enrollments and groups.
    EnrollmentWrite,
    /// Device connect (not used by the service API).
    DeviceConnect,
    /// Read registration records.
    RegistrationStatusRead,
    /// Delete registration records.
    RegistrationStatusWrite,
}

impl AccessRight {
    /// Every right.
    pub const ALL: [AccessRight; 6] = [
        AccessRight::ServiceConfig,
        AccessRight::EnrollmentRead,
        AccessRight::EnrollmentWrite,
        AccessRight::DeviceConnect,
        AccessRight::RegistrationStatusRead,
        AccessRight::RegistrationStatusWrite,
    ];
}

/// A named key pair with rights on the service API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedAccessPolicy {
    /// Policy name (the token's `skn`).
    pub key_name: String,
    /// base64 primary key.
    pub primary_key: String,
    /// base64 secondary key.
    pub secondary_key: String,
    /// What the policy may do.
    pub rights: Vec<AccessRight>,
}

impl SharedAccessPolicy {
    /// Does the policy carry this right?
    pub fn has(&self, right: AccessRight) -> bool {
        self.rights.contains(&right)
    }
}

/// An uploaded CA certificate, verified by proof of possession or not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaCertificate {
    /// Name referenced by `caReferences`.
    pub name: String,
    /// PEM text.
    pub certificate: String,
    /// Parsed details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<X509CertificateInfo>,
    /// Proof of possession done.
    pub is_verified: bool,
    /// The code the proof certificate's CN must carry, once issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_code: Option<String>,
    /// Entity tag.
    pub etag: ETag,
    /// Upload time.
    #[serde(with = "time::azure")]
    pub created: DateTime<Utc>,
    /// Last change.
    #[serde(with = "time::azure")]
    pub updated: DateTime<Utc>,
}
