//! One hub's identity registry and twins, with IoT Hub's write rules. No HTTP here.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use dps_attestation::keys::{generate_key, validate_key};
use dps_hub::wire::{
    AuthenticationMechanism, AuthenticationType, ConnectionState, Device, DeviceStatus, ErrorCode,
    RegistryStatistics, SymmetricKeyPair, Twin, TwinProperties, X509Thumbprint,
};
use dps_model::{DeviceId, Precondition, TwinCollection};
use serde::{Deserialize, Serialize};

use crate::twin::TwinState;

/// What IoT Hub shows for a time that never happened.
const NEVER: &str = "0001-01-01T00:00:00Z";

/// A refusal, rendered by the HTTP layer as an IoT Hub error reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RegistryError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

impl RegistryError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RegistryError {
            code,
            message: message.into(),
        }
    }

    fn not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::DeviceNotFound,
            format!("Device {id} cannot be found."),
        )
    }

    fn etag_mismatch(id: &str) -> Self {
        Self::new(
            ErrorCode::PreconditionFailed,
            format!("Precondition failed: the etag of {id} does not match."),
        )
    }
}

/// One device: its identity and its twin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeviceRecord {
    pub(crate) device: Device,
    pub(crate) twin: TwinState,
}

/// The devices of one hub, by device id (case-sensitive, as IoT Hub).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Registry {
    devices: BTreeMap<String, DeviceRecord>,
    /// Feeds device etags; only grows, so an etag is never reused.
    etag_counter: u64,
}

/// `If-Match` as IoT Hub reads it: `*` (quoted or not), an etag (quoted or not), or absent.
pub(crate) fn precondition(if_match: Option<&str>) -> Precondition {
    match if_match.map(str::trim) {
        Some(value) if value.trim_matches('"') == "*" => Precondition::Exists,
        other => Precondition::from_if_match(other),
    }
}

pub(crate) fn now() -> String {
    dps_model::time::format(&chrono::Utc::now())
}

fn valid_id(id: &str) -> Result<(), RegistryError> {
    DeviceId::new(id)
        .map(|_| ())
        .map_err(|err| RegistryError::new(ErrorCode::ArgumentInvalid, err.to_string()))
}

impl Registry {
    pub(crate) fn len(&self) -> usize {
        self.devices.len()
    }

    fn next_etag(&mut self) -> String {
        self.etag_counter += 1;
        BASE64.encode(self.etag_counter.to_string())
    }

    fn check(
        &self,
        id: &str,
        precondition: &Precondition,
        current_etag: impl Fn(&DeviceRecord) -> String,
    ) -> Result<(), RegistryError> {
        let current = self
            .devices
            .get(id)
            .map(|r| dps_model::ETag::new(current_etag(r)));
        if precondition.allows(current.as_ref()) {
            Ok(())
        } else if current.is_none() {
            Err(RegistryError::not_found(id))
        } else if *precondition == Precondition::Absent {
            Err(RegistryError::new(
                ErrorCode::DeviceAlreadyExists,
                format!("A device with ID '{id}' is already registered."),
            ))
        } else {
            Err(RegistryError::etag_mismatch(id))
        }
    }

