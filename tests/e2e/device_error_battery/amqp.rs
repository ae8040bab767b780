//! The battery's AMQP driver (docs/amqp.md), as the Node transport
//! connects: SASL PLAIN with the registration token (no SASL at all without
//! one, as X.509 devices connect), the reply link then the request link on
//! `{scope}/registrations/{id}`, the register and the polls as messages.
//!
//! Answers are read back into the battery's HTTPS shape independently of
//! `dps-client`: a reply's status is its `iotdps-status`; a rejected
//! request's status is the one its error condition stands for (§5's table),
//! its body the error description — so the battery checks that the
//! condition and the Azure code in the body agree with the other transports.

use std::net::SocketAddr;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use dps_e2e::server::TestSystem;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::types::definitions::{AmqpError, ErrorCondition, LinkError};
use fe2o3_amqp::types::messaging::{
    AmqpValue, ApplicationProperties, Body, Data, Message, MessageId, Outcome, Properties,
};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use futures::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, DuplexStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::transports::{operation_id, tls_from, Answer, Attempt, MAX_POLLS};

/// One attempt over AMQP (`websocket`: over WebSocket on the device port).
pub(super) async fn exchange(
    system: &TestSystem,
    attempt: &Attempt,
    websocket: bool,
) -> Result<Vec<Answer>> {
    let target: SocketAddr = if websocket {
        system.server.device_addr()
    } else {
        system.server.amqp_addr()
    }
    .context("the listener is enabled")?;
    let tls = tls_from(system, attempt.source, target).await?;
    if websocket {
        let mut request =
            format!("wss://{}/$iothub/websocket", system.device_host).into_client_request()?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "AMQPWSB10".parse()?);
        let (ws, _) = tokio_tungstenite::client_async(request, tls).await?;
        over(bridge(ws), system, attempt, false).await
    } else {
        over(tls, system, attempt, false).await
    }
}

/// The AMQP connection over `stream`: register, then poll while `202`;
/// with `look_up`, then an `iotdps-get-registration` request (its answer last).
async fn over<S>(
    stream: S,
    system: &TestSystem,
    attempt: &Attempt,
    look_up: bool,
) -> Result<Vec<Answer>>
where
    S: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
{
    let address = format!(
        "{}/registrations/{}",
        attempt.scope, attempt.registration_id
    );
    let mut builder = Connection::builder()
        .container_id("battery")
        .hostname(system.device_host.as_str())
        .scheme("amqp");
    if let Some(token) = &attempt.token {
        builder = builder.sasl_profile(SaslProfile::Plain {
            username: address.clone(),
            password: token.clone(),
        });
    }
    let mut connection = builder.open_with_stream(stream).await?;
    let mut session = Session::begin(&mut connection).await?;
    let mut receiver = Receiver::builder()
        .name("battery-replies")
        .source(address.as_str())
        .attach(&mut session)
        .await?;
    let mut sender = Sender::builder()
        .name("battery-requests")
        .target(address.as_str())
        .attach(&mut session)
        .await?;
    let register = ApplicationProperties::builder()
        .insert("iotdps-operation-type", "iotdps-register")
        .insert("iotdps-forceRegistration", attempt.force_registration)
        .build();
    let body = Body::Data(vec![Data(Binary::from(attempt.body.clone()))].into());
    let mut link = (&mut sender, &mut receiver, 0u32);
    let mut answers = vec![request(&mut link, register, body).await?];
    while answers.len() <= MAX_POLLS && answers.last().is_some_and(|a| a.status == 202) {
        let operation = operation_id(answers.last().expect("an answer"))?;
        let poll = ApplicationProperties::builder()
            .insert("iotdps-operation-type", "iotdps-get-operationstatus")
            .insert("iotdps-operation-id", operation)
            .build();
        let empty = Body::Value(AmqpValue(Value::String(String::new())));
        answers.push(request(&mut link, poll, empty).await?);
    }
    if look_up {
        let lookup = ApplicationProperties::builder()
            .insert("iotdps-operation-type", "iotdps-get-registration")
            .build();
        let body = Body::Data(vec![Data(Binary::from(attempt.body.clone()))].into());
        answers.push(request(&mut link, lookup, body).await?);
    }
    let _ = sender.close().await;
    let _ = receiver.close().await;
    let _ = session.end().await;
    let _ = connection.close().await;
    Ok(answers)
}

