//! Where dps keeps its records: tenants, individual enrollments, enrollment
//! groups, device registration records, the devices' asynchronous operations
//! and the billing meter — behind one object-safe async trait, [`Store`], with
//! interchangeable backends.
//!
//! * [`MemoryStore`]: everything in maps behind a lock; for tests and for
//!   embedding where nothing must survive a restart.
//! * [`SqliteStore`]: the durable embedded default, one SQLite file (WAL,
//!   group commit, schema migrations shipped in the binary). See [`sqlite`]
//!   for its durability trade-off.
//! * [`PostgresStore`]: one PostgreSQL database shared by any number of dps
//!   replicas (connection pool, writes settled by the database, migrations
//!   under an advisory lock). See [`postgres`].
//!
//! Every backend passes one shared conformance battery
//! (`dps_storage::conformance`, cargo feature `conformance`), written once over
//! `&dyn Store`.
//!
//! What every backend guarantees:
//! * ids are case-insensitive: looked up by their lower-case key, returned in
//!   the spelling they were written with;
//! * conditional writes (`If-Match`) fail with typed errors:
//!   [`StoreError::PreconditionFailed`], [`StoreError::AlreadyExists`],
//!   [`StoreError::NotFound`];
//! * every enrollment or group write, every registration commit and every
//!   registration delete stores its billing row in the same transaction: a
//!   record never exists without its billing row, nor the reverse;
//! * an `Ok` answer means committed.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use dps_model::{IndividualEnrollment, Precondition, RegistrationId, Tenant};
//! use dps_storage::{MemoryStore, Store, WriteOutcome};
//!
//! let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
//! let tenant: Tenant = serde_json::from_value(serde_json::json!({
//!     "name": "contoso", "idScope": "0ne00000A0A",
//!     "serviceHostName": "contoso.example", "etag": "x",
//!     "created": "2024-01-01T00:00:00Z"
//! })).unwrap();
//! let scope = tenant.id_scope.clone();
//! store.create_tenant(tenant).await.unwrap();
//!
//! let enrollment = IndividualEnrollment::from_json(
//!     br#"{"registrationId":"Dev-1","attestation":{"type":"symmetricKey"}}"#).unwrap();
//! let written = store.put_enrollment(&scope, enrollment, Precondition::Absent).await.unwrap();
//! assert_eq!(written.outcome, WriteOutcome::Created);
//!
//! let found = store.enrollment(&scope, &RegistrationId::new("dev-1").unwrap()).await.unwrap();
//! assert_eq!(found.unwrap().registration_id.as_str(), "Dev-1");
//! # });
//! ```
//!
//! What this crate does not do: it validates nothing about the records'
//! content (dps-model does), decides nothing about provisioning (dps-service
//! does), and encrypts nothing (linked-hub connection strings and keys are
//! stored as the records carry them; protect the database file; tenant CA
//! private keys arrive already sealed by dps-service, see
//! [`StoredCertificateAuthority`]). It is the
//! only crate that knows SQL.

#![deny(missing_docs)]

mod authorities;
mod error;
mod issued;
mod memory;
mod observed;
pub mod postgres;
mod rules;
pub mod sqlite;
mod store;
mod time;
mod token;
mod writer_stats;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use authorities::StoredCertificateAuthority;
pub use error::{Entity, StoreError, StoreResult};
pub use memory::MemoryStore;
pub use observed::{ObservedStore, StoreCall, StoreObserver};
pub use postgres::{MigrationLock, PostgresOptions, PostgresStore};
pub use sqlite::{SqliteOptions, SqliteStore, Synchronous};
pub use store::{HourlyCount, MeterReport, Store, WriteOutcome, Written};
pub use token::{ContinuationToken, Page, PageRequest, MAX_PAGE_SIZE};
pub use writer_stats::{WriterStats, BATCH_SIZE_BOUNDS};
