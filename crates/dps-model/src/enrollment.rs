//! Individual enrollments and enrollment groups (spec §4.4, §4.5).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::attestation::{AttestationMechanism, AttestationType};
use crate::etag::ETag;
use crate::ids::{DeviceId, EnrollmentGroupId, RegistrationId};
use crate::registration::DeviceRegistrationState;
use crate::twin::{InitialTwin, LegacyInitialTwinState, TwinCollection};
use crate::{time, ModelError};

/// `provisioningStatus`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProvisioningStatus {
    /// Devices may register.
    #[default]
    Enabled,
    /// Devices are refused.
    Disabled,
}

/// `allocationPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AllocationPolicy {
    /// Evenly weighted distribution.
    #[default]
    Hashed,
    /// Lowest latency.
    GeoLatency,
    /// The single hub named on the enrollment.
    Static,
    /// A webhook decides.
    Custom,
}

impl AllocationPolicy {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AllocationPolicy::Hashed => "hashed",
            AllocationPolicy::GeoLatency => "geoLatency",
            AllocationPolicy::Static => "static",
            AllocationPolicy::Custom => "custom",
        }
    }
}

/// `reprovisionPolicy` (spec §6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReprovisionPolicy {
    /// Re-run allocation when an assigned device registers again.
    #[serde(default = "yes")]
    pub update_hub_assignment: bool,
    /// Carry the twin to the new hub (else reset it to the initial twin).
    #[serde(default = "yes")]
    pub migrate_device_data: bool,
}

fn yes() -> bool {
    true
}

impl Default for ReprovisionPolicy {
    fn default() -> Self {
        ReprovisionPolicy {
            update_hub_assignment: true,
            migrate_device_data: true,
        }
    }
}

/// `customAllocationDefinition`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomAllocationDefinition {
    /// Where the allocation request is POSTed.
    pub webhook_url: String,
    /// The service-API version in which enrollments are sent to the webhook.
    pub api_version: String,
}

/// `capabilities`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCapabilities {
    /// The device is an IoT Edge device.
    #[serde(default)]
    pub iot_edge: bool,
}

/// An individual enrollment: one device by registration id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndividualEnrollment {
    /// The device's registration id.
    pub registration_id: RegistrationId,
    /// The hub device id to create (default: the registration id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<DeviceId>,
    /// The device's registration record (read-only, filled on GET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_state: Option<DeviceRegistrationState>,
    /// Free-form information about the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional_device_information: Option<TwinCollection>,
    /// How the device proves who it is.
    pub attestation: AttestationMechanism,
    /// Device capabilities copied to the hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<DeviceCapabilities>,
    /// Legacy single-hub field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hub_host_name: Option<String>,
    /// Twin written at assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<InitialTwin>,
    /// Legacy twin shape, folded into `initial_twin` on parse.
    #[serde(default, skip_serializing)]
    pub initial_twin_state: Option<LegacyInitialTwinState>,
    /// Entity tag (server-generated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<ETag>,
    /// Enabled or disabled.
    #[serde(default)]
    pub provisioning_status: ProvisioningStatus,
    /// Behaviour on re-registration; absence matters for legacy clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprovision_policy: Option<ReprovisionPolicy>,
    /// Creation time (read-only).
    #[serde(
        default,
        with = "time::azure_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_date_time_utc: Option<DateTime<Utc>>,
    /// Last change (read-only).
    #[serde(
        default,
        with = "time::azure_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_updated_date_time_utc: Option<DateTime<Utc>>,
    /// Overrides the service's default allocation policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_policy: Option<AllocationPolicy>,
    /// Candidate hubs (host names); empty means all linked hubs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hubs: Option<Vec<String>>,
    /// The webhook for the custom policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_allocation_definition: Option<CustomAllocationDefinition>,
    /// Certificate issuance (preview API), stored as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_issuance_policy: Option<Value>,
    /// Credential policy (preview API), stored as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_policy_name: Option<String>,
}

