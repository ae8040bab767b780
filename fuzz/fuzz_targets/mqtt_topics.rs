//! The server's MQTT text grammar on arbitrary strings: CONNECT usernames
//! and request topics (`dps_model::mqtt`, shared by server and client).
//!
//! Invariants: no panic; the `$rid` the server will echo is a verbatim,
//! non-empty piece of the topic; the reply topic for it starts with the reply
//! prefix, names the status, carries the `$rid` unchanged as its first
//! parameter, and is a valid PUBLISH topic name (no wildcard, no NUL).
#![no_main]

use arbitrary::Arbitrary;
use dps_fuzz::topics;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    username: String,
    topic: String,
    status: u16,
    retry_after: Option<u64>,
}

fuzz_target!(|input: Input| {
    if let Some((scope, registration_id, api_version)) = topics::parse_username(&input.username) {
        assert!(!input.username.is_empty());
        // Decoded parts can be anything; a present api-version is never empty.
        let _ = (scope, registration_id);
        assert_ne!(api_version.as_deref(), Some(""));
    }
    let _ = topics::is_reply_filter(&input.topic);
    let Some(request) = topics::parse_request_topic(&input.topic) else {
        return;
    };
    let rid = request.rid();
    assert!(!rid.is_empty(), "an empty $rid was accepted");
    assert!(
        input.topic.contains(rid),
        "the $rid is not a piece of the topic"
    );
    assert!(!rid.contains('&'), "the $rid runs into the next parameter");

    let reply = topics::reply_topic(input.status, rid, input.retry_after);
    let expected_head = format!("$dps/registrations/res/{}/?$rid=", input.status);
    assert!(reply.starts_with(&expected_head), "reply topic {reply:?}");
    let query = &reply[expected_head.len() - "$rid=".len()..];
    let first = query.split('&').next().unwrap_or_default();
    assert_eq!(
        first,
        format!("$rid={rid}"),
        "the $rid is not echoed unchanged"
    );
    // Found here once (the rid was echoed with wildcards or NUL); fixed in
    // the grammar, which now refuses such a `$rid`.
    assert!(
        !reply.contains(['+', '#', '\0']),
        "reply topic {reply:?} is not a valid PUBLISH topic name (MQTT-3.3.2-2, MQTT-1.5.3-2)"
    );
    assert!(reply.len() <= 65_535, "reply topic over MQTT's limit");
});
