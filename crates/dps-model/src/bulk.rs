//! Bulk enrollment operations and query specifications (spec §4.9, §4.10).

use serde::{Deserialize, Serialize};

use crate::enrollment::{EnrollmentGroup, IndividualEnrollment};

/// Most items one bulk request may carry.
pub const MAX_BULK_ITEMS: usize = 10;

/// `mode` of a bulk operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BulkOperationMode {
    /// Create; an existing id fails that item.
    Create,
    /// Create or replace.
    Update,
    /// Replace only if the item's etag matches.
    UpdateIfMatchETag,
    /// Delete; a missing id fails that item.
    Delete,
}

/// `BulkEnrollmentOperation`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentOperation {
    /// What to do with every item.
    pub mode: BulkOperationMode,
    /// The items.
    pub enrollments: Vec<IndividualEnrollment>,
}

/// `BulkEnrollmentGroupOperation`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentGroupOperation {
    /// What to do with every item.
    pub mode: BulkOperationMode,
    /// The items.
    pub enrollment_groups: Vec<EnrollmentGroup>,
}

/// `BulkEnrollmentOperationResult` (also used for groups).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentOperationResult {
    /// True when every item succeeded.
    pub is_successful: bool,
    /// One entry per failed item.
    #[serde(default)]
    pub errors: Vec<BulkEnrollmentOperationError>,
}

/// One failed item of a bulk operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentOperationError {
    /// The individual enrollment's id (individual bulk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<String>,
    /// The group's id (group bulk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group_id: Option<String>,
    /// 6-digit error code.
    pub error_code: i32,
    /// What went wrong.
    pub error_status: String,
}

/// `QuerySpecification`. Only `SELECT *` semantics are implemented; the text is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuerySpecification {
    /// The query text.
    #[serde(default)]
    pub query: String,
}
