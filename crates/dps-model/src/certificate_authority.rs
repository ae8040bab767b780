//! Tenant certificate authorities and credential policies: what dps needs to
//! issue operational certificates at registration (Azure keeps these in Azure
//! Device Registry; dps keeps them per tenant).
//!
//! These are dps's own service-API shapes (the DPS REST specification only
//! carries a policy's name, `credentialPolicyName`). A CA's private key is
//! deliberately absent from every type here: it is sealed by the service and
//! stored as an opaque blob, never serialised into an answer.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::etag::ETag;
use crate::{time, ModelError};

/// Longest CA or credential policy name.
pub const MAX_NAME_LEN: usize = 64;

/// Shortest and longest validity a credential policy may give, in days.
pub const VALIDITY_DAYS: std::ops::RangeInclusive<u32> = 1..=3650;

/// Validity of issued certificates when a policy names none, in days.
pub const DEFAULT_VALIDITY_DAYS: u32 = 30;

/// Check a CA or credential policy name: 1 to 64 ASCII letters, digits, `-`,
/// `_` or `.`, starting and ending with a letter or digit (so it is safe in a
/// URL path segment without escaping). `field` names it in the error.
pub fn validate_name(field: &'static str, name: &str) -> Result<(), ModelError> {
    let bytes = name.as_bytes();
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    let ok = (1..=MAX_NAME_LEN).contains(&bytes.len())
        && bytes.iter().all(allowed)
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
    if ok {
        Ok(())
    } else {
        Err(ModelError::InvalidField {
            field,
            value: name.to_owned(),
            reason: format!(
                "1 to {MAX_NAME_LEN} ASCII letters, digits, '-', '_' or '.', \
                 starting and ending with a letter or digit"
            ),
        })
    }
}

/// A tenant's certificate authority, as the service API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateAuthority {
    /// The CA's name, unique within the tenant (see [`validate_name`]).
    pub name: String,
    /// PEM text: the CA certificate first, then each issuer in turn when the
    /// CA is an intermediate (issued chains end with this list).
    pub certificate_chain: String,
    /// Entity tag (server-generated).
    pub etag: ETag,
    /// Creation time.
    #[serde(with = "time::azure")]
    pub created_date_time_utc: DateTime<Utc>,
}

impl CertificateAuthority {
    /// Check the name and that the chain holds at least one PEM certificate
    /// and no private key (a key pasted into the chain would be shown).
    pub fn validate(&self) -> Result<(), ModelError> {
        validate_name("name", &self.name)?;
        validate_certificate_chain(&self.certificate_chain)
    }
}

/// Check PEM text meant as a certificate chain: at least one
/// `CERTIFICATE` block and no `PRIVATE KEY` block.
pub fn validate_certificate_chain(pem: &str) -> Result<(), ModelError> {
    let refuse = |reason: &str| ModelError::InvalidField {
        field: "certificateChain",
        // The value is not echoed: it could be a key pasted by mistake.
        value: format!("<{} bytes of PEM>", pem.len()),
        reason: reason.to_owned(),
    };
    if pem.contains("PRIVATE KEY-----") {
        return Err(refuse("a certificate chain must not contain a private key"));
    }
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(refuse("no PEM CERTIFICATE block"));
    }
    Ok(())
}

/// A key type and size a credential policy can accept in a CSR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KeyType {
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// RSA, 2048-bit modulus.
    Rsa2048,
    /// RSA, 3072-bit modulus.
    Rsa3072,
    /// RSA, 4096-bit modulus.
    Rsa4096,
}

impl KeyType {
    /// Every key type, in wire order.
    pub const ALL: [KeyType; 5] = [
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
    ];

    /// The wire spelling (`ecdsaP256`, `rsa2048`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsaP256",
            KeyType::EcdsaP384 => "ecdsaP384",
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Rsa3072 => "rsa3072",
            KeyType::Rsa4096 => "rsa4096",
        }
    }

    /// Parse a wire spelling (exact case).
    pub fn parse(text: &str) -> Result<Self, ModelError> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| ModelError::InvalidField {
                field: "acceptedKeyTypes",
                value: text.to_owned(),
                reason: "expected one of ecdsaP256, ecdsaP384, rsa2048, rsa3072, rsa4096"
                    .to_owned(),
            })
    }
}

fn default_key_types() -> Vec<KeyType> {
    vec![KeyType::EcdsaP256, KeyType::Rsa2048]
}

fn default_validity_days() -> u32 {
    DEFAULT_VALIDITY_DAYS
}

/// How the subject of an issued certificate is named.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SubjectName {
    /// Subject `CN=<device id>` (what Azure does; the CSR's CN must equal the
    /// registration id).
    #[default]
    CommonNameIsDeviceId,
}

