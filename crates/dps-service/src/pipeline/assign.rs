//! Where does the device go, and what is done there: reprovision plan
//! (spec §6.4), allocation policy, then the device identity and twin on the
//! linked hub (spec §7.1).

use std::net::IpAddr;
use std::sync::Arc;

use dps_allocation::{plan_after_allocation, plan_before_allocation, TwinAction as PlannedTwin};
use dps_allocation::{AllocationRequest, DeviceAttestation, DeviceContext};
use dps_attestation::sas::SymmetricKey;
use dps_attestation::tpm;
use dps_hub::{migrate_device, DeviceAuth, DeviceProvisioning, IotHub, MigrationMode, TwinAction};
use dps_model::{DeviceId, ErrorCode, RegistrationId, RegistrationRecord, RegistrationSubstatus};
use serde_json::Value;

use super::authenticate::{AuthenticatedDevice, Evidence, MatchedEnrollment};
use super::tenants::TenantView;
use super::HubConnector;
use crate::certificate_authority::issuing::IssuedLeaf;

/// A registration that reached a hub.
pub(crate) struct Assigned {
    pub(crate) hub: String,
    pub(crate) device_id: DeviceId,
    pub(crate) substatus: RegistrationSubstatus,
    pub(crate) payload: Option<Value>,
    /// TPM devices: the activation blob of the hub key.
    pub(crate) tpm_authentication_key: Option<String>,
    /// The certificate issued for the register's CSR (issue #17).
    pub(crate) issued: Option<IssuedLeaf>,
}

/// A registration that failed after authentication (allocation or hub).
pub(crate) struct Failure {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

pub(crate) struct Assignment<'a> {
    pub(crate) hubs: &'a Arc<dyn HubConnector>,
    /// Identity writes coalesced per hub (`hub_batch.rs`).
    pub(crate) hub_batches: &'a super::hub_batch::HubBatches,
    pub(crate) allocator: &'a dps_allocation::Allocator,
    /// Allocation time goes here (`dps_allocation_duration_seconds`).
    pub(crate) metrics: &'a crate::metrics::device::DeviceMetrics,
    pub(crate) view: &'a TenantView,
    pub(crate) registration_id: &'a RegistrationId,
    pub(crate) device: &'a AuthenticatedDevice,
    pub(crate) previous: Option<&'a RegistrationRecord>,
    pub(crate) api_version: &'a str,
    pub(crate) payload: Option<&'a Value>,
    pub(crate) peer: IpAddr,
    pub(crate) storage_root_key: Option<&'a str>,
    /// A verified CSR to issue a certificate for: the hub identity then
    /// authenticates with that certificate's thumbprint (`selfSigned`).
    pub(crate) issuance: Option<&'a super::issuance::Prepared>,
}

