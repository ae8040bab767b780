//! Shared helpers for the workspace's end-to-end tests: the official Azure
//! IoT SDK packages from the npm registry ([`node`], installed by [`npm`])
//! and PyPI ([`python`]), a running dps server with hubs on its own loopback
//! address ([`server`], which first checks that port 443 may be bound:
//! [`ports`]), and a software TPM ([`swtpm`]).

#![deny(missing_docs)]

pub mod certs;
pub mod node;
pub mod npm;
pub mod ports;
pub mod python;
pub mod server;
pub mod swtpm;
