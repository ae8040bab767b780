//! Individual enrollments and enrollment groups (spec §4.3–4.11): one set of
//! handlers, generic over [`Record`], for GET, PUT (create or replace, 200),
//! DELETE (204), `attestationmechanism` and query pages.

use std::fmt::Display;

use axum::response::Response;
use dps_model::{
    AttestationMechanism, AttestationType, ETag, EnrollmentGroup, EnrollmentGroupId, IdScope,
    IndividualEnrollment, ModelError, OperationKind, Precondition, RegistrationId,
};
use dps_storage::{Entity, Page, PageRequest, Store, StoreError, StoreResult, Written};
use futures::future::BoxFuture;
use serde::Serialize;

use super::records::{
    check_ca_references, check_hubs, parse_lenient, prepare_attestation, public_attestation,
    written_attestation,
};
use super::routes::RecordOp;
use super::wire::{self, Call};
use super::ServiceApi;
use crate::respond::ApiError;

/// How often a PUT re-reads and retries when a concurrent write changed the
/// record it completed itself from.
const PUT_ATTEMPTS: usize = 3;

/// What the handlers need to know about individual enrollments and groups.
pub(crate) trait Record: Serialize + Clone + Send + Sync + Sized + 'static {
    /// The id type.
    type Id: PartialEq + Display + Send + Sync;
    /// `x-ms-item-type` of query pages.
    const ITEM_TYPE: &'static str;
    /// The wire name of the id field.
    const ID_FIELD: &'static str;
    /// Billing kind of a read (GET or `attestationmechanism`).
    const READ: OperationKind;
    /// Billing kind of one query page.
    const QUERY: OperationKind;
    /// Individual enrollments (TPM allowed, client certificates) or groups.
    const INDIVIDUAL: bool;
    /// For storage errors raised here.
    const ENTITY: Entity;

    /// Validate an id from the path.
    fn parse_id(text: &str) -> Result<Self::Id, ModelError>;
    /// Parse and validate a body.
    fn from_body(body: &[u8]) -> Result<Self, ModelError>;
    /// The record's id.
    fn id(&self) -> &Self::Id;
    /// Its attestation mechanism.
    fn attestation(&self) -> &AttestationMechanism;
    /// Its attestation mechanism, to change.
    fn attestation_mut(&mut self) -> &mut AttestationMechanism;
    /// Its etag.
    fn etag(&self) -> Option<&ETag>;
    /// The hubs it names.
    fn iot_hubs(&self) -> Option<&[String]>;
    /// Its custom allocation webhook URL.
    fn webhook_url(&self) -> Option<&str>;
    /// The credential policy it names (certificate issuance).
    fn credential_policy_name(&self) -> Option<&str>;
    /// Forget fields only the server sets.
    fn clear_read_only(&mut self);
    /// The 404 for a missing record.
    fn not_found(id: &Self::Id) -> ApiError;

    /// Read one.
    fn load<'a>(
        store: &'a dyn Store,
        scope: &'a IdScope,
        id: &'a Self::Id,
    ) -> BoxFuture<'a, StoreResult<Option<Self>>>;
    /// Write one (billed by the store).
    fn put<'a>(
        store: &'a dyn Store,
        scope: &'a IdScope,
        record: Self,
        precondition: Precondition,
    ) -> BoxFuture<'a, StoreResult<Written<Self>>>;
    /// Delete one (billed by the store).
    fn delete<'a>(
        store: &'a dyn Store,
        scope: &'a IdScope,
        id: &'a Self::Id,
        precondition: Precondition,
    ) -> BoxFuture<'a, StoreResult<()>>;
    /// One page in id order.
    fn list<'a>(
        store: &'a dyn Store,
        scope: &'a IdScope,
        page: &'a PageRequest,
    ) -> BoxFuture<'a, StoreResult<Page<Self>>>;
    /// Read one as a GET shows it (the stored record, plus what GET adds).
    fn load_shown<'a>(
        store: &'a dyn Store,
        scope: &'a IdScope,
        id: &'a Self::Id,
    ) -> BoxFuture<'a, StoreResult<Option<Self>>> {
        Self::load(store, scope, id)
    }
}

