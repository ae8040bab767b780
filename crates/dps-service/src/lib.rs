//! The provisioning service: the registration pipeline and both endpoints.
//!
//! * [`pipeline`]: one function per device instruction (register, poll,
//!   status lookup), shared by every transport.
//! * [`device`]: the device provisioning endpoint over HTTPS (translation only).
//! * [`service_api`]: the service operations endpoint for administrators.
//! * [`respond`]: the one place failures become wire answers.
//! * [`listener`], [`tls`]: TLS with optional client certificates, HTTP/1.1 and HTTP/2.
//! * [`config`]: the typed configuration; [`server::Server::builder`] wires
//!   everything, each part replaceable (store, allocation policies, hub
//!   connector, latency source, TLS, listeners).
//! * [`banner`]: the start banner; `embedded` (feature `embedded`): the hub
//!   emulator, `default` tenant and sample devices of `dps-server`'s
//!   no-configuration mode.
//!
//! ```no_run
//! # async fn run() -> Result<(), dps_service::ServiceError> {
//! use dps_service::server::Server;
//!
//! let mut config = dps_service::ServiceConfig::default();
//! config.device.listen = "127.0.0.1:0".parse().unwrap();
//! config.service.listen = "127.0.0.2:0".parse().unwrap();
//! let server = Server::builder(config)
//!     .store(dps_storage::MemoryStore::new())
//!     .start()
//!     .await?;
//! println!("devices: https://{}", server.device_addr().expect("served"));
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Attestation, allocation, storage and hub access live in their own crates;
//! this crate decides the order of things and speaks HTTP.

#![deny(missing_docs)]

pub mod admin;
pub mod banner;
mod bootstrap;
pub mod certificate_authority;
pub mod config;
pub mod connection_limits;
pub mod data_lock;
pub mod device;
#[cfg(feature = "embedded")]
pub mod embedded;
mod endpoint_names;
mod error;
mod http_timeouts;
pub mod listener;
pub mod metrics;
pub mod operator_key;
pub mod pipeline;
pub mod respond;
pub mod server;
pub mod service_api;
mod storage_url;
pub mod tls;

pub use config::ServiceConfig;
pub use error::ServiceError;
