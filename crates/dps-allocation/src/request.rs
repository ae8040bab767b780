//! What a policy is asked and what it answers.

use std::net::IpAddr;

use async_trait::async_trait;
use dps_model::enrollment::EnrollmentRef;
use dps_model::{AllocationPolicy, InitialTwin, RegistrationId, X509CertificateInfo};
use serde_json::{Map, Value};

use crate::hubs::{candidate_hubs, Candidates, HubTable};
use crate::AllocationError;

/// How the device attested in this registration, as the custom webhook sees
/// it in `deviceRuntimeContext` (spec §5). Carries no secret.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum DeviceAttestation<'a> {
    /// Symmetric key: sent as `"symmetricKey": {}`.
    #[default]
    SymmetricKey,
    /// X.509: sent as `"x509": {"certificateInfo": …, "signingCertificateInfo": …}`
    /// (the shape of `registrationState.x509` in the device API).
    X509 {
        /// The device (leaf) certificate.
        certificate: Option<&'a X509CertificateInfo>,
        /// The group certificate that signed the chain, for group enrollments.
        signing_certificate: Option<&'a X509CertificateInfo>,
    },
    /// TPM: sent as `"tpm": {"endorsementKey": …, "storageRootKey": …}`.
    Tpm {
        /// base64 EK public part.
        endorsement_key: &'a str,
        /// base64 SRK public part.
        storage_root_key: Option<&'a str>,
    },
}

impl DeviceAttestation<'_> {
    /// The `deviceRuntimeContext` member name and value.
    pub fn to_json(&self) -> (&'static str, Value) {
        match *self {
            DeviceAttestation::SymmetricKey => ("symmetricKey", Value::Object(Map::new())),
            DeviceAttestation::X509 {
                certificate,
                signing_certificate,
            } => {
                let mut map = Map::new();
                if let Some(info) = certificate {
                    map.insert("certificateInfo".to_owned(), to_value(info));
                }
                if let Some(info) = signing_certificate {
                    map.insert("signingCertificateInfo".to_owned(), to_value(info));
                }
                ("x509", Value::Object(map))
            }
            DeviceAttestation::Tpm {
                endorsement_key,
                storage_root_key,
            } => {
                let mut map = Map::new();
                map.insert(
                    "endorsementKey".to_owned(),
                    Value::String(endorsement_key.to_owned()),
                );
                if let Some(srk) = storage_root_key {
                    map.insert("storageRootKey".to_owned(), Value::String(srk.to_owned()));
                }
                ("tpm", Value::Object(map))
            }
        }
    }
}

fn to_value(info: &X509CertificateInfo) -> Value {
    // A struct of strings and an integer always serialises.
    serde_json::to_value(info).unwrap_or(Value::Null)
}

/// What is known about the device at registration time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DeviceContext<'a> {
    /// The hub the device is assigned to, if it was assigned before.
    pub current_hub: Option<&'a str>,
    /// Its device id on that hub, if it was assigned before.
    pub current_device_id: Option<&'a str>,
    /// How it attested.
    pub attestation: DeviceAttestation<'a>,
    /// The `payload` of its registration request.
    pub payload: Option<&'a Value>,
    /// The address it connected from (for the lowest-latency policy).
    pub source_ip: Option<IpAddr>,
}

/// One allocation question: which hub for this device?
#[derive(Clone, Copy, Debug)]
pub struct AllocationRequest<'a> {
    /// The device's registration id.
    pub registration_id: &'a RegistrationId,
    /// The enrollment it registers through.
    pub enrollment: EnrollmentRef<'a>,
    /// The tenant's linked hubs.
    pub hubs: &'a HubTable,
    /// The policy and the hubs it may choose from.
    pub candidates: Candidates,
    /// The device's side of the story.
    pub device: DeviceContext<'a>,
}

impl<'a> AllocationRequest<'a> {
    /// A request whose policy and candidates come from [`candidate_hubs`];
    /// fill [`AllocationRequest::device`] afterwards.
    pub fn new(
        registration_id: &'a RegistrationId,
        enrollment: EnrollmentRef<'a>,
        hubs: &'a HubTable,
        default_policy: AllocationPolicy,
    ) -> Result<Self, AllocationError> {
        let candidates = candidate_hubs(enrollment.as_enrollment(), hubs, default_policy)?;
        Ok(AllocationRequest {
            registration_id,
            enrollment,
            hubs,
            candidates,
            device: DeviceContext::default(),
        })
    }

    /// The same request with another device context.
    pub fn with_device(mut self, device: DeviceContext<'a>) -> Self {
        self.device = device;
        self
    }
}

/// A policy's answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Allocation {
    /// The chosen hub, spelled as linked.
    pub hub_host_name: String,
    /// A twin that replaces the enrollment's initial twin (custom webhook only).
    pub initial_twin: Option<InitialTwin>,
    /// Data returned to the device as `registrationState.payload` (custom webhook only).
    pub payload: Option<Value>,
}

impl Allocation {
    /// An answer that is just a hub.
    pub fn hub(hub_host_name: impl Into<String>) -> Self {
        Allocation {
            hub_host_name: hub_host_name.into(),
            initial_twin: None,
            payload: None,
        }
    }
}

/// An allocation policy: picks one of `request.candidates.hubs`.
///
/// Implementations must only return a hub of the candidate set (the shared
/// test battery checks this) and should be deterministic for a given request
/// so that repeat registrations land on the same hub.
#[async_trait]
pub trait Policy: Send + Sync {
    /// Which `allocationPolicy` value this implements.
    fn kind(&self) -> AllocationPolicy;

    /// Choose a hub.
    async fn allocate(
        &self,
        request: &AllocationRequest<'_>,
    ) -> Result<Allocation, AllocationError>;
}
