//! A tenant's settings through the service API (linked hubs, defaults,
//! access policies, verified CA certificates) and operator tenant
//! management, each checked against what the registration path then does.

use anyhow::Result;
use dps_client::{Credential, ProvisioningClient};
use dps_e2e::server::{SystemOptions, TestSystem};
use reqwest::Method;
use serde_json::json;

use crate::service_client::{token, Service, OWNER};
use dps_e2e::certs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_hubs_and_defaults_change_where_devices_go() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        hubs: &["hub-a.test", "hub-b.test"],
        ..SystemOptions::default()
    })
    .await?;
    let api = Service::owner(&system)?;

    // Keys are hidden on GET; the tenant's etag is in the header.
    let hubs = api.get("/linkedHubs").await?;
    assert_eq!(hubs.status, 200);
    assert_eq!(hubs.body.as_array().unwrap().len(), 2);
    let shown = hubs.body[0]["connectionString"].as_str().unwrap();
    assert!(shown.starts_with("HostName=hub-a.test;"), "{shown}");
    assert!(!shown.contains("SharedAccessKey="), "{shown}");
    let etag = hubs.header("etag").unwrap().to_owned();

    // Unlink hub-a (stale etag first), then every device goes to hub-b.
    let stale = api
        .send(
            Method::DELETE,
            "/linkedHubs/hub-a.test",
            None,
            &[("If-Match", "nope")],
        )
        .await?;
    assert_eq!(stale.status, 412);
    let deleted = api
        .send(
            Method::DELETE,
            "/linkedHubs/HUB-A.test",
            None,
            &[("If-Match", &etag)],
        )
        .await?;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        api.get("/linkedHubs/hub-a.test").await?.error_code(),
        Some(404210)
    );

    let group = api
        .put(
            "/enrollmentGroups/fleet",
            &json!({"enrollmentGroupId": "fleet", "attestation": {"type": "symmetricKey"}}),
        )
        .await?;
    let group_key = group.body["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let register = |id: String| {
        let system = &system;
        let group_key = group_key.clone();
        async move {
            ProvisioningClient::builder(
                system.device_host.clone(),
                system.scope().to_string(),
                id.clone(),
            )
            .credential(Credential::group_key(&group_key, &id)?)
            .trust_ca_pem(system.server.trust_pem().to_owned())
            .build()?
            .register()
            .await
            .map_err(anyhow::Error::from)
        }
    };
    for i in 0..4 {
        let registration = register(format!("dev-{i}")).await?;
        assert_eq!(registration.assigned_hub, "hub-b.test");
    }

    // Link hub-a again from its connection string; a wrong host is refused.
    let cs = system.hubs.connection_string("hub-a.test").unwrap();
    let wrong = api
        .put("/linkedHubs/hub-c.test", &json!({"connectionString": cs}))
        .await?;
    assert_eq!(wrong.status, 400);
    assert!(wrong.body["message"]
        .as_str()
        .unwrap()
        .contains("connectionString"));
    let bad = api
        .put(
            "/linkedHubs/hub-a.test",
            &json!({"connectionString": "HostName=hub-a.test"}),
        )
        .await?;
    assert_eq!(bad.status, 400);
    let linked = api
        .put(
            "/linkedHubs/hub-a.test",
            &json!({"connectionString": cs, "allocationWeight": 5, "location": "westeurope"}),
        )
        .await?;
    assert_eq!(linked.status, 200, "{:?}", linked.body);
    assert_eq!(linked.body["allocationWeight"], 5);
    assert!(!linked.body["connectionString"]
        .as_str()
        .unwrap()
        .contains("SharedAccessKey="));
    // PUT back the redacted form: the stored key is kept.
    let mut echoed = linked.body.clone();
    echoed["allocationWeight"] = json!(1000);
    assert_eq!(
        api.put("/linkedHubs/hub-a.test", &echoed).await?.status,
        200
    );
    let stored = system.server.store().tenant(system.scope()).await?.unwrap();
    assert_eq!(
        stored.linked_hub("hub-a.test").unwrap().connection_string,
        cs
    );
    assert_eq!(
        stored.linked_hub("hub-a.test").unwrap().allocation_weight,
        1000
    );
    let weight = api
        .put(
            "/linkedHubs/hub-a.test",
            &json!({"connectionString": cs, "allocationWeight": 0}),
        )
        .await?;
    assert!(weight.body["message"]
        .as_str()
        .unwrap()
        .contains("allocationWeight"));

    // Defaults: custom is refused; static is not a default either way we care about.
    let settings = api.get("/settings").await?;
    assert_eq!(settings.body["defaultAllocationPolicy"], "hashed");
    let custom = api
        .put("/settings", &json!({"defaultAllocationPolicy": "custom"}))
        .await?;
    assert_eq!(custom.status, 400);
    assert!(custom.body["message"]
        .as_str()
        .unwrap()
        .contains("defaultAllocationPolicy"));
    let changed = api
        .put(
            "/settings",
            &json!({"defaultAllocationPolicy": "geoLatency", "synchronousRegister": true}),
        )
        .await?;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    assert_eq!(changed.body["synchronousRegister"], true);
    // Synchronous register takes effect at once: a new device gets 200 from the PUT.
    let registration = register("dev-sync".to_owned()).await?;
    assert!(["hub-a.test", "hub-b.test"].contains(&registration.assigned_hub.as_str()));
    let tenant = system.server.store().tenant(system.scope()).await?.unwrap();
    assert!(tenant.synchronous_register);
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_policies_hide_keys_and_keep_an_administrator() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let api = Service::owner(&system)?;
    let reader = api
        .put(
            "/accessPolicies/reader",
            &json!({"rights": "EnrollmentRead, RegistrationStatusRead"}),
        )
        .await?;
    assert_eq!(reader.status, 200, "{:?}", reader.body);
    assert_eq!(
        reader.body["rights"],
        json!(["EnrollmentRead", "RegistrationStatusRead"])
    );
    let key = reader.body["primaryKey"].as_str().unwrap().to_owned();
    let listed = api.get("/accessPolicies").await?;
    for policy in listed.body.as_array().unwrap() {
        assert!(policy.get("primaryKey").is_none(), "{policy}");
    }
    assert_eq!(listed.body.as_array().unwrap().len(), 2);
    // Replacing keeps the keys unless new ones are given.
    let replaced = api
        .put(
            "/accessPolicies/READER",
            &json!({"rights": ["EnrollmentRead"]}),
        )
        .await?;
    assert_eq!(replaced.body["primaryKey"], key);
    let bad = api
        .put(
            "/accessPolicies/reader",
            &json!({"rights": ["EnrollmentRead"], "primaryKey": "short"}),
        )
        .await?;
    assert!(bad.body["message"].as_str().unwrap().contains("primaryKey"));
    let unknown = api
        .put("/accessPolicies/x", &json!({"rights": ["Everything"]}))
        .await?;
    assert_eq!(unknown.status, 400);
    // The last ServiceConfig policy cannot go.
    let lockout = api.delete(&format!("/accessPolicies/{OWNER}")).await?;
    assert_eq!(lockout.status, 400, "{:?}", lockout.body);
    let demote = api
        .put(
            &format!("/accessPolicies/{OWNER}"),
            &json!({"rights": ["EnrollmentRead"]}),
        )
        .await?;
    assert_eq!(demote.status, 400);
    assert_eq!(api.delete("/accessPolicies/reader").await?.status, 204);
    let gone = Service::anonymous(&system)?
        .with_token(token(&system.service_host, "reader", &key, 3600))
        .get("/enrollments/x")
        .await?;
    assert_eq!(gone.status, 401);
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_certificates_are_verified_by_proof_of_possession() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let api = Service::owner(&system)?;
    let root = certs::self_signed("fleet-root", true);

    let uploaded = api
        .put(
            "/certificates/fleet-root",
            &json!({"certificate": root.pem()}),
        )
        .await?;
    assert_eq!(uploaded.status, 200, "{:?}", uploaded.body);
    assert_eq!(uploaded.body["isVerified"], false);
    assert_eq!(uploaded.body["info"]["subjectName"], "CN=fleet-root");
    let bad = api
        .put("/certificates/bad", &json!({"certificate": "nope"}))
        .await?;
    assert_eq!(bad.status, 400);

    // A group referencing the CA; its devices are refused until it is verified.
    let group = json!({"enrollmentGroupId": "ca-group", "attestation": {"type": "x509",
        "x509": {"caReferences": {"primary": "fleet-root"}}}});
    assert_eq!(
        api.put("/enrollmentGroups/ca-group", &group).await?.status,
        200
    );
    let device = certs::signed_by("ca-dev-1", false, &root);
    let register = || {
        ProvisioningClient::builder(
            system.device_host.clone(),
            system.scope().to_string(),
            "ca-dev-1",
        )
        .credential(Credential::X509 {
            chain_pem: format!("{}{}", device.pem(), root.pem()),
            key_pem: device.key_pem(),
        })
        .trust_ca_pem(system.server.trust_pem().to_owned())
        .build()
    };
    let refused = register()?.register().await;
    assert!(
        refused.is_err(),
        "an unverified CA admitted a device: {refused:?}"
    );

    // Verification: a code, a proof signed by the CA with CN = code.
    let verify_without_code = api
        .post(
            "/certificates/fleet-root/verify",
            Some(&json!({"certificate": root.pem()})),
        )
        .await?;
    assert_eq!(verify_without_code.status, 400);
    let code = api
        .post("/certificates/fleet-root/generateVerificationCode", None)
        .await?;
    assert_eq!(code.status, 200, "{:?}", code.body);
    let code_text = code.body["verificationCode"].as_str().unwrap().to_owned();
    let wrong_proof = certs::signed_by("not-the-code", false, &root);
    let refused = api
        .post(
            "/certificates/fleet-root/verify",
            Some(&json!({"certificate": wrong_proof.pem()})),
        )
        .await?;
    assert_eq!(refused.status, 400);
    let other_ca = certs::self_signed("other-root", true);
    let forged = certs::signed_by(&code_text, false, &other_ca);
    let refused = api
        .post(
            "/certificates/fleet-root/verify",
            Some(&json!({"certificate": forged.pem()})),
        )
        .await?;
    assert_eq!(refused.status, 400);
    let proof = certs::signed_by(&code_text, false, &root);
    let verified = api
        .post(
            "/certificates/fleet-root/verify",
            Some(&json!({"certificate": proof.pem()})),
        )
        .await?;
    assert_eq!(verified.status, 200, "{:?}", verified.body);
    assert_eq!(verified.body["isVerified"], true);

    let registration = register()?.register().await?;
    assert_eq!(registration.device_id, "ca-dev-1");

    let listed = api.get("/certificates").await?;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    let etag = listed.body[0]["etag"].as_str().unwrap().to_owned();
    let stale = api
        .send(
            Method::DELETE,
            "/certificates/fleet-root",
            None,
            &[("If-Match", "old")],
        )
        .await?;
    assert_eq!(stale.status, 412);
    let deleted = api
        .send(
            Method::DELETE,
            "/certificates/fleet-root",
            None,
            &[("If-Match", &etag)],
        )
        .await?;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        api.get("/certificates/fleet-root").await?.error_code(),
        Some(404211)
    );
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_creates_tenants_that_work_end_to_end() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let operator = Service::operator(&system)?;
    let hub_cs = system.hubs.connection_string("hub-a.test").unwrap();

    let created = operator
        .put(
            "/tenants/contoso",
            &json!({"serviceHostName": system.service_host, "linkedHubs": [{"connectionString": hub_cs}]}),
        )
        .await?;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let scope = created.body["idScope"].as_str().unwrap().to_owned();
    assert!(scope.starts_with("0ne"), "{scope}");
    let cs = created.body["ownerConnectionString"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(cs.starts_with(&format!(
        "HostName={};SharedAccessKeyName={OWNER};SharedAccessKey=",
        system.service_host
    )));
    assert!(created.body.get("challengeSecret").is_none());
    assert!(
        !created.body.to_string().contains(&hub_cs),
        "hub keys are hidden"
    );

    // The owner connection string works on the service API, for this tenant only.
    let key = cs.split("SharedAccessKey=").nth(1).unwrap();
    let owner =
        Service::anonymous(&system)?.with_token(token(&system.service_host, OWNER, key, 3600));

    // The operator can list the keys again later; a tenant's own owner cannot.
    let keys = operator
        .send(Method::POST, "/tenants/contoso/listKeys", None, &[])
        .await?;
    assert_eq!(keys.status, 200, "{:?}", keys.body);
    let listed_owner = &keys.body["value"][0];
    assert_eq!(listed_owner["keyName"], OWNER);
    assert_eq!(listed_owner["primaryKey"], key);
    assert_eq!(listed_owner["primaryConnectionString"], cs.as_str());
    assert!(listed_owner["secondaryKey"].is_string());
    let refused = owner
        .send(Method::POST, "/tenants/contoso/listKeys", None, &[])
        .await?;
    assert!(
        matches!(refused.status, 401 | 403),
        "a tenant credential must not reach operator routes: {}",
        refused.status
    );
    let enrollment = owner
        .put(
            "/enrollments/contoso-dev",
            &json!({"registrationId": "contoso-dev", "attestation": {"type": "symmetricKey"}}),
        )
        .await?;
    assert_eq!(enrollment.status, 200, "{:?}", enrollment.body);
    let device_key = enrollment.body["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap();
    let registration =
        ProvisioningClient::builder(system.device_host.clone(), scope.clone(), "contoso-dev")
            .credential(Credential::symmetric_key(device_key)?)
            .trust_ca_pem(system.server.trust_pem().to_owned())
            .build()?
            .register()
            .await?;
    assert_eq!(registration.assigned_hub, "hub-a.test");

    // Default host names, listing, replacing, refusals.
    let default_host = operator.put("/tenants/fabrikam", &json!({})).await?;
    assert_eq!(default_host.body["serviceHostName"], "fabrikam.localhost");
    let listed = operator.get("/tenants").await?;
    let names: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"contoso") && names.contains(&"fabrikam"),
        "{names:?}"
    );
    let replaced = operator
        .put(
            "/tenants/fabrikam",
            &json!({"defaultAllocationPolicy": "geoLatency"}),
        )
        .await?;
    assert_eq!(replaced.body["defaultAllocationPolicy"], "geoLatency");
    assert!(replaced.body.get("ownerConnectionString").is_none());
    assert_eq!(replaced.body["idScope"], default_host.body["idScope"]);
    assert_eq!(
        operator.put("/tenants/Bad_Name", &json!({})).await?.status,
        400
    );
    let custom = operator
        .put(
            "/tenants/x-tenant",
            &json!({"defaultAllocationPolicy": "custom"}),
        )
        .await?;
    assert_eq!(custom.status, 400);
    let twice = operator
        .put(
            "/tenants/x-tenant",
            &json!({"linkedHubs": [{"connectionString": hub_cs}, {"connectionString": hub_cs}]}),
        )
        .await?;
    assert_eq!(twice.status, 400, "{:?}", twice.body);
    assert!(
        twice.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("twice"),
        "{:?}",
        twice.body
    );

    // Deleting a tenant takes its enrollments and its credentials.
    let deleted = operator.delete("/tenants/contoso").await?;
    assert_eq!(deleted.status, 204);
    assert_eq!(owner.get("/enrollments/contoso-dev").await?.status, 401);
    assert_eq!(operator.get("/tenants/contoso").await?.status, 404);
    system.stop().await;
    Ok(())
}
