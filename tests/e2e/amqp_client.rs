//! `dps-client` over AMQP (5671) and AMQP over WebSocket (443,
//! `AMQPWSB10`) against our server: symmetric keys (individual and
//! group-derived), X.509 (individual, and a CA group through an
//! intermediate), TPM through the SASL challenge with the software TPM —
//! each ending with the identity and its initial twin on the hub emulator —
//! and the refusals, which must be prompt errors, not retries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use dps_client::{ClientError, Credential, Tpm2Tools, TpmDevice as _, Transport};
use dps_e2e::certs;
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_e2e::swtpm::{missing_tools, SoftwareTpm};
use dps_model::*;
use serde_json::json;

use crate::client_credentials::{client, put_enrollment, put_group, trust_verified_ca};
use crate::mqtt_fixtures::{self as fixtures, Credential as Fixture};

const TRANSPORTS: [(Transport, &str); 2] = [(Transport::Amqp, "tls"), (Transport::AmqpWs, "ws")];

fn credential(fixture: &Fixture) -> Result<Credential> {
    Ok(match fixture {
        Fixture::Key(key) => Credential::symmetric_key(key)?,
        Fixture::Certificate { chain_pem, key_pem } => Credential::X509 {
            chain_pem: chain_pem.clone(),
            key_pem: key_pem.clone(),
        },
    })
}

