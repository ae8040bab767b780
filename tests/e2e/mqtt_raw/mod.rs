//! Our server's MQTT endpoint driven byte by byte with a raw client over
//! rustls: the exact reply topics, CONNECT refusal codes, the limits
//! (keep-alive, connections per device, packet size, flood, CONNECT
//! deadline), and malformed input — each bad connection is closed while the
//! other connections, and devices provisioning meanwhile, are untouched.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::BytesMut;
use dps_attestation::sas::{create_token, registration_resource, unix_now, SymmetricKey};
use dps_client::{Credential as ClientCredential, ProvisioningClient, Transport};
use dps_e2e::server::{SystemOptions, TestSystem};
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Packet, Publish, Subscribe, SubscribeReasonCode,
};
use rumqttc::mqttbytes::QoS;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

mod client;
mod websocket;

use self::client::{connector, device_connect, encode, healthy, json, Next, Raw, REGISTER};
use crate::mqtt_fixtures as fixtures;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_echo_the_rid_first_for_every_body_form() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let key = fixtures::symmetric_individual(&system, "raw-topics").await?;
    let mut raw = Raw::open(&system).await?;
    // Python's CONNECT: clean session false, keep-alive 60, encoded sr, no skn.
    let scope = system.scope().to_string();
    let mut connect = device_connect(&scope, "raw-topics", &key);
    connect.clean_session = false;
    connect.keep_alive = 60;
    connect.login.as_mut().unwrap().password = create_token(
        &registration_resource(&scope, "raw-topics"),
        &SymmetricKey::from_base64(&key)?,
        unix_now() + 3600,
        None,
    );
    assert_eq!(raw.connect(connect).await?, ConnectReturnCode::Success);
    // QoS 2 asked is granted as 1; other filters are refused.
    let mut subscribe = Subscribe::new("$dps/registrations/res/#", QoS::ExactlyOnce);
    subscribe.add("devices/raw-topics/messages/#".to_owned(), QoS::AtLeastOnce);
    subscribe.pkid = 3;
    raw.send(Packet::Subscribe(subscribe)).await?;
    match raw.next(Duration::from_secs(5)).await? {
        Next::Packet(Packet::SubAck(ack)) => {
            assert_eq!(ack.pkid, 3);
            assert_eq!(
                ack.return_codes,
                vec![
                    SubscribeReasonCode::Success(QoS::AtLeastOnce),
                    SubscribeReasonCode::Failure
                ]
            );
        }
        other => bail!("expected SUBACK, got {other:?}"),
    }

    let bodies: [&[u8]; 5] = [
        br#"{"registrationId":"raw-topics"}"#,
        br#"{"payload": null, "registrationId": "raw-topics"}"#,
        br#"{"registrationId":"raw-topics","payload":{"a":[1,2]}}"#,
        b"",
        b"null",
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let rid = format!("a%2Fb-{i}.{{x}}");
        let reply = raw
            .request(&format!("{REGISTER}{rid}"), QoS::AtLeastOnce, body)
            .await?;
        assert_eq!(
            reply.topic,
            format!("$dps/registrations/res/202/?$rid={rid}&retry-after=1"),
            "body {i}"
        );
        assert_eq!(reply.qos, QoS::AtLeastOnce);
        let status = json(&reply);
        assert_eq!(status["status"], "assigning", "{status}");
        let operation = status["operationId"].as_str().unwrap().to_owned();
        // Node's poll body is " "; QoS 0 publishes are answered too.
        let poll = format!(
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=p{i}&operationId={operation}"
        );
        let reply = raw.request(&poll, QoS::AtMostOnce, b" ").await?;
        assert_eq!(
            reply.topic,
            format!("$dps/registrations/res/200/?$rid=p{i}")
        );
        let status = json(&reply);
        assert_eq!(status["status"], "assigned", "{status}");
        assert_eq!(status["registrationState"]["deviceId"], "raw-topics");
    }

    // Errors keep the reply shape: an unknown operation, a mismatched id.
    let reply = raw
        .request(
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=e1&operationId=nope",
            QoS::AtLeastOnce,
            b" ",
        )
        .await?;
    assert_eq!(reply.topic, "$dps/registrations/res/404/?$rid=e1");
    assert_eq!(json(&reply)["errorCode"], 404203);
    let reply = raw
        .request(
            &format!("{REGISTER}e2"),
            QoS::AtLeastOnce,
            br#"{"registrationId":"someone-else"}"#,
        )
        .await?;
    assert_eq!(reply.topic, "$dps/registrations/res/400/?$rid=e2");
    assert_eq!(json(&reply)["errorCode"], 400202);
    let reply = raw
        .request(
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=e3",
            QoS::AtLeastOnce,
            b"",
        )
        .await?;
    assert_eq!(reply.topic, "$dps/registrations/res/400/?$rid=e3");
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_connects_are_refused_with_return_codes() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let scope = system.scope().to_string();
    let key = fixtures::symmetric_individual(&system, "raw-auth").await?;

    let mut cases: Vec<(&str, Connect, ConnectReturnCode)> = Vec::new();
    let mut other_client = device_connect(&scope, "raw-auth", &key);
    other_client.client_id = "someone-else".to_owned();
    cases.push(("client id", other_client, ConnectReturnCode::BadClientId));
    let mut bad_username = device_connect(&scope, "raw-auth", &key);
    bad_username.login.as_mut().unwrap().username = format!("{scope}/devices/raw-auth");
    cases.push((
        "username shape",
        bad_username,
        ConnectReturnCode::BadUserNamePassword,
    ));
    let mut no_version = device_connect(&scope, "raw-auth", &key);
    no_version.login.as_mut().unwrap().username =
        format!("{scope}/registrations/raw-auth/ClientVersion=x");
    cases.push((
        "no api-version",
        no_version,
        ConnectReturnCode::BadUserNamePassword,
    ));

    for (case, connect, expected) in cases {
        let mut raw = Raw::open(&system).await?;
        assert_eq!(raw.connect(connect).await?, expected, "{case}");
        assert!(
            raw.closed_within(Duration::from_secs(2)).await?.is_some(),
            "{case}: still open after the refusal"
        );
    }
    system.stop().await;
    Ok(())
}

