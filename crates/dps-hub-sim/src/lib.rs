//! An IoT hub registry emulator: device identities and twins over HTTPS, in
//! the shapes and with the error replies of the IoT Hub service REST API, so
//! dps and the official `azure-iothub` clients can run against it on one machine.
//!
//! * One listener serves one or more hubs. A request goes to the hub named by
//!   its `Host` (port ignored), else by its SAS token's `sr`, else to the only hub.
//! * Each hub has an `iothubowner` policy key; requests are authorized with
//!   service SAS tokens exactly as IoT Hub does (`dps_attestation::sas`).
//! * Endpoints: `PUT/GET/DELETE /devices/{id}`, `GET/PUT/PATCH /twins/{id}`,
//!   `GET /devices?top=N`, the bulk registry operation `POST /devices`
//!   (identity and initial twin per entry, per-entry results), `GET /statistics/devices`; any api-version; etags
//!   with `If-Match`; IoT Hub error bodies (`{"Message":"ErrorCode:X;…"}` +
//!   `iothub-errorcode`).
//! * TLS: a generated CA and server certificate covering every hub name,
//!   `localhost`, `127.0.0.1` and the listen IP — or a certificate from files.
//! * State in memory, optionally persisted to a JSON file (see [`DEBOUNCE`]).
//! * Throttling (off by default): IoT Hub's identity registry and twin
//!   throttles per tier and unit count, 429 `ThrottlingException` with
//!   `Retry-After`; a bulk call costs one registry operation per entry (see
//!   [`Throttling`]).
//! * Test hooks: [`RunningHubSim::set_fault`] makes a hub fail or vanish;
//!   [`RunningHubSim::device`] and [`RunningHubSim::twin`] read state directly.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dps_hub_sim::HubSimError> {
//! use dps_hub_sim::{Fault, HubSim, HubSimConfig};
//! let sim = HubSim::start(HubSimConfig::new(
//!     "127.0.0.1:0".parse().expect("address"),
//!     &["hub-a.example", "hub-b.example"],
//! ))
//! .await?;
//! let connection_string = sim.connection_string("hub-a.example").expect("configured hub");
//! let ca_pem = sim.ca_pem().expect("generated TLS").to_owned();
//! // … point a client at sim.addr() for hub-a.example, trusting ca_pem …
//! sim.set_fault("hub-b.example", Fault::Status(503));
//! sim.shutdown().await;
//! # let _ = (connection_string, ca_pem); Ok(()) }
//! ```
//!
//! Deliberately not emulated: device-side traffic (MQTT/AMQP, device tokens),
//! modules, queries, bulk import/export jobs (blob storage), jobs, configurations, direct methods,
//! daily quotas, traffic shaping. Reported properties exist but nothing writes them.

#![deny(missing_docs)]

mod bulk;
mod config;
mod error;
mod http;
mod persist;
mod registry;
mod server;
mod state;
mod throttle;
mod tls;
mod twin;

pub use config::{Fault, HubSimConfig, HubSpec, TlsSource, DEFAULT_POLICY};
pub use error::HubSimError;
pub use persist::DEBOUNCE;
pub use server::{HubSim, RunningHubSim};
pub use throttle::{HubTier, Throttling};
