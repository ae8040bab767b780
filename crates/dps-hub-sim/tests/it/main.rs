//! dps-hub-sim integration tests: the emulator over real TLS, driven by raw
//! HTTP, by dps-hub's client, and by the official Node `azure-iothub` SDK.

mod iothub_sdk;
mod lifecycle;
mod node;
mod protocol;
mod support;
mod throttling;
