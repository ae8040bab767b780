//! The registration pipeline: one function per device instruction, shared by
//! every transport (ARCHITECTURE.md "registration path").
//!
//! register: tenant by ID scope → enrollment + attestation → enabled? →
//! previous registration + reprovision plan → allocation → hub identity and
//! twin → one storage transaction (registration record, device operation,
//! billing row) → answer. The work is finished before the answer, so the
//! first poll already finds the final state.

mod assign;
mod attest_pool;
mod authenticate;
mod challenges;
mod hub_batch;
mod issuance;
mod latency;
mod locks;
mod observe;
pub(crate) mod rate_limit;
mod recent;
mod status;
mod tenants;
#[cfg(test)]
mod tests;
mod throttle;
mod transport;

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::Utc;
use dps_attestation::sas::ExpiryPolicy;
use dps_hub::{HubDirectory, HubError, IotHub};
use dps_model::registration::new_operation_id;
use dps_model::registration::{TpmRegistrationResult, X509RegistrationResult};
use dps_model::{
    AttestationType, DeviceRegistrationRequest, ETag, Enrollment as _, ErrorCode, IdScope,
    LinkedHub, OperationKind, OperationRecord, ProvisioningStatus, RegistrationId,
    RegistrationOperation, RegistrationOperationStatus, RegistrationRecord, RegistrationStatus,
};
use dps_storage::Store;
use rustls::pki_types::CertificateDer;

use self::assign::{Assigned, Assignment, Failure};
use self::authenticate::{
    unauthorized, Authentication, Authenticator, Evidence, MatchedEnrollment,
};
use self::challenges::ChallengeSeconds;
pub use self::latency::{
    LatencyHistogram, LatencySnapshot, PipelineLatency, TransportLatency, EXPOSED_EDGES_SECONDS,
};
use self::locks::DeviceLocks;
use self::recent::{RecentOperation, RecentOperations};
pub use self::tenants::{TenantCache, TenantView};
pub(crate) use self::throttle::throttled;
use self::throttle::Throttle;
pub use self::transport::TransportKind;
use crate::respond::ApiError;

/// How a device proved itself on this request.
#[derive(Clone, Debug, Default)]
pub struct DeviceCredentials {
    /// The `Authorization` header (HTTPS) or CONNECT password (MQTT).
    pub sas_token: Option<String>,
    /// The TLS client certificate chain, leaf first.
    pub client_chain: Arc<Vec<CertificateDer<'static>>>,
}

/// One device instruction, as any transport hands it over.
#[derive(Clone, Debug)]
pub struct DeviceRequest {
    /// The ID scope, as sent.
    pub id_scope: String,
    /// The registration id, as sent.
    pub registration_id: String,
    /// The device's api-version.
    pub api_version: String,
    /// Its credentials.
    pub credentials: DeviceCredentials,
    /// Its address (lowest-latency allocation).
    pub peer: IpAddr,
    /// The transport it came over (metrics and logs).
    pub transport: TransportKind,
}

/// The answer to a register instruction.
#[derive(Clone, Debug, PartialEq)]
pub enum RegisterAnswer {
    /// `202 assigning` with an operation id; the final state is stored.
    Accepted(RegistrationOperationStatus),
    /// The final state right away (tenant setting `synchronousRegister`).
    Final(RegistrationOperationStatus),
    /// TPM: activate this blob and sign a token with the key inside.
    TpmChallenge {
        /// The activation blob (`authenticationKey`).
        authentication_key: String,
    },
}

/// Gives the pipeline a hub client for a linked hub.
pub trait HubConnector: Send + Sync {
    /// The client for this hub.
    fn hub(&self, linked: &LinkedHub) -> Result<Arc<dyn IotHub>, HubError>;
}

impl HubConnector for HubDirectory {
    fn hub(&self, linked: &LinkedHub) -> Result<Arc<dyn IotHub>, HubError> {
        Ok(self.get(linked)? as Arc<dyn IotHub>)
    }
}

