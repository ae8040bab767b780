//! What provisioning does on hubs: make sure a device identity exists with the
//! right credentials and twin (spec §7.1), and move a device between hubs on
//! reprovisioning (spec §6.4).

use dps_attestation::sas::SymmetricKey;
use dps_model::{DeviceCapabilities, DeviceId, InitialTwin};

use crate::hub::{IfMatch, IotHub};
use crate::wire::{
    AuthenticationMechanism, AuthenticationType, Device, DeviceStatus, SymmetricKeyPair, Twin,
    TwinContent, X509Thumbprint,
};
use crate::HubError;

/// How the device will authenticate to the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
// Short-lived and built once per registration: boxing the keys would cost
// an allocation for nothing.
#[allow(clippy::large_enum_variant)]
pub enum DeviceAuth {
    /// SAS with these keys: the enrollment's keys (or the group-derived ones)
    /// for symmetric-key devices, the issued hub key for TPM devices.
    SymmetricKey {
        /// Primary key.
        primary: SymmetricKey,
        /// Secondary key.
        secondary: SymmetricKey,
    },
    /// X.509 by thumbprint (`selfSigned`, as DPS writes it even for CA groups).
    X509Thumbprint {
        /// Thumbprint of the device's certificate (hex).
        primary: String,
        /// Second thumbprint; the primary is repeated when absent, as DPS does.
        secondary: Option<String>,
    },
    /// X.509 chaining to a CA verified on the hub (`certificateAuthority`).
    CertificateAuthority,
}

impl DeviceAuth {
    fn to_wire(&self) -> AuthenticationMechanism {
        match self {
            DeviceAuth::SymmetricKey { primary, secondary } => AuthenticationMechanism {
                symmetric_key: Some(SymmetricKeyPair {
                    primary_key: Some(primary.to_base64()),
                    secondary_key: Some(secondary.to_base64()),
                }),
                x509_thumbprint: None,
                auth_type: AuthenticationType::Sas,
            },
            DeviceAuth::X509Thumbprint { primary, secondary } => AuthenticationMechanism {
                symmetric_key: None,
                x509_thumbprint: Some(X509Thumbprint {
                    primary_thumbprint: Some(primary.clone()),
                    secondary_thumbprint: Some(
                        secondary.clone().unwrap_or_else(|| primary.clone()),
                    ),
                }),
                auth_type: AuthenticationType::SelfSigned,
            },
            DeviceAuth::CertificateAuthority => AuthenticationMechanism {
                symmetric_key: None,
                x509_thumbprint: None,
                auth_type: AuthenticationType::CertificateAuthority,
            },
        }
    }
}

/// What to do with the twin's tags and desired properties.
#[derive(Clone, Debug, PartialEq)]
pub enum TwinAction {
    /// Replace them with the enrollment's initial twin (new device, or
    /// "reprovision and reset to initial config").
    ApplyInitial,
    /// Replace them with this content (data migrated from another hub).
    Write(TwinContent),
    /// Leave the twin as it is on the hub (re-registration on the same hub).
    Keep,
}

/// One device to make present on a hub.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceProvisioning {
    /// The hub device id.
    pub device_id: DeviceId,
    /// Its credentials.
    pub auth: DeviceAuth,
    /// Its capabilities (IoT Edge).
    pub capabilities: DeviceCapabilities,
    /// The enrollment's initial twin, used by [`TwinAction::ApplyInitial`].
    pub initial_twin: Option<InitialTwin>,
    /// What to do with the twin.
    pub twin_action: TwinAction,
}

impl DeviceProvisioning {
    /// The identity record to `PUT`.
    pub fn to_device(&self) -> Device {
        Device {
            device_id: self.device_id.as_str().to_owned(),
            status: Some(DeviceStatus::Enabled),
            authentication: Some(self.auth.to_wire()),
            capabilities: Some(self.capabilities),
            ..Device::default()
        }
    }
}

