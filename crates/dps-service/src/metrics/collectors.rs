//! Series read at scrape time from counters kept elsewhere, so nothing is
//! counted twice: the pipeline's register and poll histograms, the
//! listeners' connection gates, the store writer's queue and batches, the
//! X.509 signature cache.

use std::sync::Arc;

use dps_storage::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::connection_limits::{ConnectionGate, ListenerGates};
use crate::pipeline::{PipelineLatency, TransportKind, TransportLatency};

/// `dps_device_register_duration_seconds` and
/// `dps_device_poll_duration_seconds`, per transport.
#[derive(Debug)]
pub struct DeviceLatencyCollector(pub Arc<PipelineLatency>);

fn encode_transport_latency(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    latency: &TransportLatency,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for transport in TransportKind::ALL {
        let snapshot = latency.transport(transport).snapshot();
        let labels = [("transport", transport.as_str())];
        family
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(
                snapshot.sum().as_secs_f64(),
                snapshot.count(),
                &snapshot.exposed_buckets(),
                None,
            )?;
    }
    Ok(())
}

impl Collector for DeviceLatencyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_transport_latency(
            &mut encoder,
            "dps_device_register_duration_seconds",
            "Server-side time of register instructions (hub calls and store commit included, TLS handshake excluded), by transport.",
            &self.0.register,
        )?;
        encode_transport_latency(
            &mut encoder,
            "dps_device_poll_duration_seconds",
            "Server-side time of operation status polls, by transport.",
            &self.0.poll,
        )
    }
}

/// Open connections, accepted and refused connections and TLS handshake
/// failures of each listener, from its [`ConnectionGate`] atomics.
#[derive(Debug)]
pub struct ConnectionsCollector(pub ListenerGates);

impl ConnectionsCollector {
    fn gates(&self) -> Vec<&ConnectionGate> {
        let mut gates = vec![self.0.device.as_ref(), self.0.service.as_ref()];
        gates.extend(self.0.mqtt.as_deref());
        gates.extend(self.0.amqp.as_deref());
        gates
    }
}

impl Collector for ConnectionsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gates = self.gates();
        let stats: Vec<_> = gates.iter().map(|g| (g.listener(), g.stats())).collect();
        {
            let mut family = encoder.encode_descriptor(
                "dps_open_connections",
                "Connections open now (TLS handshakes included; MQTT over WebSocket counts under device), by listener.",
                None,
                MetricType::Gauge,
            )?;
            for (listener, stats) in &stats {
                family
                    .encode_family(&[("listener", *listener)])?
                    .encode_gauge(&(stats.open as u64))?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "dps_connections_accepted",
                "Connections admitted under the caps, by listener.",
                None,
                MetricType::Counter,
            )?;
            for (listener, stats) in &stats {
                family
                    .encode_family(&[("listener", *listener)])?
                    .encode_counter::<NoLabelSet, _, u64>(&stats.accepted_total, None)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "dps_connections_refused",
                "Connections closed at accept because a cap was reached, by listener and cap (total or address).",
                None,
                MetricType::Counter,
            )?;
            for (listener, stats) in &stats {
                for (cap, value) in [
                    ("total", stats.refused_total_cap_total),
                    ("address", stats.refused_address_cap_total),
                ] {
                    family
                        .encode_family(&[("listener", *listener), ("cap", cap)])?
                        .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "dps_tls_handshake_failures",
            "TLS handshakes that failed or timed out, by listener.",
            None,
            MetricType::Counter,
        )?;
        for (listener, stats) in &stats {
            family
                .encode_family(&[("listener", *listener)])?
                .encode_counter::<NoLabelSet, _, u64>(&stats.tls_handshake_failures_total, None)?;
        }
        Ok(())
    }
}

/// The store writer's queue depth and batch sizes (SQLite only: the other
/// backends have no batching writer and expose nothing here).
pub struct StoreWriterCollector(pub Arc<dyn Store>);

impl std::fmt::Debug for StoreWriterCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriterCollector")
            .finish_non_exhaustive()
    }
}

