//! One lock per device being registered, keyed by (ID scope, registration
//! id): two registrations of the same device run one after the other (the
//! second sees the first's record), and nothing else ever waits on it.
//!
//! The lock is held across the allocation webhook and the hub calls — that
//! is the point: a device's reprovisioning must not interleave with itself.
//! Only the same device of the same tenant can wait on it, so a tenant whose
//! webhook or hub hangs delays only its own devices (the earlier design
//! shared 256 locks by registration id alone, so tenant B's device waited on
//! tenant A's hanging hub whenever their ids hashed alike). No store
//! transaction or connection spans those calls: the pipeline reads the
//! previous record, calls out, then commits in one short transaction.
//!
//! The map holds an entry only while a registration of that device runs or
//! waits: the last guard out removes it, so its size is bounded by the
//! registrations in flight.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Shards of the key map (the map lock is held only to find or remove an entry).
const SHARDS: usize = 64;

type Key = (String, String);
type Shard = Mutex<HashMap<Key, Arc<AsyncMutex<()>>>>;

pub(crate) struct DeviceLocks {
    shards: Box<[Shard]>,
    hasher: RandomState,
}

impl Default for DeviceLocks {
    fn default() -> Self {
        DeviceLocks {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }
}

/// Holds one device's lock; dropping it lets the next registration of that
/// device in, or forgets the entry when none waits.
pub(crate) struct DeviceGuard<'a> {
    locks: &'a DeviceLocks,
    key: Key,
    guard: Option<OwnedMutexGuard<()>>,
}

impl DeviceLocks {
    /// Wait for the device's lock. `scope_key` and `registration_key` are the
    /// case-folded keys (ids are case-insensitive).
    pub(crate) async fn lock(
        &self,
        scope_key: String,
        registration_key: String,
    ) -> DeviceGuard<'_> {
        let key = (scope_key, registration_key);
        let entry = {
            let mut map = self.shard(&key).lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let guard = entry.lock_owned().await;
        DeviceGuard {
            locks: self,
            key,
            guard: Some(guard),
        }
    }

    fn shard(&self, key: &Key) -> &Shard {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

impl Drop for DeviceGuard<'_> {
    fn drop(&mut self) {
        // Release first, so the strong count below counts only the map and
        // the tasks still waiting (each holds a clone of the entry).
        drop(self.guard.take());
        let mut map = self
            .locks
            .shard(&self.key)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Under the shard lock no one can clone the entry meanwhile.
        if map
            .get(&self.key)
            .is_some_and(|entry| Arc::strong_count(entry) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(scope: &str, id: &str) -> (String, String) {
        (scope.to_owned(), id.to_owned())
    }

    #[tokio::test]
    async fn the_same_device_waits_other_tenants_and_devices_do_not() {
        let locks = Arc::new(DeviceLocks::default());
        let (scope, id) = key("0ne0000000a", "same-id");
        let held = locks.lock(scope.clone(), id.clone()).await;

        // The same registration id in another tenant: not blocked.
        let other_tenant = tokio::time::timeout(
            Duration::from_millis(50),
            locks.lock("0ne0000000b".to_owned(), id.clone()),
        )
        .await;
        assert!(
            other_tenant.is_ok(),
            "another tenant's device must not wait"
        );
        drop(other_tenant);

        // The same device waits until the holder is done.
        let waiter = {
            let locks = locks.clone();
            let (scope, id) = (scope.clone(), id.clone());
            tokio::spawn(async move {
                let _guard = locks.lock(scope, id).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiter.is_finished(), "the same device waits");
        drop(held);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("released")
            .unwrap();
        assert_eq!(locks.len(), 0, "no entry outlives its registrations");
    }

    #[tokio::test]
    async fn entries_are_removed_even_under_contention() {
        let locks = Arc::new(DeviceLocks::default());
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let locks = locks.clone();
                tokio::spawn(async move {
                    let _guard = locks
                        .lock("0ne0000000a".to_owned(), format!("dev-{}", i % 7))
                        .await;
                    tokio::task::yield_now().await;
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(locks.len(), 0);
    }
}
