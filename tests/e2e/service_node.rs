//! The official Node.js service SDK (`azure-iot-provisioning-service`)
//! against our service endpoint: enrollments of every attestation type,
//! groups, etags, bulk operations, paged queries and registration records.
//! The SDK's callback forms are used throughout (official-sdks.md §7 lists
//! the promise-form bugs).

use std::time::Duration;

use anyhow::Result;
use dps_client::{Credential, ProvisioningClient};
use dps_e2e::node::{run, NodeScript};
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_model::IndividualEnrollment;
use serde_json::{json, Value};

use crate::service_client::{endorsement_key, Service, OWNER};
use dps_e2e::certs;

/// Shared prelude: the client from `CS`, and `call(f)` turning a callback
/// API into a promise of `{ok, status, result}` or `{ok: false, name, status, message}`.
const PRELUDE: &str = r#"
const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');
const client = ProvisioningServiceClient.fromConnectionString(process.env.CS);
const call = (f) => new Promise((resolve) => {
  try {
    f((err, result, response) => resolve(err
      ? { ok: false, name: err.constructor.name, status: err.response ? err.response.statusCode : undefined, message: String(err.message) }
      : { ok: true, status: response ? response.statusCode : undefined, result }));
  } catch (e) { resolve({ ok: false, thrown: String(e) }); }
});
const done = (out) => { console.log(JSON.stringify(out)); process.exit(0); };
"#;

fn connection_string(system: &TestSystem) -> String {
    let key = &system.tenant.access_policy(OWNER).unwrap().primary_key;
    format!(
        "HostName={};SharedAccessKeyName={OWNER};SharedAccessKey={key}",
        system.service_host
    )
}

