//! The pipeline over the in-memory store, judged at chosen instants (the
//! expiry policy's fixed clock), for what end-to-end tests cannot reach:
//! a TPM challenge key older than its lifetime.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use dps_allocation::{Allocator, AllocatorConfig};
use dps_attestation::sas::{create_token, registration_resource, ExpiryPolicy, SymmetricKey};
use dps_attestation::tpm::{ChallengeKeys, CHALLENGE_LIFETIME_SECS};
use dps_hub::{HubClientOptions, HubDirectory};
use dps_model::{ErrorCode, IdScope, IndividualEnrollment, Precondition, Tenant};
use dps_storage::{MemoryStore, Store};

use super::{DeviceCredentials, DeviceRequest, Pipeline, TenantCache};
use crate::config::ThrottlingConfig;

const DEVICE: &str = "tpm-device";
/// Any base64: the token path derives keys from the enrolled string as is.
const ENDORSEMENT_KEY: &str = "AAEAAQ==";
const ISSUED: u64 = 1_800_000_000;

struct Fixture {
    store: Arc<dyn Store>,
    tenants: Arc<TenantCache>,
    tenant: Tenant,
}

impl Fixture {
    async fn new() -> Fixture {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let tenant = store
            .create_tenant(Tenant::new("tpm-tenant", "tpm.localhost").unwrap())
            .await
            .unwrap();
        let enrollment = IndividualEnrollment::from_json(
            serde_json::json!({"registrationId": DEVICE, "attestation": {"type": "tpm",
                "tpm": {"endorsementKey": ENDORSEMENT_KEY}}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        store
            .put_enrollment(&tenant.id_scope, enrollment, Precondition::None)
            .await
            .unwrap();
        Fixture {
            store,
            tenants: Arc::new(TenantCache::default()),
            tenant,
        }
    }

    /// A pipeline whose clock reads `now`.
    fn pipeline_at(&self, now: u64) -> Pipeline {
        Pipeline::new(
            self.store.clone(),
            Arc::new(HubDirectory::new(HubClientOptions::default()).unwrap()),
            Arc::new(Allocator::new(AllocatorConfig::default()).unwrap()),
            self.tenants.clone(),
            ExpiryPolicy::at(now),
            &ThrottlingConfig::default(),
        )
    }

    /// A registration token signed with the key of a challenge issued at `issued_at`.
    fn token_of_challenge(&self, issued_at: u64) -> String {
        let secret = SymmetricKey::from_base64(&self.tenant.challenge_secret).unwrap();
        let key = ChallengeKeys::new(secret, DEVICE, ENDORSEMENT_KEY).key(issued_at);
        create_token(
            &registration_resource(self.tenant.id_scope.as_str(), DEVICE),
            &SymmetricKey::from_bytes(key.to_vec()),
            ISSUED + 3_600,
            Some("registration"),
        )
    }

    fn request(&self, scope: &str, registration_id: &str, token: String) -> DeviceRequest {
        DeviceRequest {
            id_scope: scope.to_owned(),
            registration_id: registration_id.to_owned(),
            api_version: "2021-06-01".to_owned(),
            credentials: DeviceCredentials {
                sas_token: Some(token),
                client_chain: Arc::default(),
            },
            peer: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            transport: super::TransportKind::Https,
        }
    }
}

#[tokio::test]
async fn a_token_signed_with_an_expired_challenge_key_is_refused() {
    let fixture = Fixture::new().await;
    let scope = fixture.tenant.id_scope.to_string();
    let token = fixture.token_of_challenge(ISSUED);
    let request = fixture.request(&scope, DEVICE, token);

    // Within the challenge's lifetime, on any replica (a fresh pipeline).
    for now in [ISSUED, ISSUED + 10, ISSUED + CHALLENGE_LIFETIME_SECS] {
        let pipeline = fixture.pipeline_at(now);
        assert_eq!(
            pipeline.authenticate_device(&request).await,
            Ok(()),
            "{now}"
        );
    }
    // After it, the same token is refused although its `se` lies ahead.
    let refused = fixture
        .pipeline_at(ISSUED + CHALLENGE_LIFETIME_SECS + 1)
        .authenticate_device(&request)
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::UNAUTHORIZED);
    // A newer challenge's key still works then.
    let newer = fixture.request(
        &scope,
        DEVICE,
        fixture.token_of_challenge(ISSUED + CHALLENGE_LIFETIME_SECS),
    );
    assert_eq!(
        fixture
            .pipeline_at(ISSUED + CHALLENGE_LIFETIME_SECS + 1)
            .authenticate_device(&newer)
            .await,
        Ok(())
    );
}

#[tokio::test]
async fn a_malformed_registration_id_answers_alike_for_known_and_unknown_scopes() {
    let fixture = Fixture::new().await;
    let pipeline = fixture.pipeline_at(ISSUED);
    let known = fixture.tenant.id_scope.to_string();
    let unknown = if IdScope::new("0ne00FFFFFF").unwrap() == fixture.tenant.id_scope {
        "0ne00EEEEEE"
    } else {
        "0ne00FFFFFF"
    };
    let answer = |scope: &str| {
        let request = fixture.request(scope, "not a valid id!", "x".to_owned());
        let pipeline = &pipeline;
        async move { pipeline.authenticate_device(&request).await.unwrap_err() }
    };
    let (known, unknown) = (answer(&known).await, answer(unknown).await);
    assert_eq!(known.code, ErrorCode::INVALID_REGISTRATION_ID);
    assert_eq!(known, unknown);
}
