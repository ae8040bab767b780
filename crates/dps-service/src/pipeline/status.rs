//! The registration status lookup (D3): the device's registration record,
//! billed as a `registrationStatusLookup`. Its answer never carries an
//! issued certificate chain (the record does not keep one).

use dps_model::{
    DeviceRegistrationRequest, DeviceRegistrationResult, OperationKind, OperationRecord,
};

use super::{DeviceRequest, Pipeline};
use crate::respond::ApiError;

impl Pipeline {
    /// Status lookup (D3): the device's registration record.
    pub async fn registration_status(
        &self,
        request: &DeviceRequest,
        _body: DeviceRegistrationRequest,
    ) -> Result<DeviceRegistrationResult, ApiError> {
        self.guarded(
            "status",
            request,
            self.registration_status_unguarded(request),
        )
        .await
    }

    async fn registration_status_unguarded(
        &self,
        request: &DeviceRequest,
    ) -> Result<DeviceRegistrationResult, ApiError> {
        let (view, registration_id) = self.view(request).await?;
        self.authenticated_device(&view, &registration_id, request, None)
            .await?;
        let scope = &view.tenant.id_scope;
        self.throttle.admit_poll(scope)?;
        let record = self
            .store
            .registration(scope, &registration_id)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(ApiError::no_registration_record)?;
        self.store
            .record_operation(OperationRecord::now(
                scope,
                OperationKind::RegistrationStatusLookup,
                Some(registration_id.as_str().to_owned()),
            ))
            .await
            .map_err(ApiError::internal)?;
        Ok(record.to_result())
    }
}
