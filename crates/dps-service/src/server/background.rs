//! What runs beside the listeners: the hourly purge of old device
//! operations and the live latency prober of the lowest-latency policy.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dps_allocation::latency::ProbeTarget;
use dps_allocation::LiveProber;
use dps_storage::Store;
use tokio::sync::watch;

/// How long device operations are kept for polls (at least the promised 24 h).
const OPERATION_RETENTION: Duration = Duration::from_secs(48 * 3600);

pub(super) async fn purge_operations(store: Arc<dyn Store>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = crate::listener::stopped(&mut shutdown) => return,
        }
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(OPERATION_RETENTION).unwrap_or(chrono::Duration::days(2));
        if let Err(err) = store.purge_registration_operations(cutoff).await {
            tracing::warn!(%err, "purging old device operations failed");
        }
    }
}

/// Probe the linked hubs until shutdown: every round re-reads the tenants
/// from storage (so hubs linked or unlinked through any replica are picked up
/// within one interval), then measures every hub once.
pub(super) async fn probe_hubs(
    prober: LiveProber,
    store: Arc<dyn Store>,
    resolve: BTreeMap<String, SocketAddr>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let round = async {
            match store.list_tenants().await {
                Ok(tenants) => prober.set_targets(probe_targets(&tenants, &resolve)),
                Err(err) => tracing::warn!(%err, "listing tenants for latency probes failed"),
            }
            prober.probe_once().await;
        };
        tokio::select! {
            _ = round => {}
            _ = crate::listener::stopped(&mut shutdown) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = crate::listener::stopped(&mut shutdown) => return,
        }
    }
}

/// What the live prober measures: every linked hub with
/// `applyAllocationPolicy` (the only hubs `geoLatency` chooses from) of every
/// tenant, once each, at its `hubs.resolve` address when one is configured
/// (names compare case-insensitively), else at `{host}:443`.
pub fn probe_targets(
    tenants: &[dps_model::Tenant],
    resolve: &BTreeMap<String, SocketAddr>,
) -> Vec<ProbeTarget> {
    let mut targets: Vec<ProbeTarget> = Vec::new();
    let hubs = tenants
        .iter()
        .flat_map(|t| &t.linked_hubs)
        .filter(|hub| hub.apply_allocation_policy);
    for hub in hubs {
        let host = hub.host_name.to_ascii_lowercase();
        if targets.iter().any(|t| t.hub_host_name == host) {
            continue;
        }
        let resolved = resolve
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&host))
            .map(|(_, addr)| addr.to_string());
        targets.push(match resolved {
            Some(address) => ProbeTarget {
                hub_host_name: host,
                address,
            },
            None => ProbeTarget::https(&host),
        });
    }
    targets.sort_by(|a, b| a.hub_host_name.cmp(&b.hub_host_name));
    targets
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_allocation::latency::ProberConfig;
    use dps_allocation::LiveLatency;
    use dps_model::{LinkedHub, Tenant};
    use tokio::net::TcpListener;

    fn tenant(name: &str, hubs: &[(&str, bool)]) -> Tenant {
        let mut tenant = Tenant::new(name, format!("{name}.localhost")).unwrap();
        tenant.linked_hubs = hubs
            .iter()
            .map(|&(host, eligible)| LinkedHub {
                apply_allocation_policy: eligible,
                ..LinkedHub::new(host, "")
            })
            .collect();
        tenant
    }

    #[test]
    fn targets_are_eligible_hubs_once_at_their_resolved_address() {
        let tenants = [
            tenant("one", &[("Hub-B.test", true), ("hub-a.test", true)]),
            tenant(
                "two",
                &[
                    ("hub-b.test", true),
                    ("hub-c.test", false),
                    ("hub-d.test", true),
                ],
            ),
        ];
        let resolve =
            BTreeMap::from([("HUB-A.test".to_owned(), "127.0.0.1:9000".parse().unwrap())]);
        let targets = probe_targets(&tenants, &resolve);
        let pairs: Vec<(&str, &str)> = targets
            .iter()
            .map(|t| (t.hub_host_name.as_str(), t.address.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("hub-a.test", "127.0.0.1:9000"),
                ("hub-b.test", "hub-b.test:443"),
                ("hub-d.test", "hub-d.test:443"),
            ]
        );
    }

    #[tokio::test]
    async fn prober_measures_hubs_through_the_resolve_map() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let closed = {
            let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            gone.local_addr().unwrap()
        };
        let tenants = [tenant("one", &[("hub-a.test", true), ("hub-b.test", true)])];
        let resolve = BTreeMap::from([
            ("hub-a.test".to_owned(), open),
            ("hub-b.test".to_owned(), closed),
        ]);
        let live = Arc::new(LiveLatency::new());
        let prober = LiveProber::new(live.clone(), ProberConfig::default());
        prober.set_targets(probe_targets(&tenants, &resolve));
        prober.probe_once().await;
        assert!(live.get("hub-a.test").is_some());
        assert!(live.get("hub-b.test").is_none());
    }
}
