//! End-to-end tests: the real server on loopback, the hub emulator, and the
//! official Azure IoT SDKs and our own Rust client (`dps-client`, with a
//! software TPM) as clients.

mod certs;
mod client_credentials;
mod client_errors;
mod client_swarm;
mod device_errors;
mod device_node;
mod tpm_client;
