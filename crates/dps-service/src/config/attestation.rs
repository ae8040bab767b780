//! `[attestation]`: what verifying a device's X.509 chain may cost, and the
//! bounded pool of threads it runs on (issue #15: a crafted chain stalled the
//! async workers that serve every other device).

use std::time::Duration;

use dps_attestation::x509::{ChainLimits, MAX_PATH_DEPTH};
use serde::{Deserialize, Serialize};

use crate::ServiceError;

/// Bounds on X.509 chain verification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttestationLimits {
    /// Most certificates a device may present in its TLS chain, leaf
    /// included; a longer chain is refused before it is parsed.
    pub max_chain_certificates: usize,
    /// Most intermediates between the leaf and the group's certificate (1 to 6).
    pub max_path_depth: usize,
    /// Most signature checks one registration may cost, across all of the
    /// tenant's X.509 groups.
    pub max_signature_checks: usize,
    /// Threads that verify chains at once (0: one per CPU core). Requests
    /// beyond wait for a thread.
    pub pool_threads: usize,
    /// How long a request waits for a verification thread before it is
    /// answered 429 with `Retry-After`, in milliseconds.
    pub pool_queue_timeout_ms: u64,
}

impl Default for AttestationLimits {
    fn default() -> Self {
        let chain = ChainLimits::default();
        AttestationLimits {
            max_chain_certificates: chain.max_chain_certificates,
            max_path_depth: chain.max_path_depth,
            max_signature_checks: chain.max_signature_checks,
            pool_threads: 0,
            pool_queue_timeout_ms: 1_000,
        }
    }
}

impl AttestationLimits {
    /// The limits dps-attestation applies.
    pub fn chain_limits(&self) -> ChainLimits {
        ChainLimits {
            max_chain_certificates: self.max_chain_certificates,
            max_path_depth: self.max_path_depth,
            max_signature_checks: self.max_signature_checks,
            ..ChainLimits::default()
        }
    }

    /// Verification threads: the configured number, or one per core.
    pub fn threads(&self) -> usize {
        if self.pool_threads > 0 {
            self.pool_threads
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }

    /// How long a request may wait for a verification thread.
    pub fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.pool_queue_timeout_ms)
    }

    /// Check values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ServiceError> {
        let fail = |reason: String| Err(ServiceError::Config { reason });
        if !(1..=64).contains(&self.max_chain_certificates) {
            return fail("attestation.max_chain_certificates must be between 1 and 64".to_owned());
        }
        if !(1..=MAX_PATH_DEPTH).contains(&self.max_path_depth) {
            return fail(format!(
                "attestation.max_path_depth must be between 1 and {MAX_PATH_DEPTH}"
            ));
        }
        if !(1..=256).contains(&self.max_signature_checks) {
            return fail("attestation.max_signature_checks must be between 1 and 256".to_owned());
        }
        if self.pool_threads > 1024 {
            return fail("attestation.pool_threads must be at most 1024".to_owned());
        }
        if !(1..=60_000).contains(&self.pool_queue_timeout_ms) {
            return fail(
                "attestation.pool_queue_timeout_ms must be between 1 and 60000".to_owned(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_attestation_crate_defaults_and_valid() {
        let limits = AttestationLimits::default();
        assert_eq!(limits.chain_limits(), ChainLimits::default());
        assert!(limits.threads() >= 1);
        assert_eq!(limits.queue_timeout(), Duration::from_secs(1));
        limits.validate().unwrap();
    }

    #[test]
    fn the_section_is_read_from_toml() {
        let config = crate::config::ServiceConfig::from_toml(
            "[attestation]\nmax_chain_certificates = 4\npool_threads = 3\n",
        )
        .unwrap();
        assert_eq!(config.attestation.max_chain_certificates, 4);
        assert_eq!(config.attestation.threads(), 3);
        assert_eq!(config.attestation.max_signature_checks, 16);
        let err = crate::config::ServiceConfig::from_toml("[attestation]\nmax_path_depth = 9\n")
            .unwrap_err();
        assert!(err.to_string().contains("max_path_depth"), "{err}");
    }

    #[test]
    fn nonsense_is_refused_by_name() {
        for (limits, field) in [
            (
                AttestationLimits {
                    max_chain_certificates: 0,
                    ..AttestationLimits::default()
                },
                "max_chain_certificates",
            ),
            (
                AttestationLimits {
                    max_path_depth: MAX_PATH_DEPTH + 1,
                    ..AttestationLimits::default()
                },
                "max_path_depth",
            ),
            (
                AttestationLimits {
                    max_signature_checks: 0,
                    ..AttestationLimits::default()
                },
                "max_signature_checks",
            ),
            (
                AttestationLimits {
                    pool_queue_timeout_ms: 0,
                    ..AttestationLimits::default()
                },
                "pool_queue_timeout_ms",
            ),
        ] {
            let err = limits.validate().unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
    }
}