/// An enrollment group: many devices sharing one attestation root.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentGroup {
    /// The group's id.
    pub enrollment_group_id: EnrollmentGroupId,
    /// How devices of the group prove who they are (x509 or symmetricKey).
    pub attestation: AttestationMechanism,
    /// Device capabilities copied to the hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<DeviceCapabilities>,
    /// Legacy single-hub field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hub_host_name: Option<String>,
    /// Twin written at assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<InitialTwin>,
    /// Legacy twin shape, folded into `initial_twin` on parse.
    #[serde(default, skip_serializing)]
    pub initial_twin_state: Option<LegacyInitialTwinState>,
    /// Entity tag (server-generated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<ETag>,
    /// Enabled or disabled.
    #[serde(default)]
    pub provisioning_status: ProvisioningStatus,
    /// Behaviour on re-registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprovision_policy: Option<ReprovisionPolicy>,
    /// Creation time (read-only).
    #[serde(
        default,
        with = "time::azure_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_date_time_utc: Option<DateTime<Utc>>,
    /// Last change (read-only).
    #[serde(
        default,
        with = "time::azure_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_updated_date_time_utc: Option<DateTime<Utc>>,
    /// Overrides the service's default allocation policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_policy: Option<AllocationPolicy>,
    /// Candidate hubs (host names); empty means all linked hubs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hubs: Option<Vec<String>>,
    /// The webhook for the custom policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_allocation_definition: Option<CustomAllocationDefinition>,
    /// Certificate issuance (preview API), stored as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_issuance_policy: Option<Value>,
    /// Credential policy (preview API), stored as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_policy_name: Option<String>,
}

/// What individual enrollments and groups share, for code that handles either.
pub trait Enrollment {
    /// The attestation mechanism.
    fn attestation(&self) -> &AttestationMechanism;
    /// Enabled or disabled.
    fn provisioning_status(&self) -> ProvisioningStatus;
    /// The per-enrollment policy override.
    fn allocation_policy(&self) -> Option<AllocationPolicy>;
    /// Candidate hub names.
    fn iot_hubs(&self) -> &[String];
    /// The legacy single hub.
    fn iot_hub_host_name(&self) -> Option<&str>;
    /// The webhook definition.
    fn custom_allocation_definition(&self) -> Option<&CustomAllocationDefinition>;
    /// The initial twin.
    fn initial_twin(&self) -> Option<&InitialTwin>;
    /// The reprovision policy as stored (None = absent).
    fn reprovision_policy(&self) -> Option<ReprovisionPolicy>;
    /// Capabilities.
    fn capabilities(&self) -> DeviceCapabilities;
}

macro_rules! impl_enrollment {
    ($t:ty) => {
        impl Enrollment for $t {
            fn attestation(&self) -> &AttestationMechanism {
                &self.attestation
            }
            fn provisioning_status(&self) -> ProvisioningStatus {
                self.provisioning_status
            }
            fn allocation_policy(&self) -> Option<AllocationPolicy> {
                self.allocation_policy
            }
            fn iot_hubs(&self) -> &[String] {
                self.iot_hubs.as_deref().unwrap_or(&[])
            }
            fn iot_hub_host_name(&self) -> Option<&str> {
                self.iot_hub_host_name.as_deref()
            }
            fn custom_allocation_definition(&self) -> Option<&CustomAllocationDefinition> {
                self.custom_allocation_definition.as_ref()
            }
            fn initial_twin(&self) -> Option<&InitialTwin> {
                self.initial_twin.as_ref()
            }
            fn reprovision_policy(&self) -> Option<ReprovisionPolicy> {
                self.reprovision_policy
            }
            fn capabilities(&self) -> DeviceCapabilities {
                self.capabilities.unwrap_or_default()
            }
        }
    };
}
impl_enrollment!(IndividualEnrollment);
impl_enrollment!(EnrollmentGroup);