/// The registration pipeline.
pub struct Pipeline {
    store: Arc<dyn Store>,
    hubs: Arc<dyn HubConnector>,
    hub_batches: hub_batch::HubBatches,
    allocator: Arc<dps_allocation::Allocator>,
    tenants: Arc<TenantCache>,
    expiry: ExpiryPolicy,
    throttle: Throttle,
    locks: DeviceLocks,
    challenges: ChallengeSeconds,
    recent: RecentOperations,
    /// Counters and latency, read by `/metrics` (see `observe.rs`).
    metrics: Arc<crate::metrics::device::DeviceMetrics>,
    /// The rate-limited line per refused or failed registration.
    refusal_log: crate::metrics::refusal_log::RefusalLog,
    /// X.509 chain verification, off the async workers.
    attest: attest_pool::AttestPool,
    /// Unseals tenant CA keys for certificate issuance (issue #17).
    certificate_key: Option<Arc<crate::certificate_authority::KeyEncryptionKey>>,
    /// Tenant CAs ready to sign, built once each.
    issuers: issuance::IssuerCache,
}

impl Pipeline {
    /// A pipeline over these parts.
    pub fn new(
        store: Arc<dyn Store>,
        hubs: Arc<dyn HubConnector>,
        allocator: Arc<dps_allocation::Allocator>,
        tenants: Arc<TenantCache>,
        expiry: ExpiryPolicy,
        throttling: &crate::config::ThrottlingConfig,
    ) -> Self {
        Pipeline {
            store,
            hubs,
            hub_batches: Default::default(),
            allocator,
            tenants,
            expiry,
            throttle: Throttle::new(throttling),
            locks: DeviceLocks::default(),
            challenges: ChallengeSeconds::default(),
            recent: RecentOperations::default(),
            metrics: Arc::default(),
            refusal_log: Default::default(),
            attest: attest_pool::AttestPool::default(),
            certificate_key: None,
            issuers: Default::default(),
        }
    }

    /// Issue certificates for registrations that carry a CSR, with tenant
    /// CA keys unsealed by `key` (without it such a registration fails
    /// with a 500).
    pub fn with_certificate_key(
        mut self,
        key: Arc<crate::certificate_authority::KeyEncryptionKey>,
    ) -> Self {
        self.certificate_key = Some(key);
        self
    }

    async fn view(
        &self,
        request: &DeviceRequest,
    ) -> Result<(Arc<TenantView>, RegistrationId), ApiError> {
        // An unknown or malformed scope gets the same answer as a bad token;
        // the registration id is checked first, so a malformed one gets the
        // same 400 whether the scope exists or not.
        let registration_id = RegistrationId::new(request.registration_id.as_str())?;
        // Specific reasons for the operator's log; the device gets the
        // generic refusal (`guarded`).
        let scope = IdScope::new(request.id_scope.as_str())
            .map_err(|_| ApiError::unauthorized("Unauthorized: malformed ID scope."))?;
        let view = self
            .tenants
            .get(self.store.as_ref(), &scope)
            .await?
            .ok_or_else(|| ApiError::unauthorized("Unauthorized: no tenant has this ID scope."))?;
        Ok((view, registration_id))
    }

    async fn authenticate(
        &self,
        view: &TenantView,
        registration_id: &RegistrationId,
        request: &DeviceRequest,
        body: Option<&DeviceRegistrationRequest>,
        allow_challenge: bool,
        known_individual: Option<&Option<Arc<dps_model::IndividualEnrollment>>>,
    ) -> Result<Authentication, ApiError> {
        let started = std::time::Instant::now();
        let authentication = Authenticator {
            store: self.store.as_ref(),
            view,
            registration_id,
            expiry: &self.expiry,
            known_individual,
            attest: &self.attest,
            challenges: &self.challenges,
        }
        .authenticate(
            &request.credentials,
            body.and_then(|b| b.tpm.as_ref()),
            allow_challenge,
        )
        .await;
        self.metrics.attestation(started.elapsed());
        authentication
    }

