//! End-to-end tests: the real server on loopback, the hub emulator, and the
//! official Azure IoT SDKs as clients.

mod device_errors;
mod device_node;
mod failures;
mod service_api;
mod service_auth;
mod service_client;
mod service_meter;
mod service_node;
mod service_settings;
