//! IoT Hub's operation throttles, as the "IoT Hub quotas and throttling"
//! reference documents them (learn.microsoft.com, iot-hub-devguide-quotas-throttling):
//!
//! | throttle | Free, B1, S1 | B2, S2 | B3, S3 |
//! |---|---|---|---|
//! | identity registry operations (create, retrieve, list, update, delete) | 100/min/unit | 100/min/unit | 5,000/min/unit |
//! | twin reads | 100/s | max(100/s, 10/s/unit) | 500/s/unit |
//! | twin updates | 50/s | max(50/s, 5/s/unit) | 250/s/unit |
//!
//! * "applied in minute ranges": each throttle is a token bucket refilled
//!   continuously at its rate and holding [`Throttling::burst`] of it (one
//!   minute by default), full at start;
//! * a bulk registry call (`POST /devices`) costs one registry operation per
//!   entry — the reference's example: with one S1 unit, two bulk requests of
//!   50 devices are accepted in a minute and a third is refused;
//! * beyond the limit: `429 ThrottlingException` with `Retry-After`, the time
//!   until the request would fit, and nothing is consumed. (IoT Hub's
//!   "traffic shaping" — queueing a burst before refusing — is not emulated.)
//!
//! [`Throttling::speedup`] runs the emulated clock faster so tests see minutes
//! of hub behaviour in seconds; `Retry-After` then carries fractional seconds.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::Method;

/// An IoT Hub pricing tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HubTier {
    /// Free tier.
    Free,
    /// Basic 1.
    B1,
    /// Basic 2.
    B2,
    /// Basic 3.
    B3,
    /// Standard 1.
    S1,
    /// Standard 2.
    S2,
    /// Standard 3.
    S3,
}

impl std::str::FromStr for HubTier {
    type Err = crate::HubSimError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text.trim().to_ascii_uppercase().as_str() {
            "F1" | "FREE" => HubTier::Free,
            "B1" => HubTier::B1,
            "B2" => HubTier::B2,
            "B3" => HubTier::B3,
            "S1" => HubTier::S1,
            "S2" => HubTier::S2,
            "S3" => HubTier::S3,
            _ => {
                return Err(crate::HubSimError::InvalidConfig {
                    reason: format!("unknown hub tier {text:?} (Free, B1-B3, S1-S3)"),
                })
            }
        })
    }
}

impl HubTier {
    /// Identity registry operations per second for `units` units.
    pub fn registry_ops_per_second(self, units: u32) -> f64 {
        let per_minute = match self {
            HubTier::B3 | HubTier::S3 => 5_000.0,
            _ => 100.0,
        };
        per_minute * f64::from(units) / 60.0
    }

    fn twin_reads_per_second(self, units: u32) -> f64 {
        let units = f64::from(units);
        match self {
            HubTier::B3 | HubTier::S3 => 500.0 * units,
            HubTier::B2 | HubTier::S2 => (10.0 * units).max(100.0),
            _ => 100.0,
        }
    }

    fn twin_updates_per_second(self, units: u32) -> f64 {
        let units = f64::from(units);
        match self {
            HubTier::B3 | HubTier::S3 => 250.0 * units,
            HubTier::B2 | HubTier::S2 => (5.0 * units).max(50.0),
            _ => 50.0,
        }
    }
}

/// A hub's throttling model (off unless configured).
#[derive(Clone, Debug, PartialEq)]
pub struct Throttling {
    /// The tier.
    pub tier: HubTier,
    /// Units of that tier (at least 1).
    pub units: u32,
    /// How much allowance each bucket holds, in emulated time (60 s: the
    /// documented minute ranges).
    pub burst: Duration,
    /// Emulated seconds per real second (1: real time).
    pub speedup: f64,
}

impl Throttling {
    /// `units` units of `tier`, minute-range bursts, real time.
    pub fn new(tier: HubTier, units: u32) -> Self {
        Throttling {
            tier,
            units: units.max(1),
            burst: Duration::from_secs(60),
            speedup: 1.0,
        }
    }
}

/// Which throttle a request counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Meter {
    Registry,
    TwinRead,
    TwinUpdate,
}

/// The meter and cost of a request, from its method and path; `None` for
/// requests no throttle counts and for `POST /devices`, which the bulk
/// handler charges per entry once it has read the body.
pub(crate) fn meter_of(method: &Method, path: &str) -> Option<Meter> {
    let path = path.trim_end_matches('/');
    if path == "/devices" {
        return (*method == Method::GET).then_some(Meter::Registry);
    }
    if path.starts_with("/devices/") {
        return Some(Meter::Registry);
    }
    if path.starts_with("/twins/") {
        return Some(if *method == Method::GET {
            Meter::TwinRead
        } else {
            Meter::TwinUpdate
        });
    }
    None
}

struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: Duration) -> Self {
        let capacity = (rate * burst.as_secs_f64()).max(1.0);
        Bucket {
            rate,
            capacity,
            tokens: capacity,
            updated: Instant::now(),
        }
    }

    /// Take `cost` tokens, or say how long (emulated) until they are there.
    /// A cost above the capacity passes once the bucket is full.
    fn take(&mut self, cost: f64, now: Instant, speedup: f64) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64() * speedup;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.updated = now;
        let needed = cost.min(self.capacity);
        if self.tokens + 1e-9 >= needed {
            self.tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((needed - self.tokens) / self.rate))
        }
    }
}

/// The live buckets of one hub.
pub(crate) struct Throttle {
    speedup: f64,
    registry: Mutex<Bucket>,
    twin_reads: Mutex<Bucket>,
    twin_updates: Mutex<Bucket>,
}

impl Throttle {
    pub(crate) fn new(config: &Throttling) -> Self {
        let units = config.units.max(1);
        let bucket = |rate: f64| Mutex::new(Bucket::new(rate, config.burst));
        Throttle {
            speedup: if config.speedup > 0.0 {
                config.speedup
            } else {
                1.0
            },
            registry: bucket(config.tier.registry_ops_per_second(units)),
            twin_reads: bucket(config.tier.twin_reads_per_second(units)),
            twin_updates: bucket(config.tier.twin_updates_per_second(units)),
        }
    }

    /// Charge `cost` operations to `meter`; `Err(real time to wait)` when over.
    pub(crate) fn charge(&self, meter: Meter, cost: u32) -> Result<(), Duration> {
        let bucket = match meter {
            Meter::Registry => &self.registry,
            Meter::TwinRead => &self.twin_reads,
            Meter::TwinUpdate => &self.twin_updates,
        };
        let mut bucket = bucket.lock().unwrap_or_else(|p| p.into_inner());
        bucket
            .take(f64::from(cost), Instant::now(), self.speedup)
            .map_err(|emulated| emulated.div_f64(self.speedup))
    }

    /// `Retry-After` text for a wait: whole seconds rounded up in real time,
    /// milliseconds when the clock runs faster (tests).
    pub(crate) fn retry_after(&self, wait: Duration) -> String {
        if self.speedup == 1.0 {
            format!("{}", wait.as_secs_f64().ceil().max(1.0) as u64)
        } else {
            format!("{:.3}", wait.as_secs_f64().max(0.001))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_rates() {
        assert!((HubTier::S1.registry_ops_per_second(1) - 1.6667).abs() < 1e-3);
        assert!((HubTier::S1.registry_ops_per_second(4) - 6.6667).abs() < 1e-3);
        assert!((HubTier::S3.registry_ops_per_second(1) - 83.333).abs() < 1e-2);
        assert_eq!(HubTier::S2.twin_updates_per_second(20), 100.0);
        assert_eq!(HubTier::S1.twin_reads_per_second(4), 100.0);
    }

    /// The reference's example: one S1 unit accepts two bulk creates of 50
    /// devices in a minute and refuses the third.
    #[test]
    fn two_bulk_calls_of_fifty_per_minute_on_one_s1_unit() {
        let mut bucket = Bucket::new(
            HubTier::S1.registry_ops_per_second(1),
            Duration::from_secs(60),
        );
        let start = Instant::now();
        assert!(bucket.take(50.0, start, 1.0).is_ok());
        assert!(bucket.take(50.0, start, 1.0).is_ok());
        let wait = bucket.take(50.0, start, 1.0).unwrap_err();
        assert!((wait.as_secs_f64() - 30.0).abs() < 0.01, "{wait:?}");
        // Half a minute later 50 operations fit again.
        assert!(bucket
            .take(50.0, start + Duration::from_secs(30), 1.0)
            .is_ok());
    }

    #[test]
    fn meters_by_route() {
        assert_eq!(meter_of(&Method::PUT, "/devices/d1"), Some(Meter::Registry));
        assert_eq!(meter_of(&Method::GET, "/devices/"), Some(Meter::Registry));
        assert_eq!(meter_of(&Method::POST, "/devices"), None);
        assert_eq!(meter_of(&Method::GET, "/twins/d1"), Some(Meter::TwinRead));
        assert_eq!(
            meter_of(&Method::PATCH, "/twins/d1"),
            Some(Meter::TwinUpdate)
        );
        assert_eq!(meter_of(&Method::GET, "/statistics/devices"), None);
    }
}
