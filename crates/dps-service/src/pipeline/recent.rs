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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dps_model::{IdScope, IndividualEnrollment, RegistrationOperation};

/// How long an entry answers polls at most (at least half of it).
const KEEP_FOR: Duration = Duration::from_secs(10);
/// Entries kept at most (a burst beyond this only costs store reads).
const CAPACITY: usize = 65_536;

/// A completed operation and what its register learned.
#[derive(Clone, Debug)]
pub(crate) struct RecentOperation {
    pub(crate) operation: RegistrationOperation,
    /// The individual enrollment lookup of the register (`None`: the device
    /// has none, it matched a group).
    pub(crate) individual: Option<Arc<IndividualEnrollment>>,
}

/// Two generations instead of a timestamp per entry: inserts go to
/// `current`, which becomes `previous` every half [`KEEP_FOR`] (or when it
/// holds half the capacity), and the old `previous` is dropped whole. Expiry
/// is O(1) per insert, never a scan under the lock, and the values are
/// `Arc`s so neither a rotation nor a map's growth copies operations and
/// enrollments around (a profile under load showed both).
struct Generations {
    current: HashMap<String, Entry>,
    previous: HashMap<String, Entry>,
    current_since: Instant,
    previous_since: Instant,
}

/// An operation id is unique across tenants (the server makes it), but the
/// scope is still checked: a tenant can never read another's operation.
type Entry = (IdScope, Arc<RecentOperation>);

impl Default for Generations {
    fn default() -> Self {
        Generations {
            current: HashMap::new(),
            previous: HashMap::new(),
            current_since: Instant::now(),
            previous_since: Instant::now(),
        }
    }
}

#[derive(Default)]
pub(crate) struct RecentOperations {
    generations: Mutex<Generations>,
}

impl RecentOperations {
    pub(crate) fn insert(&self, scope: &IdScope, recent: RecentOperation) {
        let now = Instant::now();
        let key = recent.operation.operation_id.clone();
        let entry = (scope.clone(), Arc::new(recent));
        let dropped = {
            let mut generations = self.lock();
            let dropped = if now.duration_since(generations.current_since) >= KEEP_FOR / 2
                || generations.current.len() >= CAPACITY / 2
            {
                let current = std::mem::take(&mut generations.current);
                generations.previous_since = generations.current_since;
                generations.current_since = now;
                Some(std::mem::replace(&mut generations.previous, current))
            } else {
                None
            };
            generations.current.insert(key, entry);
            dropped
        };
        // Freed outside the lock: tens of thousands of entries at worst.
        drop(dropped);
    }

    /// The operation, if this replica completed it within [`KEEP_FOR`].
    pub(crate) fn get(&self, scope: &IdScope, operation_id: &str) -> Option<Arc<RecentOperation>> {
        let generations = self.lock();
        // An entry is no older than its generation's start.
        let young = |since: Instant| since.elapsed() <= KEEP_FOR;
        let found = young(generations.current_since)
            .then(|| generations.current.get(operation_id))
            .flatten()
            .or_else(|| {
                young(generations.previous_since)
                    .then(|| generations.previous.get(operation_id))
                    .flatten()
            });
        found
            .filter(|(owner, _)| owner == scope)
            .map(|(_, recent)| recent.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.generations.lock().unwrap_or_else(|e| e.into_inner())
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
        let generations = recent.lock();
        let len = generations.current.len() + generations.previous.len();
        assert!(len <= CAPACITY, "{len} entries");
    }

    #[test]
    fn an_entry_survives_one_rotation_and_expires_with_its_generation() {
        let recent = RecentOperations::default();
        let scope = IdScope::generate();
        recent.insert(&scope, operation("op-old"));
        // Age the generation past half KEEP_FOR: the next insert rotates.
        recent.lock().current_since -= KEEP_FOR / 2;
        recent.insert(&scope, operation("op-new"));
        assert!(
            recent.get(&scope, "op-old").is_some(),
            "in the previous generation"
        );
        assert!(recent.get(&scope, "op-new").is_some());
        // Past KEEP_FOR since the previous generation began: gone, though
        // still held until the next rotation drops it.
        recent.lock().previous_since -= KEEP_FOR;
        assert!(recent.get(&scope, "op-old").is_none());
        assert!(recent.get(&scope, "op-new").is_some());
        // A generation that saw no insert for KEEP_FOR answers nothing.
        recent.lock().current_since -= KEEP_FOR;
        assert!(recent.get(&scope, "op-new").is_none());
    }
}
