//! End-to-end tests: the real server on loopback, the hub emulator, and the
//! official Azure IoT SDKs and our own Rust client (`dps-client`, with a
//! software TPM) as clients.

mod admin_health;
mod amqp_client;
mod amqp_limits;
mod amqp_node;
mod amqp_raw;
mod certificate_authorities;
mod certificate_issuance;
mod certificate_issuance_server;
mod client_credentials;
mod client_errors;
mod client_swarm;
mod device_error_battery;
mod device_errors;
mod device_node;
mod failures;
mod geo_latency;
mod hardening_connections;
mod hardening_pipeline;
mod hardening_tokens;
mod hardening_webhook;
mod hardening_x509;
mod hub_coalescing;
mod mqtt_client;
mod mqtt_fixtures;
mod mqtt_node;
mod mqtt_python;
mod mqtt_raw;
mod replicas;
mod service_api;
mod service_auth;
mod service_client;
mod service_meter;
mod service_node;
mod service_settings;
mod tpm_client;
