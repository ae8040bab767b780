//! Write semantics every backend shares: preconditions, stamping (etag and
//! timestamps), billing rows, and the JSON form of stored records.

use chrono::{DateTime, Utc};
use dps_model::{
    ETag, EnrollmentGroup, IdScope, IndividualEnrollment, OperationKind, OperationRecord,
    Precondition, RegistrationRecord,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Entity, StoreError, StoreResult};
use crate::store::WriteOutcome;

/// What may a put do to a record whose current etag is `current` (`None`: missing)?
pub(crate) fn check_put(
    entity: Entity,
    id: &str,
    current: Option<&ETag>,
    precondition: &Precondition,
) -> StoreResult<WriteOutcome> {
    match (precondition, current) {
        (Precondition::Absent, Some(_)) => Err(StoreError::AlreadyExists {
            entity,
            id: id.to_owned(),
        }),
        (Precondition::Exists | Precondition::Matches(_), None) => Err(StoreError::NotFound {
            entity,
            id: id.to_owned(),
        }),
        (Precondition::Matches(expected), Some(actual)) if expected != actual => {
            Err(StoreError::PreconditionFailed {
                entity,
                id: id.to_owned(),
                expected: expected.clone(),
                actual: actual.clone(),
            })
        }
        (_, Some(_)) => Ok(WriteOutcome::Replaced),
        (_, None) => Ok(WriteOutcome::Created),
    }
}

/// May a record whose current etag is `current` be deleted? A missing record
/// is always `NotFound`.
pub(crate) fn check_delete(
    entity: Entity,
    id: &str,
    current: Option<&ETag>,
    precondition: &Precondition,
) -> StoreResult<()> {
    let Some(current) = current else {
        return Err(StoreError::NotFound {
            entity,
            id: id.to_owned(),
        });
    };
    check_put(entity, id, Some(current), precondition).map(|_| ())
}

/// A billing row for a write the store performs itself.
pub(crate) fn billing(
    id_scope: &IdScope,
    kind: OperationKind,
    subject: &str,
    at: DateTime<Utc>,
) -> OperationRecord {
    OperationRecord {
        id_scope: id_scope.clone(),
        kind,
        at,
        subject: Some(subject.to_owned()),
    }
}

/// Individual enrollments and groups: written the same way.
pub(crate) trait EnrollmentLike:
    Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// For errors.
    const ENTITY: Entity;
    /// Billing kinds of create, replace and delete.
    const BILLING: [OperationKind; 3];

    /// The id as written.
    fn id(&self) -> &str;
    /// The lower-case storage key.
    fn key(&self) -> String;
    /// The etag it carries.
    fn etag(&self) -> Option<&ETag>;
    /// When it was first written.
    fn created(&self) -> Option<DateTime<Utc>>;
    /// When it was last written.
    fn last_updated(&self) -> Option<DateTime<Utc>>;
    /// Set the server-owned fields of a write.
    fn stamp(&mut self, etag: ETag, created: DateTime<Utc>, now: DateTime<Utc>);

    /// The billing kind of a write with this outcome.
    fn billing_kind(outcome: WriteOutcome) -> OperationKind {
        match outcome {
            WriteOutcome::Created => Self::BILLING[0],
            WriteOutcome::Replaced => Self::BILLING[1],
        }
    }
}

impl EnrollmentLike for IndividualEnrollment {
    const ENTITY: Entity = Entity::Enrollment;
    const BILLING: [OperationKind; 3] = [
        OperationKind::EnrollmentCreate,
        OperationKind::EnrollmentUpdate,
        OperationKind::EnrollmentDelete,
    ];
    fn id(&self) -> &str {
        self.registration_id.as_str()
    }
    fn key(&self) -> String {
        self.registration_id.key()
    }
    fn etag(&self) -> Option<&ETag> {
        self.etag.as_ref()
    }
    fn created(&self) -> Option<DateTime<Utc>> {
        self.created_date_time_utc
    }
    fn last_updated(&self) -> Option<DateTime<Utc>> {
        self.last_updated_date_time_utc
    }
    fn stamp(&mut self, etag: ETag, created: DateTime<Utc>, now: DateTime<Utc>) {
        self.etag = Some(etag);
        self.created_date_time_utc = Some(created);
        self.last_updated_date_time_utc = Some(now);
        // Filled from the registration record on read; a stored copy would go stale.
        self.registration_state = None;
        // Already folded into `initial_twin` by the parser, never serialised.
        self.initial_twin_state = None;
    }
}

