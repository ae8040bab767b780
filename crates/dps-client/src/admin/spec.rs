//! An enrollment or group described by command-line flags, in the Azure
//! JSON shape: applied to a fresh record (create) or to the record just
//! read (update), so that `--provisioning-status disabled` changes that one
//! field and keeps the rest.

use serde_json::{json, Map, Value};

use super::credentials::config;
use super::Collection;
use crate::ClientError;

/// How a device proves who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttestationType {
    /// A symmetric key (SAS token).
    SymmetricKey,
    /// An X.509 certificate chain.
    X509,
    /// A TPM endorsement key (individual enrollments only).
    Tpm,
}

impl AttestationType {
    fn as_str(self) -> &'static str {
        match self {
            AttestationType::SymmetricKey => "symmetricKey",
            AttestationType::X509 => "x509",
            AttestationType::Tpm => "tpm",
        }
    }
}

/// What happens to a device's hub assignment and data when it provisions
/// again (`az`'s names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReprovisionPolicy {
    /// Move to the newly allocated hub, taking the twin along.
    ReprovisionAndMigrateData,
    /// Move to the newly allocated hub with the initial twin.
    ReprovisionAndResetData,
    /// Stay on the assigned hub.
    Never,
}

/// The fields flags may set; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct RecordSpec {
    /// A new attestation of this type (replaces the old one).
    pub attestation_type: Option<AttestationType>,
    /// Symmetric key, primary (base64).
    pub primary_key: Option<String>,
    /// Symmetric key, secondary (base64).
    pub secondary_key: Option<String>,
    /// TPM endorsement key (base64).
    pub endorsement_key: Option<String>,
    /// X.509 primary certificate (PEM): the device's own (individual) or a
    /// signing CA (group).
    pub primary_certificate: Option<String>,
    /// X.509 secondary certificate (PEM).
    pub secondary_certificate: Option<String>,
    /// Uploaded CA certificate the group trusts, primary (groups only).
    pub primary_ca_name: Option<String>,
    /// Uploaded CA certificate the group trusts, secondary (groups only).
    pub secondary_ca_name: Option<String>,
    /// The hub device id (individual only; default: the registration id).
    pub device_id: Option<String>,
    /// `enabled` or `disabled`.
    pub provisioning_status: Option<String>,
    /// Initial twin tags (a JSON object).
    pub initial_twin_tags: Option<Value>,
    /// Initial twin desired properties (a JSON object).
    pub initial_twin_properties: Option<Value>,
    /// Hubs the allocation may choose from (linked hub host names).
    pub iot_hubs: Option<Vec<String>>,
    /// `hashed`, `geoLatency`, `static` or `custom`.
    pub allocation_policy: Option<String>,
    /// The custom allocation webhook.
    pub webhook_url: Option<String>,
    /// The api-version sent to the webhook.
    pub webhook_api_version: Option<String>,
    /// An IoT Edge device.
    pub edge_enabled: Option<bool>,
    /// What re-provisioning does.
    pub reprovision_policy: Option<ReprovisionPolicy>,
    /// The credential policy whose CA issues certificates to devices that
    /// send a certificate request (`credentialPolicyName`).
    pub credential_policy_name: Option<String>,
}

impl RecordSpec {
    /// Write the fields given into `record`.
    pub fn apply(&self, collection: Collection, record: &mut Value) -> Result<(), ClientError> {
        if !record.is_object() {
            return Err(config("a record must be a JSON object".to_owned()));
        }
        let individual = collection == Collection::Enrollments;
        if let Some(kind) = self.attestation_type {
            if kind == AttestationType::Tpm && !individual {
                return Err(config(
                    "enrollment groups take x509 or symmetricKey attestation".to_owned(),
                ));
            }
            record["attestation"] = json!({"type": kind.as_str()});
        }
        let kind = record["attestation"]["type"].as_str().map(str::to_owned);
        let need = |wanted: AttestationType, flag: &str| -> Result<(), ClientError> {
            match kind.as_deref() {
                Some(k) if k.eq_ignore_ascii_case(wanted.as_str()) => Ok(()),
                other => Err(config(format!(
                    "{flag} needs {} attestation (this record has {}); give --attestation-type",
                    wanted.as_str(),
                    other.unwrap_or("none")
                ))),
            }
        };
        let attestation = &mut record["attestation"];
        for (value, slot, flag) in [
            (&self.primary_key, "primaryKey", "--primary-key"),
            (&self.secondary_key, "secondaryKey", "--secondary-key"),
        ] {
            if let Some(key) = value {
                need(AttestationType::SymmetricKey, flag)?;
                attestation["symmetricKey"][slot] = json!(key);
            }
        }
        if let Some(key) = &self.endorsement_key {
            need(AttestationType::Tpm, "--endorsement-key")?;
            attestation["tpm"]["endorsementKey"] = json!(key);
        }
        let certificates = if individual {
            "clientCertificates"
        } else {
            "signingCertificates"
        };
        for (value, slot, flag) in [
            (&self.primary_certificate, "primary", "--certificate-path"),
            (
                &self.secondary_certificate,
                "secondary",
                "--secondary-certificate-path",
            ),
        ] {
            if let Some(pem) = value {
                need(AttestationType::X509, flag)?;
                attestation["x509"][certificates][slot] = json!({"certificate": pem});
            }
        }
        for (value, slot, flag) in [
            (&self.primary_ca_name, "primary", "--ca-name"),
            (&self.secondary_ca_name, "secondary", "--secondary-ca-name"),
        ] {
            if let Some(name) = value {
                if individual {
                    return Err(config(format!("{flag} is for enrollment groups")));
                }
                need(AttestationType::X509, flag)?;
                attestation["x509"]["caReferences"][slot] = json!(name);
            }
        }
        if let Some(device_id) = &self.device_id {
            if !individual {
                return Err(config(
                    "--device-id is for individual enrollments".to_owned(),
                ));
            }
            record["deviceId"] = json!(device_id);
        }
        set(record, "provisioningStatus", &self.provisioning_status);
        for (value, path) in [
            (&self.initial_twin_tags, &["tags"][..]),
            (
                &self.initial_twin_properties,
                &["properties", "desired"][..],
            ),
        ] {
            if let Some(value) = value {
                if !value.is_object() {
                    return Err(config(format!(
                        "the initial twin's {} must be a JSON object",
                        path.join(".")
                    )));
                }
                let mut slot = &mut record["initialTwin"];
                for key in path {
                    slot = &mut slot[*key];
                }
                *slot = value.clone();
            }
        }
        if let Some(hubs) = &self.iot_hubs {
            record["iotHubs"] = json!(hubs);
        }
        set(record, "allocationPolicy", &self.allocation_policy);
        if self.webhook_url.is_some() || self.webhook_api_version.is_some() {
            let definition = &mut record["customAllocationDefinition"];
            if !definition.is_object() {
                *definition = Value::Object(Map::new());
            }
            set(definition, "webhookUrl", &self.webhook_url);
            set(definition, "apiVersion", &self.webhook_api_version);
        }
        if let Some(edge) = self.edge_enabled {
            record["capabilities"] = json!({"iotEdge": edge});
        }
        set(record, "credentialPolicyName", &self.credential_policy_name);
        if let Some(policy) = self.reprovision_policy {
            let (update, migrate) = match policy {
                ReprovisionPolicy::ReprovisionAndMigrateData => (true, true),
                ReprovisionPolicy::ReprovisionAndResetData => (true, false),
                ReprovisionPolicy::Never => (false, false),
            };
            record["reprovisionPolicy"] =
                json!({"updateHubAssignment": update, "migrateDeviceData": migrate});
        }
        Ok(())
    }
}

