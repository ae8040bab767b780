//! Connection caps shared by every accept loop (device HTTPS, service API,
//! MQTT over TLS): at most so many open connections per listener and per
//! source address, counted from TCP accept to close (an MQTT-over-WebSocket
//! session keeps the permit of the HTTPS connection it upgraded).
//!
//! A connection over a cap is closed right after accept, before any TLS
//! work, so refusing costs the server almost nothing. Refusals are logged
//! as one WARN per [`REFUSAL_LOG_INTERVAL`] with the counts since the last
//! report, never once per connection (a flood must not become a log flood).
//! The counters are atomics readable through [`ConnectionGate::stats`].
//!
//! The caps and their defaults are explained on
//! [`crate::config::ConnectionLimits`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::ConnectionLimits;

/// At most one refusal WARN per listener per interval.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The open-connection counts and caps of one listener.
#[derive(Debug)]
pub struct ConnectionGate {
    listener: &'static str,
    max_connections: usize,
    max_per_address: usize,
    open: AtomicUsize,
    accepted: AtomicU64,
    refused_over_total: AtomicU64,
    refused_over_address: AtomicU64,
    tls_handshake_failures: AtomicU64,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    log: RefusalLog,
}

/// A snapshot of a listener's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Connections open now (TLS handshakes included).
    pub open: usize,
    /// Connections admitted since start.
    pub accepted_total: u64,
    /// Connections refused because the listener was at `max_connections`.
    pub refused_total_cap_total: u64,
    /// Connections refused because their address was at
    /// `max_connections_per_address`.
    pub refused_address_cap_total: u64,
    /// TLS handshakes that failed or timed out since start.
    pub tls_handshake_failures_total: u64,
}

/// The gates of the server's listeners.
#[derive(Clone, Debug)]
pub struct ListenerGates {
    /// The HTTPS device endpoint (MQTT-over-WebSocket sessions included).
    pub device: Arc<ConnectionGate>,
    /// The service operations endpoint.
    pub service: Arc<ConnectionGate>,
    /// MQTT over TLS (`None` when MQTT is disabled).
    pub mqtt: Option<Arc<ConnectionGate>>,
    /// AMQP over TLS (`None` when AMQP is disabled).
    pub amqp: Option<Arc<ConnectionGate>>,
}

impl ListenerGates {
    /// One gate per listener under `limits`.
    pub fn new(limits: &ConnectionLimits, mqtt: bool) -> Self {
        ListenerGates {
            device: ConnectionGate::new("device", limits),
            service: ConnectionGate::new("service", limits),
            mqtt: mqtt.then(|| ConnectionGate::new("mqtt", limits)),
            amqp: None,
        }
    }

    /// These gates and one for AMQP over TLS when `amqp`.
    pub fn with_amqp(mut self, limits: &ConnectionLimits, amqp: bool) -> Self {
        self.amqp = amqp.then(|| ConnectionGate::new("amqp", limits));
        self
    }
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The listener has `max` connections open.
    Total { max: usize },
    /// The source address (IPv6: its /64) has `max` connections open.
    Address { address: IpAddr, max: usize },
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct ConnectionPermit {
    gate: Arc<ConnectionGate>,
    address: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.gate.release(self.address);
    }
}

impl ConnectionGate {
    /// The gate of the listener named `listener` (for logs) under `limits`.
    pub fn new(listener: &'static str, limits: &ConnectionLimits) -> Arc<Self> {
        Arc::new(ConnectionGate {
            listener,
            max_connections: limits.max_connections,
            max_per_address: limits.max_connections_per_address,
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            refused_over_total: AtomicU64::new(0),
            refused_over_address: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            per_address: Mutex::new(HashMap::new()),
            log: RefusalLog::default(),
        })
    }