impl EnrollmentLike for EnrollmentGroup {
    const ENTITY: Entity = Entity::EnrollmentGroup;
    const BILLING: [OperationKind; 3] = [
        OperationKind::GroupCreate,
        OperationKind::GroupUpdate,
        OperationKind::GroupDelete,
    ];
    fn id(&self) -> &str {
        self.enrollment_group_id.as_str()
    }
    fn key(&self) -> String {
        self.enrollment_group_id.key()
    }
    fn etag(&self) -> Option<&ETag> {
        self.etag.as_ref()
    }
    fn created(&self) -> Option<DateTime<Utc>> {
        self.created_date_time_utc
    }
    fn last_updated(&self) -> Option<DateTime<Utc>> {
        self.last_updated_date_time_utc
    }
    fn stamp(&mut self, etag: ETag, created: DateTime<Utc>, now: DateTime<Utc>) {
        self.etag = Some(etag);
        self.created_date_time_utc = Some(created);
        self.last_updated_date_time_utc = Some(now);
        self.initial_twin_state = None;
    }
}

/// Stamp `record` for a write with `outcome`; `previous_created` is the
/// stored record's creation time (replacements keep it).
pub(crate) fn stamp<T: EnrollmentLike>(
    record: &mut T,
    previous_created: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) {
    let created = previous_created.unwrap_or(now);
    record.stamp(ETag::generate(), created, now);
}

/// Stamp an imported record: keep the etag and timestamps it carries, fill
/// in what is missing.
pub(crate) fn stamp_import<T: EnrollmentLike>(record: &mut T, now: DateTime<Utc>) {
    let etag = record.etag().cloned().unwrap_or_else(ETag::generate);
    let created = record.created().unwrap_or(now);
    let updated = record.last_updated().unwrap_or(now);
    record.stamp(etag, created, updated);
}

/// Only the creation time of a stored enrollment or group, without decoding the rest.
#[derive(Deserialize)]
pub(crate) struct CreatedOnly {
    #[serde(
        rename = "createdDateTimeUtc",
        default,
        with = "dps_model::time::azure_opt"
    )]
    pub(crate) created: Option<DateTime<Utc>>,
}

/// The JSON text a record is stored as.
pub(crate) fn encode<T: Serialize>(entity: Entity, key: &str, record: &T) -> StoreResult<String> {
    serde_json::to_string(record).map_err(|err| StoreError::Corrupt {
        entity,
        key: key.to_owned(),
        message: err.to_string(),
    })
}

/// A record from its stored JSON text.
pub(crate) fn decode<T: DeserializeOwned>(entity: Entity, key: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|err| StoreError::Corrupt {
        entity,
        key: key.to_owned(),
        message: err.to_string(),
    })
}

/// An enrollment and, if the device has one, its registration record, from
/// the two JSON texts one joined row gives.
pub(crate) fn decode_enrollment_with_registration(
    key: &str,
    enrollment: &str,
    record: Option<&str>,
) -> StoreResult<(IndividualEnrollment, Option<RegistrationRecord>)> {
    let enrollment = decode(Entity::Enrollment, key, enrollment)?;
    let record = record
        .map(|text| decode(Entity::Registration, key, text))
        .transpose()?;
    Ok((enrollment, record))
}

/// The record exactly as a JSON-storing backend would give it back, so that
/// the in-memory backend answers like the durable ones (timestamp precision,
/// fields that are never serialised).
pub(crate) fn normalize<T: Serialize + DeserializeOwned>(
    entity: Entity,
    key: &str,
    record: &T,
) -> StoreResult<T> {
    decode(entity, key, &encode(entity, key, record)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preconditions_map_to_typed_errors() {
        let tag = ETag::new("a");
        let e = Entity::Enrollment;
        assert_eq!(
            check_put(e, "x", None, &Precondition::None).unwrap(),
            WriteOutcome::Created
        );
        assert_eq!(
            check_put(e, "x", Some(&tag), &Precondition::None).unwrap(),
            WriteOutcome::Replaced
        );
        assert!(matches!(
            check_put(e, "x", Some(&tag), &Precondition::Absent),
            Err(StoreError::AlreadyExists { .. })
        ));
        assert!(matches!(
            check_put(e, "x", None, &Precondition::Exists),
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            check_put(e, "x", Some(&tag), &Precondition::Matches(ETag::new("\"b\""))),
            Err(StoreError::PreconditionFailed { expected, actual, .. })
                if expected == ETag::new("b") && actual == tag
        ));
        assert_eq!(
            check_put(
                e,
                "x",
                Some(&tag),
                &Precondition::Matches(ETag::new("W/\"a\""))
            )
            .unwrap(),
            WriteOutcome::Replaced
        );
        assert!(matches!(
            check_delete(e, "x", None, &Precondition::None),
            Err(StoreError::NotFound { .. })
        ));
    }
}
