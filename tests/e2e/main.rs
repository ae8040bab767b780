//! End-to-end tests: the real server on loopback, the hub emulator, and the
//! official Azure IoT SDKs as clients.

mod crash;
mod device_errors;
mod device_node;
mod failures;
mod replicas;
