//! Service-API authorization (spec §4.2): every route group refuses a missing
//! token, an expired one, one signed with another tenant's key, and a policy
//! without the route's right — each with 401 (401002) and no Retry-After —
//! and admits the right policy. Tenants sharing a host are told apart by
//! which policy key verifies.

use anyhow::Result;
use dps_attestation::keys::generate_key;
use dps_e2e::server::{SystemOptions, TestSystem};
use reqwest::Method;
use serde_json::{json, Value};

use crate::service_client::{token, Reply, Service, OWNER};

/// One representative request per route group, and the right it needs.
fn routes() -> Vec<(&'static str, Method, &'static str, Option<Value>)> {
    vec![
        ("EnrollmentRead", Method::GET, "/enrollments/known", None),
        (
            "EnrollmentRead",
            Method::POST,
            "/enrollments/query",
            Some(json!({"query": "*"})),
        ),
        (
            "EnrollmentRead",
            Method::POST,
            "/enrollmentGroups/known-group/attestationmechanism",
            None,
        ),
        (
            "EnrollmentWrite",
            Method::PUT,
            "/enrollments/written",
            Some(json!({"registrationId": "written", "attestation": {"type": "symmetricKey"}})),
        ),
        (
            "EnrollmentWrite",
            Method::POST,
            "/enrollmentGroups",
            Some(json!({"mode": "delete", "enrollmentGroups": []})),
        ),
        (
            "RegistrationStatusRead",
            Method::POST,
            "/registrations/known-group/query",
            None,
        ),
        (
            "RegistrationStatusWrite",
            Method::DELETE,
            "/registrations/nobody",
            None,
        ),
        ("ServiceConfig", Method::GET, "/linkedHubs", None),
        ("ServiceConfig", Method::GET, "/settings", None),
        ("ServiceConfig", Method::GET, "/operations/report", None),
    ]
}

