//! What the registration pipeline counts: registrations by transport,
//! outcome and Azure error code; in-flight registrations; throttled
//! answers; attestation and allocation time. The register and poll
//! latency histograms live in [`PipelineLatency`] (the benchmark reads them
//! too) and are exposed by a collector.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::config::MetricsConfig;
use crate::pipeline::{PipelineLatency, TransportKind};

/// How a register instruction ended, as counted and logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Assigned to a hub.
    Assigned,
    /// Authenticated, but allocation, the webhook or the hub failed.
    Failed,
    /// Authenticated, but the enrollment is disabled.
    Disabled,
    /// TPM: the activation challenge was sent (a first step, not a result).
    Challenged,
    /// Refused: unknown scope, enrollment or bad credential (`401`).
    Refused,
    /// Throttled (`429`).
    Throttled,
    /// A malformed request (other `4xx`).
    Rejected,
    /// The server failed (`5xx`: store or internal error).
    Error,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Assigned => "assigned",
            Outcome::Failed => "failed",
            Outcome::Disabled => "disabled",
            Outcome::Challenged => "challenged",
            Outcome::Refused => "refused",
            Outcome::Throttled => "throttled",
            Outcome::Rejected => "rejected",
            Outcome::Error => "error",
        }
    }

    /// The outcome of an error answer with this HTTP status.
    pub fn of_status(status: u16) -> Outcome {
        match status {
            401 => Outcome::Refused,
            429 => Outcome::Throttled,
            400..=499 => Outcome::Rejected,
            _ => Outcome::Error,
        }
    }

    /// Whether the device had proved itself: only then is its scope a real
    /// tenant's, fit to be a label value.
    fn authenticated(self) -> bool {
        matches!(
            self,
            Outcome::Assigned | Outcome::Failed | Outcome::Disabled
        )
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistrationLabels {
    transport: &'static str,
    outcome: &'static str,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabel {
    policy: String,
}

/// The tenant label value for scopes beyond the configured maximum, and
/// for devices that never proved themselves.
pub const OTHER_TENANT: &str = "other";

/// The pipeline's metrics. Created unregistered (a pipeline built without
/// a server still counts); [`DeviceMetrics::register`] exposes them.
#[derive(Debug)]
pub struct DeviceMetrics {
    registrations: Family<RegistrationLabels, Counter>,
    by_tenant: Option<TenantRegistrations>,
    in_flight: Gauge,
    throttled: Family<TransportLabel, Counter>,
    attestation: Histogram,
    allocation: Family<PolicyLabel, Histogram>,
    webhook: Histogram,
    hub_calls: Family<HubCallLabels, Histogram>,
    issuance: Family<IssuanceLabels, Histogram>,
    /// Register and poll time per transport (the benchmark reads it too).
    pub latency: Arc<PipelineLatency>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct HubCallLabels {
    pub(super) call: &'static str,
    pub(super) result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuanceLabels {
    result: &'static str,
}

#[derive(Debug)]
struct TenantRegistrations {
    family: Family<TenantLabels, Counter>,
    labelled: Mutex<HashSet<String>>,
    max: usize,
}

/// Latency buckets of the stage histograms (attestation, allocation, hub,
/// webhook, store), in seconds.
pub(super) fn stage_buckets() -> impl Iterator<Item = f64> {
    [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ]
    .into_iter()
}

fn stage_histogram() -> Histogram {
    Histogram::new(stage_buckets())
}

impl Default for DeviceMetrics {
    fn default() -> Self {
        DeviceMetrics::new(&MetricsConfig::default())
    }
}

impl DeviceMetrics {
    /// Metrics under `config` (the tenant label).
    pub fn new(config: &MetricsConfig) -> Self {
        DeviceMetrics {
            registrations: Family::default(),
            by_tenant: (config.tenant_label && config.max_tenant_labels > 0).then(|| {
                TenantRegistrations {
                    family: Family::default(),
                    labelled: Mutex::new(HashSet::new()),
                    max: config.max_tenant_labels,
                }
            }),
            in_flight: Gauge::default(),
            throttled: Family::default(),
            attestation: stage_histogram(),
            allocation: Family::new_with_constructor(stage_histogram),
            webhook: stage_histogram(),
            hub_calls: Family::new_with_constructor(stage_histogram),
            issuance: Family::new_with_constructor(stage_histogram),
            latency: Arc::default(),
        }
    }

    /// Count one register instruction.
    pub fn registration(
        &self,
        transport: TransportKind,
        outcome: Outcome,
        code: Option<i32>,
        scope: &str,
    ) {
        let code = code.map_or_else(|| "none".to_owned(), |c| c.to_string());
        self.registrations
            .get_or_create(&RegistrationLabels {
                transport: transport.as_str(),
                outcome: outcome.as_str(),
                code,
            })
            .inc();
        if let Some(by_tenant) = &self.by_tenant {
            let tenant = by_tenant.label(scope, outcome);
            by_tenant
                .family
                .get_or_create(&TenantLabels {
                    tenant,
                    outcome: outcome.as_str(),
                })
                .inc();
        }
    }

    /// One more registration in progress until the guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Count one throttled answer (any device instruction).
    pub fn throttled(&self, transport: TransportKind) {
        self.throttled
            .get_or_create(&TransportLabel {
                transport: transport.as_str(),
            })
            .inc();
    }

    /// Time spent checking a device's credential.
    pub fn attestation(&self, elapsed: Duration) {
        self.attestation.observe(elapsed.as_secs_f64());
    }

    /// Time spent choosing a hub under `policy` (`custom`: the webhook).
    pub fn allocation(&self, policy: &str, elapsed: Duration) {
        self.allocation
            .get_or_create(&PolicyLabel {
                policy: policy.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
        if policy == "custom" {
            self.webhook.observe(elapsed.as_secs_f64());
        }
    }

    /// Time of one call to a hub.
    pub fn hub_call(&self, call: &'static str, ok: bool, elapsed: Duration) {
        self.hub_calls
            .get_or_create(&HubCallLabels {
                call,
                result: if ok { "ok" } else { "error" },
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Time to sign one operational certificate at registration (its
    /// count is the number of certificates issued, or failed to issue).
    pub fn certificate_issuance(&self, ok: bool, elapsed: Duration) {
        self.issuance
            .get_or_create(&IssuanceLabels {
                result: if ok { "ok" } else { "error" },
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Expose these metrics in `registry` (register and poll latency go
    /// through [`super::collectors::DeviceLatencyCollector`]).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "dps_registrations",
            "Register instructions by transport, outcome and Azure error code (none when assigned)",
            self.registrations.clone(),
        );
        if let Some(by_tenant) = &self.by_tenant {
            registry.register(
                "dps_tenant_registrations",
                "Register instructions by tenant ID scope (bounded: [metrics] max_tenant_labels, the rest and unauthenticated devices as \"other\") and outcome",
                by_tenant.family.clone(),
            );
        }
        registry.register(
            "dps_registrations_in_flight",
            "Register instructions being processed now",
            self.in_flight.clone(),
        );
        registry.register(
            "dps_device_throttled",
            "Device instructions answered 429 (throttled), by transport",
            self.throttled.clone(),
        );
        registry.register(
            "dps_attestation_duration_seconds",
            "Time to check a device credential (SAS token, X.509 chain or TPM)",
            self.attestation.clone(),
        );
        registry.register(
            "dps_allocation_duration_seconds",
            "Time to choose a hub, by allocation policy (custom includes the webhook call)",
            self.allocation.clone(),
        );
        registry.register(
            "dps_webhook_duration_seconds",
            "Time of custom allocation webhook calls",
            self.webhook.clone(),
        );
        registry.register(
            "dps_hub_call_duration_seconds",
            "Time of IoT hub registry and twin calls, by call and result",
            self.hub_calls.clone(),
        );
        registry.register(
            "dps_certificate_issuance_duration_seconds",
            "Time to sign an operational certificate requested by a device's CSR, by result (the count is certificates issued)",
            self.issuance.clone(),
        );
    }
}

impl TenantRegistrations {
    fn label(&self, scope: &str, outcome: Outcome) -> String {
        if !outcome.authenticated() {
            return OTHER_TENANT.to_owned();
        }
        let scope = scope.to_ascii_lowercase();
        let mut labelled = self.labelled.lock().unwrap_or_else(PoisonError::into_inner);
        if labelled.contains(&scope) {
            return scope;
        }
        if labelled.len() < self.max {
            labelled.insert(scope.clone());
            return scope;
        }
        OTHER_TENANT.to_owned()
    }
}

/// A registration in progress; dropping it (answer or cancellation) ends it.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(metrics: &DeviceMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn registrations_are_counted_by_transport_outcome_and_code() {
        let metrics = DeviceMetrics::default();
        metrics.registration(TransportKind::Https, Outcome::Assigned, None, "0ne1");
        metrics.registration(TransportKind::Https, Outcome::Assigned, None, "0ne1");
        metrics.registration(TransportKind::MqttWs, Outcome::Refused, Some(401002), "x");
        let text = render(&metrics);
        assert!(text.contains(
            "dps_registrations_total{transport=\"https\",outcome=\"assigned\",code=\"none\"} 2"
        ));
        assert!(text.contains(
            "dps_registrations_total{transport=\"mqtt-ws\",outcome=\"refused\",code=\"401002\"} 1"
        ));
        assert!(!text.contains("dps_tenant_registrations"), "off by default");
    }

    #[test]
    fn certificate_issuance_is_timed_and_counted_by_result() {
        let metrics = DeviceMetrics::default();
        metrics.certificate_issuance(true, Duration::from_millis(2));
        metrics.certificate_issuance(true, Duration::from_millis(3));
        metrics.certificate_issuance(false, Duration::from_millis(1));
        let text = render(&metrics);
        assert!(
            text.contains("dps_certificate_issuance_duration_seconds_count{result=\"ok\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("dps_certificate_issuance_duration_seconds_count{result=\"error\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn tenant_labels_are_bounded_and_strangers_are_other() {
        let metrics = DeviceMetrics::new(&MetricsConfig {
            tenant_label: true,
            max_tenant_labels: 2,
        });
        for scope in ["0ne1", "0NE1", "0ne2", "0ne3"] {
            metrics.registration(TransportKind::Mqtt, Outcome::Assigned, None, scope);
        }
        metrics.registration(TransportKind::Mqtt, Outcome::Refused, Some(401002), "0ne9");
        let text = render(&metrics);
        assert!(
            text.contains("dps_tenant_registrations_total{tenant=\"0ne1\",outcome=\"assigned\"} 2")
        );
        assert!(
            text.contains("dps_tenant_registrations_total{tenant=\"0ne2\",outcome=\"assigned\"} 1")
        );
        assert!(text
            .contains("dps_tenant_registrations_total{tenant=\"other\",outcome=\"assigned\"} 1"));
        assert!(
            text.contains("dps_tenant_registrations_total{tenant=\"other\",outcome=\"refused\"} 1")
        );
        assert!(!text.contains("0ne9"));
    }

    #[test]
    fn in_flight_follows_the_guards() {
        let metrics = DeviceMetrics::default();
        let first = metrics.in_flight();
        let _second = metrics.in_flight();
        drop(first);
        assert_eq!(metrics.in_flight.get(), 1);
    }
}
