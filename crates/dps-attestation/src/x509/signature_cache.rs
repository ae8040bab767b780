//! A bounded, process-wide memory of signature checks that succeeded.
//!
//! Every device of an X.509 group presents the same intermediate, so every
//! registration of the group verifies the same intermediate-by-root
//! signature: a profile of group registrations put a quarter of the server's
//! CPU into ECDSA verification, half of it repeating that one check. The
//! meter (`meter.rs`) asks this cache before doing the math and tells it of
//! every success; webpki's own checks (validity, CA flags, path length, name
//! constraints, the path search and dps's budgets) run unchanged every time —
//! only the arithmetic of a signature already seen to verify is skipped.
//!
//! Why it is safe against hostile input:
//! * an entry is the SHA-256 of the exact bytes of a check — algorithm,
//!   public key, signed message, signature — each length-prefixed, so no
//!   two distinct checks share a key short of a SHA-256 collision;
//! * only checks that verified are entered: a client cannot enter a triple
//!   that does not verify, and a failure is always computed again;
//! * the size is bounded: two generations of at most half the capacity each;
//!   when the current one is full it becomes the previous one and the old
//!   previous one is dropped (a hit in the previous generation moves the
//!   entry forward, so a group's intermediate, hit on every registration,
//!   stays while the per-device leaf entries pass through).
//!
//! Why process-wide rather than owned by the service's verification pool:
//! the result of a check is a pure function of its bytes, so sharing it
//! across pools and tenants changes no outcome; and `verify_groups` keeps
//! its signature (the chain limits are a plain `Copy` value that cannot
//! carry a cache). The one thing it reveals is timing: a caller can tell
//! (by some 50 µs) whether exactly this certificate was recently verified
//! under exactly this issuer key — which says nothing about which device
//! presented it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use sha2::{Digest, Sha256};

/// Most successful signature checks the process-wide cache remembers (at
/// 32 bytes per entry, well under a megabyte with the table's overhead).
pub const SIGNATURE_CACHE_ENTRIES: usize = 4096;

/// What the process-wide signature cache has done since the process started
/// (or since [`clear_signature_cache`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignatureCacheStats {
    /// Checks answered from the cache, without the signature math.
    pub hits: u64,
    /// Checks computed: not in the cache, or failed (failures are never kept).
    pub misses: u64,
    /// Successful checks remembered now (at most [`SIGNATURE_CACHE_ENTRIES`]).
    pub entries: usize,
}

/// The process-wide cache's counters.
pub fn signature_cache_stats() -> SignatureCacheStats {
    SignatureCache::global().stats()
}

/// Forget every remembered check and reset the counters (benchmarks measure
/// the cold path with it; correctness never needs it).
pub fn clear_signature_cache() {
    SignatureCache::global().clear();
}

/// The identity of one signature check: a SHA-256 over its exact bytes.
pub(crate) type CheckKey = [u8; 32];

