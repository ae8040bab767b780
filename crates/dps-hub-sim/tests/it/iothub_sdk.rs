//! The official Node `azure-iothub` Registry against the emulator, unpatched:
//! it always dials port 443 of the connection string's HostName, so the
//! emulator listens on its own loopback address at 443 (tests run as root).

use std::time::Duration;

use anyhow::Context as _;
use dps_hub_sim::{HubSim, HubSimConfig};
use serde_json::{json, Value};

use crate::node::{npm_packages, run_node_json};

/// Loopback address reserved for this test (see official-sdks.md §10).
const NODE_HUB_IP: &str = "127.0.0.20";
const PACKAGE: &str = "azure-iothub@1.16.6";
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
const THUMBPRINT: &str = "0123456789ABCDEF0123456789ABCDEF01234567";

const REGISTRY_SCRIPT: &str = r#"
'use strict';
const { Registry } = require('azure-iothub');
const [, , scenario, deviceId] = process.argv;
const registry = Registry.fromConnectionString(process.env.HUB_CONNECTION_STRING);
const plain = (value) => JSON.parse(JSON.stringify(value));
async function failure(promise) {
  try {
    await promise;
    return null;
  } catch (e) {
    return {
      name: e.constructor.name, status: e.response ? e.response.statusCode : null, message: e.message,
      body: typeof e.responseBody === 'string' && e.responseBody.startsWith('{') ? JSON.parse(e.responseBody) : null,
    };
  }
}

async function lifecycle() {
  const created = (await registry.create({ deviceId, status: 'enabled' })).responseBody;
  const duplicate = await failure(registry.create({ deviceId }));
  const fetched = (await registry.get(deviceId)).responseBody;
  const keys = fetched.authentication.symmetricKey;
  const updated = (await registry.update({
    deviceId,
    status: 'disabled',
    authentication: { symmetricKey: { primaryKey: keys.secondaryKey, secondaryKey: keys.primaryKey } },
  })).responseBody;
  const x509 = (await registry.create({
    deviceId: deviceId + '-x509',
    authentication: { x509Thumbprint: { primaryThumbprint: process.env.THUMBPRINT } },
  })).responseBody;
  const twin = (await registry.getTwin(deviceId)).responseBody;
  const firstEtag = twin.etag;
  await twin.update({ tags: { site: 'north' }, properties: { desired: { interval: 30, nested: { a: 1 } } } });
  const afterTwinUpdate = plain(twin);
  const staleEtag = await failure(registry.updateTwin(deviceId, { tags: { x: 1 } }, firstEtag));
  const patched = (await registry.updateTwin(deviceId, { properties: { desired: { nested: { a: null, b: 2 } } } }, '*')).responseBody;
  const list = (await registry.list()).responseBody.map((d) => d.deviceId).sort();
  const stats = (await registry.getRegistryStatistics()).responseBody;
  await registry.delete(deviceId + '-x509');
  const missing = await failure(registry.get(deviceId + '-x509'));
  const missingTwin = await failure(registry.getTwin(deviceId + '-x509'));
  return {
    created: plain(created), duplicate, fetched: plain(fetched), updated: plain(updated), x509: plain(x509),
    firstEtag, afterTwinUpdate, staleEtag, patched: plain(patched), list, stats, missing, missingTwin,
  };
}

async function wrongKey() {
  return { get: await failure(registry.get(deviceId)) };
}

