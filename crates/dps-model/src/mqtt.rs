//! The text of the device protocol over MQTT (spec §2.1, §2.2), for both
//! ends: the CONNECT username, the two request topics and the reply topic,
//! each with the function that writes it and the one that reads it. Pure
//! functions, no I/O; the server (`dps-service`) and the client
//! (`dps-client`) both speak through this module, so they cannot drift.
//!
//! Reading is lenient where the SDKs differ (parameter order, percent
//! encoding, a trailing `/` before `?`, extra parameters) and strict where a
//! mistake would be silent (`$rid` is required and echoed byte for byte).
//!
//! ```
//! use dps_model::mqtt::{self, RequestTopic};
//! let topic = mqtt::register_topic("7");
//! assert_eq!(mqtt::parse_request_topic(&topic), Some(RequestTopic::Register { rid: "7" }));
//! let reply = mqtt::reply_topic(202, "7", Some(3));
//! let parsed = mqtt::parse_reply_topic(&reply).unwrap();
//! assert_eq!((parsed.status, parsed.rid, parsed.retry_after_seconds), (202, "7", Some(3)));
//! ```

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The topic filter every SDK subscribes to.
pub const REPLY_FILTER: &str = "$dps/registrations/res/#";

/// The operation name of a register request (MQTT topic, AMQP property).
pub const REGISTER_OPERATION: &str = "iotdps-register";

/// The operation name of an operation status request.
pub const OPERATION_STATUS_OPERATION: &str = "iotdps-get-operationstatus";

const TOPIC_PREFIX: &str = "$dps/registrations/";
const REPLY_PREFIX: &str = "$dps/registrations/res/";

/// The longest `$rid` accepted. The SDKs send a UUID (36 characters) or a
/// counter; the cap keeps the reply topic far below MQTT's 65,535-byte limit
/// (a longer one made the codec write a truncated length: a malformed packet).
pub const MAX_RID_BYTES: usize = 128;

/// What the CONNECT username says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Username {
    /// The ID scope (decoded).
    pub id_scope: String,
    /// The registration id (decoded).
    pub registration_id: String,
    /// The `api-version` parameter, when present and not empty.
    pub api_version: Option<String>,
}

/// `{idScope}/registrations/{registrationId}/api-version={v}&ClientVersion={c}`,
/// with the parameter values percent-encoded.
pub fn username(
    id_scope: &str,
    registration_id: &str,
    api_version: &str,
    client_version: &str,
) -> String {
    format!(
        "{id_scope}/registrations/{registration_id}/api-version={}&ClientVersion={}",
        encode(api_version),
        encode(client_version)
    )
}

/// Parse `{idScope}/registrations/{registrationId}/api-version=…&ClientVersion=…`:
/// split on the first three `/`, then read the rest as a query string
/// (a leading `?` is tolerated; names compare case-insensitively; values are
/// percent-decoded). `None` when the shape is wrong.
pub fn parse_username(username: &str) -> Option<Username> {
    let mut parts = username.splitn(4, '/');
    let id_scope = parts.next().filter(|s| !s.is_empty())?;
    let literal = parts.next()?;
    if !literal.eq_ignore_ascii_case("registrations") {
        return None;
    }
    let registration_id = parts.next().filter(|s| !s.is_empty())?;
    let query = parts.next().unwrap_or("");
    let query = query.strip_prefix('?').unwrap_or(query);
    let api_version = query_pairs(query)
        .find(|(name, _)| name.eq_ignore_ascii_case("api-version"))
        .map(|(_, value)| decode(value))
        .filter(|v| !v.is_empty());
    Some(Username {
        id_scope: decode(id_scope),
        registration_id: decode(registration_id),
        api_version,
    })
}

/// A device request, as its PUBLISH topic names it.
///
/// `forceRegistration=true`, which the Node SDK can append to a register
/// topic, is read as any other unknown parameter: ignored (see
/// `docs/device-protocol.md`; every register already re-runs attestation
/// and allocation, so there is nothing left to force).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestTopic<'a> {
    /// `$dps/registrations/PUT/iotdps-register/?$rid={rid}`.
    Register {
        /// The request id, exactly as sent.
        rid: &'a str,
    },
    /// `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}`.
    OperationStatus {
        /// The request id, exactly as sent.
        rid: &'a str,
        /// The operation to look up (decoded), when given.
        operation_id: Option<String>,
    },
}

impl<'a> RequestTopic<'a> {
    /// The request id to echo.
    pub fn rid(&self) -> &'a str {
        match self {
            RequestTopic::Register { rid } | RequestTopic::OperationStatus { rid, .. } => rid,
        }
    }
}

