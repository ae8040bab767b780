//! Starting, stopping, persistence, configuration errors, certificates from files.

use std::time::Duration;

use dps_hub::{HubClient, HubClientOptions, IfMatch, IotHub};
use dps_hub_sim::{Fault, HubSim, HubSimConfig, HubSimError, HubSpec, TlsSource};
use dps_model::DeviceId;

use crate::support::{HUB_A, HUB_B};

fn client(sim: &dps_hub_sim::RunningHubSim, host: &str, ca_pem: &str) -> HubClient {
    let options = HubClientOptions::default()
        .trust_ca_pem(ca_pem)
        .resolve(host, sim.addr())
        .retry_deadline(Duration::from_millis(200));
    HubClient::from_connection_string(&sim.connection_string(host).unwrap(), &options).unwrap()
}

fn device(id: &str) -> dps_hub::Device {
    dps_hub::Device {
        device_id: id.to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn data_file_survives_restarts_with_keys_and_twins() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hubs.json");
    let config = HubSimConfig {
        data_file: Some(file.clone()),
        ..HubSimConfig::new("127.0.0.1:0".parse().unwrap(), &[HUB_A, HUB_B])
    };
    let sim = HubSim::start(config.clone()).await.unwrap();
    let cs_a = sim.connection_string(HUB_A).unwrap();
    let hub = client(&sim, HUB_A, sim.ca_pem().unwrap());
    hub.put_device(&device("p1"), IfMatch::None).await.unwrap();
    let patch: dps_hub::Twin =
        serde_json::from_value(serde_json::json!({"tags": {"kept": true}})).unwrap();
    let id = DeviceId::new("p1").unwrap();
    hub.patch_twin(&id, &patch, IfMatch::Any).await.unwrap();
    let before = sim.device(HUB_A, "p1").unwrap();
    // Written in the background shortly after the change, before any shutdown.
    tokio::time::sleep(dps_hub_sim::DEBOUNCE * 4).await;
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(on_disk["hubs"][HUB_A]["registry"]["devices"]["p1"].is_object());
    sim.shutdown().await;

    // Same hubs, keys not given: the stored keys are reused.
    let again = HubSim::start(config.clone()).await.unwrap();
    assert_eq!(again.connection_string(HUB_A).unwrap(), cs_a);
    assert_eq!(again.device(HUB_A, "p1").unwrap(), before);
    assert_eq!(again.twin(HUB_A, "p1").unwrap().tags.unwrap()["kept"], true);
    let hub = client(&again, HUB_A, again.ca_pem().unwrap());
    hub.delete_device(&id, IfMatch::Any).await.unwrap();
    again.shutdown().await;

    // No hubs configured: serve what the file holds. Hub B was kept although unused.
    let from_file = HubSim::start(HubSimConfig {
        hubs: Vec::new(),
        ..config
    })
    .await
    .unwrap();
    let mut hosts = from_file.hosts();
    hosts.sort();
    assert_eq!(hosts, [HUB_A, HUB_B]);
    assert_eq!(
        from_file.device(HUB_A, "p1"),
        None,
        "the delete was persisted"
    );
    from_file.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_data_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hubs.json");
    std::fs::write(&file, b"{ not json").unwrap();
    let err = HubSim::start(HubSimConfig {
        data_file: Some(file.clone()),
        ..HubSimConfig::new("127.0.0.1:0".parse().unwrap(), &[HUB_A])
    })
    .await
    .unwrap_err();
    assert!(matches!(err, HubSimError::DataFile { path, .. } if path == file));
}

#[tokio::test]
async fn bad_configurations_are_refused() {
    let listen = "127.0.0.1:0".parse().unwrap();
    let cases = [
        HubSimConfig::new(listen, &[]),
        HubSimConfig::new(listen, &[HUB_A, "HUB-A.example"]),
        HubSimConfig::new(listen, &["bad host/name"]),
        HubSimConfig {
            hubs: vec![HubSpec::with_key(HUB_A, "not base64!")],
            ..HubSimConfig::new(listen, &[])
        },
    ];
    for config in cases {
        let hubs = format!("{:?}", config.hubs);
        let err = HubSim::start(config).await.unwrap_err();
        assert!(
            matches!(err, HubSimError::InvalidConfig { .. }),
            "{hubs}: {err:?}"
        );
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = HubSim::start(HubSimConfig::new(taken.local_addr().unwrap(), &[HUB_A]))
        .await
        .unwrap_err();
    assert!(matches!(err, HubSimError::Bind { .. }));
}

#[tokio::test]
async fn certificate_and_key_from_files() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![HUB_A.to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();

    let sim = HubSim::start(HubSimConfig {
        tls: TlsSource::Files { cert, key },
        ..HubSimConfig::new("127.0.0.1:0".parse().unwrap(), &[HUB_A])
    })
    .await
    .unwrap();
    assert_eq!(sim.ca_pem(), None);
    let hub = client(&sim, HUB_A, &ca.pem());
    let created = hub.put_device(&device("f1"), IfMatch::None).await.unwrap();
    assert_eq!(created.device_id, "f1");

    let missing = HubSim::start(HubSimConfig {
        tls: TlsSource::Files {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("key.pem"),
        },
        ..HubSimConfig::new("127.0.0.1:0".parse().unwrap(), &[HUB_A])
    })
    .await
    .unwrap_err();
    assert!(matches!(missing, HubSimError::Tls { .. }));
}

#[tokio::test]
async fn hooks_on_unknown_hubs_report_false_and_faults_clear() {
    let sim = HubSim::start(HubSimConfig::new("127.0.0.1:0".parse().unwrap(), &[HUB_A]))
        .await
        .unwrap();
    assert!(!sim.set_fault("nohub.example", Fault::Status(500)));
    assert!(!sim.clear_fault("nohub.example"));
    assert_eq!(sim.device("nohub.example", "x"), None);
    assert_eq!(sim.device_count("nohub.example"), 0);
    assert_eq!(sim.connection_string("nohub.example"), None);

    let hub = client(&sim, HUB_A, sim.ca_pem().unwrap());
    assert!(sim.set_fault(HUB_A, Fault::Status(500)));
    let err = hub
        .get_device(&DeviceId::new("x").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert_eq!(err.hub_code(), Some("ServerError"));
    assert!(sim.clear_fault(HUB_A));
    let err = hub
        .get_device(&DeviceId::new("x").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    sim.shutdown().await;
}
