//! The device provisioning endpoint (spec §1, §2): translation only. Every
//! request becomes a call on the [`crate::pipeline::Pipeline`]; every outcome
//! becomes an answer in `answers`, the same on every transport.
//!
//! * `body`: the request body, read the same way on every transport.
//! * `answers`: pipeline outcomes → status, body and wait.
//! * HTTPS: [`router`].
//! * MQTT over TLS and over WebSocket: [`mqtt`].
//! * AMQP over TLS and over WebSocket: [`amqp`].
//!
//! Each transport reads frames into [`crate::pipeline::DeviceRequest`]s
//! and bodies through `body`, calls the pipeline, and renders the
//! [`crate::respond::WireAnswer`]s of `answers`; the TLS accept loop is
//! [`crate::listener`]'s.

pub mod amqp;
pub(crate) mod answers;
pub(crate) mod body;
mod http_api;
pub mod mqtt;

pub use http_api::router;
