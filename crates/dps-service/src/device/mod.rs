//! The device provisioning endpoint (spec §1, §2): translation only. Every
//! request becomes a call on the [`crate::pipeline::Pipeline`]; every answer
//! and failure is rendered here or in [`crate::respond`].
//!
//! * HTTPS: [`router`].
//! * MQTT over TLS and over WebSocket: [`mqtt`].

mod http_api;
pub mod mqtt;

pub use http_api::router;