/// An extended key usage put into issued certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExtendedKeyUsage {
    /// TLS client authentication (id-kp-clientAuth), what a hub connection needs.
    ClientAuthentication,
}

fn default_key_usages() -> Vec<ExtendedKeyUsage> {
    vec![ExtendedKeyUsage::ClientAuthentication]
}

/// What a tenant CA issues to devices whose enrollment names this policy
/// (`credentialPolicyName`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialPolicy {
    /// The policy's name, unique within the tenant (see [`validate_name`]).
    pub name: String,
    /// The tenant CA that signs (see [`CertificateAuthority::name`]).
    pub certificate_authority_name: String,
    /// How long an issued certificate is valid, in days ([`VALIDITY_DAYS`]).
    #[serde(default = "default_validity_days")]
    pub validity_period_in_days: u32,
    /// Key types a CSR may carry; default ECDSA P-256 and RSA-2048.
    #[serde(default = "default_key_types")]
    pub accepted_key_types: Vec<KeyType>,
    /// Subject naming of issued certificates.
    #[serde(default)]
    pub subject_name: SubjectName,
    /// Extended key usages of issued certificates; default client authentication.
    #[serde(default = "default_key_usages")]
    pub extended_key_usages: Vec<ExtendedKeyUsage>,
    /// Entity tag (server-generated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<ETag>,
    /// Creation time (read-only).
    #[serde(
        default,
        with = "time::azure_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_date_time_utc: Option<DateTime<Utc>>,
    /// Last change (read-only).
    #[serde(
        default,
        with = "time::azure_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_updated_date_time_utc: Option<DateTime<Utc>>,
}

impl CredentialPolicy {
    /// A policy with the defaults: 30 days, ECDSA P-256 and RSA-2048,
    /// `CN=<device id>`, client authentication.
    pub fn new(name: impl Into<String>, certificate_authority_name: impl Into<String>) -> Self {
        CredentialPolicy {
            name: name.into(),
            certificate_authority_name: certificate_authority_name.into(),
            validity_period_in_days: DEFAULT_VALIDITY_DAYS,
            accepted_key_types: default_key_types(),
            subject_name: SubjectName::default(),
            extended_key_usages: default_key_usages(),
            etag: None,
            created_date_time_utc: None,
            last_updated_date_time_utc: None,
        }
    }

    /// Parse a service-API body: the shape, then [`CredentialPolicy::validate`].
    pub fn from_json(body: &[u8]) -> Result<Self, ModelError> {
        let policy: CredentialPolicy = crate::from_json(body)?;
        policy.validate()?;
        Ok(policy)
    }

    /// Check names, the validity range, and that at least one key type and
    /// client authentication are present.
    pub fn validate(&self) -> Result<(), ModelError> {
        validate_name("name", &self.name)?;
        validate_name("certificateAuthorityName", &self.certificate_authority_name)?;
        if !VALIDITY_DAYS.contains(&self.validity_period_in_days) {
            return Err(ModelError::InvalidField {
                field: "validityPeriodInDays",
                value: self.validity_period_in_days.to_string(),
                reason: format!(
                    "between {} and {} days",
                    VALIDITY_DAYS.start(),
                    VALIDITY_DAYS.end()
                ),
            });
        }
        if self.accepted_key_types.is_empty() {
            return Err(ModelError::InvalidField {
                field: "acceptedKeyTypes",
                value: "[]".to_owned(),
                reason: "at least one key type".to_owned(),
            });
        }
        if !self
            .extended_key_usages
            .contains(&ExtendedKeyUsage::ClientAuthentication)
        {
            return Err(ModelError::InvalidField {
                field: "extendedKeyUsages",
                value: format!("{:?}", self.extended_key_usages),
                reason: "issued device certificates need clientAuthentication".to_owned(),
            });
        }
        Ok(())
    }