/// Send one request; its reply, or its rejection, as an answer.
async fn request(
    (sender, receiver, next): &mut (&mut Sender, &mut Receiver, u32),
    operation: ApplicationProperties,
    body: Body<Value>,
) -> Result<Answer> {
    *next += 1;
    let id = format!("battery-{next}");
    let message = Message::builder()
        .properties(
            Properties::builder()
                .correlation_id(MessageId::String(id.clone()))
                .build(),
        )
        .application_properties(operation)
        .body(body)
        .build();
    match sender.send(message).await? {
        Outcome::Accepted(_) => {}
        Outcome::Rejected(rejected) => {
            let error = rejected.error.context("a rejection without an error")?;
            let description = error.description.unwrap_or_default();
            let retry_after = error.info.and_then(|info| {
                info.iter()
                    .find(|(key, _)| key.as_str() == "retry-after")
                    .and_then(|(_, value)| seconds(&SimpleValue::try_from(value.clone()).ok()?))
            });
            return Ok(Answer {
                status: condition_status(&error.condition)?,
                retry_after,
                body: serde_json::from_str(&description).unwrap_or_default(),
            });
        }
        other => bail!("the request was {other:?}"),
    }
    loop {
        let delivery = receiver.recv::<Body<Value>>().await?;
        receiver.accept(&delivery).await?;
        let message = delivery.message();
        let correlation = message
            .properties
            .as_ref()
            .and_then(|p| p.correlation_id.as_ref());
        if correlation != Some(&MessageId::String(id.clone())) {
            continue;
        }
        let property = |name: &str| {
            message
                .application_properties
                .as_ref()
                .and_then(|p| p.0.get(name))
        };
        let status = property("iotdps-status")
            .and_then(seconds)
            .context("a reply without iotdps-status")?;
        let Body::Data(sections) = &message.body else {
            bail!("a reply whose body is not data sections (Node could not read it)");
        };
        let bytes: Vec<u8> = sections.iter().flat_map(|d| d.0.iter().copied()).collect();
        return Ok(Answer {
            status: u16::try_from(status)?,
            retry_after: property("retry-after").and_then(seconds),
            body: serde_json::from_slice(&bytes).unwrap_or_default(),
        });
    }
}

/// The status an error condition stands for (docs/amqp.md §5).
fn condition_status(condition: &ErrorCondition) -> Result<u16> {
    Ok(match condition {
        ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess) => 401,
        ErrorCondition::AmqpError(AmqpError::NotAllowed) => 403,
        ErrorCondition::AmqpError(AmqpError::NotFound) => 404,
        ErrorCondition::AmqpError(AmqpError::InternalError) => 500,
        ErrorCondition::LinkError(LinkError::MessageSizeExceeded) => 413,
        ErrorCondition::Custom(symbol) => match symbol.as_str() {
            "com.microsoft:argument-error" => 400,
            "com.microsoft:precondition-failed" => 412,
            "com.microsoft:device-container-throttled" => 429,
            other => bail!("an unexpected error condition {other}"),
        },
        other => bail!("an unexpected error condition {other:?}"),
    })
}

/// A number, or a string holding one (the server sends `retry-after` as a
/// string, as Azure does).
fn seconds(value: &SimpleValue) -> Option<u64> {
    match value {
        SimpleValue::String(text) => text.parse().ok(),
        SimpleValue::Int(n) => u64::try_from(*n).ok(),
        SimpleValue::Uint(n) => Some(u64::from(*n)),
        SimpleValue::Long(n) => u64::try_from(*n).ok(),
        SimpleValue::Ulong(n) => Some(*n),
        _ => None,
    }
}

/// The AMQP byte stream of a WebSocket, as an in-memory pipe: each chunk
/// read from the pipe goes out as one binary message, every binary message
/// received comes out of the pipe.
fn bridge<W>(ws: tokio_tungstenite::WebSocketStream<W>) -> DuplexStream
where
    W: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, mut theirs) = tokio::io::duplex(1 << 17);
    tokio::spawn(async move {
        let (mut sink, mut messages) = ws.split();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            tokio::select! {
                read = theirs.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let chunk = WsMessage::Binary(Bytes::copy_from_slice(&buf[..n]));
                        if sink.send(chunk).await.is_err() {
                            break;
                        }
                    }
                },
                message = messages.next() => match message {
                    Some(Ok(WsMessage::Binary(data))) => {
                        if theirs.write_all(&data).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(WsMessage::Close(_)) | Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        let _ = sink.close().await;
    });
    ours
}

/// After a device registers, `iotdps-get-registration` on the same links
/// answers its registration state, as HTTPS's status lookup does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_registration_answers_the_registration_state() -> Result<()> {
    let system = TestSystem::start(dps_e2e::server::SystemOptions::default()).await?;
    let scope = system.scope().to_string();
    let id = "amqp-looked-up";
    let key = super::enroll(&system, system.scope(), id, serde_json::json!({})).await;
    let attempt = Attempt {
        scope: scope.clone(),
        registration_id: id.to_owned(),
        token: Some(super::device_token(&scope, id, &key)),
        body: serde_json::json!({ "registrationId": id })
            .to_string()
            .into_bytes(),
        source: std::net::Ipv4Addr::new(127, 0, 20, 90),
        force_registration: false,
    };
    let tls = tls_from(
        &system,
        attempt.source,
        system.server.amqp_addr().context("AMQP")?,
    )
    .await?;
    let answers = over(tls, &system, &attempt, true).await?;
    let (lookup, registered) = answers.split_last().context("answers")?;
    let registered = registered.last().context("a register answer")?;
    assert_eq!(registered.status, 200, "{:?}", registered.body);
    let state = &registered.body["registrationState"];
    assert_eq!(state["status"], "assigned");
    assert_eq!(lookup.status, 200, "{:?}", lookup.body);
    for field in [
        "registrationId",
        "status",
        "assignedHub",
        "deviceId",
        "etag",
    ] {
        assert_eq!(lookup.body[field], state[field], "{field}");
    }
    assert_eq!(lookup.body["registrationId"], id);
    system.stop().await;
    Ok(())
}