// The bulk registry call (POST /devices): identity and initial twin in one
// request, per-device results, update and delete in bulk.
async function bulk() {
  const one = deviceId + '-1', two = deviceId + '-2', three = deviceId + '-3';
  const added = (await registry.addDevices([
    { deviceId: one, status: 'enabled', tags: { site: 'north' }, properties: { desired: { interval: 5 } } },
    { deviceId: two, authentication: { x509Thumbprint: { primaryThumbprint: process.env.THUMBPRINT } } },
  ])).responseBody;
  const twin = (await registry.getTwin(one)).responseBody;
  const second = (await registry.get(two)).responseBody;
  const partial = await failure(registry.addDevices([{ deviceId: one }, { deviceId: three }]));
  const updated = (await registry.updateDevices([{ deviceId: three, status: 'disabled' }], true)).responseBody;
  const third = (await registry.get(three)).responseBody;
  const removed = (await registry.removeDevices([{ deviceId: one }, { deviceId: two }], true)).responseBody;
  const tooMany = await failure(registry._bulkOperation ? new Promise((resolve, reject) => registry._bulkOperation(
    Array.from({ length: 101 }, (_, i) => ({ id: deviceId + '-x' + i, importMode: 'create' })),
    (err, res) => (err ? reject(err) : resolve(res)))) : Promise.resolve());
  const list = (await registry.list()).responseBody.map((d) => d.deviceId).sort();
  return {
    added: plain(added), twinTags: twin.tags, twinDesired: plain(twin.properties.desired), twinVersion: twin.version,
    secondAuth: plain(second.authentication), partial, updated: plain(updated), thirdStatus: third.status, removed: plain(removed), tooMany, list,
  };
}

const scenarios = { lifecycle, wrongKey, bulk };
scenarios[scenario]().then(
  (result) => { console.log(JSON.stringify(result)); process.exit(0); },
  (err) => { console.error(err && err.stack ? err.stack : err); process.exit(1); },
);
"#;

