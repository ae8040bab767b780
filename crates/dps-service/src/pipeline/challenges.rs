//! Issue seconds of TPM challenges, handed out at most once per device by
//! this replica: the second a challenge is issued for selects its key
//! (`dps_attestation::tpm::ChallengeKeys`), so two challenges of one device
//! never deliver the same key. A second challenge within the same second
//! moves to the next free second, up to
//! [`MAX_ISSUE_AHEAD_SECS`] ahead; beyond that the device gets `429`.
//!
//! An entry matters only until its second has passed, so the map holds at
//! most the devices challenged in the last few seconds; at [`CAPACITY`] with
//! nothing to forget, new challenges are refused rather than risk handing a
//! second out twice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use dps_attestation::tpm::MAX_ISSUE_AHEAD_SECS;
use dps_model::{IdScope, RegistrationId};

use super::rate_limit::Limited;
use super::throttle::throttled;
use crate::respond::ApiError;

/// Devices with a reserved second at most (entries live a few seconds).
const CAPACITY: usize = 65_536;

#[derive(Default)]
pub(crate) struct ChallengeSeconds {
    /// (scope key, registration key) → the latest second issued.
    issued: Mutex<HashMap<(String, String), u64>>,
}

impl ChallengeSeconds {
    /// Reserve the issue second of a new challenge of this device at `now`
    /// (Unix seconds).
    pub(crate) fn reserve(
        &self,
        scope: &IdScope,
        registration_id: &RegistrationId,
        now: u64,
    ) -> Result<u64, ApiError> {
        let key = (scope.key(), registration_id.key());
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        let second = issued
            .get(&key)
            .map_or(now, |&last| now.max(last.saturating_add(1)));
        if second > now + MAX_ISSUE_AHEAD_SECS {
            tracing::debug!(%scope, registration = %registration_id, "TPM challenges requested too fast");
            return Err(throttled(
                "Too many TPM challenges for this device",
                Limited {
                    retry_after: Duration::from_secs(second - now - MAX_ISSUE_AHEAD_SECS),
                },
            ));
        }
        if issued.len() >= CAPACITY && !issued.contains_key(&key) {
            issued.retain(|_, &mut last| last >= now);
            if issued.len() >= CAPACITY {
                tracing::warn!("too many TPM challenges in flight; refusing new ones");
                return Err(throttled(
                    "Too many TPM challenges in flight",
                    Limited {
                        retry_after: Duration::from_secs(1),
                    },
                ));
            }
        }
        issued.insert(key, second);
        Ok(second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_second_is_never_issued_twice_to_a_device() {
        let seconds = ChallengeSeconds::default();
        let scope = IdScope::new("0ne00000001").unwrap();
        let device = RegistrationId::new("tpm-dev").unwrap();
        let now = 1_700_000_000;
        let first: Vec<u64> = (0..=MAX_ISSUE_AHEAD_SECS)
            .map(|_| seconds.reserve(&scope, &device, now).unwrap())
            .collect();
        assert_eq!(
            first,
            (now..=now + MAX_ISSUE_AHEAD_SECS).collect::<Vec<_>>()
        );
        let refused = seconds.reserve(&scope, &device, now).unwrap_err();
        assert_eq!(refused.retry_after, Some(1));
        // The same id differently cased is the same device.
        let upper = RegistrationId::new("TPM-DEV").unwrap();
        assert!(seconds.reserve(&scope, &upper, now).is_err());
        // Later, the next free second.
        assert_eq!(
            seconds.reserve(&scope, &device, now + 1).unwrap(),
            now + MAX_ISSUE_AHEAD_SECS + 1
        );
        assert_eq!(
            seconds.reserve(&scope, &device, now + 100).unwrap(),
            now + 100
        );
        // Another device, or the same id in another tenant, has its own seconds.
        let other = IdScope::new("0ne00000002").unwrap();
        assert_eq!(seconds.reserve(&other, &device, now).unwrap(), now);
    }
}