    /// `PUT /devices/{id}`. Without `If-Match` only creates (409 if the id is
    /// taken), as IoT Hub does.
    pub(crate) fn put_device(
        &mut self,
        id: &str,
        body: Device,
        if_match: Option<&str>,
    ) -> Result<Device, RegistryError> {
        valid_id(id)?;
        if !body.device_id.is_empty() && body.device_id != id {
            return Err(RegistryError::new(
                ErrorCode::ArgumentInvalid,
                format!(
                    "deviceId {:?} in the body does not match {id:?} in the path.",
                    body.device_id
                ),
            ));
        }
        let precondition = match precondition(if_match) {
            Precondition::None => Precondition::Absent,
            other => other,
        };
        self.check(id, &precondition, |r| {
            r.device.etag.clone().unwrap_or_default()
        })?;
        let authentication = normalise_authentication(body.authentication)?;
        let now = now();
        let etag = self.next_etag();
        let previous = self.devices.get(id).cloned();
        let status = body.status.unwrap_or_default();
        let (generation_id, twin, status_updated, c2d) = match &previous {
            Some(old) => {
                let status_changed = old.device.status != Some(status);
                (
                    old.device.generation_id.clone(),
                    old.twin.clone(),
                    if status_changed {
                        Some(now.clone())
                    } else {
                        old.device.status_updated_time.clone()
                    },
                    old.device.cloud_to_device_message_count,
                )
            }
            None => (
                Some(format!(
                    "{}",
                    638_000_000_000_000_000u64 + rand_u64() % 1_000_000_000_000_000
                )),
                TwinState::new(&now),
                Some(NEVER.to_owned()),
                Some(0),
            ),
        };
        let capabilities = body.capabilities.unwrap_or_default();
        let device_scope = body.device_scope.or_else(|| {
            capabilities.iot_edge.then(|| {
                format!(
                    "ms-azure-iot-edge://{id}-{}",
                    generation_id.as_deref().unwrap_or("0")
                )
            })
        });
        let device = Device {
            device_id: id.to_owned(),
            generation_id,
            etag: Some(etag),
            connection_state: Some(ConnectionState::Disconnected),
            status: Some(status),
            status_reason: body.status_reason,
            connection_state_updated_time: Some(NEVER.to_owned()),
            status_updated_time: status_updated,
            last_activity_time: Some(NEVER.to_owned()),
            cloud_to_device_message_count: c2d,
            authentication: Some(authentication),
            capabilities: Some(capabilities),
            device_scope,
            parent_scopes: Some(body.parent_scopes.unwrap_or_default()),
        };
        self.devices.insert(
            id.to_owned(),
            DeviceRecord {
                device: device.clone(),
                twin,
            },
        );
        Ok(device)
    }

    pub(crate) fn get_device(&self, id: &str) -> Result<Device, RegistryError> {
        self.devices
            .get(id)
            .map(|r| r.device.clone())
            .ok_or_else(|| RegistryError::not_found(id))
    }

    /// `DELETE /devices/{id}`; no `If-Match` deletes unconditionally.
    pub(crate) fn delete_device(
        &mut self,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), RegistryError> {
        let precondition = match precondition(if_match) {
            Precondition::None => Precondition::Exists,
            other => other,
        };
        self.check(id, &precondition, |r| {
            r.device.etag.clone().unwrap_or_default()
        })?;
        self.devices.remove(id);
        Ok(())
    }

    pub(crate) fn get_twin(&self, id: &str) -> Result<Twin, RegistryError> {
        self.devices
            .get(id)
            .map(render_twin)
            .ok_or_else(|| RegistryError::not_found(id))
    }

    /// `PUT /twins/{id}` (replace) or `PATCH /twins/{id}` (merge).
    pub(crate) fn write_twin(
        &mut self,
        id: &str,
        body: Twin,
        if_match: Option<&str>,
        replace: bool,
    ) -> Result<Twin, RegistryError> {
        let precondition = match precondition(if_match) {
            Precondition::None => Precondition::Exists,
            other => other,
        };
        self.check(id, &precondition, |r| r.twin.etag())?;
        let now = now();
        let desired = body.properties.and_then(|p| p.desired);
        let record = self
            .devices
            .get_mut(id)
            .ok_or_else(|| RegistryError::not_found(id))?;
        if replace {
            record.twin.replace(
                body.tags.unwrap_or_default(),
                desired.unwrap_or_default(),
                &now,
            );
        } else {
            record.twin.patch(body.tags, desired, &now);
        }
        Ok(render_twin(record))
    }

    /// The identity etag of `id`, if it exists.
    pub(crate) fn device_etag(&self, id: &str) -> Option<String> {
        self.devices.get(id).and_then(|r| r.device.etag.clone())
    }

