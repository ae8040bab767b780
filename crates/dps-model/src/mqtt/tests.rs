//! The grammar against every SDK's strings, and its invariants on any input.

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
    let reordered =
        parse_username("0ne00000A0A/Registrations/dev-1/?ClientVersion=x&API-VERSION=2021-10-01")
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
    // Order-free, no slash before `?`; forceRegistration is one more
    // parameter to ignore.
    assert_eq!(
        parse_request_topic(
            "$dps/registrations/PUT/iotdps-register?forceRegistration=true&$rid=a%2Db"
        ),
        Some(RequestTopic::Register { rid: "a%2Db" })
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

#[test]
fn what_the_client_writes_the_server_reads() {
    let name = username("0ne00000A0A", "dev-1", "2021-06-01", "dps-client/0.1 (x)");
    let parsed = parse_username(&name).expect("username");
    assert_eq!(parsed.registration_id, "dev-1");
    assert_eq!(parsed.api_version.as_deref(), Some("2021-06-01"));
    assert_eq!(
        parse_request_topic(&register_topic("r1")),
        Some(RequestTopic::Register { rid: "r1" })
    );
    assert_eq!(
        parse_request_topic(&operation_status_topic("r2", "4.a b&c")),
        Some(RequestTopic::OperationStatus {
            rid: "r2",
            operation_id: Some("4.a b&c".to_owned())
        })
    );
}

#[test]
fn reply_topics_parse_in_any_order() {
    let parsed = parse_reply_topic("$dps/registrations/res/202/?$rid=abc&retry-after=3").unwrap();
    assert_eq!(
        (parsed.status, parsed.rid, parsed.retry_after_seconds),
        (202, "abc", Some(3))
    );
    let parsed = parse_reply_topic("$dps/registrations/res/200/?retry-after=x&$rid=1").unwrap();
    assert_eq!(
        (parsed.status, parsed.rid, parsed.retry_after_seconds),
        (200, "1", None)
    );
    assert_eq!(parse_reply_topic("$dps/registrations/res/200/"), None);
    assert_eq!(parse_reply_topic("other/topic"), None);
}