fn set(record: &mut Value, field: &str, value: &Option<String>) {
    if let Some(value) = value {
        record[field] = json!(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_build_an_azure_enrollment() {
        let spec = RecordSpec {
            attestation_type: Some(AttestationType::SymmetricKey),
            primary_key: Some("AAAA".into()),
            device_id: Some("dev-1-device".into()),
            provisioning_status: Some("disabled".into()),
            initial_twin_tags: Some(json!({"site": "plant-4"})),
            initial_twin_properties: Some(json!({"rate": 5})),
            iot_hubs: Some(vec!["hub-a".into()]),
            allocation_policy: Some("custom".into()),
            webhook_url: Some("https://alloc.example/api".into()),
            edge_enabled: Some(true),
            reprovision_policy: Some(ReprovisionPolicy::ReprovisionAndResetData),
            ..RecordSpec::default()
        };
        let mut record = json!({"registrationId": "dev-1"});
        spec.apply(Collection::Enrollments, &mut record).unwrap();
        assert_eq!(
            record,
            json!({"registrationId": "dev-1", "deviceId": "dev-1-device",
                "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": "AAAA"}},
                "provisioningStatus": "disabled",
                "initialTwin": {"tags": {"site": "plant-4"}, "properties": {"desired": {"rate": 5}}},
                "iotHubs": ["hub-a"], "allocationPolicy": "custom",
                "customAllocationDefinition": {"webhookUrl": "https://alloc.example/api"},
                "capabilities": {"iotEdge": true},
                "reprovisionPolicy": {"updateHubAssignment": true, "migrateDeviceData": false}})
        );
    }

    #[test]
    fn an_update_changes_only_what_was_given() {
        let mut group = json!({"enrollmentGroupId": "g", "etag": "e",
            "attestation": {"type": "x509", "x509": {"caReferences": {"primary": "old"}}},
            "initialTwin": {"tags": {"a": 1}}});
        let spec = RecordSpec {
            secondary_ca_name: Some("new".into()),
            initial_twin_properties: Some(json!({"b": 2})),
            ..RecordSpec::default()
        };
        spec.apply(Collection::Groups, &mut group).unwrap();
        assert_eq!(
            group,
            json!({"enrollmentGroupId": "g", "etag": "e",
                "attestation": {"type": "x509", "x509": {"caReferences": {"primary": "old", "secondary": "new"}}},
                "initialTwin": {"tags": {"a": 1}, "properties": {"desired": {"b": 2}}}})
        );
    }

    #[test]
    fn flags_that_do_not_fit_the_record_are_refused() {
        let apply = |spec: RecordSpec, collection, mut record: Value| {
            spec.apply(collection, &mut record).unwrap_err().to_string()
        };
        let sym = json!({"registrationId": "d", "attestation": {"type": "symmetricKey"}});
        let text = apply(
            RecordSpec {
                endorsement_key: Some("ek".into()),
                ..RecordSpec::default()
            },
            Collection::Enrollments,
            sym.clone(),
        );
        assert!(text.contains("--endorsement-key needs tpm"), "{text}");
        let text = apply(
            RecordSpec {
                primary_ca_name: Some("root".into()),
                ..RecordSpec::default()
            },
            Collection::Enrollments,
            sym,
        );
        assert!(text.contains("for enrollment groups"), "{text}");
        let text = apply(
            RecordSpec {
                attestation_type: Some(AttestationType::Tpm),
                ..RecordSpec::default()
            },
            Collection::Groups,
            json!({"enrollmentGroupId": "g"}),
        );
        assert!(text.contains("x509 or symmetricKey"), "{text}");
    }
}
