//! The REST surface as IoT Hub clients see it: auth, routing, error bodies, etags.

use dps_attestation::sas::{create_token, SymmetricKey};
use dps_hub_sim::{HubSim, HubSimConfig};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{http, hub_key, owner_token, token, HUB_A, HUB_B};

async fn two_hubs() -> dps_hub_sim::RunningHubSim {
    HubSim::start(HubSimConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        &[HUB_A, HUB_B],
    ))
    .await
    .unwrap()
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn call(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    auth: Option<&str>,
    if_match: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut request = client.request(method, url);
    if let Some(auth) = auth {
        request = request.header("Authorization", auth);
    }
    if let Some(tag) = if_match {
        request = request.header("If-Match", tag);
    }
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json; charset=utf-8")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn assert_hub_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "{:?}", reply.body);
    assert_eq!(reply.headers["iothub-errorcode"], code);
    assert_eq!(
        reply.headers["content-type"],
        "application/json; charset=utf-8"
    );
    let message = reply.body["Message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("ErrorCode:{code};")),
        "{message}"
    );
    let exception = reply.body["ExceptionMessage"].as_str().unwrap();
    assert!(exception.starts_with("Tracking ID:"), "{exception}");
    assert!(exception.contains("-TimeStamp:"), "{exception}");
}

#[tokio::test]
async fn authorization_rules() {
    let sim = two_hubs().await;
    let client = http(&sim);
    let url = format!("https://{HUB_A}/devices/d1?api-version=2021-04-12");
    let key = hub_key(&sim, HUB_A);

    let none = call(&client, Method::GET, &url, None, None, None).await;
    assert_hub_error(&none, 401, "IotHubUnauthorizedAccess");

    let garbage = call(&client, Method::GET, &url, Some("Bearer x"), None, None).await;
    assert_hub_error(&garbage, 401, "IotHubUnauthorizedAccess");

    let wrong_policy = token(HUB_A, &key, Some("registryRead"));
    let reply = call(&client, Method::GET, &url, Some(&wrong_policy), None, None).await;
    assert_hub_error(&reply, 401, "IotHubUnauthorizedAccess");

    let wrong_key = token(
        HUB_A,
        &SymmetricKey::from_bytes(vec![1; 32]),
        Some("iothubowner"),
    );
    let reply = call(&client, Method::GET, &url, Some(&wrong_key), None, None).await;
    assert_hub_error(&reply, 401, "IotHubUnauthorizedAccess");

    let expired = create_token(HUB_A, &key, 1_000_000, Some("iothubowner"));
    let reply = call(&client, Method::GET, &url, Some(&expired), None, None).await;
    assert_hub_error(&reply, 401, "IotHubUnauthorizedAccess");
    assert!(reply.body["Message"].as_str().unwrap().contains("expired"));

    let other_hub = token(HUB_B, &key, Some("iothubowner"));
    let reply = call(&client, Method::GET, &url, Some(&other_hub), None, None).await;
    assert_hub_error(&reply, 401, "IotHubUnauthorizedAccess");

    // skn is optional; a `host:port` audience (what clients given a port sign) is accepted.
    for good in [
        token(HUB_A, &key, None),
        token(&format!("{HUB_A}:443"), &key, Some("iothubowner")),
        owner_token(&sim, HUB_A),
    ] {
        let reply = call(&client, Method::GET, &url, Some(&good), None, None).await;
        assert_hub_error(&reply, 404, "DeviceNotFound");
    }
}