impl Record for IndividualEnrollment {
    type Id = RegistrationId;
    const ITEM_TYPE: &'static str = "Enrollment";
    const ID_FIELD: &'static str = "registrationId";
    const READ: OperationKind = OperationKind::EnrollmentRead;
    const QUERY: OperationKind = OperationKind::EnrollmentQuery;
    const INDIVIDUAL: bool = true;
    const ENTITY: Entity = Entity::Enrollment;

    fn parse_id(text: &str) -> Result<RegistrationId, ModelError> {
        RegistrationId::new(text)
    }
    fn from_body(body: &[u8]) -> Result<Self, ModelError> {
        IndividualEnrollment::from_json(body)
    }
    fn id(&self) -> &RegistrationId {
        &self.registration_id
    }
    fn attestation(&self) -> &AttestationMechanism {
        &self.attestation
    }
    fn attestation_mut(&mut self) -> &mut AttestationMechanism {
        &mut self.attestation
    }
    fn etag(&self) -> Option<&ETag> {
        self.etag.as_ref()
    }
    fn iot_hubs(&self) -> Option<&[String]> {
        self.iot_hubs.as_deref()
    }
    fn webhook_url(&self) -> Option<&str> {
        let definition = self.custom_allocation_definition.as_ref();
        definition.map(|d| d.webhook_url.as_str())
    }
    fn credential_policy_name(&self) -> Option<&str> {
        self.credential_policy_name.as_deref()
    }
    fn clear_read_only(&mut self) {
        self.registration_state = None;
        self.created_date_time_utc = None;
        self.last_updated_date_time_utc = None;
        self.etag = None;
    }
    fn not_found(id: &RegistrationId) -> ApiError {
        ApiError::enrollment_not_found(id.as_str())
    }
    fn load<'a>(
        store: &'a dyn Store,
        scope: &'a IdScope,
        id: &'a RegistrationId,
    ) -> BoxFuture<'a, StoreResult<Option<Self>>> {
        store.enrollment(scope, id)
    }
    fn put<'a>(
        store: &'a dyn Store,
        scope: &'a IdScope,
        record: Self,
        precondition: Precondition,
    ) -> BoxFuture<'a, StoreResult<Written<Self>>> {
        store.put_enrollment(scope, record, precondition)
    }
    fn delete<'a>(
        store: &'a dyn Store,
        scope: &'a IdScope,
        id: &'a RegistrationId,
        precondition: Precondition,
    ) -> BoxFuture<'a, StoreResult<()>> {
        // The device's registration record goes with its enrollment
        // (docs/service-api.md, "Deleting").
        store.delete_enrollment_and_registration(scope, id, precondition)
    }
    fn list<'a>(
        store: &'a dyn Store,
        scope: &'a IdScope,
        page: &'a PageRequest,
    ) -> BoxFuture<'a, StoreResult<Page<Self>>> {
        store.list_enrollments(scope, page)
    }
    /// Azure shows the device's registration state inside its enrollment.
    fn load_shown<'a>(
        store: &'a dyn Store,
        scope: &'a IdScope,
        id: &'a RegistrationId,
    ) -> BoxFuture<'a, StoreResult<Option<Self>>> {
        Box::pin(async move {
            let found = store.enrollment_with_registration(scope, id).await?;
            Ok(found.map(|(mut enrollment, record)| {
                enrollment.registration_state = record.map(|r| r.to_state());
                enrollment
            }))
        })
    }
}

impl Record for EnrollmentGroup {
    type Id = EnrollmentGroupId;
    const ITEM_TYPE: &'static str = "EnrollmentGroup";
    const ID_FIELD: &'static str = "enrollmentGroupId";
    const READ: OperationKind = OperationKind::GroupRead;
    const QUERY: OperationKind = OperationKind::GroupQuery;
    const INDIVIDUAL: bool = false;
    const ENTITY: Entity = Entity::EnrollmentGroup;