    /// The server-side time of device instructions so far.
    pub fn latency(&self) -> Arc<PipelineLatency> {
        self.metrics.latency.clone()
    }

    /// Register (D1): authenticate, assign, store; answer `202 assigning`.
    /// Counted (transport, outcome, code, latency) and, when refused or
    /// failed, logged — here, for every transport.
    pub async fn register(
        &self,
        request: &DeviceRequest,
        body: DeviceRegistrationRequest,
    ) -> Result<RegisterAnswer, ApiError> {
        let started = std::time::Instant::now();
        let _in_flight = self.metrics.in_flight();
        let answer = self
            .guarded("register", request, self.register_untimed(request, body))
            .await;
        self.observe_register(request, &answer, started.elapsed());
        answer.map(|settled| settled.answer)
    }

    /// Every device instruction runs inside this: an address that failed
    /// too often is refused before any work, and every refusal (`401`)
    /// leaves as the one generic refusal — the same bytes whether the scope,
    /// the enrollment or the signature was wrong, and no clock — counted
    /// against the address and the scope (see `throttle.rs`). Every error
    /// answer is logged once here with its specific reason (rate-limited,
    /// see `metrics/refusal_log.rs`).
    async fn guarded<T>(
        &self,
        instruction: &'static str,
        request: &DeviceRequest,
        work: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        if let Err(throttled) = self.throttle.check_address(request.peer) {
            self.observe_error(instruction, request, &throttled);
            return Err(throttled);
        }
        match work.await {
            Err(refusal) if refusal.code.http_status() == 401 => {
                self.observe_error(instruction, request, &refusal);
                Err(self
                    .throttle
                    .failed(request.peer, &request.id_scope, unauthorized()))
            }
            Err(error) => {
                self.observe_error(instruction, request, &error);
                Err(error)
            }
            answer => answer,
        }
    }

