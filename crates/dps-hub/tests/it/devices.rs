//! Device identities: create, read, update, delete for each authentication type.

use dps_hub::wire::{
    AuthenticationMechanism, AuthenticationType, Device, DeviceStatus, SymmetricKeyPair,
};
use dps_hub::{
    ensure_device, DeviceAuth, DeviceProvisioning, HubError, IfMatch, IotHub, TwinAction,
};
use dps_model::DeviceCapabilities;

use crate::support::{id, key, sas_request, Fixture, HUB_A, HUB_B};

fn sas_device(device_id: &str, primary: &str, secondary: &str) -> Device {
    Device {
        device_id: device_id.to_owned(),
        authentication: Some(AuthenticationMechanism {
            symmetric_key: Some(SymmetricKeyPair {
                primary_key: Some(primary.to_owned()),
                secondary_key: Some(secondary.to_owned()),
            }),
            x509_thumbprint: None,
            auth_type: AuthenticationType::Sas,
        }),
        ..Device::default()
    }
}

#[tokio::test]
async fn sas_device_create_get_update_delete() {
    let fx = Fixture::start().await;
    let hub = fx.client(HUB_A);
    let (k1, k2) = (key(1).to_base64(), key(2).to_base64());

    let created = hub
        .put_device(&sas_device("dev-1", &k1, &k2), IfMatch::None)
        .await
        .unwrap();
    assert_eq!(created.device_id, "dev-1");
    assert_eq!(created.status, Some(DeviceStatus::Enabled));
    assert!(created.generation_id.is_some());
    let keys = created
        .authentication
        .clone()
        .unwrap()
        .symmetric_key
        .unwrap();
    assert_eq!(keys.primary_key.as_deref(), Some(k1.as_str()));
    assert_eq!(keys.secondary_key.as_deref(), Some(k2.as_str()));

    let read = hub.get_device(&id("dev-1")).await.unwrap();
    assert_eq!(read, created);
    assert_eq!(fx.sim.device(HUB_A, "dev-1"), Some(created.clone()));
    assert_eq!(fx.sim.device(HUB_B, "dev-1"), None, "hubs are separate");

    match hub
        .put_device(&sas_device("dev-1", &k1, &k2), IfMatch::None)
        .await
    {
        Err(HubError::Conflict {
            host,
            device_id,
            status,
            code,
            ..
        }) => {
            assert_eq!(
                (host.as_str(), device_id.as_str(), status),
                (HUB_A, "dev-1", 409)
            );
            assert_eq!(code.as_deref(), Some("DeviceAlreadyExists"));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }

    let mut disabled = sas_device("dev-1", &k2, &k1);
    disabled.status = Some(DeviceStatus::Disabled);
    let updated = hub
        .put_device(&disabled, IfMatch::Etag(created.etag.clone().unwrap()))
        .await
        .unwrap();
    assert_eq!(updated.status, Some(DeviceStatus::Disabled));
    assert_eq!(updated.generation_id, created.generation_id);
    assert_ne!(updated.etag, created.etag);

    match hub
        .put_device(&disabled, IfMatch::Etag(created.etag.clone().unwrap()))
        .await
    {
        Err(HubError::PreconditionFailed { status, code, .. }) => {
            assert_eq!(status, 412);
            assert_eq!(code.as_deref(), Some("PreconditionFailed"));
        }
        other => panic!("expected PreconditionFailed, got {other:?}"),
    }

    hub.delete_device(&id("dev-1"), IfMatch::Any).await.unwrap();
    match hub.get_device(&id("dev-1")).await {
        Err(HubError::DeviceNotFound {
            host,
            device_id,
            status,
            code,
            message,
        }) => {
            assert_eq!(
                (host.as_str(), device_id.as_str(), status),
                (HUB_A, "dev-1", 404)
            );
            assert_eq!(code.as_deref(), Some("DeviceNotFound"));
            assert!(message.contains("dev-1"), "{message}");
        }
        other => panic!("expected DeviceNotFound, got {other:?}"),
    }
    assert!(matches!(
        hub.delete_device(&id("dev-1"), IfMatch::Any).await,
        Err(HubError::DeviceNotFound { .. })
    ));
    fx.sim.shutdown().await;
}

#[tokio::test]
async fn sas_device_without_keys_gets_generated_keys() {
    let fx = Fixture::start().await;
    let hub = fx.client(HUB_A);
    let device = Device {
        device_id: "no-keys".into(),
        ..Device::default()
    };
    let created = hub.put_device(&device, IfMatch::None).await.unwrap();
    let auth = created.authentication.unwrap();
    assert_eq!(auth.auth_type, AuthenticationType::Sas);
    let keys = auth.symmetric_key.unwrap();
    let (primary, secondary) = (keys.primary_key.unwrap(), keys.secondary_key.unwrap());
    assert_ne!(primary, secondary);
    assert!(dps_attestation::keys::validate_key(&primary).is_ok());
}

#[tokio::test]
async fn ensure_device_for_each_auth_type() {
    let fx = Fixture::start().await;
    let hub = fx.client(HUB_A);
    let thumb = "A1B2C3D4E5F60718293A4B5C6D7E8F9001122334";
    let cases = [
        (
            "sym",
            DeviceAuth::SymmetricKey {
                primary: key(3),
                secondary: key(4),
            },
            false,
        ),
        (
            "x509",
            DeviceAuth::X509Thumbprint {
                primary: thumb.to_owned(),
                secondary: None,
            },
            false,
        ),
        ("ca", DeviceAuth::CertificateAuthority, true),
    ];
    for (name, auth, edge) in cases {
        let request = DeviceProvisioning {
            auth: auth.clone(),
            capabilities: DeviceCapabilities { iot_edge: edge },
            ..sas_request(name, None)
        };
        let done = ensure_device(&hub, &request).await.unwrap();
        assert!(done.created, "{name}");
        assert_eq!(done.twin, None, "{name}: nothing to write on a new device");
        let stored = fx.sim.device(HUB_A, name).unwrap();
        assert_eq!(stored, done.device);
        assert_eq!(
            stored.capabilities,
            Some(DeviceCapabilities { iot_edge: edge })
        );
        let auth_wire = stored.authentication.unwrap();
        match auth {
            DeviceAuth::SymmetricKey { primary, secondary } => {
                assert_eq!(auth_wire.auth_type, AuthenticationType::Sas);
                let keys = auth_wire.symmetric_key.unwrap();
                assert_eq!(keys.primary_key, Some(primary.to_base64()));
                assert_eq!(keys.secondary_key, Some(secondary.to_base64()));
            }
            DeviceAuth::X509Thumbprint { primary, .. } => {
                assert_eq!(auth_wire.auth_type, AuthenticationType::SelfSigned);
                let t = auth_wire.x509_thumbprint.unwrap();
                assert_eq!(t.primary_thumbprint.as_deref(), Some(primary.as_str()));
                assert_eq!(t.secondary_thumbprint.as_deref(), Some(primary.as_str()));
            }
            DeviceAuth::CertificateAuthority => {
                assert_eq!(
                    auth_wire.auth_type,
                    AuthenticationType::CertificateAuthority
                );
                assert!(stored
                    .device_scope
                    .unwrap()
                    .starts_with("ms-azure-iot-edge://ca-"));
            }
        }
    }
    assert_eq!(fx.sim.device_count(HUB_A), 3);
}

#[tokio::test]
async fn ensure_device_twice_updates_credentials_in_place() {
    let fx = Fixture::start().await;
    let hub = fx.client(HUB_A);
    let first = ensure_device(&hub, &sas_request("tpm-1", None))
        .await
        .unwrap();
    assert!(first.created);
    // A TPM device gets a new hub key on every provisioning.
    let request = DeviceProvisioning {
        auth: DeviceAuth::SymmetricKey {
            primary: key(9),
            secondary: key(9),
        },
        twin_action: TwinAction::Keep,
        ..sas_request("tpm-1", None)
    };
    let second = ensure_device(&hub, &request).await.unwrap();
    assert!(!second.created);
    assert_eq!(second.device.generation_id, first.device.generation_id);
    let keys = fx
        .sim
        .device(HUB_A, "tpm-1")
        .unwrap()
        .authentication
        .unwrap()
        .symmetric_key
        .unwrap();
    assert_eq!(keys.primary_key, Some(key(9).to_base64()));
}

#[tokio::test]
async fn wrong_key_is_unauthorized() {
    let fx = Fixture::start().await;
    let cs = format!(
        "HostName={HUB_A};SharedAccessKeyName=iothubowner;SharedAccessKey={}",
        key(7).to_base64()
    );
    let hub = dps_hub::HubClient::from_connection_string(&cs, &fx.options).unwrap();
    match hub.get_device(&id("any")).await {
        Err(HubError::Unauthorized {
            host, status, code, ..
        }) => {
            assert_eq!((host.as_str(), status), (HUB_A, 401));
            assert_eq!(code.as_deref(), Some("IotHubUnauthorizedAccess"));
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    // The key of hub B does not open hub A either.
    let b_key = fx.sim.connection_string(HUB_B).unwrap();
    let crossed = b_key.replace(HUB_B, HUB_A);
    let hub = dps_hub::HubClient::from_connection_string(&crossed, &fx.options).unwrap();
    assert!(matches!(
        hub.get_device(&id("any")).await,
        Err(HubError::Unauthorized { .. })
    ));
}

#[tokio::test]
async fn unusual_device_ids_survive_the_url() {
    let fx = Fixture::start().await;
    let hub = fx.client(HUB_A);
    let odd = "dev:1@x$(y)'%z=*?!,";
    let done = ensure_device(&hub, &sas_request(odd, None)).await.unwrap();
    assert_eq!(done.device.device_id, odd);
    assert_eq!(hub.get_device(&id(odd)).await.unwrap().device_id, odd);
    assert!(fx.sim.device(HUB_A, odd).is_some());
}

#[tokio::test]
async fn list_statistics_and_directory_reuse() {
    let fx = Fixture::start().await;
    let directory = fx.directory();
    let linked = |host: &str| dps_model::LinkedHub {
        host_name: host.to_owned(),
        connection_string: fx.sim.connection_string(host).unwrap(),
        allocation_weight: 1,
        apply_allocation_policy: true,
        location: None,
    };
    let a = directory.get(&linked(HUB_A)).unwrap();
    assert!(std::sync::Arc::ptr_eq(
        &a,
        &directory.get(&linked(HUB_A)).unwrap()
    ));
    let b = directory.get(&linked(HUB_B)).unwrap();
    for n in 0..3 {
        ensure_device(a.as_ref(), &sas_request(&format!("a-{n}"), None))
            .await
            .unwrap();
    }
    ensure_device(b.as_ref(), &sas_request("b-0", None))
        .await
        .unwrap();
    let listed = a.list_devices(2).await.unwrap();
    assert_eq!(listed.len(), 2);
    let stats = a.statistics().await.unwrap();
    assert_eq!(
        (
            stats.total_device_count,
            stats.enabled_device_count,
            stats.disabled_device_count
        ),
        (3, 3, 0)
    );
    assert_eq!(b.statistics().await.unwrap().total_device_count, 1);
}
