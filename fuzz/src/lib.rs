//! Shared pieces of the fuzz targets: input framing, the fixed X.509 trust
//! anchor, and the server's MQTT topic grammar.
//!
//! The targets themselves live in `fuzz_targets/`, one small function over a
//! public API each; this library only holds what several of them share.

#![allow(unreachable_pub)]

use std::sync::OnceLock;

use dps_attestation::x509::TrustAnchor;

/// The MQTT topic grammar server and client share (`dps_model::mqtt`),
/// re-exposed in the owned shapes the targets use.
pub mod topics {
    use dps_model::mqtt as server;

    /// The reply filter the server accepts in SUBSCRIBE.
    pub const REPLY_FILTER: &str = server::REPLY_FILTER;

    /// A parsed CONNECT username: (ID scope, registration id, api-version).
    pub fn parse_username(username: &str) -> Option<(String, String, Option<String>)> {
        server::parse_username(username).map(|u| (u.id_scope, u.registration_id, u.api_version))
    }

    /// A parsed request topic, owned.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Request {
        /// A register request: its `$rid`.
        Register { rid: String },
        /// An operation status request: its `$rid` and `operationId`.
        OperationStatus {
            rid: String,
            operation_id: Option<String>,
        },
    }

    impl Request {
        /// The request id the server echoes.
        pub fn rid(&self) -> &str {
            match self {
                Request::Register { rid, .. } | Request::OperationStatus { rid, .. } => rid,
            }
        }
    }

    /// Parse a PUBLISH topic as the server does.
    pub fn parse_request_topic(topic: &str) -> Option<Request> {
        server::parse_request_topic(topic).map(|t| match t {
            server::RequestTopic::Register { rid } => Request::Register {
                rid: rid.to_owned(),
            },
            server::RequestTopic::OperationStatus { rid, operation_id } => {
                Request::OperationStatus {
                    rid: rid.to_owned(),
                    operation_id,
                }
            }
        })
    }

    /// The topic the server publishes its answer on.
    pub fn reply_topic(status: u16, rid: &str, retry_after: Option<u64>) -> String {
        server::reply_topic(status, rid, retry_after)
    }

    /// Whether the server takes a SUBSCRIBE filter as the reply filter.
    pub fn is_reply_filter(filter: &str) -> bool {
        server::is_reply_filter(filter)
    }
}

/// "Now" for every X.509 check: inside the fixtures' validity periods.
pub const NOW: u64 = 1_800_000_000;

/// The CA certificate every chain target verifies against (DER), written by
/// `examples/seedgen.rs` together with the chain seeds it signs.
pub const ANCHOR_DER: &[u8] = include_bytes!("../fixtures/anchor.der");

/// The leaf certificate an individual enrollment holds (DER), also from seedgen.
pub const ENROLLED_LEAF_DER: &[u8] = include_bytes!("../fixtures/leaf.der");

/// The parsed, verified trust anchor of [`ANCHOR_DER`], built once.
pub fn anchor() -> &'static TrustAnchor {
    static ANCHOR: OnceLock<TrustAnchor> = OnceLock::new();
    ANCHOR.get_or_init(|| {
        TrustAnchor::new(ANCHOR_DER, "fuzz-root", true).expect("the fixture anchor parses")
    })
}

/// Split `data` into at most `max` frames, each a big-endian u16 length then
/// that many bytes; a short last frame takes what is left. This is how the
/// chain seeds are written, so mutations keep most certificates intact.
pub fn frames(data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() < max && rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
        let take = len.min(rest.len());
        out.push(&rest[..take]);
        rest = &rest[take..];
    }
    out
}

/// Frame `parts` the way [`frames`] reads them.
pub fn frame(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let len = u16::try_from(part.len()).expect("a frame fits in u16");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}
