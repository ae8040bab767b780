//! A keyed rate limiter: one GCRA cell (a single "theoretical arrival time")
//! per key, in a sharded map of bounded size.
//!
//! * Sharded: a request locks only its key's shard, for a few arithmetic
//!   operations; tenants and addresses spread over [`SHARDS`] shards, so
//!   there is no global lock on the hot path.
//! * Bounded: each shard holds at most `max_keys / SHARDS` keys. A cell whose
//!   arrival time has passed is equivalent to a fresh one and is dropped
//!   first; if the shard is still full, the key closest to idle makes room,
//!   so the most abusive keys stay tracked while an attacker rotating
//!   through addresses cannot grow memory.
//! * GCRA is the token bucket expressed as one number: `burst` requests pass
//!   at once, then one per `1 / per_second` seconds.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shards per limiter.
pub(crate) const SHARDS: usize = 64;

/// Over the limit: how long until the key may pass again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limited {
    pub(crate) retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds, at least 1 (SDKs parse integers).
    pub(crate) fn retry_after_secs(self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// A rate per key: `per_second` sustained, `burst` at once; a rate of 0 is
/// no limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rate {
    pub(crate) per_second: u32,
    pub(crate) burst: u32,
}

pub(crate) struct KeyedLimiter<K> {
    /// Nanoseconds between two requests at the sustained rate (0: unlimited).
    interval: u64,
    /// How far ahead of now the arrival time may run: `(burst - 1) * interval`.
    tolerance: u64,
    shards: Box<[Mutex<HashMap<K, u64>>]>,
    shard_capacity: usize,
    hasher: RandomState,
    epoch: Instant,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub(crate) fn new(rate: Rate, max_keys: usize) -> Self {
        let interval = match rate.per_second {
            0 => 0,
            per_second => 1_000_000_000 / u64::from(per_second),
        };
        KeyedLimiter {
            interval,
            tolerance: interval.saturating_mul(u64::from(rate.burst.max(1) - 1)),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            shard_capacity: (max_keys / SHARDS).max(1),
            hasher: RandomState::new(),
            epoch: Instant::now(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.interval > 0
    }

    /// Take one request for `key`, or say how long to wait (nothing taken).
    pub(crate) fn admit(&self, key: &K) -> Result<(), Limited> {
        self.admit_at(key, Instant::now())
    }

    /// Would `key` pass now? Takes nothing.
    pub(crate) fn check(&self, key: &K) -> Result<(), Limited> {
        self.check_at(key, Instant::now())
    }

    /// Count one request for `key` even over the limit (a failure that
    /// already happened); says whether it was over. The debt is capped at one
    /// interval past the burst, so a key stopped by [`Self::check`] recovers
    /// after at most `burst / per_second` seconds.
    pub(crate) fn charge(&self, key: &K) -> Result<(), Limited> {
        self.charge_at(key, Instant::now())
    }

    pub(crate) fn admit_at(&self, key: &K, now: Instant) -> Result<(), Limited> {
        self.update(key, now, |arrival, now| {
            if arrival - now > self.tolerance {
                (None, Err(self.limited(arrival, now)))
            } else {
                (Some(arrival + self.interval), Ok(()))
            }
        })
    }

    pub(crate) fn check_at(&self, key: &K, now: Instant) -> Result<(), Limited> {
        self.update(key, now, |arrival, now| {
            if arrival - now > self.tolerance {
                (None, Err(self.limited(arrival, now)))
            } else {
                (None, Ok(()))
            }
        })
    }

    pub(crate) fn charge_at(&self, key: &K, now: Instant) -> Result<(), Limited> {
        self.update(key, now, |arrival, now| {
            let outcome = if arrival - now > self.tolerance {
                Err(self.limited(arrival, now))
            } else {
                Ok(())
            };
            let capped = (arrival + self.interval).min(now + self.tolerance + self.interval);
            (Some(capped), outcome)
        })
    }

    fn limited(&self, arrival: u64, now: u64) -> Limited {
        Limited {
            retry_after: Duration::from_nanos(arrival - now - self.tolerance),
        }
    }

    /// Run `decide` on the key's arrival time (at least now) and store what
    /// it returns, if anything.
    fn update(
        &self,
        key: &K,
        now: Instant,
        decide: impl FnOnce(u64, u64) -> (Option<u64>, Result<(), Limited>),
    ) -> Result<(), Limited> {
        if !self.enabled() {
            return Ok(());
        }
        let now = u64::try_from(now.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX / 2);
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut cells = shard.lock().unwrap_or_else(|p| p.into_inner());
        let arrival = cells.get(key).copied().unwrap_or(now).max(now);
        let (store, outcome) = decide(arrival, now);
        if let Some(next) = store {
            if let Some(cell) = cells.get_mut(key) {
                *cell = next;
            } else {
                if cells.len() >= self.shard_capacity {
                    make_room(&mut cells, now, self.shard_capacity);
                }
                cells.insert(key.clone(), next);
            }
        }
        outcome
    }

    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// Drop idle cells; if none is idle, the one closest to idle.
fn make_room<K: Hash + Eq + Clone>(cells: &mut HashMap<K, u64>, now: u64, capacity: usize) {
    cells.retain(|_, arrival| *arrival > now);
    if cells.len() >= capacity {
        if let Some(key) = cells
            .iter()
            .min_by_key(|(_, arrival)| **arrival)
            .map(|(key, _)| key.clone())
        {
            cells.remove(&key);
        }
    }
}

/// The key of a source address: IPv4 as is, IPv6 by its /64 (one
/// subscriber's allocation; a single host may hold all of it).
pub(crate) fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32, burst: u32) -> KeyedLimiter<&'static str> {
        KeyedLimiter::new(Rate { per_second, burst }, 1024)
    }

