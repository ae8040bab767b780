//! Provisioning many devices on one hub with bulk registry calls
//! (`POST /devices`): identity and initial twin in one entry, up to 100
//! entries a call, each device's outcome mapped back to that device.

use crate::hub::{IfMatch, IotHub};
use crate::provisioning::{ensure_device, DeviceProvisioning, TwinAction};
use crate::wire::{
    BulkRegistryOperationResult, DeviceRegistryOperationError, ExportImportDevice, ImportMode,
    PropertyContainer, Twin, TwinContent, TwinProperties, ERROR_CODE_HEADER, MAX_BULK_DEVICES,
};
use crate::HubError;

/// The bulk entry that makes `request` true on a hub that does not know the
/// device yet (`create`, with the twin content when there is any), or — for
/// [`TwinAction::Keep`] — that rewrites an identity the hub already has
/// (`update`, twin untouched).
pub fn bulk_entry(request: &DeviceProvisioning) -> ExportImportDevice {
    let device = request.to_device();
    let (mode, content) = match &request.twin_action {
        TwinAction::Keep => (ImportMode::Update, None),
        TwinAction::ApplyInitial => (
            ImportMode::Create,
            Some(TwinContent::from_initial(request.initial_twin.as_ref())),
        ),
        TwinAction::Write(content) => (ImportMode::Create, Some(content.clone())),
    };
    let content = content.filter(|c| !c.is_empty());
    ExportImportDevice {
        status: device.status,
        authentication: device.authentication,
        capabilities: device.capabilities,
        tags: content
            .as_ref()
            .filter(|c| !c.tags.is_empty())
            .map(|c| c.tags.clone()),
        properties: content
            .as_ref()
            .filter(|c| !c.desired.is_empty())
            .map(|c| PropertyContainer {
                desired: Some(c.desired.clone()),
                reported: None,
            }),
        ..ExportImportDevice::new(device.device_id, mode)
    }
}

/// Make every request true on `hub` with as few calls as the bulk API
/// allows: one call per 100 devices; a device whose entry the hub refused
/// because the identity already exists (or, for an `update`, does not) is
/// then provisioned on its own with [`ensure_device`]. The result has one
/// item per request, in order: one device's failure is only that device's.
/// A failure of a whole call (throttled past the client's retries, hub
/// unreachable) is reported for each device of that call.
pub async fn provision_devices(
    hub: &dyn IotHub,
    requests: &[DeviceProvisioning],
) -> Vec<Result<(), HubError>> {
    let mut outcomes = Vec::with_capacity(requests.len());
    for chunk in requests.chunks(MAX_BULK_DEVICES) {
        let entries: Vec<ExportImportDevice> = chunk.iter().map(bulk_entry).collect();
        let result = match hub.bulk_registry(&entries).await {
            Ok(result) => result,
            Err(err) => {
                outcomes.extend(chunk.iter().map(|_| Err(err.clone())));
                continue;
            }
        };
        for (request, entry) in chunk.iter().zip(&entries) {
            let refused = result.errors.iter().find(|e| e.device_id == entry.id);
            let outcome = match refused.map(|e| error_from_entry(hub.host_name(), e)) {
                None => Ok(()),
                Some(HubError::Conflict { .. }) if entry.import_mode == ImportMode::Create => {
                    ensure_device(hub, request).await.map(|_| ())
                }
                Some(HubError::DeviceNotFound { .. })
                    if entry.import_mode == ImportMode::Update =>
                {
                    ensure_device(hub, request).await.map(|_| ())
                }
                Some(err) => Err(err),
            };
            outcomes.push(outcome);
        }
    }
    outcomes
}

