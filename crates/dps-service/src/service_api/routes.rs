//! The route table: method and path to an [`Endpoint`], and the access each
//! endpoint needs.
//!
//! Matching follows what the SDKs send (spec §4.1): collection names and
//! action words are case-insensitive (`/enrollmentgroups`), empty segments
//! (a trailing `/`) are ignored, ids are percent-decoded, and the query string
//! (`api-version`, any value or none) plays no part.

use dps_model::AccessRight;
use http::Method;
use percent_encoding::percent_decode_str;

pub(crate) use super::authorities::AuthorityOp;
pub(crate) use super::issued::IssuedOp;
use crate::respond::ApiError;

/// Individual enrollments or enrollment groups: same operations on both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RecordOp {
    /// `GET /{collection}/{id}`
    Get(String),
    /// `PUT /{collection}/{id}`
    Put(String),
    /// `DELETE /{collection}/{id}`
    Delete(String),
    /// `POST /{collection}/{id}/attestationmechanism`
    Attestation(String),
    /// `POST /{collection}`
    Bulk,
    /// `POST /{collection}/query`
    Query,
}

/// Registration records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RegistrationOp {
    /// `GET /registrations/{id}`
    Get(String),
    /// `DELETE /registrations/{id}`
    Delete(String),
    /// `POST /registrations/{groupId}/query`
    Query(String),
}

/// A tenant's settings (our design, spec §4 style).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SettingsOp {
    /// `GET /linkedHubs`
    ListLinkedHubs,
    /// `GET /linkedHubs/{hostName}`
    GetLinkedHub(String),
    /// `PUT /linkedHubs/{hostName}`
    PutLinkedHub(String),
    /// `DELETE /linkedHubs/{hostName}`
    DeleteLinkedHub(String),
    /// `GET /settings`
    GetSettings,
    /// `PUT /settings`
    PutSettings,
    /// `GET /accessPolicies`
    ListPolicies,
    /// `GET /accessPolicies/{name}`
    GetPolicy(String),
    /// `PUT /accessPolicies/{name}`
    PutPolicy(String),
    /// `DELETE /accessPolicies/{name}`
    DeletePolicy(String),
    /// `POST /accessPolicies/{name}/regenerateKey`
    RegenerateKey(String),
    /// `GET /certificates`
    ListCertificates,
    /// `GET /certificates/{name}`
    GetCertificate(String),
    /// `PUT /certificates/{name}`
    PutCertificate(String),
    /// `DELETE /certificates/{name}`
    DeleteCertificate(String),
    /// `POST /certificates/{name}/generateVerificationCode`
    GenerateVerificationCode(String),
    /// `POST /certificates/{name}/verify`
    VerifyCertificate(String),
    /// `GET /operations/report`
    MeterReport,
}

/// Operator-level tenant management.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TenantOp {
    /// `GET /tenants`
    List,
    /// `GET /tenants/{name}`
    Get(String),
    /// `PUT /tenants/{name}`
    Put(String),
    /// `DELETE /tenants/{name}`
    Delete(String),
    /// `GET /tenants/{name}/operations/report`
    MeterReport(String),
    /// `POST /tenants/{name}/listKeys`: the shared access policies with keys.
    ListKeys(String),
}

/// Everything the service endpoint answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `GET /openapi.json`
    OpenApi,
    /// `/enrollments…`
    Enrollment(RecordOp),
    /// `/enrollmentGroups…`
    Group(RecordOp),
    /// `/registrations…`
    Registration(RegistrationOp),
    /// Settings and the meter of the caller's tenant.
    Settings(SettingsOp),
    /// `/tenants…`
    Tenant(TenantOp),
    /// `/certificateAuthorities…` and `/credentialPolicies…` (issue #17).
    Authority(AuthorityOp),
    /// Issued certificates: listing, revocation, CRLs (issue #17).
    Issued(IssuedOp),
}

/// Who may call an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone (the OpenAPI document).
    Public,
    /// A tenant policy with this right.
    Right(AccessRight),
    /// The operator key.
    Operator,
}