fn node(system: &TestSystem, body: &str, extra_env: &[(&str, String)]) -> Result<Value> {
    let mut env = system.node_env();
    env.push(("CS".to_owned(), connection_string(system)));
    env.extend(extra_env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let source = format!("{PRELUDE}\n{body}");
    let output = run(&NodeScript {
        source: &source,
        env,
        timeout: Duration::from_secs(60),
    })?;
    Ok(output.result)
}

fn assert_ok(step: &Value, what: &str) {
    assert_eq!(step["ok"], true, "{what}: {step}");
}

const ENROLLMENTS: &str = r#"
(async () => {
  const out = {};
  out.symCreate = await call(cb => client.createOrUpdateIndividualEnrollment({
    registrationId: 'node-sym', deviceId: 'node-sym-device', attestation: { type: 'symmetricKey' },
    provisioningStatus: 'enabled', allocationPolicy: 'hashed', capabilities: { iotEdge: false },
    reprovisionPolicy: { updateHubAssignment: true, migrateDeviceData: false },
    initialTwin: { tags: { site: 'x' }, properties: { desired: { interval: 30, nested: { a: 'b' } } } } }, cb));
  out.symGet = await call(cb => client.getIndividualEnrollment('node-sym', cb));
  const fetched = out.symGet.result;
  // Update the object GET returned: Node sends its etag as If-Match.
  const edited = Object.assign({}, fetched, { provisioningStatus: 'disabled' });
  out.symUpdate = await call(cb => client.createOrUpdateIndividualEnrollment(edited, cb));
  // The same object again: its etag is stale now.
  out.symStale = await call(cb => client.createOrUpdateIndividualEnrollment(edited, cb));
  out.symMechanism = await call(cb => client.getIndividualEnrollmentAttestationMechanism('node-sym', cb));

  out.x509Create = await call(cb => client.createOrUpdateIndividualEnrollment({
    registrationId: 'node-x509', attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: process.env.CERT_PEM } } } } }, cb));
  out.x509Get = await call(cb => client.getIndividualEnrollment('node-x509', cb));
  const x509Edited = Object.assign({}, out.x509Get.result, { provisioningStatus: 'disabled' });
  out.x509Update = await call(cb => client.createOrUpdateIndividualEnrollment(x509Edited, cb));

  out.tpmCreate = await call(cb => client.createOrUpdateIndividualEnrollment({
    registrationId: 'node-tpm', attestation: { type: 'tpm', tpm: { endorsementKey: process.env.EK } },
    initialTwinState: { desiredProperties: { legacy: true } } }, cb));
  out.tpmGet = await call(cb => client.getIndividualEnrollment('node-tpm', cb));

  out.groupCreate = await call(cb => client.createOrUpdateEnrollmentGroup({
    enrollmentGroupId: 'node-group', attestation: { type: 'symmetricKey' } }, cb));
  out.groupGet = await call(cb => client.getEnrollmentGroup('node-group', cb));
  out.groupMechanism = await call(cb => client.getEnrollmentGroupAttestationMechanism('node-group', cb));
  out.groupUpdate = await call(cb => client.createOrUpdateEnrollmentGroup(
    Object.assign({}, out.groupGet.result, { provisioningStatus: 'disabled' }), cb));
  out.x509Group = await call(cb => client.createOrUpdateEnrollmentGroup({
    enrollmentGroupId: 'node-x509-group', attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: process.env.CA_PEM } } } } }, cb));

  out.deleteStale = await call(cb => client.deleteIndividualEnrollment(fetched, cb));
  out.deleteSym = await call(cb => client.deleteIndividualEnrollment(out.symUpdate.result, cb));
  out.getDeleted = await call(cb => client.getIndividualEnrollment('node-sym', cb));
  out.deleteTpm = await call(cb => client.deleteIndividualEnrollment('node-tpm', cb));
  out.deleteGroup = await call(cb => client.deleteEnrollmentGroup('node-group', cb));
  out.deleteMissing = await call(cb => client.deleteEnrollmentGroup('node-group', cb));
  done(out);
})();
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_service_sdk_manages_enrollments_and_groups() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let device = certs::self_signed("node-x509", false);
    let ca = certs::self_signed("node-group-ca", true);
    let out = tokio::task::block_in_place(|| {
        node(
            &system,
            ENROLLMENTS,
            &[
                ("CERT_PEM", device.pem()),
                ("CA_PEM", ca.pem()),
                ("EK", endorsement_key("node-tpm")),
            ],
        )
    })?;

    // Symmetric key: generated keys answered by PUT, hidden by GET.
    assert_ok(&out["symCreate"], "create");
    assert_eq!(out["symCreate"]["status"], 200);
    let keys = &out["symCreate"]["result"]["attestation"]["symmetricKey"];
    assert_eq!(keys["primaryKey"].as_str().unwrap().len(), 88);
    assert_ok(&out["symGet"], "get");
    let got = &out["symGet"]["result"];
    assert!(got["attestation"]["symmetricKey"]["primaryKey"].is_null());
    assert_eq!(got["deviceId"], "node-sym-device");
    assert_eq!(
        got["initialTwin"]["properties"]["desired"]["nested"]["a"],
        "b"
    );
    assert_eq!(got["reprovisionPolicy"]["migrateDeviceData"], false);
    // Update with the etag, then the same etag again: InvalidEtagError (412).
    assert_ok(&out["symUpdate"], "update with etag");
    assert_eq!(out["symUpdate"]["result"]["provisioningStatus"], "disabled");
    assert_eq!(
        out["symUpdate"]["result"]["attestation"]["symmetricKey"],
        *keys
    );
    assert_ne!(out["symUpdate"]["result"]["etag"], got["etag"]);
    assert_eq!(out["symStale"]["ok"], false);
    assert_eq!(
        out["symStale"]["name"], "InvalidEtagError",
        "{}",
        out["symStale"]
    );
    assert_eq!(out["symStale"]["status"], 412);
    assert_ok(&out["symMechanism"], "attestation mechanism");
    assert_eq!(out["symMechanism"]["result"]["symmetricKey"], *keys);

    // X.509: info computed, certificate kept through the SDK's round trip.
    assert_ok(&out["x509Create"], "x509 create");
    let info = &out["x509Get"]["result"]["attestation"]["x509"]["clientCertificates"]["primary"];
    assert_eq!(info["info"]["subjectName"], "CN=node-x509");
    assert!(info["certificate"].is_null());
    assert_ok(&out["x509Update"], "x509 update from GET");
    let stored = system
        .server
        .store()
        .enrollment(system.scope(), &"node-x509".parse()?)
        .await?
        .expect("stored");
    let primary = stored
        .attestation
        .x509
        .unwrap()
        .client_certificates
        .unwrap()
        .primary
        .unwrap();
    assert_eq!(primary.certificate.as_deref(), Some(device.pem().as_str()));

    // TPM, with the legacy initialTwinState shape.
    assert_ok(&out["tpmCreate"], "tpm create");
    assert_eq!(
        out["tpmGet"]["result"]["attestation"]["tpm"]["endorsementKey"],
        endorsement_key("node-tpm")
    );
    assert_eq!(
        out["tpmGet"]["result"]["initialTwin"]["properties"]["desired"]["legacy"],
        true
    );

    // Groups.
    assert_ok(&out["groupCreate"], "group create");
    let group_keys = &out["groupCreate"]["result"]["attestation"]["symmetricKey"];
    assert!(out["groupGet"]["result"]["attestation"]["symmetricKey"]["primaryKey"].is_null());
    assert_eq!(out["groupMechanism"]["result"]["symmetricKey"], *group_keys);
    assert_ok(&out["groupUpdate"], "group update");
    assert_eq!(
        out["groupUpdate"]["result"]["attestation"]["symmetricKey"],
        *group_keys
    );
    assert_ok(&out["x509Group"], "x509 group");
    assert_eq!(
        out["x509Group"]["result"]["attestation"]["x509"]["signingCertificates"]["primary"]["info"]
            ["subjectName"],
        "CN=node-group-ca"
    );

    // Deletes: stale etag refused, current etag and plain id accepted, then 404.
    assert_eq!(
        out["deleteStale"]["name"], "InvalidEtagError",
        "{}",
        out["deleteStale"]
    );
    assert_ok(&out["deleteSym"], "delete with etag");
    assert_eq!(out["getDeleted"]["ok"], false);
    assert_eq!(out["getDeleted"]["status"], 404);
    assert_ok(&out["deleteTpm"], "delete by id");
    assert_ok(&out["deleteGroup"], "delete group");
    assert_eq!(out["deleteMissing"]["status"], 404);
    system.stop().await;
    Ok(())
}

