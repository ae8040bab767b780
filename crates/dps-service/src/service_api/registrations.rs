//! Registration records (spec §4.3, §4.7): read, delete, and list those of a
//! group. Records are made only by device registrations, never written here.

use axum::response::Response;
use dps_model::{
    DeviceRegistrationState, EnrollmentGroupId, IdScope, OperationKind, RegistrationId,
};

use super::routes::RegistrationOp;
use super::wire::{self, Call};
use super::ServiceApi;
use crate::respond::ApiError;

/// Answer one registration-record operation.
pub(crate) async fn handle(
    api: &ServiceApi,
    scope: &IdScope,
    op: RegistrationOp,
    call: &Call,
) -> Result<Response, ApiError> {
    let store = api.store.as_ref();
    match op {
        RegistrationOp::Get(id) => {
            let id = RegistrationId::new(id)?;
            let record = store
                .registration(scope, &id)
                .await?
                .ok_or_else(|| ApiError::registration_not_found(id.as_str()))?;
            api.bill(
                scope,
                OperationKind::RegistrationStateRead,
                Some(id.as_str().to_owned()),
            )
            .await?;
            let state = record.to_state();
            Ok(wire::ok_tagged(&state, Some(&record.etag)))
        }
        RegistrationOp::Delete(id) => {
            let id = RegistrationId::new(id)?;
            // Billed by the store (registrationStateDelete) in the same transaction.
            store
                .delete_registration(scope, &id, call.if_match())
                .await?;
            Ok(wire::no_content())
        }
        RegistrationOp::Query(group) => {
            // The body is optional (Python sends none) and only `SELECT *` exists.
            let group = EnrollmentGroupId::new(group)?;
            let request = call.page_request()?;
            let page = store
                .list_registrations_by_group(scope, &group, &request)
                .await?;
            let states: Vec<DeviceRegistrationState> =
                page.items.iter().map(|r| r.to_state()).collect();
            api.bill(scope, OperationKind::RegistrationStateQuery, None)
                .await?;
            Ok(wire::page(
                &states,
                "DeviceRegistration",
                &request,
                page.continuation.as_ref(),
            ))
        }
    }
}