    /// Whether a CSR key of this type is acceptable.
    pub fn accepts(&self, key_type: KeyType) -> bool {
        self.accepted_key_types.contains(&key_type)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn names_follow_the_rule() {
        for good in ["a", "ca-1", "Fleet_CA.v2", "x".repeat(64).as_str()] {
            validate_name("name", good).unwrap();
        }
        for bad in [
            "",
            "-ca",
            "ca-",
            "ca 1",
            "ca/1",
            "é",
            "x".repeat(65).as_str(),
        ] {
            let err = validate_name("name", bad).unwrap_err();
            assert!(
                matches!(&err, ModelError::InvalidField { field: "name", value, .. } if value == bad),
                "{err:?}"
            );
        }
    }

    #[test]
    fn policy_defaults_fill_a_minimal_body() {
        let policy =
            CredentialPolicy::from_json(br#"{"name":"p1","certificateAuthorityName":"ca1"}"#)
                .unwrap();
        assert_eq!(policy, CredentialPolicy::new("p1", "ca1"));
        assert!(policy.accepts(KeyType::EcdsaP256));
        assert!(policy.accepts(KeyType::Rsa2048));
        assert!(!policy.accepts(KeyType::Rsa4096));
        let json = serde_json::to_value(&policy).unwrap();
        assert_eq!(json["validityPeriodInDays"], 30);
        assert_eq!(
            json["acceptedKeyTypes"],
            serde_json::json!(["ecdsaP256", "rsa2048"])
        );
        assert_eq!(json["subjectName"], "commonNameIsDeviceId");
        assert_eq!(
            json["extendedKeyUsages"],
            serde_json::json!(["clientAuthentication"])
        );
    }

    #[test]
    fn policy_refusals_name_the_field() {
        let cases: [(&[u8], &str); 5] = [
            (
                br#"{"name":"p","certificateAuthorityName":"c","validityPeriodInDays":0}"#,
                "validityPeriodInDays",
            ),
            (
                br#"{"name":"p","certificateAuthorityName":"c","validityPeriodInDays":3651}"#,
                "validityPeriodInDays",
            ),
            (
                br#"{"name":"p","certificateAuthorityName":"c","acceptedKeyTypes":[]}"#,
                "acceptedKeyTypes",
            ),
            (
                br#"{"name":"p","certificateAuthorityName":"c","extendedKeyUsages":[]}"#,
                "extendedKeyUsages",
            ),
            (
                br#"{"name":"p","certificateAuthorityName":"c d"}"#,
                "certificateAuthorityName",
            ),
        ];
        for (body, field) in cases {
            let err = CredentialPolicy::from_json(body).unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
        let err = CredentialPolicy::from_json(
            br#"{"name":"p","certificateAuthorityName":"c","acceptedKeyTypes":["dsa1024"]}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&err, ModelError::Json { path, .. } if path.starts_with("acceptedKeyTypes")),
            "{err:?}"
        );
    }

    #[test]
    fn chain_must_hold_a_certificate_and_no_key() {
        validate_certificate_chain(CERT).unwrap();
        let with_key =
            format!("{CERT}-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\n");
        let err = validate_certificate_chain(&with_key).unwrap_err();
        assert!(!format!("{err:?}").contains("SECRET"), "{err:?}");
        assert!(validate_certificate_chain("hello").is_err());
    }

    #[test]
    fn authority_round_trips_in_camel_case() {
        let ca = CertificateAuthority {
            name: "ca1".to_owned(),
            certificate_chain: CERT.to_owned(),
            etag: ETag::new("e1"),
            created_date_time_utc: "2026-01-02T03:04:05Z".parse().unwrap(),
        };
        ca.validate().unwrap();
        let json = serde_json::to_value(&ca).unwrap();
        assert_eq!(json["certificateChain"], CERT);
        assert!(json.get("createdDateTimeUtc").is_some());
        let back: CertificateAuthority = serde_json::from_value(json).unwrap();
        assert_eq!(back, ca);
    }

    proptest! {
        #[test]
        fn name_validator_matches_its_definition(name in "[a-zA-Z0-9._ /-]{0,70}") {
            let expected = !name.is_empty()
                && name.len() <= MAX_NAME_LEN
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && name.as_bytes()[0].is_ascii_alphanumeric()
                && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
            prop_assert_eq!(validate_name("name", &name).is_ok(), expected);
        }

        #[test]
        fn key_types_parse_what_they_print(text in "[a-zA-Z0-9]{0,10}") {
            match KeyType::parse(&text) {
                Ok(key) => prop_assert_eq!(key.as_str(), text.as_str()),
                Err(_) => prop_assert!(KeyType::ALL.iter().all(|k| k.as_str() != text)),
            }
        }

        #[test]
        fn valid_policies_round_trip(
            name in "[a-z0-9]{1,20}",
            ca in "[A-Z0-9]{1,20}",
            days in 1u32..=3650,
            keys in proptest::sample::subsequence(KeyType::ALL.to_vec(), 1..=5),
        ) {
            let mut policy = CredentialPolicy::new(name, ca);
            policy.validity_period_in_days = days;
            policy.accepted_key_types = keys;
            let body = serde_json::to_vec(&policy).unwrap();
            prop_assert_eq!(CredentialPolicy::from_json(&body).unwrap(), policy);
        }

        #[test]
        fn policy_parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = CredentialPolicy::from_json(&body);
        }
    }

    #[test]
    fn key_type_serde_matches_as_str() {
        for key in KeyType::ALL {
            assert_eq!(serde_json::to_value(key).unwrap(), key.as_str());
            assert_eq!(KeyType::parse(key.as_str()).unwrap(), key);
        }
    }
}
