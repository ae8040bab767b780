//! The operation: the billing unit. One row per successful billable instruction.
//!
//! What is billed (following Azure's description of an operation as "the
//! successful completion of an instruction"):
//!
//! | kind | when |
//! |---|---|
//! | `registration` | a device's first successful assignment |
//! | `reRegistration` | a later successful registration of an already registered device |
//! | `registrationStatusLookup` | a device status lookup (D3), which Azure counts as a registration |
//! | `enrollmentCreate` / `enrollmentUpdate` / `enrollmentDelete` | individual enrollment writes (each bulk item counts once) |
//! | `groupCreate` / `groupUpdate` / `groupDelete` | enrollment group writes |
//! | `enrollmentRead` / `groupRead` | GET of one enrollment/group, or its `attestationmechanism` |
//! | `enrollmentQuery` / `groupQuery` | one page of an enrollment/group query |
//! | `registrationStateRead` / `registrationStateQuery` / `registrationStateDelete` | registration record reads, query pages, deletes |
//!
//! Not billed: device polls of an operation (D2), failed instructions of any kind,
//! settings changes (linked hubs, policies, CA certificates) and tenant management.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::IdScope;
use crate::time;

/// What kind of instruction an operation was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum OperationKind {
    /// First successful registration.
    Registration,
    /// Successful re-registration.
    ReRegistration,
    /// Device status lookup (D3).
    RegistrationStatusLookup,
    /// Individual enrollment created.
    EnrollmentCreate,
    /// Individual enrollment replaced.
    EnrollmentUpdate,
    /// Individual enrollment deleted.
    EnrollmentDelete,
    /// Individual enrollment read.
    EnrollmentRead,
    /// One page of an individual enrollment query.
    EnrollmentQuery,
    /// Group created.
    GroupCreate,
    /// Group replaced.
    GroupUpdate,
    /// Group deleted.
    GroupDelete,
    /// Group read.
    GroupRead,
    /// One page of a group query.
    GroupQuery,
    /// Registration record read.
    RegistrationStateRead,
    /// One page of a registration record query.
    RegistrationStateQuery,
    /// Registration record deleted.
    RegistrationStateDelete,
}

impl OperationKind {
    /// Every kind, in a stable order.
    pub const ALL: [OperationKind; 16] = [
        OperationKind::Registration,
        OperationKind::ReRegistration,
        OperationKind::RegistrationStatusLookup,
        OperationKind::EnrollmentCreate,
        OperationKind::EnrollmentUpdate,
        OperationKind::EnrollmentDelete,
        OperationKind::EnrollmentRead,
        OperationKind::EnrollmentQuery,
        OperationKind::GroupCreate,
        OperationKind::GroupUpdate,
        OperationKind::GroupDelete,
        OperationKind::GroupRead,
        OperationKind::GroupQuery,
        OperationKind::RegistrationStateRead,
        OperationKind::RegistrationStateQuery,
        OperationKind::RegistrationStateDelete,
    ];

    /// The stable name used on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Registration => "registration",
            OperationKind::ReRegistration => "reRegistration",
            OperationKind::RegistrationStatusLookup => "registrationStatusLookup",
            OperationKind::EnrollmentCreate => "enrollmentCreate",
            OperationKind::EnrollmentUpdate => "enrollmentUpdate",
            OperationKind::EnrollmentDelete => "enrollmentDelete",
            OperationKind::EnrollmentRead => "enrollmentRead",
            OperationKind::EnrollmentQuery => "enrollmentQuery",
            OperationKind::GroupCreate => "groupCreate",
            OperationKind::GroupUpdate => "groupUpdate",
            OperationKind::GroupDelete => "groupDelete",
            OperationKind::GroupRead => "groupRead",
            OperationKind::GroupQuery => "groupQuery",
            OperationKind::RegistrationStateRead => "registrationStateRead",
            OperationKind::RegistrationStateQuery => "registrationStateQuery",
            OperationKind::RegistrationStateDelete => "registrationStateDelete",
        }
    }

    /// The kind with this stable name.
    pub fn parse(name: &str) -> Option<Self> {
        OperationKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// One billed operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationRecord {
    /// The tenant billed.
    pub id_scope: IdScope,
    /// What was done.
    pub kind: OperationKind,
    /// When it completed.
    #[serde(with = "time::azure")]
    pub at: DateTime<Utc>,
    /// The record it concerned (registration id, enrollment or group id), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl OperationRecord {
    /// An operation completed now.
    pub fn now(id_scope: &IdScope, kind: OperationKind, subject: Option<String>) -> Self {
        OperationRecord {
            id_scope: id_scope.clone(),
            kind,
            at: Utc::now(),
            subject,
        }
    }
}
