//! The text of the MQTT device protocol (spec §2.1, §2.2): the CONNECT
//! username, the two request topics and the reply topic. Pure functions, no I/O.
//!
//! Parsing is lenient where the SDKs differ (parameter order, percent
//! encoding, a trailing `/` before `?`, extra parameters) and strict where a
//! mistake would be silent (`$rid` is required and echoed byte for byte).

use percent_encoding::percent_decode_str;

/// The topic filter every SDK subscribes to.
pub(crate) const REPLY_FILTER: &str = "$dps/registrations/res/#";

const TOPIC_PREFIX: &str = "$dps/registrations/";

/// What the CONNECT username says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Username {
    /// The ID scope, as sent.
    pub(crate) id_scope: String,
    /// The registration id, as sent.
    pub(crate) registration_id: String,
    /// The `api-version` parameter, when present and not empty.
    pub(crate) api_version: Option<String>,
}

/// Parse `{idScope}/registrations/{registrationId}/api-version=…&ClientVersion=…`:
/// split on the first three `/`, then read the rest as a query string
/// (a leading `?` is tolerated; names compare case-insensitively; values are
/// percent-decoded). `None` when the shape is wrong.
pub(crate) fn parse_username(username: &str) -> Option<Username> {
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RequestTopic<'a> {
    /// `$dps/registrations/PUT/iotdps-register/?$rid={rid}`.
    Register {
        /// The request id, exactly as sent.
        rid: &'a str,
        /// `forceRegistration=true` was given.
        force: bool,
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
    pub(crate) fn rid(&self) -> &'a str {
        match self {
            RequestTopic::Register { rid, .. } | RequestTopic::OperationStatus { rid, .. } => rid,
        }
    }
}

/// Parse a device PUBLISH topic; `None` for anything else (DPS is not a
/// broker) and for a request without a `$rid` (its answer could not be
/// correlated).
pub(crate) fn parse_request_topic(topic: &str) -> Option<RequestTopic<'_>> {
    let rest = strip_prefix_ignore_case(topic, TOPIC_PREFIX)?;
    let (path, query) = rest.split_once('?')?;
    let path = path.strip_suffix('/').unwrap_or(path);
    let rid = query_pairs(query)
        .find(|(name, _)| name.eq_ignore_ascii_case("$rid"))
        .map(|(_, value)| value)
        .filter(|rid| is_echoable_rid(rid))?;
    let (method, operation) = path.split_once('/')?;
    if method.eq_ignore_ascii_case("PUT") && operation.eq_ignore_ascii_case("iotdps-register") {
        let force = query_pairs(query).any(|(name, value)| {
            name.eq_ignore_ascii_case("forceRegistration") && value.eq_ignore_ascii_case("true")
        });
        return Some(RequestTopic::Register { rid, force });
    }
    if method.eq_ignore_ascii_case("GET")
        && operation.eq_ignore_ascii_case("iotdps-get-operationstatus")
    {
        let operation_id = query_pairs(query)
            .find(|(name, _)| name.eq_ignore_ascii_case("operationId"))
            .map(|(_, value)| decode(value))
            .filter(|id| !id.is_empty());
        return Some(RequestTopic::OperationStatus { rid, operation_id });
    }
    None
}

/// The longest `$rid` accepted. The SDKs send a UUID (36 characters) or a
/// counter; the cap keeps the reply topic far below MQTT's 65,535-byte limit
/// (a longer one made the codec write a truncated length: a malformed packet).
pub(crate) const MAX_RID_BYTES: usize = 128;

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
pub(crate) fn reply_topic(status: u16, rid: &str, retry_after: Option<u64>) -> String {
    match retry_after {
        Some(seconds) => {
            format!("$dps/registrations/res/{status}/?$rid={rid}&retry-after={seconds}")
        }
        None => format!("$dps/registrations/res/{status}/?$rid={rid}"),
    }
}

