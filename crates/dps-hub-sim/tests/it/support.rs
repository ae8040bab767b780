//! Raw HTTPS access to the emulator with hand-made SAS tokens.

use dps_attestation::sas::{create_token, unix_now, SymmetricKey};
use dps_hub_sim::RunningHubSim;

pub(crate) const HUB_A: &str = "hub-a.example";
pub(crate) const HUB_B: &str = "hub-b.example";

/// An HTTP client that trusts the emulator's CA and dials both hub names at it.
pub(crate) fn http(sim: &RunningHubSim) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(
            reqwest::Certificate::from_pem(sim.ca_pem().unwrap().as_bytes()).unwrap(),
        )
        .resolve(HUB_A, sim.addr())
        .resolve(HUB_B, sim.addr())
        .resolve("localhost", sim.addr())
        .build()
        .unwrap()
}

/// The policy key of a hub, from its connection string.
pub(crate) fn hub_key(sim: &RunningHubSim, host: &str) -> SymmetricKey {
    let cs = sim.connection_string(host).unwrap();
    let key = cs.split("SharedAccessKey=").nth(1).unwrap();
    SymmetricKey::from_base64(key).unwrap()
}

/// A service token for `resource` signed with `key`, valid for an hour.
pub(crate) fn token(resource: &str, key: &SymmetricKey, skn: Option<&str>) -> String {
    create_token(resource, key, unix_now() + 3600, skn)
}

/// A valid `iothubowner` token for `host`.
pub(crate) fn owner_token(sim: &RunningHubSim, host: &str) -> String {
    token(host, &hub_key(sim, host), Some("iothubowner"))
}