const BULK: &str = r#"
(async () => {
  const sym = (id) => ({ registrationId: id, attestation: { type: 'symmetricKey' } });
  const out = {};
  out.single = await call(cb => client.createOrUpdateIndividualEnrollment(sym('bulk-taken'), cb));
  out.bulk = await call(cb => client.runBulkEnrollmentOperation(
    { mode: 'create', enrollments: [sym('bulk-1'), sym('bulk-taken'), sym('bulk-2')] }, cb));
  out.remove = await call(cb => client.runBulkEnrollmentOperation(
    { mode: 'delete', enrollments: [sym('bulk-1'), sym('bulk-2')] }, cb));
  out.tooMany = await call(cb => client.runBulkEnrollmentOperation(
    { mode: 'update', enrollments: Array.from({ length: 11 }, (_, i) => sym('many-' + i)) }, cb));
  done(out);
})();
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_bulk_operation_reports_the_failing_item() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let out = tokio::task::block_in_place(|| node(&system, BULK, &[]))?;
    assert_ok(&out["single"], "single create");
    assert_ok(&out["bulk"], "bulk create");
    let result = &out["bulk"]["result"];
    assert_eq!(result["isSuccessful"], false);
    assert_eq!(result["errors"].as_array().unwrap().len(), 1, "{result}");
    assert_eq!(result["errors"][0]["registrationId"], "bulk-taken");
    assert_eq!(result["errors"][0]["errorCode"], 409201);
    assert_ok(&out["remove"], "bulk delete");
    assert_eq!(out["remove"]["result"]["isSuccessful"], true);
    assert_eq!(
        out["tooMany"]["name"], "ArgumentError",
        "{}",
        out["tooMany"]
    );
    let api = Service::owner(&system)?;
    assert_eq!(api.get("/enrollments/bulk-1").await?.status, 404);
    assert_eq!(api.get("/enrollments/bulk-taken").await?.status, 200);
    system.stop().await;
    Ok(())
}

