//! The built-in policies.

mod geo;
mod hashed;
mod static_hub;
mod webhook;

pub use geo::GeoLatencyPolicy;
pub use hashed::HashedPolicy;
pub use static_hub::StaticPolicy;
pub use webhook::{WebhookConfig, WebhookPolicy};
