//! The bulk registry operation, `POST /devices`, with IoT Hub's rules:
//!
//! * the request as a whole is refused when it is not an array of valid
//!   entries (400 `ArgumentInvalid`), is empty (400 `ArgumentInvalid`),
//!   carries more than 100 entries (413 `TooManyDevices`, which the C# SDK
//!   maps to its `TooManyDevicesException`) or names a device twice (400
//!   `DeviceDefinedMultipleTimes`);
//! * otherwise every entry is applied on its own, in order: one entry's
//!   failure neither stops nor undoes the others;
//! * the reply is a `BulkRegistryOperationResult`: `200` with
//!   `isSuccessful: true` when every entry succeeded, else `400` with
//!   `isSuccessful: false` and one `errors` item per failed entry (the REST
//!   reference lists both statuses with this body).
//!
//! `create` writes the identity and, when the entry carries `tags` or
//! `properties.desired`, the twin's initial content in the same step.

use std::collections::HashSet;

use dps_hub::wire::{
    BulkRegistryOperationResult, Device, DeviceRegistryOperationError, ErrorCode,
    ExportImportDevice, ImportMode, Twin, TwinProperties, MAX_BULK_DEVICES,
};

use crate::registry::{Registry, RegistryError};

/// Check the request as a whole before anything is applied.
pub(crate) fn parse_request(body: &[u8]) -> Result<Vec<ExportImportDevice>, RegistryError> {
    let entries: Vec<ExportImportDevice> = serde_json::from_slice(body).map_err(|err| {
        RegistryError::new(
            ErrorCode::ArgumentInvalid,
            format!("The bulk request must be an array of ExportImportDevice: {err}"),
        )
    })?;
    if entries.is_empty() {
        return Err(RegistryError::new(
            ErrorCode::ArgumentInvalid,
            "The bulk request holds no device.",
        ));
    }
    if entries.len() > MAX_BULK_DEVICES {
        return Err(RegistryError::new(
            ErrorCode::TooManyDevices,
            format!(
                "A bulk request may hold at most {MAX_BULK_DEVICES} devices, not {}.",
                entries.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for entry in &entries {
        if !seen.insert(entry.id.as_str()) {
            return Err(RegistryError::new(
                ErrorCode::DeviceDefinedMultipleTimes,
                format!("Device {} is defined more than once.", entry.id),
            ));
        }
    }
    Ok(entries)
}

/// Apply every entry; the failures are in the result.
pub(crate) fn apply(
    registry: &mut Registry,
    entries: Vec<ExportImportDevice>,
) -> BulkRegistryOperationResult {
    let mut errors = Vec::new();
    for entry in entries {
        let id = entry.id.clone();
        let mode = entry.import_mode;
        if let Err(err) = apply_one(registry, entry) {
            errors.push(DeviceRegistryOperationError {
                device_id: id,
                error_code: err.code.name().to_owned(),
                error_status: err.message,
                module_id: None,
                operation: Some(mode.name().to_owned()),
            });
        }
    }
    BulkRegistryOperationResult {
        is_successful: errors.is_empty(),
        errors,
        warnings: Vec::new(),
    }
}

fn apply_one(registry: &mut Registry, entry: ExportImportDevice) -> Result<(), RegistryError> {
    if entry.module_id.is_some() {
        return Err(RegistryError::new(
            ErrorCode::ArgumentInvalid,
            "This emulator does not emulate modules.",
        ));
    }
    let id = entry.id.clone();
    let etag = || {
        entry
            .e_tag
            .clone()
            .filter(|e| !e.trim().is_empty())
            .ok_or_else(|| missing("eTag", entry.import_mode))
    };
    let twin_content = twin_of(&entry);
    match entry.import_mode {
        ImportMode::Create => {
            registry.put_device(&id, identity_of(&entry), None)?;
            let (tags, desired) = twin_content;
            registry.set_initial_twin(&id, tags, desired);
        }
        ImportMode::Update | ImportMode::UpdateIfMatchETag => {
            let if_match = match entry.import_mode {
                ImportMode::Update => "*".to_owned(),
                _ => quoted(&etag()?),
            };
            registry.put_device(&id, identity_of(&entry), Some(&if_match))?;
            write_twin_if_given(registry, &id, twin_content, "*")?;
        }
        ImportMode::Delete => registry.delete_device(&id, Some("*"))?,
        ImportMode::DeleteIfMatchETag => registry.delete_device(&id, Some(&quoted(&etag()?)))?,
        ImportMode::UpdateTwin => {
            write_twin_if_given(registry, &id, twin_content, "*")?;
        }
        ImportMode::UpdateTwinIfMatchETag => {
            let twin_etag = entry
                .twin_e_tag
                .clone()
                .filter(|e| !e.trim().is_empty())
                .ok_or_else(|| missing("twinETag", entry.import_mode))?;
            write_twin_if_given(registry, &id, twin_content, &quoted(&twin_etag))?;
        }
    }
    Ok(())
}

type TwinParts = (
    Option<dps_model::TwinCollection>,
    Option<dps_model::TwinCollection>,
);

fn twin_of(entry: &ExportImportDevice) -> TwinParts {
    (
        entry.tags.clone(),
        entry.properties.as_ref().and_then(|p| p.desired.clone()),
    )
}

fn identity_of(entry: &ExportImportDevice) -> Device {
    Device {
        device_id: entry.id.clone(),
        status: entry.status,
        status_reason: entry.status_reason.clone(),
        authentication: entry.authentication.clone(),
        capabilities: entry.capabilities,
        device_scope: entry.device_scope.clone(),
        parent_scopes: entry.parent_scopes.clone(),
        ..Device::default()
    }
}

/// Replace the parts the entry carries (tags and/or desired), keep the rest.
fn write_twin_if_given(
    registry: &mut Registry,
    id: &str,
    (tags, desired): TwinParts,
    if_match: &str,
) -> Result<(), RegistryError> {
    if tags.is_none() && desired.is_none() {
        if registry.device_etag(id).is_none() {
            return Err(RegistryError::new(
                ErrorCode::DeviceNotFound,
                format!("Device {id} cannot be found."),
            ));
        }
        return Ok(());
    }
    let current = registry.get_twin(id)?;
    let twin = Twin {
        tags: tags.or(current.tags),
        properties: Some(TwinProperties {
            desired: desired.or(current.properties.and_then(|p| p.desired)),
            reported: None,
        }),
        ..Twin::default()
    };
    registry.write_twin(id, twin, Some(if_match), true)?;
    Ok(())
}

fn quoted(etag: &str) -> String {
    format!("\"{}\"", etag.trim().trim_matches('"'))
}

fn missing(field: &str, mode: ImportMode) -> RegistryError {
    RegistryError::new(
        ErrorCode::ArgumentInvalid,
        format!("importMode {mode} needs {field}."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entries(value: serde_json::Value) -> Vec<ExportImportDevice> {
        parse_request(value.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn create_with_twin_then_per_entry_failures() {
        let mut reg = Registry::default();
        let result = apply(
            &mut reg,
            entries(json!([
                {"id": "a", "importMode": "create", "tags": {"site": "n"},
                 "properties": {"desired": {"interval": 5}}},
                {"id": "b", "importMode": "create", "status": "disabled"},
            ])),
        );
        assert!(result.is_successful, "{result:?}");
        let twin = reg.get_twin("a").unwrap();
        assert_eq!(twin.version, Some(1));
        assert_eq!(twin.tags.unwrap()["site"], "n");
        assert_eq!(twin.properties.unwrap().desired.unwrap()["interval"], 5);

        let result = apply(
            &mut reg,
            entries(json!([
                {"id": "a", "importMode": "create"},
                {"id": "c", "importMode": "create"},
                {"id": "b", "importMode": "updateIfMatchETag", "eTag": "stale"},
                {"id": "z", "importMode": "Update"},
            ])),
        );
        let codes: Vec<(&str, &str)> = result
            .errors
            .iter()
            .map(|e| (e.device_id.as_str(), e.error_code.as_str()))
            .collect();
        assert_eq!(
            codes,
            [
                ("a", "DeviceAlreadyExists"),
                ("b", "PreconditionFailed"),
                ("z", "DeviceNotFound")
            ]
        );
        assert!(!result.is_successful);
        assert!(
            reg.device_etag("c").is_some(),
            "c applied despite a's failure"
        );

        let etag_b = reg.device_etag("b").unwrap();
        let result = apply(
            &mut reg,
            entries(json!([{"id": "b", "importMode": "DeleteIfMatchETag", "eTag": etag_b}])),
        );
        assert!(result.is_successful, "{result:?}");
        assert!(reg.device_etag("b").is_none(), "b deleted");
    }

    #[test]
    fn whole_request_refusals() {
        let too_many: Vec<_> = (0..101)
            .map(|i| json!({"id": format!("d{i}"), "importMode": "create"}))
            .collect();
        for (body, code) in [
            (json!([]), ErrorCode::ArgumentInvalid),
            (json!({"id": "a"}), ErrorCode::ArgumentInvalid),
            (
                json!([{"id": "a", "importMode": "bogus"}]),
                ErrorCode::ArgumentInvalid,
            ),
            (json!(too_many), ErrorCode::TooManyDevices),
            (
                json!([{"id": "a", "importMode": "create"}, {"id": "a", "importMode": "delete"}]),
                ErrorCode::DeviceDefinedMultipleTimes,
            ),
        ] {
            let err = parse_request(body.to_string().as_bytes()).unwrap_err();
            assert_eq!(err.code, code, "{body}");
        }
    }
}