impl Endpoint {
    /// Resolve a request line. Unknown paths are 404, known paths with
    /// another method 405.
    pub(crate) fn resolve(method: &Method, path: &str) -> Result<Endpoint, ApiError> {
        let segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode)
            .collect::<Result<Vec<_>, _>>()?;
        let Some((first, rest)) = segments.split_first() else {
            return Err(not_found());
        };
        let word = |i: usize, expected: &str| {
            rest.get(i)
                .is_some_and(|s| s.eq_ignore_ascii_case(expected))
        };
        let m = method;
        let found = match (first.to_ascii_lowercase().as_str(), rest.len()) {
            ("openapi.json", 0) => allow(m, &[(Method::GET, Endpoint::OpenApi)]),
            ("certificateauthorities", 2) => super::issued::resolve_crl(m, rest),
            (collection @ ("certificateauthorities" | "credentialpolicies"), _) => {
                super::authorities::resolve(m, collection, rest)
            }
            ("registrations", 2 | 4) if word(1, "issuedCertificates") => {
                super::issued::resolve_registration(m, rest)
            }
            ("enrollments", _) => record_ops(m, rest, &word).map(|op| op.map(Endpoint::Enrollment)),
            ("enrollmentgroups", _) => record_ops(m, rest, &word).map(|op| op.map(Endpoint::Group)),
            ("registrations", 1) => allow(
                m,
                &[
                    (Method::GET, RegistrationOp::Get(rest[0].clone())),
                    (Method::DELETE, RegistrationOp::Delete(rest[0].clone())),
                ],
            )
            .map(|op| op.map(Endpoint::Registration)),
            ("registrations", 2) if word(1, "query") => {
                allow(m, &[(Method::POST, RegistrationOp::Query(rest[0].clone()))])
                    .map(|op| op.map(Endpoint::Registration))
            }
            ("linkedhubs", 0) => allow(m, &[(Method::GET, SettingsOp::ListLinkedHubs)])
                .map(|op| op.map(Endpoint::Settings)),
            ("linkedhubs", 1) => {
                let host = &rest[0];
                allow(
                    m,
                    &[
                        (Method::GET, SettingsOp::GetLinkedHub(host.clone())),
                        (Method::PUT, SettingsOp::PutLinkedHub(host.clone())),
                        (Method::DELETE, SettingsOp::DeleteLinkedHub(host.clone())),
                    ],
                )
                .map(|op| op.map(Endpoint::Settings))
            }
            ("settings", 0) => allow(
                m,
                &[
                    (Method::GET, SettingsOp::GetSettings),
                    (Method::PUT, SettingsOp::PutSettings),
                ],
            )
            .map(|op| op.map(Endpoint::Settings)),
            ("accesspolicies", 0) => allow(m, &[(Method::GET, SettingsOp::ListPolicies)])
                .map(|op| op.map(Endpoint::Settings)),
            ("accesspolicies", 1) => {
                let name = &rest[0];
                allow(
                    m,
                    &[
                        (Method::GET, SettingsOp::GetPolicy(name.clone())),
                        (Method::PUT, SettingsOp::PutPolicy(name.clone())),
                        (Method::DELETE, SettingsOp::DeletePolicy(name.clone())),
                    ],
                )
                .map(|op| op.map(Endpoint::Settings))
            }
            ("accesspolicies", 2) if word(1, "regeneratekey") => allow(
                m,
                &[(Method::POST, SettingsOp::RegenerateKey(rest[0].clone()))],
            )
            .map(|op| op.map(Endpoint::Settings)),
            ("certificates", 0) => allow(m, &[(Method::GET, SettingsOp::ListCertificates)])
                .map(|op| op.map(Endpoint::Settings)),
            ("certificates", 1) => {
                let name = &rest[0];
                allow(
                    m,
                    &[
                        (Method::GET, SettingsOp::GetCertificate(name.clone())),
                        (Method::PUT, SettingsOp::PutCertificate(name.clone())),
                        (Method::DELETE, SettingsOp::DeleteCertificate(name.clone())),
                    ],
                )
                .map(|op| op.map(Endpoint::Settings))
            }
            ("certificates", 2) if word(1, "generateverificationcode") => allow(
                m,
                &[(
                    Method::POST,
                    SettingsOp::GenerateVerificationCode(rest[0].clone()),
                )],
            )
            .map(|op| op.map(Endpoint::Settings)),
            ("certificates", 2) if word(1, "verify") => allow(
                m,
                &[(Method::POST, SettingsOp::VerifyCertificate(rest[0].clone()))],
            )
            .map(|op| op.map(Endpoint::Settings)),
            ("operations", 1) if word(0, "report") => {
                allow(m, &[(Method::GET, SettingsOp::MeterReport)])
                    .map(|op| op.map(Endpoint::Settings))
            }
            ("tenants", 0) => {
                allow(m, &[(Method::GET, TenantOp::List)]).map(|op| op.map(Endpoint::Tenant))
            }
            ("tenants", 1) => {
                let name = &rest[0];
                allow(
                    m,
                    &[
                        (Method::GET, TenantOp::Get(name.clone())),
                        (Method::PUT, TenantOp::Put(name.clone())),
                        (Method::DELETE, TenantOp::Delete(name.clone())),
                    ],
                )
                .map(|op| op.map(Endpoint::Tenant))
            }
            ("tenants", 2) if word(1, "listkeys") => {
                allow(m, &[(Method::POST, TenantOp::ListKeys(rest[0].clone()))])
                    .map(|op| op.map(Endpoint::Tenant))
            }
            ("tenants", 3) if word(1, "operations") && word(2, "report") => {
                allow(m, &[(Method::GET, TenantOp::MeterReport(rest[0].clone()))])
                    .map(|op| op.map(Endpoint::Tenant))
            }
            _ => None,
        };
        match found {
            Some(Some(endpoint)) => Ok(endpoint),
            Some(None) => Err(method_not_allowed()),
            None => Err(not_found()),
        }
    }

    /// What a caller needs to use this endpoint (spec §4.2).
    pub(crate) fn access(&self) -> Access {
        use AccessRight::*;
        match self {
            Endpoint::OpenApi => Access::Public,
            Endpoint::Enrollment(op) | Endpoint::Group(op) => match op {
                RecordOp::Get(_) | RecordOp::Attestation(_) | RecordOp::Query => {
                    Access::Right(EnrollmentRead)
                }
                RecordOp::Put(_) | RecordOp::Delete(_) | RecordOp::Bulk => {
                    Access::Right(EnrollmentWrite)
                }
            },
            Endpoint::Registration(RegistrationOp::Delete(_)) => {
                Access::Right(RegistrationStatusWrite)
            }
            Endpoint::Registration(_) => Access::Right(RegistrationStatusRead),
            Endpoint::Settings(_) => Access::Right(ServiceConfig),
            Endpoint::Tenant(_) => Access::Operator,
            Endpoint::Authority(op) if op.writes() => Access::Right(EnrollmentWrite),
            Endpoint::Authority(_) => Access::Right(EnrollmentRead),
            Endpoint::Issued(op) if op.writes() => Access::Right(EnrollmentWrite),
            Endpoint::Issued(_) => Access::Right(EnrollmentRead),
        }
    }
}

