//! The store's metric families (call durations, billing operations by
//! kind), which [`InstrumentedStore`](super::store::InstrumentedStore)
//! records into.

use dps_model::OperationKind;
use dps_storage::WriteOutcome;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::device::stage_buckets;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OperationLabels {
    pub(super) operation: &'static str,
    pub(super) result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KindLabel {
    kind: &'static str,
}

/// The store's metrics.
#[derive(Debug)]
pub struct StoreMetrics {
    pub(super) operations: Family<OperationLabels, Histogram>,
    billing: Family<KindLabel, Counter>,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            operations: Family::new_with_constructor(|| Histogram::new(stage_buckets())),
            billing: Family::default(),
        }
    }
}

impl StoreMetrics {
    /// Expose these metrics in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "dps_store_operation_duration_seconds",
            "Time of store calls, by operation and result",
            self.operations.clone(),
        );
        registry.register(
            "dps_billing_operations",
            "Billing (meter) operations written by this process, by kind",
            self.billing.clone(),
        );
    }

    pub(super) fn bill(&self, kind: OperationKind) {
        self.billing
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .inc();
    }
}

/// The billing kind of an enrollment or group write: created or updated.
pub(super) fn write_kind(
    outcome: WriteOutcome,
    created: OperationKind,
    updated: OperationKind,
) -> OperationKind {
    match outcome {
        WriteOutcome::Created => created,
        WriteOutcome::Replaced => updated,
    }
}
