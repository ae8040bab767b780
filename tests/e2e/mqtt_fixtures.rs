//! Enrollments and credentials shared by the MQTT test modules.

use anyhow::Result;
use dps_attestation::keys::{derive_device_key, generate_key};
use dps_attestation::sas::SymmetricKey;
use dps_e2e::server::TestSystem;
use dps_model::*;
use serde_json::json;

use dps_e2e::certs;

/// How a device proves itself in a scenario.
#[derive(Clone)]
pub(crate) enum Credential {
    /// A base64 symmetric key (individual, or derived from a group key).
    Key(String),
    /// A PEM chain (leaf first) and its key.
    Certificate { chain_pem: String, key_pem: String },
}

/// An enabled symmetric-key individual enrollment with an initial twin tag.
pub(crate) async fn symmetric_individual(system: &TestSystem, id: &str) -> Result<String> {
    let key = generate_key();
    let enrollment = IndividualEnrollment::from_json(
        json!({
            "registrationId": id,
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": generate_key()}},
            "initialTwin": {"tags": {"transport": "mqtt"}}
        })
        .to_string()
        .as_bytes(),
    )?;
    system
        .server
        .store()
        .put_enrollment(system.scope(), enrollment, Precondition::None)
        .await?;
    Ok(key)
}

/// Store the enrollment group `group` (its service-API JSON).
async fn put_group(system: &TestSystem, group: serde_json::Value) -> Result<()> {
    let group = EnrollmentGroup::from_json(group.to_string().as_bytes())?;
    system
        .server
        .store()
        .put_enrollment_group(system.scope(), group, Precondition::None)
        .await?;
    Ok(())
}

/// A symmetric-key group; returns the device key derived for `device_id`.
pub(crate) async fn symmetric_group(
    system: &TestSystem,
    group_id: &str,
    device_id: &str,
) -> Result<String> {
    let group_key = generate_key();
    put_group(
        system,
        json!({"enrollmentGroupId": group_id, "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": group_key, "secondaryKey": generate_key()}}}),
    )
    .await?;
    Ok(derive_device_key(&SymmetricKey::from_base64(&group_key)?, device_id).to_base64())
}

/// A self-signed device certificate with an individual X.509 enrollment.
pub(crate) async fn x509_individual(system: &TestSystem, id: &str) -> Result<Credential> {
    let device = certs::self_signed(id, false);
    let enrollment = IndividualEnrollment::from_json(
        json!({"registrationId": id, "attestation": {"type": "x509",
            "x509": {"clientCertificates": {"primary": {"certificate": device.pem()}}}}})
        .to_string()
        .as_bytes(),
    )?;
    system
        .server
        .store()
        .put_enrollment(system.scope(), enrollment, Precondition::None)
        .await?;
    Ok(Credential::Certificate {
        chain_pem: device.pem(),
        key_pem: device.key_pem(),
    })
}

/// An X.509 group through a verified root CA (`{group_id}-root`); returns
/// the chain of a leaf for `device_id` signed by an intermediate (leaf and
/// intermediate sent, as devices do).
pub(crate) async fn x509_ca_group(
    system: &TestSystem,
    group_id: &str,
    device_id: &str,
) -> Result<Credential> {
    let root = certs::self_signed(&format!("{group_id}-root"), true);
    let intermediate = certs::signed_by(&format!("{group_id}-intermediate"), true, &root);
    let leaf = certs::signed_by(device_id, false, &intermediate);
    system.add_verified_ca(group_id, root.pem()).await?;
    put_group(
        system,
        json!({"enrollmentGroupId": group_id, "attestation": {"type": "x509",
            "x509": {"caReferences": {"primary": group_id}}}}),
    )
    .await?;
    Ok(Credential::Certificate {
        chain_pem: format!("{}{}", leaf.pem(), intermediate.pem()),
        key_pem: leaf.key_pem(),
    })
}

/// Disable an individual enrollment.
pub(crate) async fn disable(system: &TestSystem, id: &str) -> Result<()> {
    let mut enrollment = system
        .server
        .store()
        .enrollment(system.scope(), &RegistrationId::new(id)?)
        .await?
        .expect("enrollment exists");
    enrollment.provisioning_status = ProvisioningStatus::Disabled;
    system
        .server
        .store()
        .put_enrollment(system.scope(), enrollment, Precondition::None)
        .await?;
    Ok(())
}

/// Turn the tenant's synchronous register on.
pub(crate) async fn synchronous_register(system: &TestSystem) -> Result<()> {
    let mut tenant = system.tenant.clone();
    tenant.synchronous_register = true;
    system
        .server
        .store()
        .replace_tenant(tenant, Precondition::None)
        .await?;
    Ok(())
}

/// The device is on the hub with the expected authentication.
pub(crate) fn assert_on_hub(system: &TestSystem, hub: &str, device_id: &str) {
    let device = system
        .hubs
        .device(hub, device_id)
        .unwrap_or_else(|| panic!("{device_id} is not on {hub}"));
    assert!(
        device.authentication.is_some(),
        "{device_id}: no authentication"
    );
}

/// A scope of the right shape that no tenant has.
pub(crate) fn unknown_scope() -> String {
    IdScope::generate().to_string()
}
