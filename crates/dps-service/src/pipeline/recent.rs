//! Operations this replica just completed, kept briefly in memory for the
//! poll that follows almost every register (usually on the same connection,
//! a second later at most).
//!
//! A stored operation never changes, so answering the poll from here is
//! exact. The poll still authenticates the device: against the individual
//! enrollment lookup the register itself made (an enrollment changed since
//! then is seen once the entry expires, like the tenant cache's groups).
//! Anything missing or expired falls back to the store, so another replica
//! answering the poll, or this one after a restart, gives the same answer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dps_model::{IdScope, IndividualEnrollment, RegistrationOperation};

/// How long an entry answers polls.
const KEEP_FOR: Duration = Duration::from_secs(10);
/// Entries kept at most (a burst beyond this only costs store reads).
const CAPACITY: usize = 65_536;

/// A completed operation and what its register learned.
#[derive(Clone, Debug)]
pub(crate) struct RecentOperation {
    pub(crate) operation: RegistrationOperation,
    /// The individual enrollment lookup of the register (`None`: the device
    /// has none, it matched a group).
    pub(crate) individual: Option<IndividualEnrollment>,
}

#[derive(Default)]
pub(crate) struct RecentOperations {
    entries: Mutex<HashMap<(IdScope, String), (Instant, RecentOperation)>>,
}

impl RecentOperations {
    pub(crate) fn insert(&self, scope: &IdScope, recent: RecentOperation) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CAPACITY {
            entries.retain(|_, (at, _)| now.duration_since(*at) < KEEP_FOR);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        let key = (scope.clone(), recent.operation.operation_id.clone());
        entries.insert(key, (now, recent));
    }

    /// The operation, if this replica completed it within [`KEEP_FOR`].
    pub(crate) fn get(&self, scope: &IdScope, operation_id: &str) -> Option<RecentOperation> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let key = (scope.clone(), operation_id.to_owned());
        match entries.get(&key) {
            Some((at, recent)) if at.elapsed() < KEEP_FOR => Some(recent.clone()),
            Some(_) => {
                entries.remove(&key);
                None
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use dps_model::{RegistrationId, RegistrationOperationStatus, RegistrationStatus};

    use super::*;

    fn operation(id: &str) -> RecentOperation {
        RecentOperation {
            operation: RegistrationOperation {
                operation_id: id.to_owned(),
                registration_id: RegistrationId::new("dev-1").unwrap(),
                created: Utc::now(),
                status: RegistrationOperationStatus {
                    operation_id: id.to_owned(),
                    status: RegistrationStatus::Assigned,
                    registration_state: None,
                },
            },
            individual: None,
        }
    }

    #[test]
    fn entries_are_per_tenant_and_bounded() {
        let recent = RecentOperations::default();
        let (a, b) = (IdScope::generate(), IdScope::generate());
        recent.insert(&a, operation("op-1"));
        assert!(recent.get(&a, "op-1").is_some());
        assert!(
            recent.get(&b, "op-1").is_none(),
            "another tenant's operation"
        );
        assert!(recent.get(&a, "op-2").is_none());
        for n in 0..CAPACITY + 10 {
            recent.insert(&a, operation(&format!("bulk-{n}")));
        }
        let len = recent.entries.lock().unwrap().len();
        assert!(len <= CAPACITY, "{len} entries");
    }
}