impl Assignment<'_> {
    pub(crate) async fn run(&self) -> Result<Assigned, Failure> {
        let enrollment = self.device.enrollment.as_ref();
        let policy = enrollment.as_enrollment().reprovision_policy();
        let previous = self.previous.filter(|p| p.assigned_hub.is_some());

        let attestation = match &self.device.evidence {
            Evidence::SymmetricKey { .. } => DeviceAttestation::SymmetricKey,
            Evidence::X509 { leaf, signing } => DeviceAttestation::X509 {
                certificate: Some(leaf),
                signing_certificate: signing.as_ref(),
            },
            Evidence::Tpm(tpm) => DeviceAttestation::Tpm {
                endorsement_key: &tpm.endorsement_key,
                storage_root_key: tpm.storage_root_key.as_deref(),
            },
        };
        let context = DeviceContext {
            current_hub: previous.and_then(|p| p.assigned_hub.as_deref()),
            current_device_id: previous
                .and_then(|p| p.device_id.as_ref())
                .map(|d| d.as_str()),
            attestation,
            payload: self.payload,
            source_ip: Some(self.peer),
        };
        let request = AllocationRequest::new(
            self.registration_id,
            enrollment,
            &self.view.hubs,
            self.view.tenant.default_allocation_policy,
        )
        .map_err(allocation_failure)?
        .with_device(context);
        let decision = plan_before_allocation(previous, policy, self.api_version);
        let allocating = std::time::Instant::now();
        let allocation = self.allocator.resolve(&request, &decision).await;
        self.metrics
            .allocation(request.candidates.policy.as_str(), allocating.elapsed());
        let allocation = allocation.map_err(allocation_failure)?;
        let plan = plan_after_allocation(
            previous,
            policy,
            self.api_version,
            &allocation.hub_host_name,
        );

        let device_id = match &self.device.enrollment {
            MatchedEnrollment::Individual(e) => e.effective_device_id(),
            MatchedEnrollment::Group(_) => DeviceId::from(self.registration_id),
        };
        let issued = self
            .issuance
            .map(|prepared| {
                let started = std::time::Instant::now();
                let leaf = prepared.issue(self.registration_id, &device_id);
                self.metrics
                    .certificate_issuance(leaf.is_ok(), started.elapsed());
                leaf
            })
            .transpose()?;
        // With an issued certificate the device leaves its onboarding
        // credential behind: the hub knows it by the new thumbprint only
        // (no TPM hub key either).
        let (auth, tpm_authentication_key) = match &issued {
            Some(leaf) => (
                DeviceAuth::X509Thumbprint {
                    primary: leaf.record.sha256_thumbprint.clone(),
                    secondary: None,
                },
                None,
            ),
            None => self.device_auth()?,
        };
        let provisioning = DeviceProvisioning {
            device_id: device_id.clone(),
            auth,
            capabilities: enrollment.as_enrollment().capabilities(),
            initial_twin: allocation
                .initial_twin
                .clone()
                .or_else(|| enrollment.as_enrollment().initial_twin().cloned()),
            twin_action: TwinAction::ApplyInitial,
        };
        let target = self.hub(&plan.target_hub)?;
        let source = plan
            .delete_from
            .as_deref()
            .and_then(|old| self.hub(old).ok());
        let result = match (&plan.twin, source) {
            // Moving hubs: create on the new hub (with the old twin or the
            // initial one), then remove from the old hub.
            (PlannedTwin::MigrateFrom(_), Some(source)) => migrate_device(
                source.as_ref(),
                target.as_ref(),
                &provisioning,
                MigrationMode::CopyTwin,
            )
            .await
            .map(|_| ()),
            (PlannedTwin::ApplyInitial | PlannedTwin::ResetToInitial, Some(source)) => {
                migrate_device(
                    source.as_ref(),
                    target.as_ref(),
                    &provisioning,
                    MigrationMode::ResetToInitial,
                )
                .await
                .map(|_| ())
            }
            // Same hub, or first assignment / factory reset / a move from a
            // hub no longer linked (initial twin): one entry of a bulk write.
            (twin, _) => {
                let keep = matches!(twin, PlannedTwin::KeepExisting);
                let request = DeviceProvisioning {
                    twin_action: if keep {
                        TwinAction::Keep
                    } else {
                        TwinAction::ApplyInitial
                    },
                    ..provisioning.clone()
                };
                let linked = self.view.tenant.linked_hub(&plan.target_hub);
                let key = linked.map_or(plan.target_hub.as_str(), |h| h.connection_string.as_str());
                self.hub_batches
                    .provision(key, Arc::clone(&target), request)
                    .await
            }
        };
        result.map_err(|err| Failure {
            code: ErrorCode::HUB_FAILURE,
            message: format!("The linked IoT hub {} failed: {err}", plan.target_hub),
        })?;
        Ok(Assigned {
            hub: plan.target_hub,
            device_id,
            substatus: plan.substatus,
            payload: allocation.payload,
            tpm_authentication_key,
            issued,
        })
    }

    fn hub(&self, host: &str) -> Result<Arc<dyn IotHub>, Failure> {
        let linked = self.view.tenant.linked_hub(host).ok_or_else(|| Failure {
            code: ErrorCode::LINKED_HUB_NOT_FOUND,
            message: format!("The IoT hub {host} is not linked to this provisioning service."),
        })?;
        self.hubs.hub(linked).map_err(|err| Failure {
            code: ErrorCode::HUB_FAILURE,
            message: format!("Cannot reach the linked IoT hub {host}: {err}"),
        })
    }

    /// The identity written on the hub: the device's own keys, its
    /// certificate thumbprint, or for TPM a fresh hub key delivered in an
    /// activation blob (a new key on every provisioning).
    fn device_auth(&self) -> Result<(DeviceAuth, Option<String>), Failure> {
        Ok(match &self.device.evidence {
            Evidence::SymmetricKey { primary, secondary } => (
                DeviceAuth::SymmetricKey {
                    primary: primary.clone(),
                    secondary: secondary.clone(),
                },
                None,
            ),
            Evidence::X509 { leaf, .. } => (
                DeviceAuth::X509Thumbprint {
                    primary: leaf.sha256_thumbprint.clone(),
                    secondary: None,
                },
                None,
            ),
            Evidence::Tpm(enrolled) => {
                let hub_key_bytes = rand::random::<[u8; 32]>();
                let hub_key = SymmetricKey::from_bytes(hub_key_bytes.to_vec());
                let srk = self
                    .storage_root_key
                    .or(enrolled.storage_root_key.as_deref())
                    .ok_or_else(|| Failure {
                        code: ErrorCode::INVALID_STORAGE_ROOT_KEY,
                        message: "The registration needs tpm.storageRootKey.".to_owned(),
                    })?;
                let blob =
                    tpm::TpmChallenge::with_key(&enrolled.endorsement_key, srk, hub_key_bytes)
                        .map(|challenge| challenge.authentication_key)
                        .map_err(|err| Failure {
                            code: ErrorCode::INVALID_ENDORSEMENT_KEY,
                            message: format!("Cannot build the TPM activation blob: {err}"),
                        })?;
                (
                    DeviceAuth::SymmetricKey {
                        primary: hub_key.clone(),
                        secondary: hub_key,
                    },
                    Some(blob),
                )
            }
        })
    }
}

fn allocation_failure(err: dps_allocation::AllocationError) -> Failure {
    Failure {
        code: err.error_code(),
        message: err.to_string(),
    }
}
