//! MQTT over WebSocket driven raw: the upgrade on any path with the `mqtt`
//! subprotocol.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_works_on_any_path_with_the_mqtt_subprotocol() -> Result<()> {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let system = TestSystem::start(SystemOptions::default()).await?;
    let scope = system.scope().to_string();
    let key = fixtures::symmetric_individual(&system, "raw-ws").await?;
    let https = system.server.device_addr().expect("device HTTPS listener");
    for (path, host, subprotocol) in [
        ("/$iothub/websocket", "localhost", Some("mqtt")),
        ("/$iothub/websocket", "localhost:443", Some("mqtt")),
        ("/", "anything.example", Some("mqtt")),
        ("/some/other/path", "localhost", Some("mqttv3.1, mqtt")),
        ("/$iothub/websocket", "localhost", None),
    ] {
        let tcp = TcpStream::connect(https).await?;
        let tls = connector(&system)?
            .connect(ServerName::try_from(system.device_host.clone())?, tcp)
            .await?;
        let mut request = http_request(path, host, subprotocol)?;
        request.headers_mut().insert(
            "Sec-WebSocket-Extensions",
            "permessage-deflate; client_max_window_bits".parse()?,
        );
        let result = tokio_tungstenite::client_async(request, tls).await;
        let Some(_) = subprotocol else {
            let err = result
                .err()
                .context("upgraded without the mqtt subprotocol")?;
            assert!(err.to_string().contains("404"), "{err}");
            continue;
        };
        let (mut ws, response) = result.with_context(|| format!("upgrade on {path}"))?;
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            "mqtt",
            "{path}"
        );
        assert!(response.headers().get("sec-websocket-extensions").is_none());
        ws.send(Message::Binary(
            encode(&Packet::Connect(device_connect(&scope, "raw-ws", &key))).into(),
        ))
        .await?;
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await?
            .context("closed")??;
        let mut buf = BytesMut::from(&message.into_data()[..]);
        assert!(
            matches!(
                Packet::read(&mut buf, 1024)?,
                Packet::ConnAck(ConnAck {
                    code: ConnectReturnCode::Success,
                    ..
                })
            ),
            "{path}"
        );
        ws.close(None).await?;
    }
    system.stop().await;
    Ok(())
}

fn http_request(
    path: &str,
    host: &str,
    subprotocol: Option<&str>,
) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = format!("wss://{host}{path}").into_client_request()?;
    if let Some(subprotocol) = subprotocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", subprotocol.parse()?);
    }
    Ok(request)
}
