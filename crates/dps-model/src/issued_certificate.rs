//! A certificate dps issued at registration (issue #17), as recorded with
//! the registration record and shown by the service API's
//! `GET /registrations/{id}/issuedCertificates` (a dps-specific route: Azure
//! keeps issued certificates in Azure Device Registry).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{time, RegistrationId};

/// Where an issued certificate stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IssuedCertificateStatus {
    /// The certificate the hub identity carries now.
    Active,
    /// A later registration issued its replacement (rollover).
    Superseded,
    /// Revoked through the service API; listed in its CA's CRL.
    Revoked,
}

impl IssuedCertificateStatus {
    /// The wire spelling (`active`, `superseded`, `revoked`).
    pub fn as_str(self) -> &'static str {
        match self {
            IssuedCertificateStatus::Active => "active",
            IssuedCertificateStatus::Superseded => "superseded",
            IssuedCertificateStatus::Revoked => "revoked",
        }
    }
}

/// One issued certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCertificate {
    /// Serial number, uppercase hex without separators; unique per CA.
    pub serial_number: String,
    /// The registration it was issued to.
    pub registration_id: RegistrationId,
    /// The hub device id it names (its subject CN).
    pub device_id: String,
    /// The tenant CA that signed it.
    pub certificate_authority_name: String,
    /// The credential policy it was issued under.
    pub credential_policy_name: String,
    /// SHA-256 of the DER certificate, uppercase hex (the hub identity's
    /// thumbprint).
    pub sha256_thumbprint: String,
    /// SHA-1 of the DER certificate, uppercase hex (what older hub tooling shows).
    pub sha1_thumbprint: String,
    /// Start of validity.
    #[serde(with = "time::azure")]
    pub not_before: DateTime<Utc>,
    /// End of validity.
    #[serde(with = "time::azure")]
    pub not_after: DateTime<Utc>,
    /// When dps issued it.
    #[serde(with = "time::azure")]
    pub issued_date_time_utc: DateTime<Utc>,
    /// Active, superseded or revoked.
    pub status: IssuedCertificateStatus,
    /// When a later certificate replaced it.
    #[serde(default, with = "time::azure_opt")]
    pub superseded_date_time_utc: Option<DateTime<Utc>>,
    /// When it was revoked.
    #[serde(default, with = "time::azure_opt")]
    pub revoked_date_time_utc: Option<DateTime<Utc>>,
    /// The certificate, base64 of its DER.
    pub certificate: String,
}

impl IssuedCertificate {
    /// Mark it superseded at `at` (an active certificate only: a revoked one
    /// stays revoked).
    pub fn supersede(&mut self, at: DateTime<Utc>) {
        if self.status == IssuedCertificateStatus::Active {
            self.status = IssuedCertificateStatus::Superseded;
            self.superseded_date_time_utc = Some(at);
        }
    }

    /// Mark it revoked at `at`; `false` (and nothing changed) when it
    /// already was.
    pub fn revoke(&mut self, at: DateTime<Utc>) -> bool {
        if self.status == IssuedCertificateStatus::Revoked {
            return false;
        }
        self.status = IssuedCertificateStatus::Revoked;
        self.revoked_date_time_utc = Some(at);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> IssuedCertificate {
        let at = DateTime::parse_from_rfc3339("2026-12-06T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        IssuedCertificate {
            serial_number: "0A1B".into(),
            registration_id: RegistrationId::new("dev-1").unwrap(),
            device_id: "dev-1".into(),
            certificate_authority_name: "ca".into(),
            credential_policy_name: "p".into(),
            sha256_thumbprint: "AB".repeat(32),
            sha1_thumbprint: "CD".repeat(20),
            not_before: at,
            not_after: at,
            issued_date_time_utc: at,
            status: IssuedCertificateStatus::Active,
            superseded_date_time_utc: None,
            revoked_date_time_utc: None,
            certificate: "MA==".into(),
        }
    }

    #[test]
    fn wire_names_and_round_trip() {
        let cert = sample();
        let json = serde_json::to_value(&cert).unwrap();
        assert_eq!(json["status"], "active");
        assert_eq!(json["serialNumber"], "0A1B");
        assert_eq!(json["certificateAuthorityName"], "ca");
        assert!(json["revokedDateTimeUtc"].is_null());
        let back: IssuedCertificate = serde_json::from_value(json).unwrap();
        assert_eq!(back, cert);
    }

    #[test]
    fn revoked_stays_revoked() {
        let mut cert = sample();
        let at = cert.issued_date_time_utc;
        assert!(cert.revoke(at));
        assert!(!cert.revoke(at));
        cert.supersede(at);
        assert_eq!(cert.status, IssuedCertificateStatus::Revoked);
        assert_eq!(cert.superseded_date_time_utc, None);
    }
}
