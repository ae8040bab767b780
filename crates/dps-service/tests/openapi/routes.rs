//! The service router's table written out (see the test file's opening):
//! every method and path with the access it demands.

/// Who may call a route (`Endpoint::access` in routes.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// No token.
    Public,
    /// A tenant policy holding this right (by its wire name).
    Right(&'static str),
    /// The operator token.
    Operator,
}

use Access::{Operator, Public, Right};

/// Every method and path the router resolves (`Endpoint::resolve`), with
/// the access `Endpoint::access` demands. Path parameters as `{name}`;
/// literal segments match case-insensitively.
pub(crate) const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/openapi.json", Public),
    // `record_ops`, individual enrollments
    ("POST", "/enrollments", Right("EnrollmentWrite")),
    ("POST", "/enrollments/query", Right("EnrollmentRead")),
    (
        "GET",
        "/enrollments/{registrationId}",
        Right("EnrollmentRead"),
    ),
    (
        "PUT",
        "/enrollments/{registrationId}",
        Right("EnrollmentWrite"),
    ),
    (
        "DELETE",
        "/enrollments/{registrationId}",
        Right("EnrollmentWrite"),
    ),
    (
        "POST",
        "/enrollments/{registrationId}/attestationmechanism",
        Right("EnrollmentRead"),
    ),
    // `record_ops`, enrollment groups
    ("POST", "/enrollmentGroups", Right("EnrollmentWrite")),
    ("POST", "/enrollmentGroups/query", Right("EnrollmentRead")),
    (
        "GET",
        "/enrollmentGroups/{groupId}",
        Right("EnrollmentRead"),
    ),
    (
        "PUT",
        "/enrollmentGroups/{groupId}",
        Right("EnrollmentWrite"),
    ),
    (
        "DELETE",
        "/enrollmentGroups/{groupId}",
        Right("EnrollmentWrite"),
    ),
    (
        "POST",
        "/enrollmentGroups/{groupId}/attestationmechanism",
        Right("EnrollmentRead"),
    ),
    // `RegistrationOp`
    (
        "GET",
        "/registrations/{registrationId}",
        Right("RegistrationStatusRead"),
    ),
    (
        "DELETE",
        "/registrations/{registrationId}",
        Right("RegistrationStatusWrite"),
    ),
    (
        "POST",
        "/registrations/{groupId}/query",
        Right("RegistrationStatusRead"),
    ),
    // `SettingsOp`
    ("GET", "/linkedHubs", Right("ServiceConfig")),
    ("GET", "/linkedHubs/{hostName}", Right("ServiceConfig")),
    ("PUT", "/linkedHubs/{hostName}", Right("ServiceConfig")),
    ("DELETE", "/linkedHubs/{hostName}", Right("ServiceConfig")),
    ("GET", "/settings", Right("ServiceConfig")),
    ("PUT", "/settings", Right("ServiceConfig")),
    ("GET", "/accessPolicies", Right("ServiceConfig")),
    ("GET", "/accessPolicies/{name}", Right("ServiceConfig")),
    ("PUT", "/accessPolicies/{name}", Right("ServiceConfig")),
    ("DELETE", "/accessPolicies/{name}", Right("ServiceConfig")),
    (
        "POST",
        "/accessPolicies/{name}/regenerateKey",
        Right("ServiceConfig"),
    ),
    ("GET", "/certificates", Right("ServiceConfig")),
    ("GET", "/certificates/{name}", Right("ServiceConfig")),
    ("PUT", "/certificates/{name}", Right("ServiceConfig")),
    ("DELETE", "/certificates/{name}", Right("ServiceConfig")),
    (
        "POST",
        "/certificates/{name}/generateVerificationCode",
        Right("ServiceConfig"),
    ),
    (
        "POST",
        "/certificates/{name}/verify",
        Right("ServiceConfig"),
    ),
    ("GET", "/operations/report", Right("ServiceConfig")),
    // `AuthorityOp` (service_api/authorities.rs)
    ("GET", "/certificateAuthorities", Right("EnrollmentRead")),
    (
        "GET",
        "/certificateAuthorities/{name}",
        Right("EnrollmentRead"),
    ),
    (
        "PUT",
        "/certificateAuthorities/{name}",
        Right("EnrollmentWrite"),
    ),
    (
        "DELETE",
        "/certificateAuthorities/{name}",
        Right("EnrollmentWrite"),
    ),
    // `issued.rs` (issue #17)
    (
        "GET",
        "/certificateAuthorities/{name}/crl",
        Right("EnrollmentRead"),
    ),
    (
        "GET",
        "/registrations/{registrationId}/issuedCertificates",
        Right("EnrollmentRead"),
    ),
    (
        "POST",
        "/registrations/{registrationId}/issuedCertificates/{serialNumber}/revoke",
        Right("EnrollmentWrite"),
    ),
    ("GET", "/credentialPolicies", Right("EnrollmentRead")),
    ("GET", "/credentialPolicies/{name}", Right("EnrollmentRead")),
    (
        "PUT",
        "/credentialPolicies/{name}",
        Right("EnrollmentWrite"),
    ),
    (
        "DELETE",
        "/credentialPolicies/{name}",
        Right("EnrollmentWrite"),
    ),
    // `TenantOp`
    ("GET", "/tenants", Operator),
    ("GET", "/tenants/{name}", Operator),
    ("PUT", "/tenants/{name}", Operator),
    ("DELETE", "/tenants/{name}", Operator),
    ("POST", "/tenants/{name}/listKeys", Operator),
    ("GET", "/tenants/{name}/operations/report", Operator),
];