    fn parse_id(text: &str) -> Result<EnrollmentGroupId, ModelError> {
        EnrollmentGroupId::new(text)
    }
    fn from_body(body: &[u8]) -> Result<Self, ModelError> {
        EnrollmentGroup::from_json(body)
    }
    fn id(&self) -> &EnrollmentGroupId {
        &self.enrollment_group_id
    }
    fn attestation(&self) -> &AttestationMechanism {
        &self.attestation
    }
    fn attestation_mut(&mut self) -> &mut AttestationMechanism {
        &mut self.attestation
    }
    fn etag(&self) -> Option<&ETag> {
        self.etag.as_ref()
    }
    fn iot_hubs(&self) -> Option<&[String]> {
        self.iot_hubs.as_deref()
    }
    fn webhook_url(&self) -> Option<&str> {
        let definition = self.custom_allocation_definition.as_ref();
        definition.map(|d| d.webhook_url.as_str())
    }
    fn credential_policy_name(&self) -> Option<&str> {
        self.credential_policy_name.as_deref()
    }
    fn clear_read_only(&mut self) {
        self.created_date_time_utc = None;
        self.last_updated_date_time_utc = None;
        self.etag = None;
    }
    fn not_found(id: &EnrollmentGroupId) -> ApiError {
        ApiError::enrollment_group_not_found(id.as_str())
    }
    fn load<'a>(
        store: &'a dyn Store,
        scope: &'a IdScope,
        id: &'a EnrollmentGroupId,
    ) -> BoxFuture<'a, StoreResult<Option<Self>>> {
        store.enrollment_group(scope, id)
    }
    fn put<'a>(
        store: &'a dyn Store,
        scope: &'a IdScope,
        record: Self,
        precondition: Precondition,
    ) -> BoxFuture<'a, StoreResult<Written<Self>>> {
        store.put_enrollment_group(scope, record, precondition)
    }
    fn delete<'a>(
        store: &'a dyn Store,
        scope: &'a IdScope,
        id: &'a EnrollmentGroupId,
        precondition: Precondition,
    ) -> BoxFuture<'a, StoreResult<()>> {
        store.delete_enrollment_group(scope, id, precondition)
    }
    fn list<'a>(
        store: &'a dyn Store,
        scope: &'a IdScope,
        page: &'a PageRequest,
    ) -> BoxFuture<'a, StoreResult<Page<Self>>> {
        store.list_enrollment_groups(scope, page)
    }
}

/// Answer one enrollment or group operation.
pub(crate) async fn handle<R: Record>(
    api: &ServiceApi,
    scope: &IdScope,
    op: RecordOp,
    call: &Call,
) -> Result<Response, ApiError> {
    match op {
        RecordOp::Get(id) => get::<R>(api, scope, &R::parse_id(&id)?).await,
        RecordOp::Put(id) => {
            let id = R::parse_id(&id)?;
            let record = parse_lenient(&call.body, R::from_body)?;
            let written = put::<R>(api, scope, &id, record, call.if_match()).await?;
            let mut record = written.record;
            *record.attestation_mut() = written_attestation(record.attestation());
            let etag = record.etag().cloned();
            Ok(wire::ok_tagged(&record, etag.as_ref()))
        }
        RecordOp::Delete(id) => {
            let id = R::parse_id(&id)?;
            R::delete(api.store.as_ref(), scope, &id, call.if_match()).await?;
            api.record_written::<R>(scope);
            Ok(wire::no_content())
        }
        RecordOp::Attestation(id) => {
            let id = R::parse_id(&id)?;
            let record = R::load(api.store.as_ref(), scope, &id)
                .await?
                .ok_or_else(|| R::not_found(&id))?;
            api.bill(scope, R::READ, Some(id.to_string())).await?;
            Ok(wire::ok(record.attestation()))
        }
        RecordOp::Query => {
            let request = call.page_request()?;
            let page = R::list(api.store.as_ref(), scope, &request).await?;
            let items: Vec<R> = page
                .items
                .into_iter()
                .map(|mut record| {
                    *record.attestation_mut() = public_attestation(record.attestation());
                    record
                })
                .collect();
            api.bill(scope, R::QUERY, None).await?;
            Ok(wire::page(
                &items,
                R::ITEM_TYPE,
                &request,
                page.continuation.as_ref(),
            ))
        }
        RecordOp::Bulk => super::bulk::run::<R>(api, scope, call).await,
    }
}

async fn get<R: Record>(
    api: &ServiceApi,
    scope: &IdScope,
    id: &R::Id,
) -> Result<Response, ApiError> {
    let store = api.store.as_ref();
    let mut record = R::load_shown(store, scope, id)
        .await?
        .ok_or_else(|| R::not_found(id))?;
    *record.attestation_mut() = public_attestation(record.attestation());
    api.bill(scope, R::READ, Some(id.to_string())).await?;
    let etag = record.etag().cloned();
    Ok(wire::ok_tagged(&record, etag.as_ref()))
}