fn check_attestation(
    attestation: &AttestationMechanism,
    allow_tpm: bool,
) -> Result<(), ModelError> {
    let missing = |field: &'static str| ModelError::InvalidField {
        field,
        value: String::new(),
        reason: "required for this attestation type".to_owned(),
    };
    match attestation.kind {
        AttestationType::None => Err(ModelError::InvalidField {
            field: "attestation.type",
            value: "none".to_owned(),
            reason: "an enrollment needs tpm, x509 or symmetricKey attestation".to_owned(),
        }),
        AttestationType::Tpm if !allow_tpm => Err(ModelError::InvalidField {
            field: "attestation.type",
            value: "tpm".to_owned(),
            reason: "enrollment groups support x509 and symmetricKey only".to_owned(),
        }),
        AttestationType::Tpm => attestation
            .tpm
            .as_ref()
            .filter(|t| !t.endorsement_key.is_empty())
            .map(|_| ())
            .ok_or_else(|| missing("attestation.tpm.endorsementKey")),
        AttestationType::X509 => attestation
            .x509
            .as_ref()
            .map(|_| ())
            .ok_or_else(|| missing("attestation.x509")),
        AttestationType::SymmetricKey => Ok(()),
    }
}

fn check_custom(
    policy: Option<AllocationPolicy>,
    definition: Option<&CustomAllocationDefinition>,
) -> Result<(), ModelError> {
    if policy == Some(AllocationPolicy::Custom) && definition.is_none() {
        return Err(ModelError::InvalidField {
            field: "customAllocationDefinition",
            value: String::new(),
            reason: "required when allocationPolicy is custom".to_owned(),
        });
    }
    if let Some(def) = definition {
        // `dps-policy://NAME` selects a policy registered with the server
        // (dps_service::server::ServerBuilder::policy).
        let registered = def
            .webhook_url
            .get(..11)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("dps-policy:"));
        if !(def.webhook_url.starts_with("https://")
            || def.webhook_url.starts_with("http://")
            || registered)
        {
            return Err(ModelError::InvalidField {
                field: "customAllocationDefinition.webhookUrl",
                value: def.webhook_url.clone(),
                reason: "must be an http or https URL, or dps-policy://NAME".to_owned(),
            });
        }
    }
    Ok(())
}

impl IndividualEnrollment {
    /// Parse a service-API body; errors name the offending field.
    pub fn from_json(body: &[u8]) -> Result<Self, ModelError> {
        let mut enrollment: IndividualEnrollment = crate::from_json(body)?;
        if let Some(legacy) = enrollment.initial_twin_state.take() {
            enrollment.initial_twin.get_or_insert_with(|| legacy.into());
        }
        enrollment.validate()?;
        Ok(enrollment)
    }

    /// Domain rules beyond the JSON shape.
    pub fn validate(&self) -> Result<(), ModelError> {
        check_attestation(&self.attestation, true)?;
        check_custom(
            self.allocation_policy,
            self.custom_allocation_definition.as_ref(),
        )
    }

    /// The hub device id: `deviceId` if set, else the registration id.
    pub fn effective_device_id(&self) -> DeviceId {
        self.device_id
            .clone()
            .unwrap_or_else(|| DeviceId::from(&self.registration_id))
    }
}

impl EnrollmentGroup {
    /// Parse a service-API body; errors name the offending field.
    pub fn from_json(body: &[u8]) -> Result<Self, ModelError> {
        let mut group: EnrollmentGroup = crate::from_json(body)?;
        if let Some(legacy) = group.initial_twin_state.take() {
            group.initial_twin.get_or_insert_with(|| legacy.into());
        }
        group.validate()?;
        Ok(group)
    }

    /// Domain rules beyond the JSON shape.
    pub fn validate(&self) -> Result<(), ModelError> {
        check_attestation(&self.attestation, false)?;
        check_custom(
            self.allocation_policy,
            self.custom_allocation_definition.as_ref(),
        )
    }
}

/// Either kind of enrollment, for code that decides per device.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EnrollmentRef<'a> {
    /// An individual enrollment.
    Individual(&'a IndividualEnrollment),
    /// An enrollment group.
    Group(&'a EnrollmentGroup),
}

impl<'a> EnrollmentRef<'a> {
    /// The enrollment as the shared trait.
    pub fn as_enrollment(&self) -> &'a dyn Enrollment {
        match *self {
            EnrollmentRef::Individual(e) => e,
            EnrollmentRef::Group(g) => g,
        }
    }

    /// The group id, when this is a group.
    pub fn group_id(&self) -> Option<&'a EnrollmentGroupId> {
        match *self {
            EnrollmentRef::Individual(_) => None,
            EnrollmentRef::Group(g) => Some(&g.enrollment_group_id),
        }
    }
}