/// The [`HubError`] a refused bulk entry stands for, classified exactly as
/// the same refusal of a single-device call would be.
pub fn error_from_entry(host: &str, error: &DeviceRegistryOperationError) -> HubError {
    let code = crate::wire::ErrorCode::from_name(&error.error_code);
    let status = code.map(|c| c.status()).unwrap_or_else(|| {
        let name = error.error_code.to_ascii_lowercase();
        if name.contains("notfound") {
            404
        } else if name.contains("throttl") || name.contains("toomanyrequests") {
            429
        } else if name.contains("conflict") || name.contains("alreadyexists") {
            409
        } else {
            400
        }
    });
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(value) = reqwest::header::HeaderValue::from_str(&error.error_code) {
        headers.insert(ERROR_CODE_HEADER, value);
    }
    let body = serde_json::json!({
        "Message": format!("ErrorCode:{};{}", error.error_code, error.error_status)
    });
    crate::client::error_from_reply(
        host,
        status,
        &headers,
        body.to_string().as_bytes(),
        &error.device_id,
    )
}

/// What a hub without a bulk API does with a bulk call: each entry applied
/// with the single-device calls, in order, its failure recorded for it.
pub(crate) async fn one_by_one<H: IotHub + ?Sized>(
    hub: &H,
    devices: &[ExportImportDevice],
) -> Result<BulkRegistryOperationResult, HubError> {
    let mut errors = Vec::new();
    for entry in devices {
        if let Err(err) = apply_one(hub, entry).await {
            errors.push(DeviceRegistryOperationError {
                device_id: entry.id.clone(),
                error_code: code_name(&err).to_owned(),
                error_status: err.to_string(),
                module_id: None,
                operation: Some(entry.import_mode.name().to_owned()),
            });
        }
    }
    Ok(BulkRegistryOperationResult {
        is_successful: errors.is_empty(),
        errors,
        warnings: Vec::new(),
    })
}

async fn apply_one<H: IotHub + ?Sized>(
    hub: &H,
    entry: &ExportImportDevice,
) -> Result<(), HubError> {
    let device = crate::wire::Device {
        device_id: entry.id.clone(),
        status: entry.status,
        status_reason: entry.status_reason.clone(),
        authentication: entry.authentication.clone(),
        capabilities: entry.capabilities,
        device_scope: entry.device_scope.clone(),
        parent_scopes: entry.parent_scopes.clone(),
        ..Default::default()
    };
    let etag = || IfMatch::Etag(entry.e_tag.clone().unwrap_or_default());
    let twin_etag = || IfMatch::Etag(entry.twin_e_tag.clone().unwrap_or_default());
    let id = || {
        dps_model::DeviceId::new(&entry.id).map_err(|err| HubError::Rejected {
            host: hub.host_name().to_owned(),
            status: 400,
            code: Some("ArgumentInvalid".to_owned()),
            message: err.to_string(),
        })
    };
    let twin = (entry.tags.is_some() || entry.properties.is_some()).then(|| Twin {
        tags: Some(entry.tags.clone().unwrap_or_default()),
        properties: Some(TwinProperties {
            desired: Some(
                entry
                    .properties
                    .as_ref()
                    .and_then(|p| p.desired.clone())
                    .unwrap_or_default(),
            ),
            reported: None,
        }),
        ..Twin::default()
    });
    let write_twin = |if_match: IfMatch| async {
        match &twin {
            Some(twin) => hub.replace_twin(&id()?, twin, if_match).await.map(|_| ()),
            None => Ok(()),
        }
    };
    match entry.import_mode {
        ImportMode::Create => {
            hub.put_device(&device, IfMatch::None).await?;
            write_twin(IfMatch::Any).await
        }
        ImportMode::Update => {
            hub.put_device(&device, IfMatch::Any).await?;
            write_twin(IfMatch::Any).await
        }
        ImportMode::UpdateIfMatchETag => {
            hub.put_device(&device, etag()).await?;
            write_twin(IfMatch::Any).await
        }
        ImportMode::Delete => hub.delete_device(&id()?, IfMatch::Any).await,
        ImportMode::DeleteIfMatchETag => hub.delete_device(&id()?, etag()).await,
        ImportMode::UpdateTwin => write_twin(IfMatch::Any).await,
        ImportMode::UpdateTwinIfMatchETag => write_twin(twin_etag()).await,
    }
}

