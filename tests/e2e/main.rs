//! End-to-end tests: the real server on loopback, the hub emulator, and the
//! official Azure IoT SDKs as clients.

mod certs;
mod device_errors;
mod device_node;
mod mqtt_client;
mod mqtt_fixtures;
mod mqtt_node;
mod mqtt_python;
mod mqtt_raw;