    /// Give a device just created by this same bulk entry its initial twin,
    /// without a version step: the identity and its twin are born together.
    pub(crate) fn set_initial_twin(
        &mut self,
        id: &str,
        tags: Option<TwinCollection>,
        desired: Option<TwinCollection>,
    ) {
        if let Some(record) = self.devices.get_mut(id) {
            record.twin.initialise(tags, desired);
        }
    }

    pub(crate) fn list(&self, top: usize) -> Vec<Device> {
        self.devices
            .values()
            .take(top)
            .map(|r| r.device.clone())
            .collect()
    }

    pub(crate) fn statistics(&self) -> RegistryStatistics {
        let enabled = self
            .devices
            .values()
            .filter(|r| r.device.status_or_default() == DeviceStatus::Enabled)
            .count() as u64;
        let total = self.devices.len() as u64;
        RegistryStatistics {
            total_device_count: total,
            enabled_device_count: enabled,
            disabled_device_count: total - enabled,
        }
    }
}

/// Fill in what IoT Hub fills in: generated keys for `sas` devices sent without
/// keys, null placeholders for the unused half; refuse unusable credentials.
fn normalise_authentication(
    auth: Option<AuthenticationMechanism>,
) -> Result<AuthenticationMechanism, RegistryError> {
    let auth = auth.unwrap_or_default();
    let no_thumbprints = X509Thumbprint::default();
    let no_keys = SymmetricKeyPair::default();
    let invalid = |message: String| RegistryError::new(ErrorCode::ArgumentInvalid, message);
    match auth.auth_type {
        AuthenticationType::Sas => {
            let keys = auth.symmetric_key.unwrap_or_default();
            let key = |given: Option<String>, which: &str| match given.filter(|k| !k.is_empty()) {
                None => Ok(generate_key()),
                Some(k) => validate_key(&k)
                    .map(|_| k)
                    .map_err(|err| invalid(format!("{which} key: {err}"))),
            };
            Ok(AuthenticationMechanism {
                symmetric_key: Some(SymmetricKeyPair {
                    primary_key: Some(key(keys.primary_key, "primary")?),
                    secondary_key: Some(key(keys.secondary_key, "secondary")?),
                }),
                x509_thumbprint: Some(no_thumbprints),
                auth_type: AuthenticationType::Sas,
            })
        }
        AuthenticationType::SelfSigned => {
            let thumbprints = auth.x509_thumbprint.unwrap_or_default();
            let check = |t: &Option<String>, which: &str| match t {
                Some(t) if !is_thumbprint(t) => Err(invalid(format!(
                    "{which} thumbprint must be 40 or 64 hex digits"
                ))),
                _ => Ok(()),
            };
            check(&thumbprints.primary_thumbprint, "primary")?;
            check(&thumbprints.secondary_thumbprint, "secondary")?;
            if thumbprints.primary_thumbprint.is_none()
                && thumbprints.secondary_thumbprint.is_none()
            {
                return Err(invalid(
                    "a selfSigned device needs a primary or secondary thumbprint".to_owned(),
                ));
            }
            Ok(AuthenticationMechanism {
                symmetric_key: Some(no_keys),
                x509_thumbprint: Some(thumbprints),
                auth_type: AuthenticationType::SelfSigned,
            })
        }
        other => Ok(AuthenticationMechanism {
            symmetric_key: Some(no_keys),
            x509_thumbprint: Some(no_thumbprints),
            auth_type: other,
        }),
    }
}

fn is_thumbprint(t: &str) -> bool {
    matches!(t.len(), 40 | 64) && t.bytes().all(|b| b.is_ascii_hexdigit())
}

fn rand_u64() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

