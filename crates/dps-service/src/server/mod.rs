//! Building the whole service and running it.
//!
//! [`Server::builder`] takes a [`ServiceConfig`] and
//! makes every part from it — the store (`storage_url`), the allocation
//! policies, the hub connector (`[hubs]`), the latency source of
//! `geoLatency`, the TLS identity, the listeners — unless the caller
//! replaces it. [`ServerBuilder::start`] returns a [`RunningServer`] once
//! every listener accepts; [`start`] is the same with nothing replaced.
//!
//! Custom allocation policies are selected per enrollment through Azure's
//! own fields (`allocationPolicy: "custom"` and
//! `customAllocationDefinition.webhookUrl: "dps-policy://NAME"`): see
//! [`policy_url`].

mod background;
mod builder;
mod listeners;
mod policies;
mod running;
mod start;

pub use background::probe_targets;
pub use builder::{Listeners, Server, ServerBuilder};
pub use policies::{policy_name, policy_url, POLICY_URL_SCHEME};
pub use running::RunningServer;

use crate::{ServiceConfig, ServiceError};

/// Start a server with every part from `config`:
/// `Server::builder(config).start()`.
pub async fn start(config: ServiceConfig) -> Result<RunningServer, ServiceError> {
    Server::builder(config).start().await
}