/// The operations under `/enrollments` or `/enrollmentGroups`. `None`: the
/// path is not one of them; `Some(None)`: it is, with another method.
fn record_ops(
    method: &Method,
    rest: &[String],
    word: &dyn Fn(usize, &str) -> bool,
) -> Option<Option<RecordOp>> {
    match rest.len() {
        0 => allow(method, &[(Method::POST, RecordOp::Bulk)]),
        // `POST …/query` is the query; an enrollment may still be named "query".
        1 if word(0, "query") && method == Method::POST => Some(Some(RecordOp::Query)),
        1 => {
            let id = &rest[0];
            allow(
                method,
                &[
                    (Method::GET, RecordOp::Get(id.clone())),
                    (Method::PUT, RecordOp::Put(id.clone())),
                    (Method::DELETE, RecordOp::Delete(id.clone())),
                ],
            )
        }
        2 if word(1, "attestationmechanism") => allow(
            method,
            &[(Method::POST, RecordOp::Attestation(rest[0].clone()))],
        ),
        _ => None,
    }
}

pub(super) fn allow<T: Clone>(method: &Method, choices: &[(Method, T)]) -> Option<Option<T>> {
    Some(
        choices
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, op)| op.clone()),
    )
}

fn decode(segment: &str) -> Result<String, ApiError> {
    percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            ApiError::bad_request(format!(
                "The path segment {segment:?} is not valid UTF-8 once percent-decoded."
            ))
        })
}

