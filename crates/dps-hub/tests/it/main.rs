//! dps-hub integration tests: the HubClient and the provisioning steps against
//! the hub emulator over real TLS on loopback.

mod battery;
mod bulk;
mod devices;
mod faults;
mod support;
mod twins;