/// Provision `id` over `transport` and check it on the hub emulator, with
/// the initial twin when the enrollment has one.
async fn provisions(
    system: &TestSystem,
    id: &str,
    credential: Credential,
    transport: Transport,
) -> Result<dps_client::Registration> {
    let registration = client(system, id, credential)
        .transport(transport)
        .poll_interval(Duration::from_millis(50))
        .build()?
        .register()
        .await?;
    assert_eq!(registration.assigned_hub, "hub-a.test", "{id}");
    assert_eq!(registration.device_id, id);
    assert_eq!(
        registration.substatus,
        Some(RegistrationSubstatus::InitialAssignment)
    );
    fixtures::assert_on_hub(system, "hub-a.test", id);
    Ok(registration)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symmetric_key_and_x509_devices_provision_over_both_amqp_transports() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let root = certs::self_signed("amqp-root-ca", true);
    let intermediate = certs::signed_by("amqp-intermediate", true, &root);
    trust_verified_ca(&system, "amqp-root", &root.pem()).await?;
    // Groups first: the tenant view (groups included) is cached for 2 s.
    put_group(
        &system,
        json!({"enrollmentGroupId": "amqp-x509-group", "attestation": {"type": "x509",
            "x509": {"caReferences": {"primary": "amqp-root"}}},
            "initialTwin": {"tags": {"transport": "amqp-x509-group"}}}),
    )
    .await;
    let mut group_keys = Vec::new();
    for (_, suffix) in TRANSPORTS {
        let device = format!("amqp-grp-{suffix}");
        group_keys.push(
            fixtures::symmetric_group(&system, &format!("amqp-group-{suffix}"), &device).await?,
        );
    }
    for ((transport, suffix), group_key) in TRANSPORTS.into_iter().zip(group_keys) {
        let id = format!("amqp-sym-{suffix}");
        let key = fixtures::symmetric_individual(&system, &id).await?;
        let registration = provisions(
            &system,
            &id,
            credential(&Fixture::Key(key.clone()))?,
            transport,
        )
        .await?;
        let connection_string = registration.hub_connection_string.expect("a SAS device");
        assert!(connection_string.ends_with(&format!("SharedAccessKey={key}")));
        let twin = system.hubs.twin("hub-a.test", &id).expect("twin");
        assert_eq!(twin.tags.expect("tags")["transport"], "mqtt");

        let group_device = format!("amqp-grp-{suffix}");
        provisions(
            &system,
            &group_device,
            credential(&Fixture::Key(group_key))?,
            transport,
        )
        .await?;

        let id = format!("amqp-x509-{suffix}");
        let device = fixtures::x509_individual(&system, &id).await?;
        let registration = provisions(&system, &id, credential(&device)?, transport).await?;
        assert!(registration.hub_connection_string.is_none());

        // A CA group: the leaf and the intermediate ride in the TLS chain.
        let id = format!("amqp-x509-grp-{suffix}");
        let leaf = certs::signed_by(&id, false, &intermediate);
        let chained = Credential::X509 {
            chain_pem: format!("{}{}", leaf.pem(), intermediate.pem()),
            key_pem: leaf.key_pem(),
        };
        let registration = provisions(&system, &id, chained, transport).await?;
        let x509 = registration.raw.x509.as_ref().expect("x509 result");
        assert_eq!(x509.enrollment_group_id.as_deref(), Some("amqp-x509-group"));
        let twin = system.hubs.twin("hub-a.test", &id).expect("twin");
        assert_eq!(twin.tags.expect("tags")["transport"], "amqp-x509-group");
    }
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_over_amqp_are_prompt_errors_not_retries() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let key = fixtures::symmetric_individual(&system, "amqp-refused").await?;
    let disabled_key = fixtures::symmetric_individual(&system, "amqp-off").await?;
    fixtures::disable(&system, "amqp-off").await?;
    // An enrolled certificate presented for another registration id.
    let Fixture::Certificate { chain_pem, key_pem } =
        fixtures::x509_individual(&system, "amqp-cn").await?
    else {
        unreachable!("x509_individual makes a certificate");
    };
    put_enrollment(
        &system,
        json!({"registrationId": "amqp-not-cn", "attestation": {"type": "x509",
            "x509": {"clientCertificates": {"primary": {"certificate": chain_pem.clone()}}}}}),
    )
    .await;
    for (transport, _) in TRANSPORTS {
        let refused = |scope: String, id: &'static str, credential: Credential| {
            dps_client::ProvisioningClient::builder(system.device_host.clone(), scope, id)
                .credential(credential)
                .system_roots(false)
                .trust_ca_pem(system.server.trust_pem().to_owned())
                .transport(transport)
                .timeout(Duration::from_secs(20))
                .build()
        };
        let scope = system.scope().to_string();
        let cases = [
            (
                scope.clone(),
                "amqp-refused",
                Credential::symmetric_key(&dps_attestation::keys::generate_key())?,
            ),
            (
                fixtures::unknown_scope(),
                "amqp-refused",
                Credential::symmetric_key(&key)?,
            ),
            (
                scope.clone(),
                "amqp-nobody",
                Credential::symmetric_key(&key)?,
            ),
            (
                scope.clone(),
                "amqp-not-cn",
                Credential::X509 {
                    chain_pem: chain_pem.clone(),
                    key_pem: key_pem.clone(),
                },
            ),
        ];
        for (case_scope, id, credential) in cases {
            let started = Instant::now();
            let error = refused(case_scope, id, credential)?
                .register()
                .await
                .expect_err("refused");
            assert!(
                matches!(
                    error,
                    ClientError::Authentication {
                        status: 401,
                        error_code: Some(401002),
                        ..
                    }
                ),
                "{transport:?} {id}: {error:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(3), "{error}");
        }
        let error = refused(scope, "amqp-off", Credential::symmetric_key(&disabled_key)?)?
            .register()
            .await
            .expect_err("disabled");
        assert!(
            matches!(error, ClientError::Disabled),
            "{transport:?}: {error}"
        );
    }
    for id in ["amqp-off", "amqp-refused", "amqp-not-cn"] {
        assert!(system.hubs.device("hub-a.test", id).is_none(), "{id}");
    }
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpm_device_provisions_over_amqp_through_the_sasl_challenge() -> Result<()> {
    if let Some(why) = missing_tools() {
        eprintln!("SKIPPED TPM over AMQP: {why}");
        return Ok(());
    }
    let system = TestSystem::start(SystemOptions::default()).await?;
    for (transport, suffix) in TRANSPORTS {
        let swtpm = SoftwareTpm::start()?;
        let tpm = Arc::new(Tpm2Tools::new(swtpm.tcti())?);
        let (endorsement_key, registration_id) = {
            let tpm = tpm.clone();
            tokio::task::spawn_blocking(move || {
                Ok::<_, ClientError>((tpm.endorsement_key()?, tpm.registration_id()?))
            })
            .await??
        };
        put_enrollment(
            &system,
            json!({"registrationId": registration_id, "attestation": {"type": "tpm",
                "tpm": {"endorsementKey": BASE64.encode(&endorsement_key)}},
                "initialTwin": {"tags": {"transport": format!("amqp-tpm-{suffix}")}}}),
        )
        .await;
        let registration = client(&system, &registration_id, Credential::Tpm(tpm.clone()))
            .transport(transport)
            .poll_interval(Duration::from_millis(50))
            .timeout(Duration::from_secs(120))
            .build()?
            .register()
            .await?;
        assert_eq!(registration.assigned_hub, "hub-a.test");
        assert_eq!(registration.device_id, registration_id);
        assert!(
            registration.raw.tpm.is_some(),
            "the hub key's activation blob"
        );
        let twin = system
            .hubs
            .twin("hub-a.test", &registration_id)
            .expect("twin");
        assert_eq!(
            twin.tags.expect("tags")["transport"],
            format!("amqp-tpm-{suffix}")
        );

        // The TPM now holds the hub key: a hub token it signs verifies
        // with the key the hub emulator was given.
        let hub_key = system
            .hubs
            .device("hub-a.test", &registration_id)
            .and_then(|d| d.authentication)
            .and_then(|a| a.symmetric_key)
            .and_then(|k| k.primary_key)
            .expect("a SAS identity on the hub");
        let hub_key = dps_attestation::sas::SymmetricKey::from_base64(&hub_key)?;
        let signed = {
            let tpm = tpm.clone();
            tokio::task::spawn_blocking(move || tpm.hmac_sha256(b"hub token")).await??
        };
        assert_eq!(signed, hub_key.hmac_sha256(b"hub token").to_vec());
    }

    // A TPM whose endorsement key is not the enrolled one is refused in SASL.
    let (enrolled, other) = (SoftwareTpm::start()?, SoftwareTpm::start()?);
    let enrolled = Tpm2Tools::new(enrolled.tcti())?;
    let enrolled_key = tokio::task::spawn_blocking(move || enrolled.endorsement_key()).await??;
    put_enrollment(
        &system,
        json!({"registrationId": "amqp-tpm-other", "attestation": {"type": "tpm",
            "tpm": {"endorsementKey": BASE64.encode(&enrolled_key)}}}),
    )
    .await;
    let device = Arc::new(Tpm2Tools::new(other.tcti())?);
    let started = Instant::now();
    let error = client(&system, "amqp-tpm-other", Credential::Tpm(device))
        .transport(Transport::Amqp)
        .timeout(Duration::from_secs(120))
        .build()?
        .register()
        .await
        .expect_err("another TPM's endorsement key");
    assert!(
        matches!(error, ClientError::Authentication { status: 401, .. }),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{error}");
    system.stop().await;
    Ok(())
}
