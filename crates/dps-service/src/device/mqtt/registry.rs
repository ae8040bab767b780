//! Open MQTT connections per registration id, with a cap: when a device opens
//! one connection more than allowed, its **oldest** connection is closed
//! (newest wins). A device whose old connection died without a FIN (a NAT
//! timeout, a power cut) reconnects at once instead of waiting for the
//! server's keep-alive to notice; and only an authenticated device can close
//! its own connections, never another device's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// A connection of one registration id: its number and the way to close it.
type OpenConnection = (u64, oneshot::Sender<()>);

/// The connections of every registration id.
#[derive(Debug)]
pub(crate) struct ConnectionRegistry {
    cap: usize,
    next_id: AtomicU64,
    open: Mutex<HashMap<String, Vec<OpenConnection>>>,
}

/// One registered connection; dropping it unregisters.
#[derive(Debug)]
pub(crate) struct Registered {
    registry: Arc<ConnectionRegistry>,
    key: String,
    id: u64,
    /// Resolves when a newer connection of the same device took this one's place.
    pub(crate) evicted: oneshot::Receiver<()>,
}

/// Resolves when a newer connection of the same device took this one's
/// place; never for a connection that is not registered (MQTT and AMQP
/// sessions wait on it beside their traffic).
pub(crate) async fn evicted(registered: &mut Option<Registered>) {
    match registered {
        Some(registered) => {
            let _ = (&mut registered.evicted).await;
        }
        None => std::future::pending().await,
    }
}

impl ConnectionRegistry {
    /// A registry allowing `cap` connections per registration id (at least 1).
    pub(crate) fn new(cap: usize) -> Self {
        ConnectionRegistry {
            cap: cap.max(1),
            next_id: AtomicU64::new(1),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Register a connection of `registration_id` in `id_scope`, evicting the
    /// oldest ones over the cap.
    pub(crate) fn register(self: &Arc<Self>, id_scope: &str, registration_id: &str) -> Registered {
        // Registration ids and scopes compare case-insensitively.
        let key = format!(
            "{}/{}",
            id_scope.to_ascii_lowercase(),
            registration_id.to_ascii_lowercase()
        );
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, evicted) = oneshot::channel();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let connections = open.entry(key.clone()).or_default();
        connections.push((id, sender));
        while connections.len() > self.cap {
            let (_, oldest) = connections.remove(0);
            let _ = oldest.send(());
        }
        Registered {
            registry: self.clone(),
            key,
            id,
            evicted,
        }
    }

    /// How many connections `registration_id` has open.
    #[cfg(test)]
    pub(crate) fn count(&self, id_scope: &str, registration_id: &str) -> usize {
        let key = format!(
            "{}/{}",
            id_scope.to_ascii_lowercase(),
            registration_id.to_ascii_lowercase()
        );
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&key).map_or(0, Vec::len)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut open = self.registry.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(connections) = open.get_mut(&self.key) {
            connections.retain(|(id, _)| *id != self.id);
            if connections.is_empty() {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_wins_over_the_cap_and_drops_unregister() {
        let registry = Arc::new(ConnectionRegistry::new(2));
        let mut first = registry.register("0ne1", "Dev-1");
        let mut second = registry.register("0NE1", "dev-1");
        let other = registry.register("0ne1", "dev-2");
        assert_eq!(registry.count("0ne1", "dev-1"), 2);
        assert!(first.evicted.try_recv().is_err());
        let third = registry.register("0ne1", "DEV-1");
        assert_eq!(first.evicted.try_recv(), Ok(()));
        assert!(second.evicted.try_recv().is_err());
        assert_eq!(registry.count("0ne1", "dev-1"), 2);
        drop(first);
        assert_eq!(registry.count("0ne1", "dev-1"), 2);
        drop(second);
        drop(third);
        assert_eq!(registry.count("0ne1", "dev-1"), 0);
        assert_eq!(registry.count("0ne1", "dev-2"), 1);
        drop(other);
        assert!(registry.open.lock().unwrap().is_empty());
    }
}
