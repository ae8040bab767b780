//! The public hub battery (`dps_hub::conformance`) on the real client
//! against the emulator, each test with its own emulator.

use std::sync::Arc;
use std::time::Duration;

use dps_hub::conformance::{HubOutage, TestHub};
use dps_hub::HubClient;
use dps_hub_sim::{Fault, HubSim, HubSimConfig, RunningHubSim};

use crate::support::HUB_A;

/// Takes the emulated hub down with 503s (the client retries until its
/// deadline, then reports a server error).
struct SimOutage(Arc<RunningHubSim>);

impl HubOutage for SimOutage {
    fn begin(&self) {
        self.0.set_fault(HUB_A, Fault::Status(503));
    }
    fn end(&self) {
        self.0.clear_fault(HUB_A);
    }
}

async fn fresh() -> TestHub {
    let sim = HubSim::start(HubSimConfig::new("127.0.0.1:0".parse().unwrap(), &[HUB_A]))
        .await
        .expect("emulator starts");
    let options = dps_hub::HubClientOptions::default()
        .retry_deadline(Duration::from_millis(300))
        .trust_ca_pem(sim.ca_pem().expect("generated CA"))
        .resolve(HUB_A, sim.addr());
    let connection_string = sim.connection_string(HUB_A).expect("configured hub");
    let client = HubClient::from_connection_string(&connection_string, &options).expect("client");
    let sim = Arc::new(sim);
    TestHub::new(Arc::new(client))
        .with_outage(Arc::new(SimOutage(sim.clone())))
        .keep_alive(sim)
}

dps_hub::hub_battery!(fresh);