    async fn register_untimed(
        &self,
        request: &DeviceRequest,
        body: DeviceRegistrationRequest,
    ) -> Result<observe::Settled, ApiError> {
        let (view, registration_id) = self.view(request).await?;
        let device = match self
            .authenticate(&view, &registration_id, request, Some(&body), true, None)
            .await?
        {
            Authentication::TpmChallenge(blob) => {
                self.throttle.unauthenticated(request.peer);
                return Ok(observe::Settled::challenge(RegisterAnswer::TpmChallenge {
                    authentication_key: blob,
                }));
            }
            Authentication::Device(device) => device,
        };
        let scope = &view.tenant.id_scope;
        // Charged only once the device proved itself: strangers' requests
        // never spend a tenant's budget.
        self.throttle.admit_registration(scope)?;
        // Held across the webhook and hub calls; only this very device (this
        // scope, this id) can wait on it. See `locks.rs`.
        let _serialised = self.locks.lock(scope.key(), registration_id.key()).await;
        let previous = self
            .store
            .registration(scope, &registration_id)
            .await
            .map_err(ApiError::internal)?;

        let enabled = match &device.enrollment {
            MatchedEnrollment::Individual(e) => {
                e.provisioning_status == ProvisioningStatus::Enabled
            }
            MatchedEnrollment::Group(g) => g.provisioning_status() == ProvisioningStatus::Enabled,
        };
        // Every refusal of the CSR comes here, before the hub or the store.
        let issuance = if enabled {
            issuance::prepare(issuance::IssuanceRequest {
                store: self.store.as_ref(),
                key: self.certificate_key.as_ref(),
                issuers: &self.issuers,
                scope,
                registration_id: &registration_id,
                enrollment: &device.enrollment,
                api_version: &request.api_version,
                csr: body.csr.as_deref(),
            })
            .await?
        } else {
            None
        };
        let outcome = if enabled {
            Assignment {
                hubs: &self.hubs,
                hub_batches: &self.hub_batches,
                allocator: &self.allocator,
                metrics: &self.metrics,
                view: &view,
                registration_id: &registration_id,
                device: &device,
                previous: previous.as_ref(),
                api_version: &request.api_version,
                payload: body.payload.as_ref(),
                peer: request.peer,
                storage_root_key: body
                    .tpm
                    .as_ref()
                    .and_then(|t| t.storage_root_key.as_deref()),
                issuance: issuance.as_ref(),
            }
            .run()
            .await
            .map(Some)
        } else {
            Ok(None)
        };

        let now = Utc::now();
        let enrollment_group_id = device.enrollment.as_ref().group_id().cloned();
        let attestation_type = match &device.evidence {
            Evidence::SymmetricKey { .. } => AttestationType::SymmetricKey,
            Evidence::X509 { .. } => AttestationType::X509,
            Evidence::Tpm(_) => AttestationType::Tpm,
        };
        let x509 = match &device.evidence {
            Evidence::X509 { leaf, signing } => Some(X509RegistrationResult {
                certificate_info: Some(leaf.clone()),
                enrollment_group_id: enrollment_group_id.as_ref().map(|g| g.as_str().to_owned()),
                signing_certificate_info: signing.clone(),
            }),
            _ => None,
        };
        // A failed or refused attempt keeps the hub the device already had.
        let mut record = RegistrationRecord {
            registration_id: registration_id.clone(),
            enrollment_group_id,
            attestation_type,
            created: previous.as_ref().map_or(now, |p| p.created),
            last_updated: now,
            assigned_hub: previous.as_ref().and_then(|p| p.assigned_hub.clone()),
            device_id: previous.as_ref().and_then(|p| p.device_id.clone()),
            status: RegistrationStatus::Disabled,
            substatus: None,
            error_code: None,
            error_message: None,
            etag: ETag::generate(),
            payload: None,
            tpm: None,
            x509,
        };
        let mut billing = None;
        let mut issued = None;
        match outcome {
            Ok(Some(Assigned {
                hub,
                device_id,
                substatus,
                payload,
                tpm_authentication_key,
                issued: leaf,
            })) => {
                issued = leaf;
                let kind = if previous
                    .as_ref()
                    .is_some_and(|p| p.status == RegistrationStatus::Assigned)
                {
                    OperationKind::ReRegistration
                } else {
                    OperationKind::Registration
                };
                billing = Some(OperationRecord::now(
                    scope,
                    kind,
                    Some(registration_id.as_str().to_owned()),
                ));
                record.status = RegistrationStatus::Assigned;
                record.assigned_hub = Some(hub);
                record.device_id = Some(device_id);
                record.substatus = Some(substatus);
                record.payload = payload;
                record.tpm = tpm_authentication_key.map(|k| TpmRegistrationResult {
                    authentication_key: k,
                });
            }
            Ok(None) => {
                record.error_code = Some(ErrorCode::ENROLLMENT_DISABLED.0);
                record.error_message = Some("The enrollment is disabled.".to_owned());
            }
            Err(Failure { code, message }) => {
                record.status = RegistrationStatus::Failed;
                record.error_code = Some(code.0);
                record.error_message = Some(message);
            }
        }

        // Counted and logged by `register` (`observe.rs`).
        let error = record.error_code.zip(record.error_message.clone());
        let operation_id = new_operation_id();
        // The chain is in the operation's answer only: a status lookup
        // (the record) never shows it.
        let mut state = record.to_result();
        state.issued_certificate_chain = issued.as_ref().map(|leaf| leaf.chain.clone());
        let final_status = RegistrationOperationStatus {
            operation_id: operation_id.clone(),
            status: record.status,
            registration_state: Some(state),
        };
        let operation = RegistrationOperation {
            operation_id: operation_id.clone(),
            registration_id: registration_id.clone(),
            created: now,
            status: final_status.clone(),
        };
        let recent = RecentOperation {
            operation: operation.clone(),
            individual: match &device.enrollment {
                MatchedEnrollment::Individual(e) => Some(e.clone()),
                MatchedEnrollment::Group(_) => None,
            },
        };
        // The certificate is stored in the record's transaction: none is
        // returned without being recorded, none recorded without its record.
        match issued {
            Some(leaf) => self.store.commit_registration_with_certificate(
                scope,
                record,
                operation,
                billing,
                leaf.record,
            ),
            None => self
                .store
                .commit_registration(scope, record, operation, billing),
        }
        .await
        .map_err(ApiError::internal)?;
        self.recent.insert(scope, recent);

        let status = Some(final_status.status);
        let answer = if view.tenant.synchronous_register {
            RegisterAnswer::Final(final_status)
        } else {
            RegisterAnswer::Accepted(RegistrationOperationStatus {
                operation_id,
                status: RegistrationStatus::Assigning,
                registration_state: None,
            })
        };
        Ok(observe::Settled {
            answer,
            status,
            error,
        })
    }

