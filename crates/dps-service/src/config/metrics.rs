//! `[metrics]`: what `GET /metrics` on the admin listener labels. The
//! endpoint itself is always there when the admin listener is.

use serde::{Deserialize, Serialize};

/// Default cap on tenants labelled by name in `dps_tenant_registrations_total`.
pub const DEFAULT_MAX_TENANT_LABELS: usize = 50;

/// `[metrics]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Also count registrations per tenant (`dps_tenant_registrations_total`
    /// with a `tenant` label, the ID scope). Off by default: every label
    /// value is a series kept for the life of the process.
    pub tenant_label: bool,
    /// At most this many tenants get their own label value (the first seen);
    /// the rest, and devices that never proved themselves (their scope is
    /// whatever they sent), count as `other`. Bounds the series whatever
    /// the number of tenants or the traffic.
    pub max_tenant_labels: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            tenant_label: false,
            max_tenant_labels: DEFAULT_MAX_TENANT_LABELS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_defaults() {
        let config: MetricsConfig = toml::from_str("tenant_label = true").unwrap();
        assert!(config.tenant_label);
        assert_eq!(config.max_tenant_labels, DEFAULT_MAX_TENANT_LABELS);
        assert!(!MetricsConfig::default().tenant_label);
        assert!(toml::from_str::<MetricsConfig>("tenant = true").is_err());
    }
}