    /// The listener's name, as in logs.
    pub fn listener(&self) -> &'static str {
        self.listener
    }

    /// The counters now.
    pub fn stats(&self) -> ConnectionStats {
        ConnectionStats {
            open: self.open.load(Ordering::Relaxed),
            accepted_total: self.accepted.load(Ordering::Relaxed),
            refused_total_cap_total: self.refused_over_total.load(Ordering::Relaxed),
            refused_address_cap_total: self.refused_over_address.load(Ordering::Relaxed),
            tls_handshake_failures_total: self.tls_handshake_failures.load(Ordering::Relaxed),
        }
    }

    /// Count a TLS handshake that failed or timed out (read by `/metrics`).
    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Admit a connection from `peer`, or say which cap it is over (the
    /// refusal is counted and, at most once per interval, logged).
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<ConnectionPermit, Refusal> {
        let address = address_key(peer);
        let admitted = self.try_admit(address);
        match admitted {
            Ok(()) => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
                Ok(ConnectionPermit {
                    gate: self.clone(),
                    address,
                })
            }
            Err(refusal) => {
                let counter = match refusal {
                    Refusal::Total { .. } => &self.refused_over_total,
                    Refusal::Address { .. } => &self.refused_over_address,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                self.log.refused(self, refusal);
                Err(refusal)
            }
        }
    }

    fn try_admit(&self, address: IpAddr) -> Result<(), Refusal> {
        let mut per_address = self
            .per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.open.load(Ordering::Relaxed) >= self.max_connections {
            return Err(Refusal::Total {
                max: self.max_connections,
            });
        }
        let count = per_address.entry(address).or_insert(0);
        if *count >= self.max_per_address {
            return Err(Refusal::Address {
                address,
                max: self.max_per_address,
            });
        }
        *count += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn release(&self, address: IpAddr) {
        let mut per_address = self
            .per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_address.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                // Only addresses with open connections are kept: the map is
                // bounded by `max_connections`.
                per_address.remove(&address);
            }
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a peer is counted as: IPv4 (also when mapped into IPv6) by address,
/// IPv6 by its /64, the smallest block one subscriber is given.
fn address_key(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

/// Refusals since the last WARN, reported at most once per interval.
#[derive(Debug, Default)]
struct RefusalLog {
    last_report: Mutex<Option<Instant>>,
    pending_total: AtomicU64,
    pending_address: AtomicU64,
}

impl RefusalLog {
    fn refused(&self, gate: &ConnectionGate, refusal: Refusal) {
        let pending = match refusal {
            Refusal::Total { .. } => &self.pending_total,
            Refusal::Address { .. } => &self.pending_address,
        };
        pending.fetch_add(1, Ordering::Relaxed);
        // One accept loop per gate: the lock is never contended, and a
        // missed report is only delayed to the next refusal.
        let Ok(mut last) = self.last_report.try_lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < REFUSAL_LOG_INTERVAL) {
            return;
        }
        *last = Some(now);
        let over_total = self.pending_total.swap(0, Ordering::Relaxed);
        let over_address = self.pending_address.swap(0, Ordering::Relaxed);
        let latest_address = match refusal {
            Refusal::Address { address, .. } => Some(address),
            Refusal::Total { .. } => None,
        };
        tracing::warn!(
            listener = gate.listener,
            open = gate.open.load(Ordering::Relaxed),
            refused_over_total = over_total,
            refused_over_address = over_address,
            max_connections = gate.max_connections,
            max_connections_per_address = gate.max_per_address,
            latest_address = ?latest_address,
            interval_seconds = REFUSAL_LOG_INTERVAL.as_secs(),
            "connections refused over the caps since the last report"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(total: usize, per_address: usize) -> Arc<ConnectionGate> {
        ConnectionGate::new(
            "test",
            &ConnectionLimits {
                max_connections: total,
                max_connections_per_address: per_address,
                ..ConnectionLimits::default()
            },
        )
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_address_cap_refuses_one_address_and_not_another() {
        let gate = gate(100, 2);
        let first = gate.admit(ip("127.0.0.2")).unwrap();
        let _second = gate.admit(ip("127.0.0.2")).unwrap();
        assert_eq!(
            gate.admit(ip("127.0.0.2")).unwrap_err(),
            Refusal::Address {
                address: ip("127.0.0.2"),
                max: 2
            }
        );
        let _other = gate.admit(ip("127.0.0.3")).unwrap();
        drop(first);
        let _again = gate.admit(ip("127.0.0.2")).unwrap();
        assert_eq!(
            gate.stats(),
            ConnectionStats {
                open: 3,
                accepted_total: 4,
                refused_total_cap_total: 0,
                refused_address_cap_total: 1,
                tls_handshake_failures_total: 0,
            }
        );
    }

    #[test]
    fn the_total_cap_refuses_every_address_until_a_place_is_free() {
        let gate = gate(2, 10);
        let first = gate.admit(ip("10.0.0.1")).unwrap();
        let _second = gate.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(
            gate.admit(ip("10.0.0.3")).unwrap_err(),
            Refusal::Total { max: 2 }
        );
        drop(first);
        let _third = gate.admit(ip("10.0.0.3")).unwrap();
        let stats = gate.stats();
        assert_eq!((stats.open, stats.refused_total_cap_total), (2, 1));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let gate = gate(100, 1);
        let _a = gate.admit(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            gate.admit(ip("2001:db8:1:2:ffff::9")).unwrap_err(),
            Refusal::Address {
                address: ip("2001:db8:1:2::"),
                max: 1
            }
        );
        let _b = gate.admit(ip("2001:db8:1:3::1")).unwrap();
        let _v4 = gate.admit(ip("192.0.2.7")).unwrap();
        assert!(gate.admit(ip("::ffff:192.0.2.7")).is_err());
    }

    #[test]
    fn released_addresses_leave_the_map() {
        let gate = gate(100, 5);
        let permits: Vec<_> = (1..=20)
            .map(|n| gate.admit(ip(&format!("10.1.0.{n}"))).unwrap())
            .collect();
        assert_eq!(gate.per_address.lock().unwrap().len(), 20);
        drop(permits);
        assert!(gate.per_address.lock().unwrap().is_empty());
        assert_eq!(gate.stats().open, 0);
    }
}