/// Create or replace one record: the checks and completion of a PUT, shared
/// with bulk operations. `precondition` is the caller's (`If-Match`, or the
/// bulk mode); the body's own `etag` is ignored.
pub(crate) async fn put<R: Record>(
    api: &ServiceApi,
    scope: &IdScope,
    id: &R::Id,
    mut record: R,
    precondition: Precondition,
) -> Result<Written<R>, ApiError> {
    if record.id() != id {
        return Err(wire::invalid(
            R::ID_FIELD,
            record.id().to_string(),
            format!("does not match the id in the path ({id})"),
        ));
    }
    record.clear_read_only();
    let view = api
        .tenants
        .get(api.store.as_ref(), scope)
        .await?
        .ok_or_else(|| {
            ApiError::from(StoreError::UnknownTenant {
                id_scope: scope.clone(),
            })
        })?;
    check_hubs(record.iot_hubs(), &view.tenant)?;
    super::webhook_url::check(&api.egress, &api.policy_names, scope, record.webhook_url())?;
    super::authorities::check_policy_exists(api, scope, record.credential_policy_name()).await?;
    if !R::INDIVIDUAL {
        check_ca_references(record.attestation(), &view.tenant)?;
    }
    let completes_from_stored = needs_stored(record.attestation());
    let retry_allowed = matches!(precondition, Precondition::None | Precondition::Exists);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let stored = if completes_from_stored {
            R::load(api.store.as_ref(), scope, id).await?
        } else {
            None
        };
        // Values carried over from the stored record are only right if the
        // write replaces exactly that record: pin its etag (or its absence).
        let effective = if completes_from_stored {
            let current = stored
                .as_ref()
                .map(|s| s.etag().cloned().unwrap_or_else(|| ETag::new("")));
            if !precondition.allows(current.as_ref()) {
                return Err(match precondition {
                    Precondition::Absent => StoreError::AlreadyExists {
                        entity: R::ENTITY,
                        id: id.to_string(),
                    }
                    .into(),
                    _ => precondition_failed::<R>(id, &precondition),
                });
            }
            match current {
                Some(tag) => Precondition::Matches(tag),
                None => Precondition::Absent,
            }
        } else {
            precondition.clone()
        };
        let mut candidate = record.clone();
        prepare_attestation(
            candidate.attestation_mut(),
            stored.as_ref().map(R::attestation),
            R::INDIVIDUAL,
        )?;
        match R::put(api.store.as_ref(), scope, candidate, effective).await {
            Ok(written) => {
                api.record_written::<R>(scope);
                return Ok(written);
            }
            Err(
                StoreError::PreconditionFailed { .. }
                | StoreError::AlreadyExists { .. }
                | StoreError::NotFound { .. },
            ) if completes_from_stored && retry_allowed && attempt < PUT_ATTEMPTS => continue,
            // `If-Match` on a record that does not exist: the precondition failed.
            Err(StoreError::NotFound { .. }) => {
                return Err(precondition_failed::<R>(id, &precondition))
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// Does completing this mechanism need the stored record (keys or
/// certificates left out of the body)?
fn needs_stored(attestation: &AttestationMechanism) -> bool {
    match attestation.kind {
        AttestationType::SymmetricKey => attestation.symmetric_key.as_ref().is_none_or(|k| {
            [&k.primary_key, &k.secondary_key]
                .iter()
                .any(|key| key.as_deref().is_none_or(|s| s.trim().is_empty()))
        }),
        AttestationType::X509 => attestation.x509.as_ref().is_some_and(|x| {
            [&x.client_certificates, &x.signing_certificates]
                .into_iter()
                .flatten()
                .flat_map(|set| [&set.primary, &set.secondary])
                .flatten()
                .any(|slot| {
                    slot.certificate
                        .as_deref()
                        .is_none_or(|c| c.trim().is_empty())
                })
        }),
        _ => false,
    }
}

fn precondition_failed<R: Record>(id: &R::Id, precondition: &Precondition) -> ApiError {
    let wanted = match precondition {
        Precondition::Matches(tag) => format!("etag {tag}"),
        Precondition::Exists => "an existing record".to_owned(),
        Precondition::Absent => "no record".to_owned(),
        Precondition::None => "nothing".to_owned(),
    };
    ApiError::precondition_failed(format!(
        "Precondition failed: {} {id} does not have {wanted}.",
        R::ID_FIELD
    ))
}