#[tokio::test]
async fn routing_by_host_then_token_then_single_hub() {
    let sim = two_hubs().await;
    let client = http(&sim);
    let put = |host: &str, id: &str, token: String| {
        let client = client.clone();
        let url = format!("https://{host}/devices/{id}?api-version=2020-09-30");
        let body = json!({ "deviceId": id });
        async move { call(&client, Method::PUT, &url, Some(&token), None, Some(body)).await }
    };
    // By Host.
    let reply = put(HUB_B, "r1", owner_token(&sim, HUB_B)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(sim.device(HUB_B, "r1").is_some());
    assert!(sim.device(HUB_A, "r1").is_none());

    // Host `localhost` names no hub: the token's sr decides.
    let reply = put("localhost", "r2", owner_token(&sim, HUB_A)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert!(sim.device(HUB_A, "r2").is_some());

    // Neither names a hub and there are two: IotHubNotFound.
    let stranger = token("nohub.example", &hub_key(&sim, HUB_A), Some("iothubowner"));
    let reply = put("localhost", "r3", stranger).await;
    assert_hub_error(&reply, 404, "IotHubNotFound");

    // With a single hub, anything goes to it.
    let single = HubSim::start(HubSimConfig::new("127.0.0.1:0".parse().unwrap(), &[HUB_A]))
        .await
        .unwrap();
    let client = http(&single);
    let reply = call(
        &client,
        Method::GET,
        "https://localhost/statistics/devices?api-version=2021-04-12",
        Some(&owner_token(&single, HUB_A)),
        None,
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body,
        json!({"totalDeviceCount": 0, "enabledDeviceCount": 0, "disabledDeviceCount": 0})
    );
}

#[tokio::test]
async fn device_and_twin_rules_over_http() {
    let sim = two_hubs().await;
    let client = http(&sim);
    let auth = owner_token(&sim, HUB_A);
    let device_url = format!("https://{HUB_A}/devices/d1?api-version=2021-04-12");
    let twin_url = format!("https://{HUB_A}/twins/d1?api-version=2021-04-12");
    let send = |method: Method, url: &str, if_match: Option<&str>, body: Option<Value>| {
        let (client, auth, url, if_match) = (
            client.clone(),
            auth.clone(),
            url.to_owned(),
            if_match.map(str::to_owned),
        );
        async move {
            call(
                &client,
                method,
                &url,
                Some(&auth),
                if_match.as_deref(),
                body,
            )
            .await
        }
    };

    let created = send(
        Method::PUT,
        &device_url,
        None,
        Some(json!({"deviceId": "d1"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK);
    assert_eq!(
        created.headers["content-type"],
        "application/json; charset=utf-8"
    );
    let device = &created.body;
    assert_eq!(device["status"], "enabled");
    assert_eq!(device["connectionState"], "Disconnected");
    assert_eq!(device["authentication"]["type"], "sas");
    assert!(device["authentication"]["symmetricKey"]["primaryKey"].is_string());
    assert_eq!(
        device["authentication"]["x509Thumbprint"],
        json!({"primaryThumbprint": null, "secondaryThumbprint": null})
    );
    assert_eq!(device["capabilities"], json!({"iotEdge": false}));
    assert_eq!(device["cloudToDeviceMessageCount"], 0);
    let etag = device["etag"].as_str().unwrap().to_owned();

    let again = send(
        Method::PUT,
        &device_url,
        None,
        Some(json!({"deviceId": "d1"})),
    )
    .await;
    assert_hub_error(&again, 409, "DeviceAlreadyExists");
    let stale = send(
        Method::PUT,
        &device_url,
        Some("\"stale\""),
        Some(json!({"deviceId": "d1"})),
    )
    .await;
    assert_hub_error(&stale, 412, "PreconditionFailed");
    for if_match in [format!("\"{etag}\""), "\"*\"".to_owned(), "*".to_owned()] {
        let ok = send(
            Method::PUT,
            &device_url,
            Some(&if_match),
            Some(json!({"deviceId": "d1"})),
        )
        .await;
        assert_eq!(ok.status, StatusCode::OK, "If-Match {if_match}");
    }
    let mismatch = send(
        Method::PUT,
        &device_url,
        None,
        Some(json!({"deviceId": "other"})),
    )
    .await;
    assert_hub_error(&mismatch, 400, "ArgumentInvalid");
    let not_json = call(&client, Method::PUT, &device_url, Some(&auth), None, None).await;
    assert_hub_error(&not_json, 400, "ArgumentInvalid");

    let twin = send(Method::GET, &twin_url, None, None).await;
    assert_eq!(twin.status, StatusCode::OK);
    assert_eq!(twin.body["deviceId"], "d1");
    assert_eq!(twin.body["version"], 1);
    assert_eq!(twin.body["etag"], "AAAAAAAAAAE=");
    assert_eq!(twin.body["authenticationType"], "sas");
    assert_eq!(twin.body["properties"]["desired"]["$version"], 1);
    assert!(twin.body["properties"]["reported"]["$metadata"]["$lastUpdated"].is_string());

    let patched = send(
        Method::PATCH,
        &twin_url,
        Some("\"AAAAAAAAAAE=\""),
        Some(json!({"tags": {"a": {"b": 1, "c": 2}}, "properties": {"desired": {"x": 1, "y": {"z": 1}}}})),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.body["version"], 2);
    let merged = send(
        Method::PATCH,
        &twin_url,
        None,
        Some(
            json!({"tags": {"a": {"b": null}}, "properties": {"desired": {"y": null, "w": true}}}),
        ),
    )
    .await;
    assert_eq!(merged.body["tags"], json!({"a": {"c": 2}}));
    let desired = &merged.body["properties"]["desired"];
    assert_eq!(
        (desired["x"].clone(), desired["w"].clone()),
        (json!(1), json!(true))
    );
    assert!(desired.get("y").is_none());
    assert_eq!(desired["$version"], 3);
    let stale_twin = send(
        Method::PATCH,
        &twin_url,
        Some("AAAAAAAAAAE="),
        Some(json!({"tags": {}})),
    )
    .await;
    assert_hub_error(&stale_twin, 412, "PreconditionFailed");

    let replaced = send(
        Method::PUT,
        &twin_url,
        Some("*"),
        Some(json!({"tags": {"only": 1}, "properties": {"desired": {"fresh": 1}}})),
    )
    .await;
    assert_eq!(replaced.body["tags"], json!({"only": 1}));
    assert_eq!(replaced.body["properties"]["desired"]["fresh"], 1);
    assert!(replaced.body["properties"]["desired"].get("x").is_none());

    let list = send(
        Method::GET,
        &format!("https://{HUB_A}/devices?top=10&api-version=1"),
        None,
        None,
    )
    .await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);

    let deleted = send(Method::DELETE, &device_url, Some("*"), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = send(Method::GET, &twin_url, None, None).await;
    assert_hub_error(&gone, 404, "DeviceNotFound");
    let unknown = send(
        Method::GET,
        &format!("https://{HUB_A}/jobs/v2?api-version=1"),
        None,
        None,
    )
    .await;
    assert_hub_error(&unknown, 400, "ArgumentInvalid");
}