fn render_twin(record: &DeviceRecord) -> Twin {
    let device = &record.device;
    Twin {
        device_id: Some(device.device_id.clone()),
        module_id: None,
        etag: Some(record.twin.etag()),
        device_etag: device.etag.clone(),
        version: Some(record.twin.version),
        status: device.status,
        status_reason: device.status_reason.clone(),
        status_update_time: device.status_updated_time.clone(),
        connection_state: device.connection_state,
        last_activity_time: device.last_activity_time.clone(),
        cloud_to_device_message_count: device.cloud_to_device_message_count,
        authentication_type: Some(device.authentication_type()),
        x509_thumbprint: Some(
            device
                .authentication
                .as_ref()
                .and_then(|a| a.x509_thumbprint.clone())
                .unwrap_or_default(),
        ),
        capabilities: device.capabilities,
        device_scope: device.device_scope.clone(),
        parent_scopes: device.parent_scopes.clone(),
        tags: Some(record.twin.tags.clone()),
        properties: Some(TwinProperties {
            desired: Some(record.twin.desired_with_metadata()),
            reported: Some(record.twin.reported_with_metadata()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sas_device(id: &str) -> Device {
        Device {
            device_id: id.to_owned(),
            ..Device::default()
        }
    }

    #[test]
    fn create_conflict_update_and_etags() {
        let mut reg = Registry::default();
        let created = reg.put_device("d1", sas_device("d1"), None).unwrap();
        let keys = created.authentication.unwrap().symmetric_key.unwrap();
        assert!(keys.primary_key.is_some() && keys.secondary_key.is_some());
        let err = reg.put_device("d1", sas_device("d1"), None).unwrap_err();
        assert_eq!(err.code, ErrorCode::DeviceAlreadyExists);
        let err = reg
            .put_device("d1", sas_device("d1"), Some("\"bogus\""))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::PreconditionFailed);
        let etag = created.etag.unwrap();
        let updated = reg
            .put_device("d1", sas_device("d1"), Some(&format!("\"{etag}\"")))
            .unwrap();
        assert_ne!(updated.etag.unwrap(), etag);
        assert_eq!(updated.generation_id, created.generation_id);
        let err = reg
            .put_device("d2", sas_device("d2"), Some("*"))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::DeviceNotFound);
    }

    #[test]
    fn bad_ids_keys_and_thumbprints_are_argument_invalid() {
        let mut reg = Registry::default();
        for (id, body) in [
            ("bad id", sas_device("bad id")),
            ("d1", sas_device("other")),
            (
                "d1",
                Device {
                    device_id: "d1".into(),
                    authentication: Some(AuthenticationMechanism {
                        symmetric_key: Some(SymmetricKeyPair {
                            primary_key: Some("short".into()),
                            secondary_key: None,
                        }),
                        x509_thumbprint: None,
                        auth_type: AuthenticationType::Sas,
                    }),
                    ..Device::default()
                },
            ),
            (
                "d1",
                Device {
                    device_id: "d1".into(),
                    authentication: Some(AuthenticationMechanism {
                        symmetric_key: None,
                        x509_thumbprint: Some(X509Thumbprint::default()),
                        auth_type: AuthenticationType::SelfSigned,
                    }),
                    ..Device::default()
                },
            ),
        ] {
            let err = reg.put_device(id, body, None).unwrap_err();
            assert_eq!(err.code, ErrorCode::ArgumentInvalid, "{err:?}");
        }
        assert_eq!(reg.len(), 0);
    }

    #[test]
    fn twin_etag_and_delete() {
        let mut reg = Registry::default();
        reg.put_device("d1", sas_device("d1"), None).unwrap();
        let twin = reg.get_twin("d1").unwrap();
        let patched = reg
            .write_twin("d1", Twin::default(), twin.etag.as_deref(), false)
            .unwrap();
        assert_eq!(patched.version, Some(2));
        let err = reg
            .write_twin("d1", Twin::default(), twin.etag.as_deref(), false)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::PreconditionFailed);
        reg.delete_device("d1", Some("*")).unwrap();
        assert_eq!(
            reg.get_twin("d1").unwrap_err().code,
            ErrorCode::DeviceNotFound
        );
        assert_eq!(
            reg.delete_device("d1", None).unwrap_err().code,
            ErrorCode::DeviceNotFound
        );
    }
}
