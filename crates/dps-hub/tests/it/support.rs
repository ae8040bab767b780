//! A two-hub emulator on 127.0.0.1 and clients that reach it by host name.

use std::time::Duration;

use dps_attestation::sas::SymmetricKey;
use dps_hub::{
    DeviceAuth, DeviceProvisioning, HubClient, HubClientOptions, HubDirectory, TwinAction,
};
use dps_hub_sim::{HubSim, HubSimConfig, RunningHubSim};
use dps_model::{DeviceCapabilities, DeviceId, InitialTwin};

pub(crate) const HUB_A: &str = "hub-a.example";
pub(crate) const HUB_B: &str = "hub-b.example";

pub(crate) struct Fixture {
    pub(crate) sim: RunningHubSim,
    pub(crate) options: HubClientOptions,
}

impl Fixture {
    pub(crate) async fn start() -> Fixture {
        let sim = HubSim::start(HubSimConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            &[HUB_A, HUB_B],
        ))
        .await
        .expect("emulator starts");
        let options = HubClientOptions {
            retry_deadline: Duration::from_secs(5),
            initial_backoff: Duration::from_millis(20),
            ..HubClientOptions::default()
        }
        .trust_ca_pem(sim.ca_pem().unwrap())
        .resolve(HUB_A, sim.addr())
        .resolve(HUB_B, sim.addr());
        Fixture { sim, options }
    }

    pub(crate) fn client(&self, host: &str) -> HubClient {
        self.client_with(host, &self.options)
    }

    pub(crate) fn client_with(&self, host: &str, options: &HubClientOptions) -> HubClient {
        HubClient::from_connection_string(&self.sim.connection_string(host).unwrap(), options)
            .expect("client builds")
    }

    pub(crate) fn directory(&self) -> HubDirectory {
        HubDirectory::new(self.options.clone()).unwrap()
    }
}

pub(crate) fn id(value: &str) -> DeviceId {
    DeviceId::new(value).unwrap()
}

pub(crate) fn key(byte: u8) -> SymmetricKey {
    SymmetricKey::from_bytes(vec![byte; 32])
}

pub(crate) fn sas_request(device_id: &str, twin: Option<InitialTwin>) -> DeviceProvisioning {
    DeviceProvisioning {
        device_id: id(device_id),
        auth: DeviceAuth::SymmetricKey {
            primary: key(1),
            secondary: key(2),
        },
        capabilities: DeviceCapabilities::default(),
        initial_twin: twin,
        twin_action: TwinAction::ApplyInitial,
    }
}

pub(crate) fn initial_twin(json: serde_json::Value) -> InitialTwin {
    serde_json::from_value(json).unwrap()
}