fn assert_refused(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {:?}", reply.body);
    assert_eq!(reply.error_code(), Some(401002), "{what}");
    assert!(
        reply.header("retry-after").is_none(),
        "{what}: Retry-After on a 401"
    );
    assert!(
        reply
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/json"),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_group_checks_token_tenant_expiry_and_right() -> Result<()> {
    // Hundreds of deliberately refused tokens from one address: the
    // failed-authentication budget per address is not what this tests.
    let system = TestSystem::start(SystemOptions {
        configure: &|config| config.throttling.failures_per_address_per_second = 0,
        ..SystemOptions::default()
    })
    .await?;
    let owner = Service::owner(&system)?;
    let host = system.service_host.clone();
    owner
        .put(
            "/enrollments/known",
            &json!({"registrationId": "known", "attestation": {"type": "symmetricKey"}}),
        )
        .await?;
    owner
        .put(
            "/enrollmentGroups/known-group",
            &json!({"enrollmentGroupId": "known-group", "attestation": {"type": "symmetricKey"}}),
        )
        .await?;

    // One policy per right, created through the API.
    let mut keys = Vec::new();
    for right in [
        "EnrollmentRead",
        "EnrollmentWrite",
        "RegistrationStatusRead",
        "RegistrationStatusWrite",
        "ServiceConfig",
    ] {
        let name = format!("only-{}", right.to_ascii_lowercase());
        let reply = owner
            .put(
                &format!("/accessPolicies/{name}"),
                &json!({"rights": [right]}),
            )
            .await?;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        keys.push((
            right,
            name,
            reply.body["primaryKey"].as_str().unwrap().to_owned(),
        ));
    }
    // Another tenant, created by the operator, on another host.
    let operator = Service::operator(&system)?;
    let other = operator
        .put(
            "/tenants/other-tenant",
            &json!({"serviceHostName": "other.example"}),
        )
        .await?;
    assert_eq!(other.status, 200, "{:?}", other.body);
    let other_cs = other.body["ownerConnectionString"].as_str().unwrap();
    let other_key = other_cs
        .split("SharedAccessKey=")
        .nth(1)
        .unwrap()
        .to_owned();

    let anonymous = Service::anonymous(&system)?;
    let owner_key = system
        .tenant
        .access_policy(OWNER)
        .unwrap()
        .primary_key
        .clone();
    let expired = anonymous
        .clone()
        .with_token(token(&host, OWNER, &owner_key, -3600));
    let foreign = anonymous
        .clone()
        .with_token(token(&host, OWNER, &other_key, 3600));
    let unknown_policy = anonymous
        .clone()
        .with_token(token(&host, "nobody", &owner_key, 3600));
    let garbage = anonymous
        .clone()
        .with_token("SharedAccessSignature sr=x".to_owned());

    for (right, method, path, body) in routes() {
        let send = |client: &Service| {
            let (method, body) = (method.clone(), body.clone());
            let client = client.clone();
            async move { client.send(method, path, body.as_ref(), &[]).await }
        };
        assert_refused(&send(&anonymous).await?, &format!("{path} without a token"));
        assert_refused(
            &send(&expired).await?,
            &format!("{path} with an expired token"),
        );
        assert_refused(
            &send(&foreign).await?,
            &format!("{path} with another tenant's key"),
        );
        assert_refused(
            &send(&unknown_policy).await?,
            &format!("{path} with an unknown policy"),
        );
        assert_refused(
            &send(&garbage).await?,
            &format!("{path} with a malformed token"),
        );
        for (policy_right, name, key) in &keys {
            let client = anonymous.clone().with_token(token(&host, name, key, 3600));
            let reply = send(&client).await?;
            if *policy_right == right {
                assert_ne!(reply.status, 401, "{path} with {name}: {:?}", reply.body);
                assert!(
                    reply.status < 300 || reply.status == 404,
                    "{path} with {name}: {:?}",
                    reply.body
                );
            } else {
                assert_refused(&reply, &format!("{path} with {name}"));
            }
        }
        // The secondary key works as well as the primary.
        let secondary = &system.tenant.access_policy(OWNER).unwrap().secondary_key;
        let client = anonymous
            .clone()
            .with_token(token(&host, OWNER, secondary, 3600));
        assert_ne!(
            send(&client).await?.status,
            401,
            "{path} with the secondary key"
        );
    }

    // Tenant management is for the operator only.
    for client in [&owner, &anonymous, &expired] {
        assert_refused(&client.get("/tenants").await?, "GET /tenants as a tenant");
    }
    let wrong_operator =
        anonymous
            .clone()
            .with_token(token(&host, "operator", &generate_key(), 3600));
    assert_refused(
        &wrong_operator.get("/tenants").await?,
        "operator token, wrong key",
    );
    assert_eq!(operator.get("/tenants").await?.status, 200);
    // The operator key is not a tenant policy.
    assert_refused(
        &operator.get("/enrollments/known").await?,
        "operator on tenant routes",
    );
    // The OpenAPI document needs no token.
    let doc = anonymous.get("/openapi.json").await?;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_sharing_a_host_are_told_apart_by_their_keys() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let operator = Service::operator(&system)?;
    let host = system.service_host.clone();
    // A second tenant on the same host (with a port in the token, as Node sends it).
    let second = operator
        .put(
            "/tenants/neighbour",
            &json!({"serviceHostName": format!("{host}")}),
        )
        .await?;
    assert_eq!(second.status, 200, "{:?}", second.body);
    let second_key = second.body["ownerConnectionString"]
        .as_str()
        .unwrap()
        .split("SharedAccessKey=")
        .nth(1)
        .unwrap()
        .to_owned();
    let first = Service::owner(&system)?;
    let neighbour = Service::anonymous(&system)?.with_token(token(
        &format!("{host}:443"),
        OWNER,
        &second_key,
        3600,
    ));

    let body = |id: &str| json!({"registrationId": id, "attestation": {"type": "symmetricKey"}});
    assert_eq!(
        first.put("/enrollments/mine", &body("mine")).await?.status,
        200
    );
    assert_eq!(
        neighbour
            .put("/enrollments/theirs", &body("theirs"))
            .await?
            .status,
        200
    );
    // Each sees only its own enrollments.
    assert_eq!(first.get("/enrollments/theirs").await?.status, 404);
    assert_eq!(neighbour.get("/enrollments/mine").await?.status, 404);
    let mine = first.post("/enrollments/query", None).await?;
    assert_eq!(mine.body.as_array().unwrap().len(), 1);
    assert_eq!(mine.body[0]["registrationId"], "mine");

    // A regenerated key stops working at once; the new one works.
    let regenerated = first
        .post(
            &format!("/accessPolicies/{OWNER}/regenerateKey"),
            Some(&json!({"keyType": "primary"})),
        )
        .await?;
    assert_eq!(regenerated.status, 200, "{:?}", regenerated.body);
    assert_refused(&first.get("/enrollments/mine").await?, "old primary key");
    let new_key = regenerated.body["primaryKey"].as_str().unwrap();
    let renewed = Service::anonymous(&system)?.with_token(token(&host, OWNER, new_key, 3600));
    assert_eq!(renewed.get("/enrollments/mine").await?.status, 200);
    system.stop().await;
    Ok(())
}
