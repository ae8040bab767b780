//! The device provisioning endpoint over HTTPS (spec §1): translation only.
//! Every request becomes a call on the [`crate::pipeline::Pipeline`]; every
//! answer and failure is rendered here or in [`crate::respond`].

mod http_api;

pub use http_api::router;