/// The topic of a register request with request id `rid`.
pub fn register_topic(rid: &str) -> String {
    format!("{TOPIC_PREFIX}PUT/{REGISTER_OPERATION}/?$rid={rid}")
}

/// The topic of an operation status request with request id `rid`.
pub fn operation_status_topic(rid: &str, operation_id: &str) -> String {
    format!(
        "{TOPIC_PREFIX}GET/{OPERATION_STATUS_OPERATION}/?$rid={rid}&operationId={}",
        encode(operation_id)
    )
}

/// Parse a device PUBLISH topic; `None` for anything else (DPS is not a
/// broker) and for a request without a `$rid` that can be echoed (its answer
/// could not be correlated).
pub fn parse_request_topic(topic: &str) -> Option<RequestTopic<'_>> {
    let rest = strip_prefix_ignore_case(topic, TOPIC_PREFIX)?;
    let (path, query) = rest.split_once('?')?;
    let path = path.strip_suffix('/').unwrap_or(path);
    let rid = query_pairs(query)
        .find(|(name, _)| name.eq_ignore_ascii_case("$rid"))
        .map(|(_, value)| value)
        .filter(|rid| is_echoable_rid(rid))?;
    let (method, operation) = path.split_once('/')?;
    if method.eq_ignore_ascii_case("PUT") && operation.eq_ignore_ascii_case(REGISTER_OPERATION) {
        return Some(RequestTopic::Register { rid });
    }
    if method.eq_ignore_ascii_case("GET")
        && operation.eq_ignore_ascii_case(OPERATION_STATUS_OPERATION)
    {
        let operation_id = query_pairs(query)
            .find(|(name, _)| name.eq_ignore_ascii_case("operationId"))
            .map(|(_, value)| decode(value))
            .filter(|id| !id.is_empty());
        return Some(RequestTopic::OperationStatus { rid, operation_id });
    }
    None
}

/// Whether `rid` can be echoed into a reply topic: not empty, at most
/// [`MAX_RID_BYTES`], and printable ASCII without the wildcards `+` and `#`,
/// which a PUBLISH topic name must not hold (MQTT-3.3.2-2; NUL: MQTT-1.5.3-2).
fn is_echoable_rid(rid: &str) -> bool {
    !rid.is_empty()
        && rid.len() <= MAX_RID_BYTES
        && rid
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'+' && b != b'#')
}

/// `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={seconds}]`:
/// `$rid` first (Python reads the parameters after the second `$`), the rid
/// unchanged, retry-after an integer (Python parses it with `int()`).
pub fn reply_topic(status: u16, rid: &str, retry_after: Option<u64>) -> String {
    match retry_after {
        Some(seconds) => format!("{REPLY_PREFIX}{status}/?$rid={rid}&retry-after={seconds}"),
        None => format!("{REPLY_PREFIX}{status}/?$rid={rid}"),
    }
}

/// What a reply topic says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyTopic<'a> {
    /// The HTTP status the answer stands for.
    pub status: u16,
    /// The request id it answers, as sent.
    pub rid: &'a str,
    /// Seconds to wait, when the service said (an unreadable value is `None`).
    pub retry_after_seconds: Option<u64>,
}

/// Parse a reply topic in any parameter order; `None` for other topics and
/// for a reply without a `$rid`.
pub fn parse_reply_topic(topic: &str) -> Option<ReplyTopic<'_>> {
    let rest = topic.strip_prefix(REPLY_PREFIX)?;
    let (status, query) = rest.split_once('?')?;
    let status = status.trim_end_matches('/').parse().ok()?;
    let rid = query_pairs(query)
        .find(|(name, _)| *name == "$rid")
        .map(|(_, value)| value)?;
    let retry_after_seconds = query_pairs(query)
        .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, value)| value.trim().parse().ok());
    Some(ReplyTopic {
        status,
        rid,
        retry_after_seconds,
    })
}

/// Whether a SUBSCRIBE filter is the reply filter (or a narrower form of it
/// that still matches every reply, like `$dps/registrations/res/+/#`).
pub fn is_reply_filter(filter: &str) -> bool {
    filter == REPLY_FILTER || filter == "$dps/registrations/res/+/#"
}

/// Percent-encode one value of a username or topic parameter (everything but
/// RFC 3986's unreserved characters).
pub fn encode(value: &str) -> String {
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(value, KEEP).to_string()
}

fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

fn decode(value: &str) -> String {
    percent_decode_str(value).decode_utf8_lossy().into_owned()
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests;
