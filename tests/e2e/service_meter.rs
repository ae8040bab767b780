//! The operations meter: a scripted sequence of known instructions —
//! successful and failing, service API and devices — yields exactly the
//! expected counts per kind, read by the tenant and by the operator, and the
//! same counts after a server restart on the same data.

use std::collections::BTreeMap;

use anyhow::Result;
use dps_client::{Credential, ProvisioningClient};
use dps_e2e::server::{SystemOptions, TestSystem};
use reqwest::Method;

const GET: Method = Method::GET;
const PUT: Method = Method::PUT;
const POST: Method = Method::POST;
const DELETE: Method = Method::DELETE;
use serde_json::{json, Value};

use crate::service_client::Service;

fn symmetric(id: &str) -> Value {
    json!({"registrationId": id, "attestation": {"type": "symmetricKey"}})
}

fn group(id: &str) -> Value {
    json!({"enrollmentGroupId": id, "attestation": {"type": "symmetricKey"}})
}

/// Send and check the status, so the script cannot drift from what it counts.
async fn expect(
    api: &Service,
    status: u16,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Result<Value> {
    let reply = api
        .send(method.clone(), path, body.as_ref(), headers)
        .await?;
    assert_eq!(reply.status, status, "{method} {path}: {:?}", reply.body);
    Ok(reply.body)
}

async fn register(system: &TestSystem, group_key: &str, id: &str) -> Result<()> {
    ProvisioningClient::builder(system.device_host.clone(), system.scope().to_string(), id)
        .credential(Credential::group_key(group_key, id)?)
        .trust_ca_pem(system.server.trust_pem().to_owned())
        .build()?
        .register()
        .await?;
    Ok(())
}

fn totals(report: &Value) -> BTreeMap<String, u64> {
    serde_json::from_value(report["totals"].clone()).expect("totals map")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meter_counts_exactly_the_successful_instructions_across_a_restart() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let api = Service::owner(&system)?;
    let none: &[(&str, &str)] = &[];

    // Individual enrollments.
    expect(
        &api,
        200,
        PUT,
        "/enrollments/m-1",
        Some(symmetric("m-1")),
        none,
    )
    .await?; // create
    let replaced = expect(
        &api,
        200,
        PUT,
        "/enrollments/m-1",
        Some(symmetric("m-1")),
        none,
    )
    .await?; // update
    expect(
        &api,
        412,
        PUT,
        "/enrollments/m-1",
        Some(symmetric("m-1")),
        &[("If-Match", "stale")],
    )
    .await?;
    expect(
        &api,
        400,
        PUT,
        "/enrollments/m-1",
        Some(json!({"registrationId": "m-1"})),
        none,
    )
    .await?;
    expect(&api, 200, GET, "/enrollments/m-1", None, none).await?; // read
    expect(&api, 404, GET, "/enrollments/missing", None, none).await?;
    expect(
        &api,
        200,
        POST,
        "/enrollments/m-1/attestationmechanism",
        None,
        none,
    )
    .await?; // read
    expect(
        &api,
        404,
        POST,
        "/enrollments/missing/attestationmechanism",
        None,
        none,
    )
    .await?;
    let bulk = expect(
        &api,
        200,
        POST,
        "/enrollments",
        Some(json!({"mode": "create", "enrollments": [symmetric("m-2"), symmetric("m-1")]})),
        none,
    )
    .await?; // 1 create
    assert_eq!(bulk["errors"].as_array().unwrap().len(), 1);
    // Two query pages of one.
    let first = api
        .send(
            POST,
            "/enrollments/query",
            None,
            &[("x-ms-max-item-count", "1")],
        )
        .await?;
    let token = first.header("x-ms-continuation").unwrap().to_owned();
    expect(
        &api,
        200,
        POST,
        "/enrollments/query",
        None,
        &[("x-ms-max-item-count", "1"), ("x-ms-continuation", &token)],
    )
    .await?;
    expect(
        &api,
        400,
        POST,
        "/enrollments/query",
        None,
        &[("x-ms-continuation", "bogus!")],
    )
    .await?;
    expect(&api, 204, DELETE, "/enrollments/m-2", None, none).await?; // delete
    expect(&api, 404, DELETE, "/enrollments/m-2", None, none).await?;
    let etag = replaced["etag"].as_str().unwrap();
    expect(
        &api,
        412,
        DELETE,
        "/enrollments/m-1",
        None,
        &[("If-Match", "stale")],
    )
    .await?;
    assert!(!etag.is_empty());

    // Groups.
    expect(
        &api,
        200,
        PUT,
        "/enrollmentGroups/g-1",
        Some(group("g-1")),
        none,
    )
    .await?; // create
    expect(
        &api,
        200,
        PUT,
        "/enrollmentGroups/g-1",
        Some(group("g-1")),
        none,
    )
    .await?; // update
    expect(&api, 200, GET, "/enrollmentGroups/g-1", None, none).await?; // read
    expect(&api, 200, POST, "/enrollmentGroups/query", None, none).await?; // query
    expect(&api, 204, DELETE, "/enrollmentGroups/g-1", None, none).await?; // delete
    expect(&api, 404, GET, "/enrollmentGroups/g-1", None, none).await?;
    let fleet = expect(
        &api,
        200,
        PUT,
        "/enrollmentGroups/fleet",
        Some(group("fleet")),
        none,
    )
    .await?; // create
    let group_key = fleet["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_owned();

    // Devices: a registration and a re-registration; a refused device counts nothing.
    register(&system, &group_key, "d-1").await?;
    register(&system, &group_key, "d-1").await?;
    let wrong_key = dps_attestation::keys::generate_key();
    assert!(register(&system, &wrong_key, "d-2").await.is_err());

    // Registration records.
    let record = expect(&api, 200, GET, "/registrations/d-1", None, none).await?; // read
    expect(&api, 404, GET, "/registrations/nobody", None, none).await?;
    expect(&api, 200, POST, "/registrations/fleet/query", None, none).await?; // query
    expect(
        &api,
        412,
        DELETE,
        "/registrations/d-1",
        None,
        &[("If-Match", "stale")],
    )
    .await?;
    let record_etag = record["etag"].as_str().unwrap().to_owned();
    expect(
        &api,
        204,
        DELETE,
        "/registrations/d-1",
        None,
        &[("If-Match", &record_etag)],
    )
    .await?; // delete

    // Not billed: settings, unauthorised calls, the report itself.
    expect(
        &api,
        200,
        PUT,
        "/settings",
        Some(json!({"synchronousRegister": false})),
        none,
    )
    .await?;
    let stranger = Service::anonymous(&system)?;
    expect(&stranger, 401, GET, "/enrollments/m-1", None, none).await?;

    let expected: BTreeMap<String, u64> = [
        ("enrollmentCreate", 2),
        ("enrollmentUpdate", 1),
        ("enrollmentRead", 2),
        ("enrollmentQuery", 2),
        ("enrollmentDelete", 1),
        ("groupCreate", 2),
        ("groupUpdate", 1),
        ("groupRead", 1),
        ("groupQuery", 1),
        ("groupDelete", 1),
        ("registration", 1),
        ("reRegistration", 1),
        ("registrationStateRead", 1),
        ("registrationStateQuery", 1),
        ("registrationStateDelete", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let total: u64 = expected.values().sum();

    let report = expect(&api, 200, GET, "/operations/report", None, none).await?;
    assert_eq!(totals(&report), expected, "{report}");
    assert_eq!(report["total"], total);
    assert_eq!(report["idScope"], system.scope().as_str());
    let hourly: u64 = report["hourly"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["count"].as_u64().unwrap())
        .sum();
    assert_eq!(hourly, total, "hourly buckets add up");
    // The report itself was not billed.
    let again = expect(&api, 200, GET, "/operations/report", None, none).await?;
    assert_eq!(again["total"], total);
    // The operator reads the same through the tenant's name.
    let operator = Service::operator(&system)?;
    let by_operator = expect(
        &operator,
        200,
        GET,
        &format!("/tenants/{}/operations/report", system.tenant.name),
        None,
        none,
    )
    .await?;
    assert_eq!(totals(&by_operator), expected);
    // Explicit ranges.
    let past = expect(
        &api,
        200,
        GET,
        "/operations/report?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z",
        None,
        none,
    )
    .await?;
    assert_eq!(past["total"], 0);
    assert_eq!(
        past["from"], "2020-01-01T00:00:00.0000000Z",
        "Azure's time format"
    );
    // An offset sent without percent-encoding its `+` still parses.
    let unencoded = expect(
        &api,
        200,
        GET,
        "/operations/report?from=2020-01-01T00:00:00+00:00&to=2020-01-02T00:00:00+00:00",
        None,
        none,
    )
    .await?;
    assert_eq!(unencoded["to"], "2020-01-02T00:00:00.0000000Z");
    expect(
        &api,
        400,
        GET,
        "/operations/report?from=yesterday",
        None,
        none,
    )
    .await?;
    expect(
        &api,
        400,
        GET,
        "/operations/report?from=2020-01-02T00:00:00Z&to=2020-01-01T00:00:00Z",
        None,
        none,
    )
    .await?;

    // Restart on the same data: the same counts, and counting goes on.
    let system = system.restart().await?;
    let api = Service::owner(&system)?;
    let after = expect(&api, 200, GET, "/operations/report", None, none).await?;
    assert_eq!(totals(&after), expected, "after restart: {after}");
    expect(&api, 200, GET, "/enrollments/m-1", None, none).await?;
    let later = expect(&api, 200, GET, "/operations/report", None, none).await?;
    assert_eq!(later["totals"]["enrollmentRead"], 3);
    assert_eq!(later["total"], total + 1);
    system.stop().await;
    Ok(())
}
