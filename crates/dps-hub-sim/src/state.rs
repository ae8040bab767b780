//! Shared emulator state: the hubs, their registries, injected faults.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dps_attestation::sas::{SasToken, SymmetricKey};
use tokio::sync::Notify;

use crate::config::Fault;
use crate::persist::{PersistedHub, PersistedState};
use crate::registry::Registry;
use crate::throttle::{Meter, Throttle, Throttling};
use crate::tls::strip_port;

/// One emulated hub.
pub(crate) struct HubState {
    pub(crate) host_name: String,
    pub(crate) key_name: String,
    pub(crate) key_text: String,
    pub(crate) key: SymmetricKey,
    registry: Mutex<Registry>,
    requests: AtomicU64,
    fault: Mutex<Option<ActiveFault>>,
    throttle: Option<Throttle>,
    /// Identity registry operations asked for (a bulk entry is one), throttled or not.
    registry_operations: AtomicU64,
    /// Requests answered 429 by the throttling model.
    throttled: AtomicU64,
}

struct ActiveFault {
    fault: Fault,
    /// `None`: until cleared.
    remaining: Option<u32>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a registry half-written in a
    // way later requests care about; keep serving.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl HubState {
    pub(crate) fn new(
        persisted: PersistedHub,
        key: SymmetricKey,
        throttling: Option<&Throttling>,
    ) -> Self {
        HubState {
            host_name: persisted.host_name,
            key_name: persisted.key_name,
            key_text: persisted.key,
            key,
            registry: Mutex::new(persisted.registry),
            requests: AtomicU64::new(0),
            fault: Mutex::new(None),
            throttle: throttling.map(Throttle::new),
            registry_operations: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    /// Count `cost` operations against `meter`; with throttling on, the
    /// `Retry-After` text when they do not fit.
    pub(crate) fn charge(&self, meter: Meter, cost: u32) -> Result<(), String> {
        if meter == Meter::Registry {
            self.registry_operations
                .fetch_add(u64::from(cost), Ordering::Relaxed);
        }
        let Some(throttle) = &self.throttle else {
            return Ok(());
        };
        throttle.charge(meter, cost).map_err(|wait| {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            throttle.retry_after(wait)
        })
    }

    pub(crate) fn registry_operation_count(&self) -> u64 {
        self.registry_operations.load(Ordering::Relaxed)
    }

    pub(crate) fn throttled_count(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn set_fault(&self, fault: Option<Fault>, times: Option<u32>) {
        *lock(&self.fault) = fault.map(|fault| ActiveFault {
            fault,
            remaining: times,
        });
    }

    /// The fault to apply to the next request, consuming one use of a counted fault.
    pub(crate) fn take_fault(&self) -> Option<Fault> {
        let mut slot = lock(&self.fault);
        let active = slot.as_mut()?;
        let fault = active.fault.clone();
        match &mut active.remaining {
            Some(0) => {
                *slot = None;
                return None;
            }
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    *slot = None;
                }
            }
            None => {}
        }
        Some(fault)
    }

    /// Whether connections naming this hub should be dropped (peek, no consumption).
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(
            lock(&self.fault).as_ref(),
            Some(ActiveFault {
                fault: Fault::Unreachable,
                ..
            })
        )
    }

    fn persisted(&self) -> PersistedHub {
        PersistedHub {
            host_name: self.host_name.clone(),
            key_name: self.key_name.clone(),
            key: self.key_text.clone(),
            registry: self.registry().clone(),
        }
    }

    pub(crate) fn connection_string(&self) -> String {
        format!(
            "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
            self.host_name, self.key_name, self.key_text
        )
    }
}

/// Everything the server tasks share.
pub(crate) struct SimState {
    pub(crate) hubs: Vec<Arc<HubState>>,
    /// Hubs found in the data file but not served; written back unchanged.
    pub(crate) dormant: BTreeMap<String, PersistedHub>,
    pub(crate) changed: Notify,
}

impl SimState {
    pub(crate) fn hub(&self, host: &str) -> Option<&Arc<HubState>> {
        let host = strip_port(host);
        self.hubs
            .iter()
            .find(|h| strip_port(&h.host_name).eq_ignore_ascii_case(host))
    }

    /// Which hub a request is for: by the host it was sent to, else by the
    /// token's `sr`, else the only hub.
    pub(crate) fn route(
        &self,
        authority: Option<&str>,
        authorization: Option<&str>,
    ) -> Option<Arc<HubState>> {
        if let Some(hub) = authority.and_then(|a| self.hub(a)) {
            return Some(Arc::clone(hub));
        }
        let by_token = authorization
            .and_then(|a| SasToken::parse(a).ok())
            .and_then(|token| {
                let host = token
                    .resource
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                self.hub(&host).cloned()
            });
        if by_token.is_some() {
            return by_token;
        }
        match self.hubs.as_slice() {
            [only] => Some(Arc::clone(only)),
            _ => None,
        }
    }

    pub(crate) fn mark_changed(&self) {
        self.changed.notify_one();
    }

    pub(crate) fn snapshot(&self) -> PersistedState {
        let mut hubs = self.dormant.clone();
        for hub in &self.hubs {
            hubs.insert(hub.host_name.to_ascii_lowercase(), hub.persisted());
        }
        PersistedState { hubs }
    }
}
