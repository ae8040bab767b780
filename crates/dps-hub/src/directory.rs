//! [`HubDirectory`]: one long-lived [`HubClient`] per linked hub.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use dps_model::LinkedHub;

use crate::{ConnectionString, HubClient, HubClientOptions, HubError, IotHub};

/// Caches one [`HubClient`] per hub connection string, all over one shared
/// HTTP client, so registrations reuse kept-alive connections and cached tokens.
///
/// Keyed by the full connection string: a rotated key yields a fresh client.
pub struct HubDirectory {
    options: HubClientOptions,
    http: reqwest::Client,
    clients: RwLock<HashMap<String, Arc<HubClient>>>,
}

impl std::fmt::Debug for HubDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubDirectory")
            .field("hubs", &self.len())
            .finish_non_exhaustive()
    }
}

impl HubDirectory {
    /// A directory whose clients all use `options`.
    pub fn new(options: HubClientOptions) -> Result<Self, HubError> {
        Ok(HubDirectory {
            http: options.build_http_client()?,
            options,
            clients: RwLock::new(HashMap::new()),
        })
    }

    /// The client of a linked hub. Its connection string must name the hub's host.
    pub fn get(&self, hub: &LinkedHub) -> Result<Arc<HubClient>, HubError> {
        let client = self.get_by_connection_string(&hub.connection_string)?;
        if !same_host(client.host_name(), &hub.host_name) {
            return Err(HubError::InvalidConnectionStringPart {
                part: "HostName",
                reason: format!(
                    "{:?} differs from the linked hub's host name {:?}",
                    client.host_name(),
                    hub.host_name
                ),
            });
        }
        Ok(client)
    }

    /// The client for a connection string, created on first use.
    pub fn get_by_connection_string(
        &self,
        connection_string: &str,
    ) -> Result<Arc<HubClient>, HubError> {
        if let Some(client) = self.read().get(connection_string) {
            return Ok(Arc::clone(client));
        }
        let parsed = ConnectionString::parse(connection_string)?;
        let mut clients = self
            .clients
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let client = clients
            .entry(connection_string.to_owned())
            .or_insert_with(|| {
                Arc::new(HubClient::with_http_client(
                    parsed,
                    self.http.clone(),
                    &self.options,
                ))
            });
        Ok(Arc::clone(client))
    }

    /// Drop the clients of hubs that are no longer linked.
    pub fn retain(&self, linked: &[LinkedHub]) {
        self.clients
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|cs, _| linked.iter().any(|h| &h.connection_string == cs));
    }

    /// Number of cached clients.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// No client cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<HubClient>>> {
        self.clients
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Host names compare case-insensitively, ignoring a `:port`.
fn same_host(a: &str, b: &str) -> bool {
    fn bare(h: &str) -> &str {
        match h.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => h,
        }
    }
    bare(a).eq_ignore_ascii_case(bare(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linked(host: &str, cs: &str) -> LinkedHub {
        LinkedHub {
            host_name: host.to_owned(),
            connection_string: cs.to_owned(),
            allocation_weight: 1,
            apply_allocation_policy: true,
            location: None,
        }
    }

    const KEY: &str = "c2VjcmV0LWtleS1ieXRlcy0xMjM0NTY3ODkwYWJjZA==";

    #[test]
    fn one_client_per_connection_string() {
        let dir = HubDirectory::new(HubClientOptions::default()).unwrap();
        let a =
            format!("HostName=hub-a.example;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}");
        let b =
            format!("HostName=hub-b.example;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}");
        let first = dir.get(&linked("hub-a.example", &a)).unwrap();
        let again = dir.get(&linked("HUB-A.example", &a)).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let other = dir.get(&linked("hub-b.example", &b)).unwrap();
        assert_eq!(other.host_name(), "hub-b.example");
        assert_eq!(dir.len(), 2);
        dir.retain(&[linked("hub-b.example", &b)]);
        assert_eq!(dir.len(), 1);
    }

    #[test]
    fn host_mismatch_and_bad_strings_are_errors() {
        let dir = HubDirectory::new(HubClientOptions::default()).unwrap();
        let a =
            format!("HostName=hub-a.example;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}");
        assert!(matches!(
            dir.get(&linked("hub-b.example", &a)),
            Err(HubError::InvalidConnectionStringPart {
                part: "HostName",
                ..
            })
        ));
        assert!(matches!(
            dir.get(&linked("hub-a.example", "HostName=hub-a.example")),
            Err(HubError::MissingConnectionStringPart { .. })
        ));
    }

    #[test]
    fn bad_ca_pem_is_an_options_error() {
        let options = HubClientOptions::default().trust_ca_pem("not a certificate");
        assert!(matches!(
            HubDirectory::new(options),
            Err(HubError::InvalidOptions { .. })
        ));
    }
}
