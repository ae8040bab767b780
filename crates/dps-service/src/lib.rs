//! The provisioning service: the registration pipeline and both endpoints.
//!
//! * [`pipeline`]: one function per device instruction (register, poll,
//!   status lookup), shared by every transport.
//! * [`device`]: the device provisioning endpoint over HTTPS (translation only).
//! * [`service_api`]: the service operations endpoint for administrators.
//! * [`respond`]: the one place failures become wire answers.
//! * [`listener`], [`tls`]: TLS with optional client certificates, HTTP/1.1 and HTTP/2.
//! * [`config`]: the typed configuration; [`server::start`] wires everything.
//!
//! ```no_run
//! # async fn run() -> Result<(), dps_service::ServiceError> {
//! let config = dps_service::ServiceConfig::default();
//! let server = dps_service::server::start(config).await?;
//! println!("devices: https://{}", server.device_addr);
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Attestation, allocation, storage and hub access live in their own crates;
//! this crate decides the order of things and speaks HTTP.

pub mod admin;
mod bootstrap;
pub mod config;
pub mod connection_limits;
pub mod data_lock;
pub mod device;
mod endpoint_names;
mod error;
mod http_timeouts;
pub mod listener;
pub mod operator_key;
pub mod pipeline;
pub mod respond;
pub mod server;
pub mod service_api;
mod storage_url;
pub mod tls;

pub use config::ServiceConfig;
pub use error::ServiceError;