/// The key of verifying `signature` over `message` with `public_key` by the
/// algorithm numbered `algorithm` (its index among the supported ones).
pub(crate) fn check_key(
    algorithm: usize,
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> CheckKey {
    let mut hash = Sha256::new();
    hash.update(b"dps x509 signature check\0");
    hash.update((algorithm as u64).to_be_bytes());
    // Length prefixes: moving bytes from one part to the next is another key.
    for part in [public_key, message, signature] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

#[derive(Debug, Default)]
struct Generations {
    current: HashSet<CheckKey>,
    previous: HashSet<CheckKey>,
}

/// A bounded set of successful checks (see the module comment).
#[derive(Debug)]
pub(crate) struct SignatureCache {
    /// Most entries per generation: half the capacity, at least one.
    generation: usize,
    sets: Mutex<Generations>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl SignatureCache {
    /// A cache of at most `capacity` entries (at least two).
    pub(crate) fn new(capacity: usize) -> Self {
        SignatureCache {
            generation: (capacity / 2).max(1),
            sets: Mutex::new(Generations::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cache every verification of this process shares.
    pub(crate) fn global() -> &'static SignatureCache {
        static GLOBAL: OnceLock<SignatureCache> = OnceLock::new();
        GLOBAL.get_or_init(|| SignatureCache::new(SIGNATURE_CACHE_ENTRIES))
    }

    fn lock(&self) -> MutexGuard<'_, Generations> {
        // A panic while holding the lock leaves two valid sets behind.
        self.sets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Was this check seen to succeed? Counts a hit or a miss.
    pub(crate) fn contains(&self, key: &CheckKey) -> bool {
        let mut sets = self.lock();
        let found = sets.current.contains(key) || {
            let was_previous = sets.previous.remove(key);
            if was_previous {
                self.enter(&mut sets, *key);
            }
            was_previous
        };
        drop(sets);
        let counter = if found { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Remember a check that succeeded.
    pub(crate) fn insert(&self, key: CheckKey) {
        let mut sets = self.lock();
        self.enter(&mut sets, key);
    }

    fn enter(&self, sets: &mut Generations, key: CheckKey) {
        if sets.current.len() >= self.generation && !sets.current.contains(&key) {
            // The current generation becomes the previous one, whose
            // allocation is reused for the new current one.
            let Generations { current, previous } = sets;
            std::mem::swap(current, previous);
            current.clear();
        }
        sets.current.insert(key);
    }

    pub(crate) fn stats(&self) -> SignatureCacheStats {
        let sets = self.lock();
        SignatureCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: sets.current.len() + sets.previous.len(),
        }
    }

    fn clear(&self) {
        let mut sets = self.lock();
        sets.current.clear();
        sets.previous.clear();
        self.hits.store(0, Ordering::Relaxed);
        self.misses.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(n: u64) -> CheckKey {
        check_key(0, b"key", &n.to_be_bytes(), b"sig")
    }

    #[test]
    fn every_byte_and_boundary_of_a_check_is_part_of_its_key() {
        let base = check_key(0, b"pk", b"message", b"sig");
        assert_ne!(base, check_key(1, b"pk", b"message", b"sig"));
        assert_ne!(base, check_key(0, b"pK", b"message", b"sig"));
        assert_ne!(base, check_key(0, b"pk", b"messagE", b"sig"));
        assert_ne!(base, check_key(0, b"pk", b"message", b"siG"));
        // The same bytes split differently between the parts.
        assert_ne!(base, check_key(0, b"pkm", b"essage", b"sig"));
        assert_ne!(base, check_key(0, b"pk", b"messages", b"ig"));
        assert_eq!(base, check_key(0, b"pk", b"message", b"sig"));
    }

    #[test]
    fn many_distinct_entries_never_grow_it_past_its_capacity() {
        let cache = SignatureCache::new(64);
        for n in 0..10_000 {
            cache.insert(key(n));
            assert!(cache.stats().entries <= 64);
        }
        // The most recent entries are still there; the oldest are gone.
        assert!(cache.contains(&key(9_999)));
        assert!(!cache.contains(&key(0)));
    }

    #[test]
    fn an_entry_in_steady_use_survives_a_flood_of_one_time_entries() {
        let cache = SignatureCache::new(64);
        let intermediate = check_key(3, b"root key", b"intermediate", b"sig");
        cache.insert(intermediate);
        for n in 0..10_000 {
            // One registration: the shared link, then the device's own.
            assert!(cache.contains(&intermediate), "evicted after {n} devices");
            cache.insert(key(n));
        }
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (10_000, 0));
    }

    #[test]
    fn counters_count_hits_and_misses() {
        let cache = SignatureCache::new(8);
        assert!(!cache.contains(&key(1)));
        cache.insert(key(1));
        assert!(cache.contains(&key(1)));
        assert!(!cache.contains(&key(2)));
        assert_eq!(
            cache.stats(),
            SignatureCacheStats {
                hits: 1,
                misses: 2,
                entries: 1
            }
        );
        cache.clear();
        assert_eq!(cache.stats(), SignatureCacheStats::default());
    }

    proptest! {
        /// Whatever the sequence of inserts and lookups, the cache holds at
        /// most its capacity, and what was just inserted is found.
        #[test]
        fn bounded_and_remembers_the_latest(
            capacity in 2usize..40,
            ops in proptest::collection::vec((any::<bool>(), 0u64..200), 1..400),
        ) {
            let cache = SignatureCache::new(capacity);
            for (insert, n) in ops {
                if insert {
                    cache.insert(key(n));
                    prop_assert!(cache.contains(&key(n)));
                } else {
                    cache.contains(&key(n));
                }
                prop_assert!(cache.stats().entries <= capacity.max(2));
            }
        }
    }
}