fn not_found() -> ApiError {
    ApiError::route_not_found()
}

fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(method: Method, path: &str) -> Result<Endpoint, u16> {
        Endpoint::resolve(&method, path).map_err(|e| e.status().as_u16())
    }

    #[test]
    fn sdk_paths_resolve() {
        assert_eq!(
            resolve(Method::PUT, "/enrollments/dev%2D1"),
            Ok(Endpoint::Enrollment(RecordOp::Put("dev-1".into())))
        );
        assert_eq!(
            resolve(Method::POST, "/enrollments/"),
            Ok(Endpoint::Enrollment(RecordOp::Bulk))
        );
        assert_eq!(
            resolve(Method::POST, "/enrollmentgroups/g1/attestationmechanism"),
            Ok(Endpoint::Group(RecordOp::Attestation("g1".into())))
        );
        assert_eq!(
            resolve(Method::POST, "/EnrollmentGroups/Query/"),
            Ok(Endpoint::Group(RecordOp::Query))
        );
        assert_eq!(
            resolve(Method::GET, "/enrollments/query"),
            Ok(Endpoint::Enrollment(RecordOp::Get("query".into())))
        );
        assert_eq!(
            resolve(Method::POST, "/registrations/grp%3A1/query"),
            Ok(Endpoint::Registration(RegistrationOp::Query(
                "grp:1".into()
            )))
        );
        assert_eq!(
            resolve(Method::GET, "/tenants/acme/operations/report"),
            Ok(Endpoint::Tenant(TenantOp::MeterReport("acme".into())))
        );
        assert_eq!(
            resolve(Method::POST, "/certificates/root/generateVerificationCode"),
            Ok(Endpoint::Settings(SettingsOp::GenerateVerificationCode(
                "root".into()
            )))
        );
    }

    #[test]
    fn unknown_paths_and_methods() {
        assert_eq!(resolve(Method::GET, "/"), Err(404));
        assert_eq!(resolve(Method::GET, "/nothing/here"), Err(404));
        assert_eq!(resolve(Method::GET, "/enrollments"), Err(405));
        assert_eq!(resolve(Method::POST, "/enrollments/dev-1"), Err(405));
        assert_eq!(resolve(Method::GET, "/enrollments/a/b/c"), Err(404));
        assert_eq!(resolve(Method::GET, "/enrollments/%FF"), Err(400));
    }

    #[test]
    fn rights_per_route() {
        let access = |m, p| Endpoint::resolve(&m, p).unwrap().access();
        assert_eq!(
            access(Method::GET, "/enrollments/x"),
            Access::Right(AccessRight::EnrollmentRead)
        );
        assert_eq!(
            access(Method::POST, "/enrollmentGroups"),
            Access::Right(AccessRight::EnrollmentWrite)
        );
        assert_eq!(
            access(Method::DELETE, "/registrations/x"),
            Access::Right(AccessRight::RegistrationStatusWrite)
        );
        assert_eq!(
            access(Method::POST, "/registrations/g/query"),
            Access::Right(AccessRight::RegistrationStatusRead)
        );
        assert_eq!(
            access(Method::GET, "/operations/report"),
            Access::Right(AccessRight::ServiceConfig)
        );
        assert_eq!(access(Method::GET, "/tenants"), Access::Operator);
        assert_eq!(access(Method::GET, "/openapi.json"), Access::Public);
    }
}