fn code_name(err: &HubError) -> &str {
    if let Some(code) = err.hub_code() {
        return code;
    }
    match err {
        HubError::Conflict { .. } => "DeviceAlreadyExists",
        HubError::DeviceNotFound { .. } => "DeviceNotFound",
        HubError::PreconditionFailed { .. } => "PreconditionFailed",
        HubError::Throttled { .. } => "ThrottlingException",
        HubError::Unauthorized { .. } => "IotHubUnauthorizedAccess",
        HubError::Server { .. } | HubError::Transport { .. } => "ServiceUnavailable",
        _ => "ArgumentInvalid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provisioning::DeviceAuth;
    use dps_attestation::sas::SymmetricKey;
    use dps_model::{DeviceCapabilities, DeviceId, InitialTwin};
    use serde_json::json;

    fn request(twin_action: TwinAction, initial: Option<InitialTwin>) -> DeviceProvisioning {
        let key = SymmetricKey::from_bytes(vec![1; 32]);
        DeviceProvisioning {
            device_id: DeviceId::new("d1").unwrap(),
            auth: DeviceAuth::SymmetricKey {
                primary: key.clone(),
                secondary: key,
            },
            capabilities: DeviceCapabilities::default(),
            initial_twin: initial,
            twin_action,
        }
    }

    #[test]
    fn entries_carry_identity_and_initial_twin() {
        let initial: InitialTwin = serde_json::from_value(
            json!({"tags": {"site": "n"}, "properties": {"desired": {"interval": 5}}}),
        )
        .unwrap();
        let entry = serde_json::to_value(bulk_entry(&request(
            TwinAction::ApplyInitial,
            Some(initial),
        )))
        .unwrap();
        assert_eq!(entry["id"], "d1");
        assert_eq!(entry["importMode"], "create");
        assert_eq!(entry["status"], "enabled");
        assert_eq!(entry["authentication"]["type"], "sas");
        assert_eq!(entry["tags"], json!({"site": "n"}));
        assert_eq!(entry["properties"], json!({"desired": {"interval": 5}}));
        let keep = serde_json::to_value(bulk_entry(&request(TwinAction::Keep, None))).unwrap();
        assert_eq!(keep["importMode"], "update");
        assert!(keep.get("tags").is_none() && keep.get("properties").is_none());
        let empty =
            serde_json::to_value(bulk_entry(&request(TwinAction::ApplyInitial, None))).unwrap();
        assert!(empty.get("tags").is_none() && empty.get("properties").is_none());
    }

    #[test]
    fn entry_errors_classify_like_single_calls() {
        let entry = |code: &str| DeviceRegistryOperationError {
            device_id: "d1".into(),
            error_code: code.into(),
            error_status: "why".into(),
            ..Default::default()
        };
        assert!(matches!(
            error_from_entry("h", &entry("DeviceAlreadyExists")),
            HubError::Conflict { status: 409, .. }
        ));
        assert!(matches!(
            error_from_entry("h", &entry("DeviceNotFound")),
            HubError::DeviceNotFound { .. }
        ));
        assert!(matches!(
            error_from_entry("h", &entry("PreconditionFailed")),
            HubError::PreconditionFailed { .. }
        ));
        assert!(matches!(
            error_from_entry("h", &entry("ThrottlingException")),
            HubError::Throttled { .. }
        ));
        match error_from_entry("h", &entry("IotHubQuotaExceeded")) {
            HubError::Rejected {
                status: 403,
                code,
                message,
                ..
            } => {
                assert_eq!(code.as_deref(), Some("IotHubQuotaExceeded"));
                assert_eq!(message, "why");
            }
            other => panic!("{other:?}"),
        }
    }
}