/// Whether a SUBSCRIBE filter is the reply filter (or a narrower form of it
/// that still matches every reply, like `$dps/registrations/res/+/#`).
pub(crate) fn is_reply_filter(filter: &str) -> bool {
    filter == REPLY_FILTER || filter == "$dps/registrations/res/+/#"
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn usernames_of_every_sdk_parse() {
        let node = parse_username("0ne00000A0A/registrations/dev-1/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1").unwrap();
        assert_eq!(node.id_scope, "0ne00000A0A");
        assert_eq!(node.registration_id, "dev-1");
        assert_eq!(node.api_version.as_deref(), Some("2019-03-31"));
        let python = parse_username("0ne00000A0A/registrations/dev-1/api-version=2019-03-31&ClientVersion=azure-iot-device-provisioning-py%2F2.14.0%283.11.7%3BLinux%20%231%3Bx86_64%29").unwrap();
        assert_eq!(python.api_version.as_deref(), Some("2019-03-31"));
        let embedded =
            parse_username("0ne00000A0A/registrations/dev-1/api-version=2021-06-01").unwrap();
        assert_eq!(embedded.api_version.as_deref(), Some("2021-06-01"));
        let reordered = parse_username(
            "0ne00000A0A/Registrations/dev-1/?ClientVersion=x&API-VERSION=2021-10-01",
        )
        .unwrap();
        assert_eq!(reordered.api_version.as_deref(), Some("2021-10-01"));
        let bare = parse_username("0ne00000A0A/registrations/dev-1").unwrap();
        assert_eq!(bare.api_version, None);
    }

    #[test]
    fn malformed_usernames_are_refused() {
        for bad in [
            "",
            "0ne00000A0A",
            "0ne00000A0A/devices/dev-1/api-version=1",
            "/registrations/dev-1/api-version=1",
            "0ne00000A0A/registrations//api-version=1",
        ] {
            assert_eq!(parse_username(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn request_topics_of_every_sdk_parse() {
        assert_eq!(
            parse_request_topic(
                "$dps/registrations/PUT/iotdps-register/?$rid=f8e0059b-d980-45f3-8294-114f265b32ca"
            ),
            Some(RequestTopic::Register {
                rid: "f8e0059b-d980-45f3-8294-114f265b32ca",
                force: false
            })
        );
        assert_eq!(
            parse_request_topic(
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=4.6a26.8dac"
            ),
            Some(RequestTopic::OperationStatus {
                rid: "1",
                operation_id: Some("4.6a26.8dac".to_owned())
            })
        );
        // Order-free, no slash before `?`, forceRegistration.
        assert_eq!(
            parse_request_topic(
                "$dps/registrations/PUT/iotdps-register?forceRegistration=true&$rid=a%2Db"
            ),
            Some(RequestTopic::Register {
                rid: "a%2Db",
                force: true
            })
        );
        assert_eq!(
            parse_request_topic("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=7"),
            Some(RequestTopic::OperationStatus {
                rid: "7",
                operation_id: None
            })
        );
    }

    #[test]
    fn a_rid_too_long_to_echo_is_not_a_request() {
        // Found by the mqtt_packet fuzz target: a 65,490-byte rid made a reply
        // topic over 65,535 bytes, written with a truncated length.
        let at_cap = "r".repeat(MAX_RID_BYTES);
        let topic = format!("$dps/registrations/PUT/iotdps-register/?$rid={at_cap}");
        assert!(parse_request_topic(&topic).is_some());
        for length in [MAX_RID_BYTES + 1, 65_490] {
            let topic = format!(
                "$dps/registrations/PUT/iotdps-register/?$rid={}",
                "r".repeat(length)
            );
            assert_eq!(parse_request_topic(&topic), None, "rid of {length} bytes");
        }
    }

    #[test]
    fn other_topics_are_not_requests() {
        for bad in [
            "$dps/registrations/PUT/iotdps-register/",
            "$dps/registrations/PUT/iotdps-register/?$rid=",
            // Found by the mqtt_topics fuzz target: wildcards and NUL would be
            // echoed into the reply topic, an invalid PUBLISH topic name.
            "$dps/registrations/PUT/iotdps-register/?$rid=#",
            "$dps/registrations/PUT/iotdps-register/?$rid=a+b",
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1\0&operationId=x",
            "$dps/registrations/POST/iotdps-register/?$rid=1",
            "$dps/registrations/res/200/?$rid=1",
            "devices/dev-1/messages/events/",
            "$dps",
            "",
        ] {
            assert_eq!(parse_request_topic(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reply_topics_put_rid_first() {
        assert_eq!(
            reply_topic(202, "f8e0", Some(1)),
            "$dps/registrations/res/202/?$rid=f8e0&retry-after=1"
        );
        assert_eq!(
            reply_topic(200, "x", None),
            "$dps/registrations/res/200/?$rid=x"
        );
    }

    proptest! {
        #[test]
        fn any_rid_is_echoed_byte_for_byte(rid in "[A-Za-z0-9%._~:-]{1,64}") {
            let topic = format!("$dps/registrations/PUT/iotdps-register/?$rid={rid}");
            let parsed = parse_request_topic(&topic).expect("register topic");
            prop_assert_eq!(parsed.rid(), rid.as_str());
            let reply = reply_topic(202, parsed.rid(), Some(3));
            // Python's reading: split on `$`, third piece holds the parameters.
            let pieces: Vec<&str> = reply.split('$').collect();
            prop_assert_eq!(pieces.len(), 3);
            prop_assert_eq!(pieces[2], format!("rid={rid}&retry-after=3"));
        }

        #[test]
        fn parsers_never_panic(text in "\\PC{0,200}") {
            let _ = parse_username(&text);
            let _ = parse_request_topic(&text);
        }

        #[test]
        fn usernames_round_trip(
            scope in "0ne[0-9A-F]{8}",
            id in "[a-z0-9][a-z0-9._:-]{0,60}",
            version in "20[0-9]{2}-[0-9]{2}-[0-9]{2}",
        ) {
            let username = format!("{scope}/registrations/{id}/api-version={version}&ClientVersion=x%2F1");
            let parsed = parse_username(&username).expect("parses");
            prop_assert_eq!(parsed.id_scope, scope);
            prop_assert_eq!(parsed.registration_id, id);
            prop_assert_eq!(parsed.api_version, Some(version));
        }
    }
}
