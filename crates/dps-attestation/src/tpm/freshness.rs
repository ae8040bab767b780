//! Fresh TPM challenge keys that any replica can verify without shared
//! session state.
//!
//! The key `K` a challenge delivers is
//! `HMAC-SHA256(tenant secret, "tpm-challenge/2" ‖ SHA-256(registration id ‖ EK) ‖ issued-at)`,
//! where `issued-at` is the Unix second the challenge was issued for. The
//! device never echoes anything the server chose (the second `PUT` repeats
//! the first one's body, and its SAS token carries only `sr`, `se`, `sig` and
//! a `skn` that Node hard-wires), so a random nonce could only be verified by
//! storing it. Instead the verifier re-derives the keys of every second of
//! the challenge's lifetime, newest first, and accepts the token if one of
//! them signed it: a device answers within seconds, so the match is almost
//! always among the first few candidates, and a token signed with a key older
//! than [`CHALLENGE_LIFETIME_SECS`] matches none and is refused, whatever its
//! `se` says.
//!
//! Issue time doubles as the nonce: the issuing side must hand out each
//! second at most once per device (`dps-service` reserves it per replica, and
//! moves a second challenge within the same second to the next one), so no
//! two challenges of one replica deliver the same key.

use sha2::{Digest, Sha256};

use crate::sas::SymmetricKey;

/// How long the key of one challenge answers (five minutes: the device
/// activates the blob and registers within seconds; the polls of that
/// registration reuse its token).
pub const CHALLENGE_LIFETIME_SECS: u64 = 300;

/// How far in the future an issue time may lie and still verify: replicas'
/// clocks may differ a little, and an issuer may move a second challenge of
/// one device a second or two ahead (see [`MAX_ISSUE_AHEAD_SECS`]).
pub const CHALLENGE_CLOCK_TOLERANCE_SECS: u64 = 5;

/// How far ahead of now an issuer may place a challenge to keep issue times
/// unique per device; beyond it the device must wait.
pub const MAX_ISSUE_AHEAD_SECS: u64 = 2;

/// Domain separation from every other use of the tenant's secret (and from
/// the first, time-less derivation).
const LABEL: &[u8] = b"tpm-challenge/2\n";

/// The challenge keys of one device: one per issue second.
pub struct ChallengeKeys {
    secret: SymmetricKey,
    device: [u8; 32],
}

impl ChallengeKeys {
    /// The keys of the device with this registration id (as the service keys
    /// it, case-folded) and enrolled endorsement key (base64, as enrolled).
    pub fn new(secret: SymmetricKey, registration_id: &str, endorsement_key: &str) -> Self {
        let device = Sha256::new()
            .chain_update(registration_id.as_bytes())
            .chain_update(b"\n")
            .chain_update(endorsement_key.trim().as_bytes())
            .finalize()
            .into();
        ChallengeKeys { secret, device }
    }

    /// The key of a challenge issued at `issued_at` (Unix seconds).
    pub fn key(&self, issued_at: u64) -> [u8; 32] {
        let mut message = Vec::with_capacity(LABEL.len() + 32 + 8);
        message.extend_from_slice(LABEL);
        message.extend_from_slice(&self.device);
        message.extend_from_slice(&issued_at.to_be_bytes());
        self.secret.hmac_sha256(&message)
    }

    /// The issue time of the newest challenge still alive at `now` whose key
    /// `accepts` (e.g. "this key signed the token"), trying the seconds from
    /// `now` + [`CHALLENGE_CLOCK_TOLERANCE_SECS`] back to `now` −
    /// [`CHALLENGE_LIFETIME_SECS`].
    pub fn find(&self, now: u64, mut accepts: impl FnMut(&SymmetricKey) -> bool) -> Option<u64> {
        let newest = now.saturating_add(CHALLENGE_CLOCK_TOLERANCE_SECS);
        let oldest = now.saturating_sub(CHALLENGE_LIFETIME_SECS);
        (oldest..=newest)
            .rev()
            .find(|&issued_at| accepts(&SymmetricKey::from_bytes(self.key(issued_at).to_vec())))
    }
}

impl std::fmt::Debug for ChallengeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChallengeKeys(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ChallengeKeys {
        ChallengeKeys::new(SymmetricKey::from_bytes(vec![7u8; 32]), "dev-1", "AAEC")
    }

    #[test]
    fn every_issue_second_delivers_another_key() {
        let keys = keys();
        let distinct: std::collections::HashSet<[u8; 32]> =
            (1_000..1_400).map(|t| keys.key(t)).collect();
        assert_eq!(distinct.len(), 400);
        // The same second, device and secret give the same key on any replica.
        assert_eq!(keys.key(1_000), self::keys().key(1_000));
    }

    #[test]
    fn keys_are_bound_to_device_and_tenant() {
        let secret = SymmetricKey::from_bytes(vec![7u8; 32]);
        let base = keys().key(5);
        assert_ne!(
            ChallengeKeys::new(secret.clone(), "dev-2", "AAEC").key(5),
            base
        );
        assert_ne!(ChallengeKeys::new(secret, "dev-1", "AAED").key(5), base);
        assert_ne!(
            ChallengeKeys::new(SymmetricKey::from_bytes(vec![8u8; 32]), "dev-1", "AAEC").key(5),
            base
        );
    }

    #[test]
    fn a_key_verifies_for_its_lifetime_and_not_after() {
        let keys = keys();
        let issued = 1_000_000;
        let signed_with = keys.key(issued);
        let matches = |k: &SymmetricKey| k.as_bytes() == signed_with;
        assert_eq!(keys.find(issued, matches), Some(issued));
        assert_eq!(
            keys.find(issued + CHALLENGE_LIFETIME_SECS, matches),
            Some(issued)
        );
        assert_eq!(
            keys.find(issued + CHALLENGE_LIFETIME_SECS + 1, matches),
            None
        );
        // Issued by a replica whose clock runs a little ahead.
        assert_eq!(
            keys.find(issued - CHALLENGE_CLOCK_TOLERANCE_SECS, matches),
            Some(issued)
        );
        assert_eq!(
            keys.find(issued - CHALLENGE_CLOCK_TOLERANCE_SECS - 1, matches),
            None
        );
    }

    #[test]
    fn verification_tries_the_newest_keys_first() {
        let keys = keys();
        let now = 50_000;
        let mut tried = 0;
        let found = keys.find(now, |k| {
            tried += 1;
            k.as_bytes() == keys.key(now - 1)
        });
        assert_eq!(found, Some(now - 1));
        assert_eq!(tried as u64, CHALLENGE_CLOCK_TOLERANCE_SECS + 2);
    }
}
