//! Credential settings: how long a SAS token may live on each endpoint, and
//! what an operator key must be.
//!
//! The lifetime caps follow what the official SDKs sign. Devices: aziot 30 s,
//! C 2400 s to 1 h, Node 1 h (`anHourFromNow`), Python 3600 s
//! (`sastoken_ttl`), Java 3600 s (`RegisterTask`), C# 1 day
//! (`ProvisioningSasBuilder`): the device default is two days, twice the
//! longest. Service clients: C 3600 s, C# 1 h (20 min in its builder), Node
//! 1 h, Java 1 h (1 year before 2020): the service default is one day. Both
//! are configurable; a token beyond its cap is refused like any bad token.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use dps_attestation::sas::{ExpiryPolicy, SymmetricKey, DEFAULT_MAX_LIFETIME};

use super::ServiceConfig;
use crate::ServiceError;

/// Default `[device] max_token_lifetime_seconds`: two days.
pub const DEFAULT_DEVICE_TOKEN_LIFETIME_SECS: u64 = DEFAULT_MAX_LIFETIME.as_secs();

/// Default `[service] max_token_lifetime_seconds`: one day.
pub const DEFAULT_SERVICE_TOKEN_LIFETIME_SECS: u64 = 24 * 3600;

/// The longest cap the configuration may set: one year. Longer is no cap.
const MAX_CONFIGURABLE_LIFETIME_SECS: u64 = 365 * 24 * 3600;

/// The shortest cap: one minute (aziot signs for 30 s, plus the 5 min skew).
const MIN_CONFIGURABLE_LIFETIME_SECS: u64 = 60;

/// The fewest bytes an operator key may decode to: the operator key guards
/// every tenant, so it is at least as strong as HMAC-SHA256's output.
pub const MIN_OPERATOR_KEY_BYTES: usize = 32;

impl ServiceConfig {
    /// Check the credential settings (called by `validate`).
    pub(crate) fn validate_credentials(&self) -> Result<(), ServiceError> {
        for (key, value) in [
            (
                "device.max_token_lifetime_seconds",
                self.device.max_token_lifetime_seconds,
            ),
            (
                "service.max_token_lifetime_seconds",
                self.service.max_token_lifetime_seconds,
            ),
        ] {
            if !(MIN_CONFIGURABLE_LIFETIME_SECS..=MAX_CONFIGURABLE_LIFETIME_SECS).contains(&value) {
                return Err(ServiceError::Config {
                    reason: format!(
                        "{key} must be between {MIN_CONFIGURABLE_LIFETIME_SECS} and \
                         {MAX_CONFIGURABLE_LIFETIME_SECS} (one year); it is {value}"
                    ),
                });
            }
        }
        if self
            .service
            .operator_audience
            .iter()
            .any(|h| h.trim().is_empty())
        {
            return Err(ServiceError::Config {
                reason: "service.operator_audience must not hold empty host names".to_owned(),
            });
        }
        if let Some(key) = &self.operator_key {
            operator_key(
                key,
                "operator_key (configuration file, --operator-key or DPS_OPERATOR_KEY)",
            )?;
        }
        Ok(())
    }

    /// How device tokens (symmetric key and TPM) are judged.
    pub fn device_token_policy(&self) -> ExpiryPolicy {
        ExpiryPolicy::default().with_max_lifetime(Some(Duration::from_secs(
            self.device.max_token_lifetime_seconds,
        )))
    }

    /// How service-API tokens (tenant policies and the operator) are judged.
    pub fn service_token_policy(&self) -> ExpiryPolicy {
        ExpiryPolicy::default().with_max_lifetime(Some(Duration::from_secs(
            self.service.max_token_lifetime_seconds,
        )))
    }
}

/// Decode an operator key: standard base64 of at least
/// [`MIN_OPERATOR_KEY_BYTES`] bytes. `origin` names where it came from (the
/// configuration key or the file), for the error; the key itself is never
/// part of an error.
pub fn operator_key(text: &str, origin: &str) -> Result<SymmetricKey, ServiceError> {
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|_| ServiceError::Config {
            reason: format!(
                "{origin}: the operator key is not base64 (generate one with \
             `head -c 64 /dev/urandom | base64 -w0`)"
            ),
        })?;
    if bytes.len() < MIN_OPERATOR_KEY_BYTES {
        return Err(ServiceError::Config {
            reason: format!(
                "{origin}: the operator key decodes to {} bytes; at least {MIN_OPERATOR_KEY_BYTES} \
                 are required (generate one with `head -c 64 /dev/urandom | base64 -w0`)",
                bytes.len()
            ),
        });
    }
    Ok(SymmetricKey::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_attestation::keys::generate_key;

    #[test]
    fn defaults_follow_the_sdks() {
        let config = ServiceConfig::default();
        assert_eq!(config.device.max_token_lifetime_seconds, 2 * 24 * 3600);
        assert_eq!(config.service.max_token_lifetime_seconds, 24 * 3600);
        assert_eq!(
            config.device_token_policy().max_lifetime,
            Some(Duration::from_secs(2 * 24 * 3600))
        );
        assert_eq!(
            config.service_token_policy().max_lifetime,
            Some(Duration::from_secs(24 * 3600))
        );
        assert!(config.service.operator_audience.is_empty());
    }

    #[test]
    fn lifetimes_are_read_and_bounded() {
        let config = ServiceConfig::from_toml(
            "[device]\nmax_token_lifetime_seconds = 3600\n\
             [service]\nmax_token_lifetime_seconds = 7200\noperator_audience = [\"dps.example\"]\n",
        )
        .unwrap();
        assert_eq!(
            config.device_token_policy().max_lifetime,
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            config.service_token_policy().max_lifetime,
            Some(Duration::from_secs(7200))
        );
        assert_eq!(config.service.operator_audience, ["dps.example"]);
        for (toml, named) in [
            (
                "[device]\nmax_token_lifetime_seconds = 0",
                "device.max_token_lifetime_seconds",
            ),
            (
                "[service]\nmax_token_lifetime_seconds = 31536001",
                "service.max_token_lifetime_seconds",
            ),
            (
                "[service]\noperator_audience = [\" \"]",
                "service.operator_audience",
            ),
        ] {
            let err = ServiceConfig::from_toml(toml).unwrap_err();
            assert!(err.to_string().contains(named), "{err}");
        }
    }

    #[test]
    fn operator_keys_must_be_base64_of_32_bytes() {
        let generated = generate_key();
        assert_eq!(
            operator_key(&generated, "operator_key").unwrap(),
            SymmetricKey::from_base64(&generated).unwrap()
        );
        let exactly = BASE64.encode([9u8; 32]);
        assert_eq!(operator_key(&exactly, "x").unwrap().as_bytes(), [9u8; 32]);

        let short = BASE64.encode([9u8; 31]);
        for (bad, says) in [
            (short.as_str(), "decodes to 31 bytes"),
            (
                "correct horse battery staple, but long enough",
                "not base64",
            ),
            ("", "decodes to 0 bytes"),
        ] {
            let err = operator_key(bad, "operator_key").unwrap_err().to_string();
            assert!(err.contains("operator_key") && err.contains(says), "{err}");
            assert!(
                bad.is_empty() || !err.contains(bad),
                "the key leaked: {err}"
            );
        }
        // A configuration with such a key is refused as a whole.
        let err = ServiceConfig::from_toml(&format!("operator_key = \"{short}\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("operator_key") && err.contains("31 bytes"),
            "{err}"
        );
    }
}
