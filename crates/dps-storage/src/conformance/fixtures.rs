//! Records the battery writes.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use dps_model::{
    AllocationPolicy, AttestationMechanism, AttestationType, ETag, EnrollmentGroup,
    EnrollmentGroupId, IdScope, IndividualEnrollment, ProvisioningStatus, RegistrationId,
    RegistrationOperation, RegistrationOperationStatus, RegistrationRecord, RegistrationStatus,
    RegistrationSubstatus, Tenant,
};

use crate::Store;

/// Create the tenant every single-tenant test uses; its ID scope.
pub(crate) async fn scope_of(store: &Arc<dyn Store>) -> IdScope {
    store
        .create_tenant(tenant("contoso", "0ne00000A0A"))
        .await
        .unwrap()
        .id_scope
}

/// A registration id known to be valid.
pub(crate) fn reg(id: &str) -> RegistrationId {
    RegistrationId::new(id).unwrap()
}

/// A tenant named `name` with ID scope `scope`.
pub fn tenant(name: &str, scope: &str) -> Tenant {
    Tenant {
        name: name.to_owned(),
        id_scope: IdScope::new(scope).expect("valid scope"),
        service_host_name: format!("{name}.example"),
        default_allocation_policy: AllocationPolicy::Hashed,
        linked_hubs: Vec::new(),
        access_policies: Vec::new(),
        ca_certificates: Vec::new(),
        synchronous_register: false,
        challenge_secret: String::new(),
        etag: ETag::new("client-supplied"),
        created: crate::time::now(),
    }
}

/// A symmetric-key individual enrollment.
pub fn enrollment(registration_id: &str) -> IndividualEnrollment {
    IndividualEnrollment {
        registration_id: RegistrationId::new(registration_id).expect("valid id"),
        device_id: None,
        registration_state: None,
        optional_device_information: None,
        attestation: AttestationMechanism::symmetric_key(
            Some("cHJpbWFyeWtleXByaW1hcnlrZXk=".to_owned()),
            Some("c2Vjb25kYXJ5a2V5c2Vjb25kYXJ5".to_owned()),
        ),
        capabilities: None,
        iot_hub_host_name: None,
        initial_twin: None,
        initial_twin_state: None,
        etag: None,
        provisioning_status: ProvisioningStatus::Enabled,
        reprovision_policy: None,
        created_date_time_utc: None,
        last_updated_date_time_utc: None,
        allocation_policy: None,
        iot_hubs: None,
        custom_allocation_definition: None,
        client_certificate_issuance_policy: None,
        credential_policy_name: None,
    }
}

/// A symmetric-key enrollment group.
pub fn group(group_id: &str) -> EnrollmentGroup {
    EnrollmentGroup {
        enrollment_group_id: EnrollmentGroupId::new(group_id).expect("valid id"),
        attestation: AttestationMechanism::symmetric_key(
            Some("cHJpbWFyeWtleXByaW1hcnlrZXk=".to_owned()),
            None,
        ),
        capabilities: None,
        iot_hub_host_name: None,
        initial_twin: None,
        initial_twin_state: None,
        etag: None,
        provisioning_status: ProvisioningStatus::Enabled,
        reprovision_policy: None,
        created_date_time_utc: None,
        last_updated_date_time_utc: None,
        allocation_policy: None,
        iot_hubs: None,
        custom_allocation_definition: None,
        client_certificate_issuance_policy: None,
        credential_policy_name: None,
    }
}

/// An assigned registration record of `registration_id` (through `group`, if
/// any) made at `at`, and the operation answering it, with id `operation_id`.
pub fn registration(
    registration_id: &str,
    group: Option<&str>,
    operation_id: &str,
    at: DateTime<Utc>,
) -> (RegistrationRecord, RegistrationOperation) {
    let at = crate::time::truncate(at);
    let record = RegistrationRecord {
        registration_id: RegistrationId::new(registration_id).expect("valid id"),
        enrollment_group_id: group.map(|g| EnrollmentGroupId::new(g).expect("valid id")),
        attestation_type: AttestationType::SymmetricKey,
        created: at,
        last_updated: at,
        assigned_hub: Some("hub-a.example".to_owned()),
        device_id: Some(dps_model::DeviceId::new(registration_id).expect("valid id")),
        status: RegistrationStatus::Assigned,
        substatus: Some(RegistrationSubstatus::InitialAssignment),
        error_code: None,
        error_message: None,
        etag: ETag::generate(),
        payload: None,
        tpm: None,
        x509: None,
    };
    let operation = RegistrationOperation {
        operation_id: operation_id.to_owned(),
        registration_id: record.registration_id.clone(),
        created: at,
        status: RegistrationOperationStatus {
            operation_id: operation_id.to_owned(),
            status: RegistrationStatus::Assigned,
            registration_state: Some(record.to_result()),
        },
    };
    (record, operation)
}