    #[test]
    fn burst_then_one_per_interval() {
        let limiter = limiter(10, 5);
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.admit_at(&"a", start), Ok(()));
        }
        let limited = limiter.admit_at(&"a", start).unwrap_err();
        assert_eq!(limited.retry_after, Duration::from_millis(100));
        assert_eq!(limited.retry_after_secs(), 1);
        // Another key has its own budget.
        assert_eq!(limiter.admit_at(&"b", start), Ok(()));
        // One interval later, exactly one more passes.
        let later = start + Duration::from_millis(100);
        assert_eq!(limiter.admit_at(&"a", later), Ok(()));
        assert!(limiter.admit_at(&"a", later).is_err());
    }

    #[test]
    fn check_takes_nothing_and_charge_caps_the_debt() {
        let limiter = limiter(1, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check_at(&"a", start), Ok(()));
            assert_eq!(limiter.charge_at(&"a", start), Ok(()));
        }
        assert!(limiter.check_at(&"a", start).is_err());
        // Failures keep coming (checked elsewhere first): the debt stays capped.
        for _ in 0..100 {
            assert!(limiter.charge_at(&"a", start).is_err());
        }
        let wait = limiter.check_at(&"a", start).unwrap_err().retry_after;
        assert_eq!(wait, Duration::from_secs(1));
        assert_eq!(limiter.check_at(&"a", start + wait), Ok(()));
    }

    #[test]
    fn zero_rate_is_unlimited_and_tracks_nothing() {
        let limiter = limiter(0, 1);
        assert!((0..10_000).all(|_| limiter.admit(&"a").is_ok()));
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn memory_stays_bounded_and_the_busiest_keys_stay_tracked() {
        let limiter: KeyedLimiter<u32> = KeyedLimiter::new(
            Rate {
                per_second: 1,
                burst: 2,
            },
            SHARDS * 4,
        );
        let start = Instant::now();
        // One abusive key, deep in debt.
        for _ in 0..3 {
            let _ = limiter.charge_at(&0, start);
        }
        // A flood of new keys, each seen once.
        for key in 1..100_000 {
            let _ = limiter.admit_at(&key, start);
        }
        assert!(limiter.tracked() <= SHARDS * 4);
        assert!(
            limiter.check_at(&0, start).is_err(),
            "the abusive key is still limited"
        );
    }

    #[test]
    fn ipv6_peers_count_per_slash_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