    /// Authenticate a device without an instruction, as MQTT does at CONNECT:
    /// the same checks and the same refusals as the first step of every
    /// instruction (an unknown scope and a bad credential look alike).
    pub async fn authenticate_device(&self, request: &DeviceRequest) -> Result<(), ApiError> {
        self.guarded("connect", request, async {
            let (view, registration_id) = self.view(request).await?;
            self.authenticated_device(&view, &registration_id, request, None)
                .await
        })
        .await
    }

    /// Poll (D2): the stored answer of an operation of this device.
    pub async fn operation_status(
        &self,
        request: &DeviceRequest,
        operation_id: &str,
    ) -> Result<RegistrationOperationStatus, ApiError> {
        let started = std::time::Instant::now();
        let answer = self
            .guarded(
                "poll",
                request,
                self.operation_status_untimed(request, operation_id),
            )
            .await;
        self.metrics
            .latency
            .poll
            .record(request.transport, started.elapsed());
        answer
    }

    async fn operation_status_untimed(
        &self,
        request: &DeviceRequest,
        operation_id: &str,
    ) -> Result<RegistrationOperationStatus, ApiError> {
        let (view, registration_id) = self.view(request).await?;
        let not_found = || ApiError::unknown_operation(operation_id);
        if let Some(recent) = self
            .recent
            .get(&view.tenant.id_scope, operation_id)
            .filter(|recent| recent.operation.registration_id == registration_id)
        {
            self.authenticated_device(&view, &registration_id, request, Some(&recent.individual))
                .await?;
            self.throttle.admit_poll(&view.tenant.id_scope)?;
            return Ok(issuance::for_version(
                recent.operation.status.clone(),
                &request.api_version,
            ));
        }
        self.authenticated_device(&view, &registration_id, request, None)
            .await?;
        self.throttle.admit_poll(&view.tenant.id_scope)?;
        let operation = self
            .store
            .registration_operation(&view.tenant.id_scope, operation_id)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(not_found)?;
        if operation.registration_id != registration_id {
            return Err(not_found());
        }
        Ok(issuance::for_version(
            operation.status,
            &request.api_version,
        ))
    }

    async fn authenticated_device(
        &self,
        view: &TenantView,
        registration_id: &RegistrationId,
        request: &DeviceRequest,
        known_individual: Option<&Option<Arc<dps_model::IndividualEnrollment>>>,
    ) -> Result<(), ApiError> {
        match self
            .authenticate(
                view,
                registration_id,
                request,
                None,
                false,
                known_individual,
            )
            .await?
        {
            Authentication::Device(_) => Ok(()),
            Authentication::TpmChallenge(_) => Err(unauthorized()),
        }
    }
}
