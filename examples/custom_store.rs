//! A store of your own: here one that wraps any other store and keeps an
//! audit trail of every write (which operation, and whether it succeeded).
//!
//! A store implements `dps_storage::Store` (tenants, enrollments, groups,
//! registration records, device operations, the billing meter);
//! `Server::builder(config).store(...)` uses it instead of opening
//! `storage_url`: the service API, the registration pipeline and the meter
//! all write through it.
//! `store_battery!` (`dps_storage::conformance`) is the contract every
//! backend passes; this example's test runs it on `AuditedStore`.
//!
//! A store written from scratch implements every `Store` method; one that
//! wraps another, as here, needs only `dps_storage::ObservedStore`, which
//! forwards each call and tells an observer how it ended. Run:
//! `cargo run -p dps-examples --example custom_store`.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use dps_service::server::Server;
use dps_storage::{MemoryStore, ObservedStore, StoreCall, StoreError, StoreObserver};

/// Where the writes are recorded, e.g. `"put_enrollment: ok"`, oldest first.
pub type AuditTrail = Arc<Mutex<Vec<String>>>;

/// Records every write, and how it ended, in its trail.
#[derive(Clone, Debug, Default)]
pub struct Auditor(pub AuditTrail);

impl StoreObserver for Auditor {
    fn observe(&self, call: StoreCall, result: Result<(), &StoreError>) {
        if !call.writes {
            return;
        }
        let outcome = result.map_or_else(|err| format!("failed ({err})"), |()| "ok".into());
        let mut trail = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        trail.push(format!("{}: {outcome}", call.name));
    }
}

/// `inner`, with every write recorded in the auditor's trail.
pub type AuditedStore<S> = ObservedStore<S, Auditor>;

/// A server on an audited in-memory store; one device enrolled and
/// provisioned; returns the audit trail.
pub async fn run(data_dir: &Path) -> anyhow::Result<Vec<String>> {
    let trail = AuditTrail::default();
    let store = AuditedStore::new(MemoryStore::new(), Auditor(trail.clone()));
    let server = Server::builder(dps_examples::local_config(data_dir))
        .store(store)
        .hub_emulator()
        .listeners(dps_examples::device_and_service())
        .start()
        .await?;
    let admin = dps_examples::admin(&server)?;
    let key = dps_examples::enroll(&admin, "audited-device", serde_json::json!({})).await?;
    dps_examples::register(&server, "audited-device", &key, None).await?;
    server.shutdown().await;
    let entries = trail.lock().unwrap_or_else(PoisonError::into_inner).clone();
    entries.iter().for_each(|entry| println!("audit: {entry}"));
    Ok(entries)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir()?;
    run(data_dir.path()).await?;
    Ok(())
}
