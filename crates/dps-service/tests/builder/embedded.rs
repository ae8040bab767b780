//! The embedded mode as library code: the emulator, the `default` tenant,
//! and sample enrollments created through the service API (kept across
//! starts, their keys shown only by the start that created them).

use std::net::SocketAddr;

use anyhow::{Context as _, Result};
use dps_service::embedded::{provision_samples, DEFAULT_TENANT, EMULATED_HUB, SAMPLE_DEVICE};
use dps_service::server::Server;
use dps_service::ServiceConfig;

fn config(dir: &std::path::Path) -> ServiceConfig {
    let mut config = ServiceConfig {
        data_dir: dir.to_path_buf(),
        ..ServiceConfig::default()
    };
    config.device.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.service.listen = SocketAddr::from(([127, 0, 0, 3], 0));
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_mode_provisions_its_sample_device_on_the_emulator() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::builder(config(dir.path()))
        .hub_emulator()
        .start()
        .await?;
    assert_eq!(server.tenants()[0].name, DEFAULT_TENANT);
    let samples = provision_samples(&server).await?;
    assert_eq!(samples.provisioned.assigned_hub, EMULATED_HUB);
    assert!(
        samples.provisioned.on_hub,
        "the emulator holds the identity"
    );
    assert!(samples.second_key.is_some(), "created by this start");
    let scope = server.tenants()[0].id_scope.clone();
    let stored = server
        .store()
        .enrollment(&scope, &dps_model::RegistrationId::new(SAMPLE_DEVICE)?)
        .await?
        .context("the sample enrollment")?;
    assert!(stored.etag.is_some());
    server.shutdown().await;

    // A restart on the same data directory reuses the enrollments (and says
    // nothing of their keys) and the emulator's identities.
    let server = Server::builder(config(dir.path()))
        .hub_emulator()
        .start()
        .await?;
    assert_eq!(server.tenants()[0].id_scope, scope);
    let samples = provision_samples(&server).await?;
    assert!(samples.provisioned.on_hub);
    assert_eq!(samples.second_key, None);
    server.shutdown().await;
    Ok(())
}
