//! Bulk operations (spec §4.9): `POST /enrollments` and `POST
//! /enrollmentGroups` with `{mode, enrollments | enrollmentGroups}`.
//!
//! Items are independent: each is checked and written like a single PUT or
//! DELETE (and billed by the store if it succeeds); a failing item becomes an
//! entry in `errors` and the answer stays 200. Only a malformed request as a
//! whole (no mode, more than ten items, one id twice) is refused with a 400.

use std::collections::HashSet;

use axum::response::Response;
use dps_model::bulk::MAX_BULK_ITEMS;
use dps_model::{
    BulkEnrollmentOperationError, BulkEnrollmentOperationResult, BulkOperationMode, ETag, IdScope,
    Precondition,
};
use serde_json::Value;

use super::enrollments::{put, Record};
use super::records::parse_lenient;
use super::wire::{self, Call};
use super::ServiceApi;
use crate::respond::ApiError;

/// Run a bulk operation over individual enrollments or groups.
pub(crate) async fn run<R: Record>(
    api: &ServiceApi,
    scope: &IdScope,
    call: &Call,
) -> Result<Response, ApiError> {
    let body: Value = call.json()?;
    let object = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("A bulk operation must be a JSON object."))?;
    let mode: BulkOperationMode = serde_json::from_value(
        object.get("mode").cloned().unwrap_or(Value::Null),
    )
    .map_err(|_| {
        wire::invalid(
            "mode",
            object.get("mode").map(Value::to_string).unwrap_or_default(),
            "must be create, update, updateIfMatchETag or delete",
        )
    })?;
    let items = object
        .get(bulk_field::<R>())
        .and_then(Value::as_array)
        .ok_or_else(|| wire::invalid(bulk_field::<R>(), "", "required: an array of records"))?;
    if items.len() > MAX_BULK_ITEMS {
        return Err(ApiError::too_many_enrollments(format!(
            "A bulk operation takes at most {MAX_BULK_ITEMS} items; this one has {}.",
            items.len()
        )));
    }
    let mut seen = HashSet::new();
    for item in items {
        if let Some(id) = item.get(R::ID_FIELD).and_then(Value::as_str) {
            if !seen.insert(id.to_ascii_lowercase()) {
                return Err(ApiError::registration_id_defined_multiple_times(format!(
                    "{} {id:?} appears more than once in the request.",
                    R::ID_FIELD
                )));
            }
        }
    }

    let mut errors = Vec::new();
    for item in items {
        let raw_id = item
            .get(R::ID_FIELD)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Err(err) = run_item::<R>(api, scope, mode, item).await {
            errors.push(BulkEnrollmentOperationError {
                registration_id: R::INDIVIDUAL.then(|| raw_id.clone()),
                enrollment_group_id: (!R::INDIVIDUAL).then_some(raw_id),
                error_code: err.code.0,
                error_status: err.message,
            });
        }
    }
    Ok(wire::ok(&BulkEnrollmentOperationResult {
        is_successful: errors.is_empty(),
        errors,
    }))
}

async fn run_item<R: Record>(
    api: &ServiceApi,
    scope: &IdScope,
    mode: BulkOperationMode,
    item: &Value,
) -> Result<(), ApiError> {
    let raw_id = item
        .get(R::ID_FIELD)
        .and_then(Value::as_str)
        .ok_or_else(|| wire::invalid(R::ID_FIELD, "", "every item needs its id"))?;
    let id = R::parse_id(raw_id)?;
    // The item's etag is the precondition of the etag-checking modes (an
    // item without one is unconditional, like a request without If-Match).
    let item_etag = || match item.get("etag").and_then(Value::as_str) {
        Some(tag) if !tag.trim().is_empty() => Precondition::Matches(ETag::new(tag)),
        _ => Precondition::None,
    };
    match mode {
        BulkOperationMode::Delete => {
            R::delete(api.store.as_ref(), scope, &id, item_etag()).await?;
            api.record_written::<R>(scope);
        }
        BulkOperationMode::Create
        | BulkOperationMode::Update
        | BulkOperationMode::UpdateIfMatchETag => {
            let precondition = match mode {
                BulkOperationMode::Create => Precondition::Absent,
                BulkOperationMode::Update => Precondition::None,
                _ => item_etag(),
            };
            let bytes = serde_json::to_vec(item).map_err(ApiError::internal)?;
            let record = parse_lenient(&bytes, R::from_body)?;
            put::<R>(api, scope, &id, record, precondition).await?;
        }
    }
    Ok(())
}

fn bulk_field<R: Record>() -> &'static str {
    if R::INDIVIDUAL {
        "enrollments"
    } else {
        "enrollmentGroups"
    }
}