#[tokio::test]
async fn azure_iothub_registry_drives_the_emulator() -> anyhow::Result<()> {
    let packages = npm_packages(&[PACKAGE]).await?;
    let listen = format!("{NODE_HUB_IP}:443").parse()?;
    let sim = HubSim::start(HubSimConfig::new(listen, &[NODE_HUB_IP]))
        .await
        .context("binding 127.0.0.20:443 needs root, as the interop tests assume")?;
    let ca = tempfile::NamedTempFile::new()?;
    std::fs::write(ca.path(), sim.ca_pem().unwrap_or_default())?;
    let ca_path = ca.path().to_str().context("temp path is UTF-8")?;
    let cs = sim.connection_string(NODE_HUB_IP).context("hub exists")?;
    let env = [
        ("HUB_CONNECTION_STRING", cs.as_str()),
        ("NODE_EXTRA_CA_CERTS", ca_path),
        ("THUMBPRINT", THUMBPRINT),
    ];
    let out = run_node_json(
        &packages,
        REGISTRY_SCRIPT,
        &["lifecycle", "node-dev"],
        &env,
        SCRIPT_TIMEOUT,
    )
    .await?;

    // create: generated keys, enabled, and what the emulator stored.
    let created = &out["created"];
    assert_eq!(created["deviceId"], "node-dev");
    assert_eq!(created["status"], "enabled");
    assert_eq!(created["authentication"]["type"], "sas");
    let primary = created["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .context("generated primary key")?;
    assert!(dps_attestation::keys::validate_key(primary).is_ok());
    assert_eq!(out["fetched"]["etag"], created["etag"]);
    assert_eq!(out["duplicate"]["name"], "DeviceAlreadyExistsError");
    assert_eq!(out["duplicate"]["status"], 409);

    // update (If-Match "*"): disabled, keys swapped.
    let stored = sim.device(NODE_HUB_IP, "node-dev").context("stored")?;
    assert_eq!(out["updated"]["status"], "disabled");
    assert_eq!(serde_json::to_value(stored.status)?, json!("disabled"));
    let keys = stored
        .authentication
        .and_then(|a| a.symmetric_key)
        .context("keys")?;
    assert_eq!(keys.secondary_key.as_deref(), Some(primary));

    // X.509 device: Node normalises the type to selfSigned.
    assert_eq!(out["x509"]["authentication"]["type"], "selfSigned");
    assert_eq!(
        out["x509"]["authentication"]["x509Thumbprint"]["primaryThumbprint"],
        THUMBPRINT
    );

    // twin: update through the Twin object, stale etag refused, merge patch with null.
    assert_eq!(out["firstEtag"], "AAAAAAAAAAE=");
    assert_eq!(out["afterTwinUpdate"]["tags"], json!({"site": "north"}));
    assert_eq!(out["staleEtag"]["name"], "InvalidEtagError");
    assert_eq!(out["staleEtag"]["status"], 412);
    let desired = &out["patched"]["properties"]["desired"];
    assert_eq!(desired["interval"], 30);
    assert_eq!(desired["nested"], json!({"b": 2}));
    let twin = sim.twin(NODE_HUB_IP, "node-dev").context("twin")?;
    assert_eq!(
        Value::Object(twin.content().desired),
        json!({"interval": 30, "nested": {"b": 2}})
    );
    assert_eq!(twin.version, Some(3));

    // list, statistics, delete, and DeviceNotFound parsed from our error body.
    assert_eq!(out["list"], json!(["node-dev", "node-dev-x509"]));
    assert_eq!(
        out["stats"],
        json!({"totalDeviceCount": 2, "enabledDeviceCount": 1, "disabledDeviceCount": 1})
    );
    assert_eq!(out["missing"]["name"], "DeviceNotFoundError");
    assert_eq!(out["missingTwin"]["name"], "DeviceNotFoundError");
    assert_eq!(sim.device(NODE_HUB_IP, "node-dev-x509"), None);

    // Bulk: Registry.addDevices / updateDevices / removeDevices (POST /devices).
    let out = run_node_json(
        &packages,
        REGISTRY_SCRIPT,
        &["bulk", "bulk-dev"],
        &env,
        SCRIPT_TIMEOUT,
    )
    .await?;
    let success = json!({"isSuccessful": true, "errors": [], "warnings": []});
    assert_eq!(out["added"], success);
    assert_eq!(out["twinTags"], json!({"site": "north"}));
    assert_eq!(out["twinDesired"]["interval"], 5);
    assert_eq!(
        out["twinVersion"], 1,
        "identity and twin written in one step"
    );
    assert_eq!(out["secondAuth"]["type"], "selfSigned");
    assert_eq!(
        out["secondAuth"]["x509Thumbprint"]["primaryThumbprint"],
        THUMBPRINT
    );
    // One device's rejection fails only that device: 400 with the result body.
    let partial = &out["partial"];
    assert_eq!(partial["name"], "ArgumentError");
    assert_eq!(partial["status"], 400);
    assert_eq!(partial["body"]["isSuccessful"], false);
    assert_eq!(partial["body"]["errors"][0]["deviceId"], "bulk-dev-1");
    assert_eq!(
        partial["body"]["errors"][0]["errorCode"],
        "DeviceAlreadyExists"
    );
    assert_eq!(partial["body"]["errors"].as_array().map(Vec::len), Some(1));
    assert_eq!(out["updated"], success);
    assert_eq!(out["thirdStatus"], "disabled");
    assert_eq!(out["removed"], success);
    assert_eq!(out["tooMany"]["status"], 413);
    assert_eq!(
        out["tooMany"]["body"]["Message"]
            .as_str()
            .map(|m| m.starts_with("ErrorCode:TooManyDevices;")),
        Some(true)
    );
    assert_eq!(out["list"], json!(["bulk-dev-3", "node-dev"]));

    // A wrong key: UnauthorizedError.
    let wrong = cs.replace(
        &cs[cs.find("SharedAccessKey=").context("key part")? + "SharedAccessKey=".len()..],
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    );
    let env = [
        ("HUB_CONNECTION_STRING", wrong.as_str()),
        ("NODE_EXTRA_CA_CERTS", ca_path),
    ];
    let out = run_node_json(
        &packages,
        REGISTRY_SCRIPT,
        &["wrongKey", "node-dev"],
        &env,
        SCRIPT_TIMEOUT,
    )
    .await?;
    assert_eq!(out["get"]["name"], "UnauthorizedError");
    assert_eq!(out["get"]["status"], 401);
    sim.shutdown().await;
    Ok(())
}
