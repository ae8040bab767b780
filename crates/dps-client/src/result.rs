//! What a successful provisioning returns.

use dps_model::{
    DeviceRegistrationResult, RegistrationOperationStatus, RegistrationStatus,
    RegistrationSubstatus,
};
use serde::Serialize;
use serde_json::Value;

use crate::credential::Credential;
use crate::{CertificateRequest, ClientError, IssuedCertificate};

/// A device assigned to a hub.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// The registration id.
    pub registration_id: String,
    /// The hub's host name.
    pub assigned_hub: String,
    /// The device id on that hub.
    pub device_id: String,
    /// How it came to be assigned.
    pub substatus: Option<RegistrationSubstatus>,
    /// Data returned by a custom allocation webhook.
    pub payload: Option<Value>,
    /// The operation that completed.
    pub operation_id: String,
    /// The hub connection string the device can use: with the symmetric
    /// key for symmetric-key devices, the X.509 form (`x509=true`) when a
    /// certificate was issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_connection_string: Option<String>,
    /// The operational certificate the service issued for the device's
    /// request, with its private key (only when the client asked for one
    /// with [`crate::ProvisioningClientBuilder::issue_certificate`] and the
    /// service returned `issuedCertificateChain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_certificate: Option<IssuedCertificate>,
    /// The full answer of the service.
    pub raw: DeviceRegistrationResult,
}

impl Registration {
    /// What a finished operation means, over any transport: the device's
    /// registration when assigned (with a hub connection string for a
    /// symmetric-key `credential`), else the error its status stands for.
    pub(crate) fn from_status(
        status: RegistrationOperationStatus,
        credential: &Credential,
    ) -> Result<Registration, ClientError> {
        let state = status.registration_state;
        match status.status {
            RegistrationStatus::Assigned => {
                let state = state
                    .ok_or_else(|| ClientError::protocol("assigned without registrationState"))?;
                let assigned_hub = state
                    .assigned_hub
                    .clone()
                    .ok_or_else(|| ClientError::protocol("assigned without assignedHub"))?;
                let device_id = state
                    .device_id
                    .clone()
                    .ok_or_else(|| ClientError::protocol("assigned without deviceId"))?;
                let hub_connection_string = match credential {
                    Credential::SymmetricKey(key) => Some(format!(
                        "HostName={assigned_hub};DeviceId={device_id};SharedAccessKey={}",
                        key.to_base64()
                    )),
                    _ => None,
                };
                Ok(Registration {
                    registration_id: state.registration_id.clone(),
                    assigned_hub,
                    device_id,
                    substatus: state.substatus,
                    payload: state.payload.clone(),
                    operation_id: status.operation_id,
                    hub_connection_string,
                    issued_certificate: None,
                    raw: state,
                })
            }
            RegistrationStatus::Failed => Err(ClientError::RegistrationFailed {
                error_code: state.as_ref().and_then(|s| s.error_code),
                message: state
                    .and_then(|s| s.error_message)
                    .unwrap_or_else(|| "no message".to_owned()),
            }),
            RegistrationStatus::Disabled => Err(ClientError::Disabled),
            other => Err(ClientError::protocol(format!(
                "unexpected terminal status {}",
                other.as_str()
            ))),
        }
    }

    /// The registration of a device that sent `request`: the issued chain
    /// (from the answer's `issuedCertificateChain`) with the request's key.
    /// The hub identity now authenticates with that certificate, so the
    /// connection string becomes the X.509 form (`x509=true`, no key).
    /// An answer without a chain (a service that ignored the `csr`) leaves
    /// the registration as it was.
    pub(crate) fn with_issued_certificate(
        mut self,
        request: &CertificateRequest,
    ) -> Result<Registration, ClientError> {
        let Some(chain) = &self.raw.issued_certificate_chain else {
            return Ok(self);
        };
        self.issued_certificate = Some(IssuedCertificate::from_chain(request, chain)?);
        self.hub_connection_string = Some(format!(
            "HostName={};DeviceId={};x509=true",
            self.assigned_hub, self.device_id
        ));
        Ok(self)
    }
}