/// Credentials that fail are answered on the reply topic, with the status
/// and code HTTPS gives (Azure answers an MQTT X.509 refusal as `res/401`,
/// `401002`), alike for every cause; and an unverified connection never
/// takes the place of the device's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_refusals_come_on_the_reply_topic_and_give_no_hint() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        configure: &|config| config.device.mqtt.connect_timeout_ms = 600,
        ..SystemOptions::default()
    })
    .await?;
    let scope = system.scope().to_string();
    let key = fixtures::symmetric_individual(&system, "raw-auth").await?;
    let wrong_key = dps_attestation::keys::generate_key();
    let unknown_scope = fixtures::unknown_scope();
    // The device's own connections, at the cap of two per registration.
    let mut own = [
        healthy(&system, "raw-auth", &key).await?,
        healthy(&system, "raw-auth", &key).await?,
    ];

    let mut no_password = device_connect(&scope, "raw-auth", &key);
    no_password.login.as_mut().unwrap().password.clear();
    let cases = [
        (
            "wrong token",
            device_connect(&scope, "raw-auth", &wrong_key),
        ),
        (
            "unknown scope",
            device_connect(&unknown_scope, "raw-auth", &key),
        ),
        (
            "unknown enrollment",
            device_connect(&scope, "raw-nobody", &key),
        ),
        ("no token, no certificate", no_password),
    ];
    let mut messages = Vec::new();
    for (case, connect) in cases {
        let mut raw = Raw::open(&system).await?;
        assert_eq!(
            raw.connect(connect).await?,
            ConnectReturnCode::Success,
            "{case}"
        );
        raw.subscribe(QoS::AtLeastOnce).await?;
        let reply = raw
            .request(&format!("{REGISTER}r1"), QoS::AtLeastOnce, b"")
            .await?;
        assert_eq!(reply.topic, "$dps/registrations/res/401/?$rid=r1", "{case}");
        let body = json(&reply);
        assert_eq!(body["errorCode"], 401002, "{case}: {body}");
        messages.push(body["message"].clone());
        // Unverified and silent: closed at the CONNECT deadline, not the
        // keep-alive (180 s here).
        assert!(
            raw.closed_within(Duration::from_secs(2)).await?.is_some(),
            "{case}: an unverified connection outlived the CONNECT deadline"
        );
    }
    assert!(
        messages.windows(2).all(|pair| pair[0] == pair[1]),
        "refusals must look alike: {messages:?}"
    );
    // Neither of the device's own connections was closed for them.
    for raw in &mut own {
        let reply = raw
            .request(&format!("{REGISTER}ok"), QoS::AtLeastOnce, b"")
            .await?;
        assert!(
            reply.topic.starts_with("$dps/registrations/res/202/"),
            "{}",
            reply.topic
        );
    }
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_and_connections_per_device_are_enforced() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let scope = system.scope().to_string();
    let key = fixtures::symmetric_individual(&system, "raw-limits").await?;

    // Keep-alive 1 s: silent → closed after 1.5 s; pinging → kept.
    let mut silent = Raw::open(&system).await?;
    let mut pinging = Raw::open(&system).await?;
    for raw in [&mut silent, &mut pinging] {
        let mut connect = device_connect(&scope, "raw-limits", &key);
        connect.keep_alive = 1;
        assert_eq!(raw.connect(connect).await?, ConnectReturnCode::Success);
    }
    let started = Instant::now();
    let pinger = async {
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            pinging.send(Packet::PingReq).await?;
            match pinging.next(Duration::from_secs(2)).await? {
                Next::Packet(Packet::PingResp) => {}
                other => bail!("expected PINGRESP, got {other:?}"),
            }
        }
        anyhow::Ok(())
    };
    let (closed, pinged) = tokio::join!(silent.closed_within(Duration::from_secs(4)), pinger);
    pinged?;
    assert!(closed?.is_some(), "the silent connection was kept");
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(1400) && after < Duration::from_millis(3500),
        "closed after {after:?}"
    );

    // Keep-alive 0: no limit.
    let mut forever = Raw::open(&system).await?;
    let mut connect = device_connect(&scope, "raw-limits", &key);
    connect.keep_alive = 0;
    assert_eq!(forever.connect(connect).await?, ConnectReturnCode::Success);
    assert!(matches!(
        forever.next(Duration::from_secs(2)).await?,
        Next::Silent
    ));

    // Two connections per device: a third closes the oldest (`pinging`
    // and `forever` are open now; `pinging` is the oldest).
    let mut newest = healthy(&system, "raw-limits", &key).await?;
    assert!(
        pinging
            .closed_within(Duration::from_secs(2))
            .await?
            .is_some(),
        "the oldest connection survived"
    );
    assert!(matches!(
        forever.next(Duration::from_millis(300)).await?,
        Next::Silent
    ));
    let reply = newest
        .request(&format!("{REGISTER}1"), QoS::AtLeastOnce, b"")
        .await?;
    assert!(reply.topic.starts_with("$dps/registrations/res/202/"));
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_closes_only_that_connection() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        configure: &|config| config.device.mqtt.connect_timeout_ms = 1000,
        ..SystemOptions::default()
    })
    .await?;
    let scope = system.scope().to_string();
    let key = fixtures::symmetric_individual(&system, "raw-healthy").await?;
    let abuser_key = fixtures::symmetric_individual(&system, "raw-abuser").await?;
    let mut device_keys = Vec::new();
    for i in 0..12 {
        device_keys.push(fixtures::symmetric_individual(&system, &format!("raw-bg-{i}")).await?);
    }
    let mut healthy_connection = healthy(&system, "raw-healthy", &key).await?;

    // Devices provisioning with dps-client over MQTT the whole time.
    let background = {
        let host = system.device_host.clone();
        let trust = system.server.trust_pem().to_owned();
        let scope = scope.clone();
        tokio::spawn(async move {
            let mut provisioned = Vec::new();
            for (i, key) in device_keys.into_iter().enumerate() {
                let id = format!("raw-bg-{i}");
                let registration = ProvisioningClient::builder(host.clone(), scope.clone(), &id)
                    .credential(ClientCredential::symmetric_key(&key)?)
                    .trust_ca_pem(trust.clone())
                    .system_roots(false)
                    .transport(Transport::Mqtt)
                    .poll_interval(Duration::from_millis(100))
                    .build()?
                    .register()
                    .await?;
                provisioned.push(registration.device_id);
            }
            anyhow::Ok(provisioned)
        })
    };

    let connected = |raw: Raw| async {
        let mut raw = raw;
        let code = raw
            .connect(device_connect(&scope, "raw-abuser", &abuser_key))
            .await?;
        anyhow::ensure!(
            code == ConnectReturnCode::Success,
            "abuser refused: {code:?}"
        );
        anyhow::Ok(raw)
    };
    let quick = Duration::from_secs(3);

    // Truncated CONNECT: the length ends inside the protocol name's fields.
    let mut raw = Raw::open(&system).await?;
    raw.send_bytes(&[0x10, 0x06, 0x00, 0x04, b'M', b'Q', b'T', b'T'])
        .await?;
    let seen = raw
        .closed_within(quick)
        .await?
        .context("truncated CONNECT kept")?;
    assert!(seen.is_empty(), "{seen:?}");

    // Truncated PUBLISH: topic length 16, one byte of topic.
    let mut raw = connected(Raw::open(&system).await?).await?;
    raw.send_bytes(&[0x32, 0x03, 0x00, 0x10, b'$']).await?;
    raw.closed_within(quick)
        .await?
        .context("truncated PUBLISH kept")?;

    // Not MQTT at all.
    let mut raw = Raw::open(&system).await?;
    raw.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await?;
    raw.closed_within(quick)
        .await?
        .context("HTTP on 8883 kept")?;

    // Wrong protocol levels: MQTT 3.1 (level 3) and 5 get CONNACK 1.
    for level in [3u8, 5u8] {
        let mut bytes = encode(&Packet::Connect(device_connect(
            &scope,
            "raw-abuser",
            &abuser_key,
        )));
        // Fixed header (2–3 bytes), then 00 04 'MQTT' and the level.
        let at = bytes
            .windows(4)
            .position(|w| w == b"MQTT")
            .context("protocol name")?
            + 4;
        bytes[at] = level;
        let mut raw = Raw::open(&system).await?;
        raw.send_bytes(&bytes).await?;
        let seen = raw
            .closed_within(quick)
            .await?
            .with_context(|| format!("level {level} kept"))?;
        assert!(
            matches!(
                seen.as_slice(),
                [Packet::ConnAck(ConnAck {
                    code: ConnectReturnCode::RefusedProtocolVersion,
                    ..
                })]
            ),
            "level {level}: {seen:?}"
        );
    }

    // A second CONNECT.
    let mut raw = connected(Raw::open(&system).await?).await?;
    raw.send(Packet::Connect(device_connect(
        &scope,
        "raw-abuser",
        &abuser_key,
    )))
    .await?;
    raw.closed_within(quick)
        .await?
        .context("second CONNECT kept")?;

    // Publish to a topic that is not a DPS request: closed, not answered.
    let mut raw = connected(Raw::open(&system).await?).await?;
    raw.send(Packet::Publish(Publish::new(
        "devices/raw-abuser/messages/events/",
        QoS::AtMostOnce,
        b"{}".to_vec(),
    )))
    .await?;
    let seen = raw
        .closed_within(quick)
        .await?
        .context("unknown topic kept")?;
    assert!(seen.is_empty(), "{seen:?}");

    // QoS 2.
    let mut raw = connected(Raw::open(&system).await?).await?;
    let mut publish = Publish::new(format!("{REGISTER}q2"), QoS::ExactlyOnce, b"".to_vec());
    publish.pkid = 9;
    raw.send(Packet::Publish(publish)).await?;
    raw.closed_within(quick).await?.context("QoS 2 kept")?;

    // Oversized: a 200 KiB packet is refused from its header, before the body.
    let mut raw = connected(Raw::open(&system).await?).await?;
    let oversized = encode(&Packet::Publish(Publish::new(
        format!("{REGISTER}big"),
        QoS::AtMostOnce,
        vec![b' '; 200 * 1024],
    )));
    raw.send_bytes(&oversized[..1024]).await?;
    raw.closed_within(quick)
        .await?
        .context("oversized packet kept")?;

    // A body over 96 KiB inside the packet limit is a 413 answer, not a close.
    let mut raw = connected(Raw::open(&system).await?).await?;
    let reply = raw
        .request(
            &format!("{REGISTER}413"),
            QoS::AtLeastOnce,
            &vec![b' '; 96 * 1024 + 1],
        )
        .await?;
    assert_eq!(reply.topic, "$dps/registrations/res/413/?$rid=413");
    drop(raw);

    // Never sends CONNECT: closed at the (1 s) deadline.
    let started = Instant::now();
    let mut raw = Raw::open(&system).await?;
    raw.closed_within(quick)
        .await?
        .context("silent connection kept")?;
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A flood: the first 4 go to the pipeline, the next get 429, then close.
    let mut raw = connected(Raw::open(&system).await?).await?;
    let mut flood = Vec::new();
    for i in 1..=300u16 {
        let mut publish = Publish::new(format!("{REGISTER}f{i}"), QoS::AtLeastOnce, b"".to_vec());
        publish.pkid = i;
        flood.extend_from_slice(&encode(&Packet::Publish(publish)));
    }
    // The server may close while we are still writing.
    let _ = raw.send_bytes(&flood).await;
    let seen = raw
        .closed_within(Duration::from_secs(5))
        .await?
        .context("flood kept")?;
    let throttled = seen
        .iter()
        .filter(|p| matches!(p, Packet::Publish(p) if p.topic.starts_with("$dps/registrations/res/429/")))
        .count();
    assert!(
        throttled >= 1,
        "no 429 before the close: {} packets",
        seen.len()
    );

    // Everyone else is fine: the healthy connection still answers…
    let reply = healthy_connection
        .request(&format!("{REGISTER}ok"), QoS::AtLeastOnce, b"")
        .await?;
    assert!(
        reply
            .topic
            .starts_with("$dps/registrations/res/202/?$rid=ok"),
        "{}",
        reply.topic
    );
    // …and the devices provisioning meanwhile all got their hub.
    let provisioned = background.await??;
    assert_eq!(provisioned.len(), 12);
    for id in provisioned {
        fixtures::assert_on_hub(&system, "hub-a.test", &id);
    }
    system.stop().await;
    Ok(())
}