const QUERY: &str = r#"
const query = client.createIndividualEnrollmentQuery({ query: 'SELECT * FROM enrollments' }, 10);
const ids = [];
let pages = 0;
const types = new Set();
const next = () => query.next((err, result, response) => {
  if (err) return done({ ok: false, message: String(err.message), pages });
  pages += 1;
  types.add(response.headers['x-ms-item-type']);
  for (const e of result) {
    ids.push(e.registrationId);
    if (e.attestation.symmetricKey && e.attestation.symmetricKey.primaryKey) return done({ ok: false, message: 'key leaked' });
  }
  if (query.hasMoreResults) next(); else done({ ok: true, ids, pages, types: Array.from(types) });
});
next();
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_query_pages_through_250_enrollments() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let mut expected = Vec::new();
    let mut enrollments = Vec::new();
    for i in 0..250 {
        let id = format!("q-{i:04}");
        enrollments.push(IndividualEnrollment::from_json(
            json!({"registrationId": id, "attestation": {"type": "symmetricKey",
                "symmetricKey": {"primaryKey": dps_attestation::keys::generate_key(),
                                 "secondaryKey": dps_attestation::keys::generate_key()}}})
            .to_string()
            .as_bytes(),
        )?);
        expected.push(id);
    }
    system
        .server
        .store()
        .import_enrollments(system.scope(), enrollments)
        .await?;
    let out = tokio::task::block_in_place(|| node(&system, QUERY, &[]))?;
    assert_eq!(out["ok"], true, "{out}");
    let ids: Vec<String> = serde_json::from_value(out["ids"].clone())?;
    assert_eq!(ids, expected, "every enrollment once, in order");
    assert_eq!(out["pages"], 25);
    assert_eq!(out["types"], json!(["Enrollment"]));
    system.stop().await;
    Ok(())
}

const REGISTRATIONS: &str = r#"
(async () => {
  const out = {};
  out.get = await call(cb => client.getDeviceRegistrationState('reg-dev-1', cb));
  const query = client.createEnrollmentGroupDeviceRegistrationStateQuery({ query: '*' }, 'reg-group', 2);
  const ids = [];
  let pages = 0;
  await new Promise((resolve) => {
    const next = () => query.next((err, result, response) => {
      if (err) { out.queryError = String(err.message); return resolve(); }
      pages += 1;
      out.itemType = response.headers['x-ms-item-type'];
      result.forEach(r => ids.push(r.registrationId));
      if (query.hasMoreResults) next(); else resolve();
    });
    next();
  });
  out.query = { ids, pages };
  out.deleteStale = await call(cb => client.deleteDeviceRegistrationState('reg-dev-1', 'stale-etag', cb));
  out.delete = await call(cb => client.deleteDeviceRegistrationState(out.get.result, cb));
  out.getDeleted = await call(cb => client.getDeviceRegistrationState('reg-dev-1', cb));
  done(out);
})();
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_reads_and_deletes_registration_records() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let api = Service::owner(&system)?;
    let group = api
        .put(
            "/enrollmentGroups/reg-group",
            &json!({"enrollmentGroupId": "reg-group", "attestation": {"type": "symmetricKey"}}),
        )
        .await?;
    let group_key = group.body["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_owned();
    for id in ["reg-dev-1", "reg-dev-2", "reg-dev-3"] {
        ProvisioningClient::builder(system.device_host.clone(), system.scope().to_string(), id)
            .credential(Credential::group_key(&group_key, id)?)
            .trust_ca_pem(system.server.trust_pem().to_owned())
            .build()?
            .register()
            .await?;
    }
    let out = tokio::task::block_in_place(|| node(&system, REGISTRATIONS, &[]))?;
    assert_ok(&out["get"], "get registration state");
    assert_eq!(out["get"]["result"]["status"], "assigned");
    assert_eq!(out["get"]["result"]["assignedHub"], "hub-a.test");
    assert_eq!(out["get"]["result"]["deviceId"], "reg-dev-1");
    assert!(out.get("queryError").is_none(), "{out}");
    assert_eq!(
        out["query"]["ids"],
        json!(["reg-dev-1", "reg-dev-2", "reg-dev-3"])
    );
    assert_eq!(out["query"]["pages"], 2);
    assert_eq!(out["itemType"], "DeviceRegistration");
    assert_eq!(out["deleteStale"]["name"], "InvalidEtagError", "{out}");
    assert_ok(&out["delete"], "delete with etag");
    assert_eq!(out["getDeleted"]["status"], 404);
    system.stop().await;
    Ok(())
}
