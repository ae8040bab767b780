//! Tenant certificate authorities and credential policies through the
//! service API over real HTTPS (issue #17 foundation): generate and import,
//! keys never shown, policies referencing CAs, `credentialPolicyName` on
//! enrollments and groups checked against existing policies.

use anyhow::Result;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use dps_e2e::certs;
use dps_e2e::server::{SystemOptions, TestSystem};
use reqwest::Method;
use serde_json::{json, Value};

use crate::service_client::{Reply, Service};

/// Every secret form of a PEM key: the PEM, its base64 body, and the same
/// body re-encoded from the DER (in case an answer re-wraps it).
fn secret_forms(key_pem: &str) -> Vec<String> {
    let body: String = key_pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(&body).expect("PEM body is base64");
    vec![key_pem.trim().to_owned(), body, STANDARD.encode(der)]
}

fn assert_no_private_key(reply: &Reply, secrets: &[String]) {
    let text = reply.body.to_string();
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a private key in an answer: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorities_are_generated_or_imported_and_never_show_their_keys() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let api = Service::owner(&system)?;

    // dps generates one.
    let generated = api
        .put(
            "/certificateAuthorities/fleet-ca",
            &json!({"mode": "generate", "commonName": "Fleet devices CA"}),
        )
        .await?;
    assert_eq!(generated.status, 200, "{:?}", generated.body);
    assert_eq!(generated.body["name"], "fleet-ca");
    let chain = generated.body["certificateChain"].as_str().unwrap();
    assert!(chain.starts_with("-----BEGIN CERTIFICATE-----"), "{chain}");
    assert!(generated.body.get("privateKey").is_none());
    assert!(generated.body.get("sealedPrivateKey").is_none());
    let etag = generated.header("etag").unwrap().to_owned();
    assert_no_private_key(&generated, &[]);

    // The operator imports an intermediate under its own root.
    let root = certs::self_signed("Operator root", true);
    let intermediate = certs::signed_by("Operator issuing CA", true, &root);
    let secrets = secret_forms(&intermediate.key_pem());
    let import_body = json!({
        "mode": "import",
        "certificateChain": format!("{}{}", intermediate.pem(), root.pem()),
        "privateKey": intermediate.key_pem(),
    });
    let imported = api
        .put("/certificateAuthorities/operator-ca", &import_body)
        .await?;
    assert_eq!(imported.status, 200, "{:?}", imported.body);
    assert_no_private_key(&imported, &secrets);

    // dps makes an intermediate under the operator's root (root key used once).
    let offline_root = certs::self_signed("Offline root", true);
    let root_secrets = secret_forms(&offline_root.key_pem());
    let under_root = api
        .put(
            "/certificateAuthorities/under-root",
            &json!({"mode": "intermediate", "commonName": "Fleet issuing CA",
                    "rootCertificateChain": offline_root.pem(),
                    "rootPrivateKey": offline_root.key_pem()}),
        )
        .await?;
    assert_eq!(under_root.status, 200, "{:?}", under_root.body);
    let chain = under_root.body["certificateChain"].as_str().unwrap();
    assert!(chain.ends_with(&offline_root.pem()), "{chain}");
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    assert_no_private_key(&under_root, &root_secrets);

    // A name is taken once; a key that is not the CA's is refused.
    let again = api
        .put("/certificateAuthorities/operator-ca", &import_body)
        .await?;
    assert_eq!(again.status, 409, "{:?}", again.body);
    let other = certs::self_signed("Someone else", true);
    let mismatched = api
        .put(
            "/certificateAuthorities/mismatch",
            &json!({"mode": "import", "certificateChain": root.pem(), "privateKey": other.key_pem()}),
        )
        .await?;
    assert_eq!(mismatched.status, 400, "{:?}", mismatched.body);
    assert!(
        mismatched.body["message"]
            .as_str()
            .unwrap()
            .contains("does not belong"),
        "{:?}",
        mismatched.body
    );
    assert_no_private_key(&mismatched, &secret_forms(&other.key_pem()));
    let bad_name = api
        .put(
            "/certificateAuthorities/-bad-",
            &json!({"mode": "generate"}),
        )
        .await?;
    assert_eq!(bad_name.status, 400);

    // Listed and read back without keys.
    let list = api.get("/certificateAuthorities").await?;
    assert_eq!(list.status, 200);
    let names: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|ca| ca["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fleet-ca", "operator-ca", "under-root"]);
    assert_no_private_key(&list, &secrets);
    let one = api.get("/certificateAuthorities/operator-ca").await?;
    assert_eq!(one.status, 200);
    assert!(one.body["certificateChain"]
        .as_str()
        .unwrap()
        .contains(&intermediate.pem()));
    assert_no_private_key(&one, &secrets);
    assert_eq!(api.get("/certificateAuthorities/nope").await?.status, 404);

    // Deleted under its etag.
    let stale = api
        .send(
            Method::DELETE,
            "/certificateAuthorities/fleet-ca",
            None,
            &[("If-Match", "stale")],
        )
        .await?;
    assert_eq!(stale.status, 412);
    let deleted = api
        .send(
            Method::DELETE,
            "/certificateAuthorities/fleet-ca",
            None,
            &[("If-Match", &etag)],
        )
        .await?;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        api.get("/certificateAuthorities/fleet-ca").await?.status,
        404
    );
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_name_existing_authorities_and_enrollments_existing_policies() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let api = Service::owner(&system)?;

    let orphan = api
        .put(
            "/credentialPolicies/devices",
            &json!({"certificateAuthorityName": "ca1"}),
        )
        .await?;
    assert_eq!(orphan.status, 400, "{:?}", orphan.body);
    assert!(orphan.body["message"].as_str().unwrap().contains("ca1"));

    let ca = api
        .put("/certificateAuthorities/ca1", &json!({"mode": "generate"}))
        .await?;
    assert_eq!(ca.status, 200, "{:?}", ca.body);
    let policy = api
        .put(
            "/credentialPolicies/devices",
            &json!({"certificateAuthorityName": "ca1", "validityPeriodInDays": 90,
                    "acceptedKeyTypes": ["ecdsaP256"]}),
        )
        .await?;
    assert_eq!(policy.status, 200, "{:?}", policy.body);
    assert_eq!(policy.body["name"], "devices");
    assert_eq!(policy.body["validityPeriodInDays"], 90);
    assert_eq!(policy.body["subjectName"], "commonNameIsDeviceId");
    assert_eq!(
        policy.body["extendedKeyUsages"],
        json!(["clientAuthentication"])
    );
    let policy_etag = policy.header("etag").unwrap().to_owned();
    let invalid = api
        .put(
            "/credentialPolicies/short",
            &json!({"certificateAuthorityName": "ca1", "validityPeriodInDays": 0}),
        )
        .await?;
    assert_eq!(invalid.status, 400);
    assert!(invalid.body["message"]
        .as_str()
        .unwrap()
        .contains("validityPeriodInDays"));
    let renamed = api
        .put(
            "/credentialPolicies/devices",
            &json!({"name": "other", "certificateAuthorityName": "ca1"}),
        )
        .await?;
    assert_eq!(renamed.status, 400);
    let stale = api
        .send(
            Method::PUT,
            "/credentialPolicies/devices",
            Some(&json!({"certificateAuthorityName": "ca1"})),
            &[("If-Match", "stale")],
        )
        .await?;
    assert_eq!(stale.status, 412);
    let listed = api.get("/credentialPolicies").await?;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert_eq!(
        api.get("/credentialPolicies/devices").await?.header("etag"),
        Some(policy_etag.as_str())
    );

    // Enrollments and groups may name only an existing policy.
    let enrollment = |policy: &str| -> Value {
        json!({"registrationId": "dev-1", "attestation": {"type": "symmetricKey"},
               "credentialPolicyName": policy})
    };
    let unknown = api
        .put("/enrollments/dev-1", &enrollment("missing"))
        .await?;
    assert_eq!(unknown.status, 400, "{:?}", unknown.body);
    let message = unknown.body["message"].as_str().unwrap();
    assert!(
        message.contains("credentialPolicyName") && message.contains("missing"),
        "{message}"
    );
    let known = api
        .put("/enrollments/dev-1", &enrollment("devices"))
        .await?;
    assert_eq!(known.status, 200, "{:?}", known.body);
    assert_eq!(known.body["credentialPolicyName"], "devices");
    assert_eq!(
        api.get("/enrollments/dev-1").await?.body["credentialPolicyName"],
        "devices"
    );
    let group = |policy: &str| -> Value {
        json!({"enrollmentGroupId": "fleet", "attestation": {"type": "symmetricKey"},
               "credentialPolicyName": policy})
    };
    assert_eq!(
        api.put("/enrollmentGroups/fleet", &group("missing"))
            .await?
            .status,
        400
    );
    assert_eq!(
        api.put("/enrollmentGroups/fleet", &group("devices"))
            .await?
            .status,
        200
    );

    // A CA named by a policy stays until the policy goes.
    let in_use = api.delete("/certificateAuthorities/ca1").await?;
    assert_eq!(in_use.status, 409, "{:?}", in_use.body);
    assert!(in_use.body["message"].as_str().unwrap().contains("devices"));
    // …and a policy stays while an enrollment or a group names it.
    let named = api.delete("/credentialPolicies/devices").await?;
    assert_eq!(named.status, 409, "{:?}", named.body);
    assert_eq!(api.delete("/enrollments/dev-1").await?.status, 204);
    let still_named = api.delete("/credentialPolicies/devices").await?;
    assert_eq!(still_named.status, 409, "{:?}", still_named.body);
    assert_eq!(api.delete("/enrollmentGroups/fleet").await?.status, 204);
    assert_eq!(api.delete("/credentialPolicies/devices").await?.status, 204);
    assert_eq!(api.delete("/certificateAuthorities/ca1").await?.status, 204);
    system.stop().await;
    Ok(())
}
