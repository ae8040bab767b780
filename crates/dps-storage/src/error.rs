//! The one error type of this crate.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use dps_model::{ETag, IdScope};

/// Which kind of record an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Entity {
    /// A tenant (provisioning service instance).
    Tenant,
    /// An individual enrollment.
    Enrollment,
    /// An enrollment group.
    EnrollmentGroup,
    /// A device's registration record.
    Registration,
    /// A device's asynchronous registration operation.
    RegistrationOperation,
    /// A billing row of the operations meter.
    BillingOperation,
    /// A tenant certificate authority (certificate issuance).
    CertificateAuthority,
    /// A tenant credential policy (certificate issuance).
    CredentialPolicy,
    /// A certificate issued at registration.
    IssuedCertificate,
}

impl Entity {
    /// A lower-case name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Tenant => "tenant",
            Entity::Enrollment => "enrollment",
            Entity::EnrollmentGroup => "enrollment group",
            Entity::Registration => "registration record",
            Entity::RegistrationOperation => "registration operation",
            Entity::BillingOperation => "billing operation",
            Entity::CertificateAuthority => "certificate authority",
            Entity::CredentialPolicy => "credential policy",
            Entity::IssuedCertificate => "issued certificate",
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a storage call failed.
///
/// The first variants are answers the caller asked for (missing record, etag
/// conflict); the last ones are faults of the backend. The type is `Clone` so
/// that a failed group commit can report its one cause to every caller of the
/// batch.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record does not exist (a delete, or a write with `If-Match`).
    #[error("{entity} {id:?} not found")]
    NotFound {
        /// What kind of record.
        entity: Entity,
        /// Its id as the caller spelled it.
        id: String,
    },
    /// A create-only write found the record, or a unique name is taken.
    #[error("{entity} {id:?} already exists")]
    AlreadyExists {
        /// What kind of record.
        entity: Entity,
        /// The id (or name) that is taken.
        id: String,
    },
    /// `If-Match` named another etag than the record's current one.
    #[error("{entity} {id:?}: precondition failed, expected etag {expected} but it is {actual}")]
    PreconditionFailed {
        /// What kind of record.
        entity: Entity,
        /// Its id.
        id: String,
        /// The etag the caller required.
        expected: ETag,
        /// The etag the record carries.
        actual: ETag,
    },
    /// A delete was refused because another record still names this one
    /// (a certificate authority named by a credential policy).
    #[error("{entity} {id:?} is in use by {user_entity} {user_id:?}")]
    InUse {
        /// What kind of record was to be deleted.
        entity: Entity,
        /// Its id.
        id: String,
        /// What kind of record names it.
        user_entity: Entity,
        /// The id of (one of) the records naming it.
        user_id: String,
    },
    /// A write names a record that does not exist (a credential policy
    /// naming a missing certificate authority).
    #[error("{entity} {id:?} names {missing_entity} {missing_id:?}, which does not exist")]
    MissingReference {
        /// What kind of record was written.
        entity: Entity,
        /// Its id.
        id: String,
        /// What kind of record it names.
        missing_entity: Entity,
        /// The name that finds nothing.
        missing_id: String,
    },
    /// The ID scope names no tenant.
    #[error("no tenant with ID scope {id_scope}")]
    UnknownTenant {
        /// The scope asked for.
        id_scope: IdScope,
    },
    /// A billing row given to `commit_registration` belongs to another tenant.
    #[error("billing row for ID scope {billing_scope} committed under ID scope {id_scope}")]
    ScopeMismatch {
        /// The scope of the commit.
        id_scope: IdScope,
        /// The scope on the billing row.
        billing_scope: IdScope,
    },
    /// A continuation token that this store did not hand out.
    #[error("invalid continuation token {token:?}: {reason}")]
    InvalidContinuationToken {
        /// The token as received.
        token: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A stored row could not be turned back into a record.
    #[error("stored {entity} {key:?} is corrupt: {message}")]
    Corrupt {
        /// What kind of record.
        entity: Entity,
        /// Its storage key.
        key: String,
        /// What failed to decode.
        message: String,
    },
    /// The database file could not be opened or prepared.
    #[error("cannot open database {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Arc<sqlx::Error>,
    },
    /// A schema migration failed; the database was left at the previous version.
    #[error("schema migration {version} ({name}) failed")]
    Migration {
        /// The migration's version number.
        version: i64,
        /// Its name.
        name: &'static str,
        /// The cause.
        #[source]
        source: Arc<sqlx::Error>,
    },
    /// The database is newer than this program.
    #[error(
        "database schema version {found} is newer than the newest this program knows ({known})"
    )]
    SchemaTooNew {
        /// The version in the database.
        found: i64,
        /// The newest version this build ships.
        known: i64,
    },
    /// A database statement failed.
    #[error("database error while {context}")]
    Database {
        /// What the store was doing.
        context: &'static str,
        /// The cause.
        #[source]
        source: Arc<sqlx::Error>,
    },
    /// An SQLite statement run directly (not through sqlx) failed.
    #[error("SQLite error while {context}")]
    Sqlite {
        /// What the store was doing.
        context: &'static str,
        /// The cause.
        #[source]
        source: Arc<rusqlite::Error>,
    },
    /// The store was closed (or its writer task ended) before the call completed.
    #[error("the store is closed")]
    Closed,
    /// The database server could not be reached or refused the session.
    #[error("cannot connect to database {target}")]
    Connect {
        /// The server and database, without credentials.
        target: String,
        /// The cause.
        #[source]
        source: Arc<sqlx::Error>,
    },
    /// A write kept losing races against concurrent writers of the same
    /// record (other replicas) and gave up; nothing of it was stored.
    #[error("{entity} {id:?}: gave up after {attempts} attempts lost to concurrent writers")]
    Contention {
        /// What kind of record.
        entity: Entity,
        /// Its id.
        id: String,
        /// How many attempts were made.
        attempts: u32,
    },
}

impl StoreError {
    /// Wrap a database error with what the store was doing.
    pub(crate) fn database(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Database {
            context,
            source: Arc::new(source),
        }
    }
}

/// Result of every storage call.
pub type StoreResult<T> = Result<T, StoreError>;