impl Collector for StoreWriterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = self.0.writer_stats() else {
            return Ok(());
        };
        encoder
            .encode_descriptor(
                "dps_store_writer_queue_depth",
                "Writes waiting for the store's single writer.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&stats.queue_depth)?;
        encoder
            .encode_descriptor(
                "dps_store_writer_queue_capacity",
                "Writes that may wait before callers wait to enqueue.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&stats.queue_capacity)?;
        let buckets: Vec<(f64, u64)> = stats
            .batch_sizes
            .iter()
            .map(|&(bound, count)| {
                let edge = if bound == u64::MAX {
                    f64::INFINITY
                } else {
                    bound as f64
                };
                (edge, count)
            })
            .collect();
        encoder
            .encode_descriptor(
                "dps_store_writer_batch_size",
                "Writes per transaction of the store's writer (group commit).",
                None,
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(
                stats.writes_total as f64,
                stats.batches_total,
                &buckets,
                None,
            )
    }
}

/// `dps_x509_signature_cache_*`: how many chain signature checks were
/// answered from dps-attestation's process-wide cache of verified checks
/// (a group's intermediate is verified once, not once per device).
#[derive(Debug)]
pub struct SignatureCacheCollector;

impl Collector for SignatureCacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = dps_attestation::x509::signature_cache_stats();
        encoder
            .encode_descriptor(
                "dps_x509_signature_cache_hits",
                "X.509 chain signature checks answered from the cache of verified checks.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, f64>(&stats.hits, None)?;
        encoder
            .encode_descriptor(
                "dps_x509_signature_cache_misses",
                "X.509 chain signature checks computed (not cached, or failed: failures are never kept).",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, f64>(&stats.misses, None)?;
        encoder
            .encode_descriptor(
                "dps_x509_signature_cache_entries",
                "Verified signature checks the cache holds now.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&(stats.entries as u64))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus_client::registry::Registry;

    use super::*;
    use crate::config::ConnectionLimits;

    fn render(collector: impl Collector) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn connections_are_read_from_the_gates_at_scrape_time() {
        let gates = ListenerGates::new(&ConnectionLimits::default(), false);
        let open = gates.device.admit("192.0.2.1".parse().unwrap()).unwrap();
        gates.device.tls_handshake_failed();
        let text = render(ConnectionsCollector(gates.clone()));
        assert!(text.contains("dps_open_connections{listener=\"device\"} 1\n"));
        assert!(text.contains("dps_open_connections{listener=\"service\"} 0\n"));
        assert!(!text.contains("listener=\"mqtt\""), "no MQTT listener");
        assert!(text.contains("dps_tls_handshake_failures_total{listener=\"device\"} 1\n"));
        // Nothing is copied: the next scrape sees the gate as it is then.
        drop(open);
        let text = render(ConnectionsCollector(gates));
        assert!(text.contains("dps_open_connections{listener=\"device\"} 0\n"));
    }

    #[test]
    fn the_signature_cache_is_read_at_scrape_time() {
        let text = render(SignatureCacheCollector);
        assert!(
            text.contains("# TYPE dps_x509_signature_cache_hits_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("dps_x509_signature_cache_hits_total "),
            "{text}"
        );
        assert!(
            text.contains("dps_x509_signature_cache_misses_total "),
            "{text}"
        );
        assert!(text.contains("dps_x509_signature_cache_entries "), "{text}");
    }

    #[test]
    fn device_latency_is_exposed_per_transport_with_cumulative_buckets() {
        let latency = Arc::new(PipelineLatency::default());
        latency
            .register
            .record(TransportKind::Mqtt, Duration::from_millis(3));
        latency
            .register
            .record(TransportKind::Mqtt, Duration::from_millis(30));
        let text = render(DeviceLatencyCollector(latency));
        let mqtt = "dps_device_register_duration_seconds_bucket{transport=\"mqtt\"";
        assert!(text.contains(&format!("{mqtt},le=\"0.0025\"}} 0\n")));
        assert!(text.contains(&format!("{mqtt},le=\"0.005\"}} 1\n")));
        assert!(text.contains(&format!("{mqtt},le=\"0.05\"}} 2\n")));
        assert!(text.contains(&format!("{mqtt},le=\"+Inf\"}} 2\n")));
        assert!(
            text.contains("dps_device_register_duration_seconds_sum{transport=\"mqtt\"} 0.033\n")
        );
        assert!(text.contains("dps_device_poll_duration_seconds_count{transport=\"https\"} 0\n"));
    }
}
