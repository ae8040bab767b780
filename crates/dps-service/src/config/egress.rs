//! `[egress]`: where outbound calls to tenant-chosen URLs may go (today the
//! custom allocation webhook).

use dps_allocation::egress::EgressPolicy;
use dps_allocation::latency::Cidr;
use serde::{Deserialize, Serialize};

use crate::ServiceError;

/// The egress policy. By default (both lists empty) a webhook must be
/// `https` to a public address: loopback, private (RFC 1918, `fc00::/7`),
/// link-local, carrier-grade NAT, cloud metadata, documentation, multicast
/// and reserved addresses — also in their IPv4-in-IPv6 forms — are refused,
/// at enrollment PUT for literal addresses and well-known local names, and
/// at call time on every address a name resolves to.
///
/// ```toml
/// [egress]
/// # On-premises webhooks: these networks may be called whatever their class.
/// allowed_networks = ["10.20.0.0/16"]
/// # Plain http is accepted only to addresses in these networks.
/// allow_http_networks = ["10.20.30.0/24"]
/// ```
///
/// Unspecified, multicast and broadcast addresses are never called, and a
/// cloud metadata address only when `allowed_networks` lists it as a single
/// host (`169.254.169.254/32`): a broad range never opens it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// CIDR ranges (or single addresses) called even though they are not
    /// public, e.g. an on-premises webhook's network.
    pub allowed_networks: Vec<String>,
    /// CIDR ranges plain `http` may go to. This does not allow a non-public
    /// address by itself: list it in `allowed_networks` too.
    pub allow_http_networks: Vec<String>,
}

impl EgressConfig {
    /// The policy, checked: an error names the key and the entry.
    pub fn policy(&self) -> Result<EgressPolicy, ServiceError> {
        let parse = |key: &str, list: &[String]| -> Result<Vec<Cidr>, ServiceError> {
            list.iter()
                .enumerate()
                .map(|(i, text)| {
                    text.parse::<Cidr>().map_err(|e| ServiceError::Config {
                        reason: format!("egress.{key}[{i}]: {e}"),
                    })
                })
                .collect()
        };
        let mut policy = EgressPolicy::default();
        for network in parse("allowed_networks", &self.allowed_networks)? {
            policy = policy.allow_network(network);
        }
        for network in parse("allow_http_networks", &self.allow_http_networks)? {
            policy = policy.allow_http(network);
        }
        Ok(policy)
    }

    pub(crate) fn validate(&self) -> Result<(), ServiceError> {
        self.policy().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServiceConfig;

    #[test]
    fn the_default_is_public_https_only() {
        let policy = ServiceConfig::default().egress.policy().unwrap();
        assert_eq!(policy, EgressPolicy::default());
        assert!(policy
            .check_address("127.0.0.1".parse().unwrap(), false)
            .is_err());
        assert!(policy
            .check_address("8.8.8.8".parse().unwrap(), true)
            .is_err());
    }

    #[test]
    fn keys_parse_and_bad_entries_are_named() {
        let config = ServiceConfig::from_toml(
            "[egress]\nallowed_networks = [\"10.20.0.0/16\", \"fd00::1\"]\nallow_http_networks = [\"10.20.30.0/24\"]\n",
        )
        .unwrap();
        let policy = config.egress.policy().unwrap();
        assert_eq!(policy.allowed_networks().len(), 2);
        assert!(policy
            .check_address("10.20.30.4".parse().unwrap(), true)
            .is_ok());
        assert!(policy
            .check_address("10.20.1.1".parse().unwrap(), true)
            .is_err());
        let err = ServiceConfig::from_toml("[egress]\nallow_http_networks = [\"10.0.0.0/33\"]\n")
            .unwrap_err();
        assert!(
            err.to_string().contains("egress.allow_http_networks[0]"),
            "{err}"
        );
        let err = ServiceConfig::from_toml("[egress]\nallowed = []\n").unwrap_err();
        assert!(err.to_string().contains("allowed"), "{err}");
    }
}
