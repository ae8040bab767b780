//! The one place that chooses the Azure error code of each refusal: every
//! failure the device and service APIs answer is built by a constructor here
//! (or converted from a model or store error here), so the same failure
//! carries the same 6-digit code on every transport and endpoint.

use dps_model::{ErrorCode, ModelError};
use dps_storage::{Entity, StoreError};

use super::{ApiError, MAX_BODY_BYTES};

impl ApiError {
    /// 400 with the generic argument-invalid code.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::ARGUMENT_INVALID, message)
    }

    /// 400: the registration id is malformed or differs from the one the
    /// request is addressed to.
    pub fn invalid_registration_id(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::INVALID_REGISTRATION_ID, message)
    }

    /// 400: the TPM endorsement key is unusable.
    pub fn invalid_endorsement_key(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::INVALID_ENDORSEMENT_KEY, message)
    }

    /// 400: the TPM storage root key is missing or unusable.
    pub fn invalid_storage_root_key(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::INVALID_STORAGE_ROOT_KEY, message)
    }

    /// 401 with the Azure unauthorized code: every credential, scope and
    /// enrollment refusal, alike so that none hints which.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::UNAUTHORIZED, message)
    }

    /// 404 for a path no route knows.
    pub fn route_not_found() -> Self {
        ApiError::new(
            ErrorCode::NOT_FOUND,
            "The requested resource does not exist.",
        )
    }

    /// 404 for a named thing without a more specific code.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::NOT_FOUND, message)
    }

    /// 404: the device polled an operation id it was never given.
    pub fn unknown_operation(operation_id: &str) -> Self {
        ApiError::new(
            ErrorCode::ASYNC_OPERATION_NOT_FOUND,
            format!("Operation {operation_id:?} was not found."),
        )
    }

    /// 404: the device has never registered.
    pub fn no_registration_record() -> Self {
        ApiError::new(
            ErrorCode::DEVICE_REGISTRATION_NOT_FOUND,
            "This device has no registration record.",
        )
    }

    /// 404: no such individual enrollment.
    pub fn enrollment_not_found(registration_id: &str) -> Self {
        ApiError::new(
            ErrorCode::ENROLLMENT_NOT_FOUND,
            format!("Enrollment {registration_id:?} not found."),
        )
    }

    /// 404: no such enrollment group.
    pub fn enrollment_group_not_found(group_id: &str) -> Self {
        ApiError::new(
            ErrorCode::ENROLLMENT_GROUP_NOT_FOUND,
            format!("Enrollment group {group_id:?} not found."),
        )
    }

    /// 404: no registration record of this id (service API).
    pub fn registration_not_found(registration_id: &str) -> Self {
        ApiError::new(
            ErrorCode::DEVICE_REGISTRATION_NOT_FOUND,
            format!("Registration {registration_id:?} not found."),
        )
    }

    /// 404: no such CA certificate.
    pub fn ca_certificate_not_found(name: &str) -> Self {
        ApiError::new(
            ErrorCode::CERTIFICATE_AUTHORITY_NOT_FOUND,
            format!("CA certificate {name:?} not found."),
        )
    }

    /// 404: no such linked hub.
    pub fn linked_hub_not_found(host: &str) -> Self {
        ApiError::new(
            ErrorCode::LINKED_HUB_NOT_FOUND,
            format!("Linked hub {host:?} not found."),
        )
    }

    /// 412: an `If-Match` that does not hold.
    pub fn precondition_failed(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::PRECONDITION_FAILED, message)
    }

    /// 400: a bulk operation over its item limit.
    pub fn too_many_enrollments(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::TOO_MANY_ENROLLMENTS, message)
    }

    /// 400: one id twice in a bulk operation.
    pub fn registration_id_defined_multiple_times(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::REGISTRATION_ID_DEFINED_MULTIPLE_TIMES, message)
    }

    /// 400 with the plain bad-request code: a request the protocol layer
    /// cannot take (e.g. a WebSocket version other than 13).
    pub fn unsupported(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::BAD_REQUEST, message)
    }

    /// 405 for a known path with the wrong method.
    pub fn method_not_allowed() -> Self {
        ApiError::new(
            ErrorCode::METHOD_NOT_ALLOWED,
            "The method is not allowed on this resource.",
        )
    }

    /// 409 for a thing that already exists, without a more specific code.
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::CONFLICT, message)
    }

    /// 413: the request body is over [`MAX_BODY_BYTES`].
    pub fn payload_too_large() -> Self {
        ApiError::new(
            ErrorCode::PAYLOAD_TOO_LARGE,
            format!("The request body exceeds {MAX_BODY_BYTES} bytes."),
        )
    }

    /// 429 with the seconds to wait before trying again.
    pub fn throttled(message: impl Into<String>, retry_after_seconds: u64) -> Self {
        let mut error = ApiError::new(ErrorCode::THROTTLED, message);
        error.retry_after = Some(retry_after_seconds);
        error
    }

    /// 500 without internal details (they go to the log).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        let tracking = uuid::Uuid::new_v4();
        tracing::error!(%tracking, %detail, "internal error");
        ApiError::new(
            ErrorCode::INTERNAL,
            format!("Internal error (tracking id {tracking})."),
        )
    }
}

impl From<ModelError> for ApiError {
    fn from(err: ModelError) -> Self {
        let code = match &err {
            ModelError::InvalidId {
                kind: "registrationId",
                ..
            } => ErrorCode::INVALID_REGISTRATION_ID,
            ModelError::InvalidId {
                kind: "enrollmentGroupId",
                ..
            } => ErrorCode::INVALID_ENROLLMENT_GROUP_ID,
            _ => ErrorCode::ARGUMENT_INVALID,
        };
        ApiError::new(code, err.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let code = match &err {
            StoreError::NotFound { entity, .. } => match entity {
                Entity::Enrollment => ErrorCode::ENROLLMENT_NOT_FOUND,
                Entity::EnrollmentGroup => ErrorCode::ENROLLMENT_GROUP_NOT_FOUND,
                Entity::Registration => ErrorCode::DEVICE_REGISTRATION_NOT_FOUND,
                Entity::RegistrationOperation => ErrorCode::ASYNC_OPERATION_NOT_FOUND,
                Entity::Tenant => ErrorCode::PROVISIONING_SETTINGS_NOT_FOUND,
                _ => ErrorCode::NOT_FOUND,
            },
            StoreError::AlreadyExists { entity, .. } => match entity {
                Entity::Enrollment => ErrorCode::ENROLLMENT_CONFLICT,
                Entity::EnrollmentGroup => ErrorCode::ENROLLMENT_GROUP_CONFLICT,
                Entity::Registration => ErrorCode::REGISTRATION_STATUS_CONFLICT,
                _ => ErrorCode::CONFLICT,
            },
            StoreError::PreconditionFailed { .. } => ErrorCode::PRECONDITION_FAILED,
            StoreError::UnknownTenant { .. } => ErrorCode::PROVISIONING_SETTINGS_NOT_FOUND,
            StoreError::InvalidContinuationToken { .. } => ErrorCode::ARGUMENT_INVALID,
            // A CA still named by a credential policy.
            StoreError::InUse { .. } => ErrorCode::CONFLICT,
            // A credential policy naming a CA that does not exist.
            StoreError::MissingReference { .. } => ErrorCode::ARGUMENT_INVALID,
            _ => return ApiError::internal(err),
        };
        ApiError::new(code, sentence(&err.to_string()))
    }
}

/// A message as a sentence: capital first letter, final full stop.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}
