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

/// The battery catches hubs that break the registry rules.
mod the_battery_bites {
    use std::sync::Arc;

    use async_trait::async_trait;
    use dps_hub::conformance::{create_on_a_taken_id_is_a_conflict, TestHub};
    use dps_hub::{Device, HubError, IfMatch, IotHub, Twin};
    use dps_model::DeviceId;

    /// Treats every create as create-or-replace, as a careless store would.
    struct Upserting(Arc<dyn IotHub>);

    #[async_trait]
    impl IotHub for Upserting {
        fn host_name(&self) -> &str {
            self.0.host_name()
        }
        async fn put_device(&self, device: &Device, _: IfMatch) -> Result<Device, HubError> {
            Ok(self.0.create_or_update_device(device).await?.0)
        }
        async fn get_device(&self, id: &DeviceId) -> Result<Device, HubError> {
            self.0.get_device(id).await
        }
        async fn delete_device(&self, id: &DeviceId, cond: IfMatch) -> Result<(), HubError> {
            self.0.delete_device(id, cond).await
        }
        async fn get_twin(&self, id: &DeviceId) -> Result<Twin, HubError> {
            self.0.get_twin(id).await
        }
        async fn replace_twin(
            &self,
            id: &DeviceId,
            t: &Twin,
            c: IfMatch,
        ) -> Result<Twin, HubError> {
            self.0.replace_twin(id, t, c).await
        }
        async fn patch_twin(&self, id: &DeviceId, t: &Twin, c: IfMatch) -> Result<Twin, HubError> {
            self.0.patch_twin(id, t, c).await
        }
    }

    #[tokio::test]
    #[should_panic(expected = "a second create must fail")]
    async fn a_create_that_overwrites_fails() {
        let real = super::fresh().await;
        let fixture = TestHub::new(Arc::new(Upserting(real.hub.clone()))).keep_alive(real);
        create_on_a_taken_id_is_a_conflict(&fixture).await;
    }
}