/// The result of [`ensure_device`].
#[derive(Clone, Debug, PartialEq)]
pub struct ProvisionedDevice {
    /// The hub's identity record after the write.
    pub device: Device,
    /// The id did not exist on the hub before.
    pub created: bool,
    /// The twin as the hub returned it after our write; `None` when the twin
    /// was left untouched.
    pub twin: Option<Twin>,
}

/// Make `request.device_id` exist on `hub` with the requested credentials and
/// capabilities, then apply the twin action.
///
/// Idempotent: running it again after a failure (or a lost reply) converges.
pub async fn ensure_device(
    hub: &dyn IotHub,
    request: &DeviceProvisioning,
) -> Result<ProvisionedDevice, HubError> {
    let (device, created) = hub.create_or_update_device(&request.to_device()).await?;
    let content = match &request.twin_action {
        TwinAction::Keep => None,
        TwinAction::ApplyInitial => {
            let content = TwinContent::from_initial(request.initial_twin.as_ref());
            // A new identity starts with an empty twin: writing emptiness is a no-op.
            (!(created && content.is_empty())).then_some(content)
        }
        TwinAction::Write(content) => (!(created && content.is_empty())).then(|| content.clone()),
    };
    let twin = match content {
        Some(content) => Some(
            hub.replace_twin(&request.device_id, &content.to_twin(), IfMatch::Any)
                .await?,
        ),
        None => None,
    };
    Ok(ProvisionedDevice {
        device,
        created,
        twin,
    })
}

/// What a move between hubs does with the device's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrationMode {
    /// Copy tags and desired properties from the old hub ("reprovision and
    /// migrate data"); if the old hub no longer has the device, fall back to
    /// the initial twin.
    CopyTwin,
    /// Start from the initial twin ("reprovision and reset to initial config").
    ResetToInitial,
}

/// The result of [`migrate_device`].
#[derive(Clone, Debug, PartialEq)]
pub struct Migration {
    /// The device on the new hub.
    pub provisioned: ProvisionedDevice,
    /// Tags and desired properties were copied from the old hub.
    pub data_migrated: bool,
    /// The old hub still had the identity, and it was deleted there.
    pub removed_from_source: bool,
}

/// Move a device from hub `from` to hub `to`: (read the old twin,) create the
/// identity on the new hub, write the twin, delete the identity from the old hub.
///
/// The old identity is deleted only after the new one is in place, so a failure
/// part-way leaves the device usable on one hub; running again converges.
/// `request.twin_action` is overridden by `mode`.
pub async fn migrate_device(
    from: &dyn IotHub,
    to: &dyn IotHub,
    request: &DeviceProvisioning,
    mode: MigrationMode,
) -> Result<Migration, HubError> {
    let migrated = match mode {
        MigrationMode::ResetToInitial => None,
        MigrationMode::CopyTwin => match from.get_twin(&request.device_id).await {
            Ok(twin) => Some(twin.content()),
            Err(HubError::DeviceNotFound { .. }) => None,
            Err(other) => return Err(other),
        },
    };
    let data_migrated = migrated.is_some();
    let request = DeviceProvisioning {
        twin_action: migrated.map_or(TwinAction::ApplyInitial, TwinAction::Write),
        ..request.clone()
    };
    let provisioned = ensure_device(to, &request).await?;
    let removed_from_source = remove_device(from, &request.device_id).await?;
    Ok(Migration {
        provisioned,
        data_migrated,
        removed_from_source,
    })
}

/// Delete a device with `If-Match: "*"`; a device that is already gone is not
/// an error. Returns whether it existed.
pub async fn remove_device(hub: &dyn IotHub, device_id: &DeviceId) -> Result<bool, HubError> {
    match hub.delete_device(device_id, IfMatch::Any).await {
        Ok(()) => Ok(true),
        Err(HubError::DeviceNotFound { .. }) => Ok(false),
        Err(other) => Err(other),
    }
}
