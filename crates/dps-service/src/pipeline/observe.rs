//! What the pipeline tells the operator about each device instruction: the
//! registration counters and latency (`/metrics`) and the one rate-limited
//! log line per refused or failed registration. Every transport goes
//! through here, so nothing is counted or logged per transport.

use std::sync::Arc;
use std::time::Duration;

use dps_hub::{HubError, IotHub};
use dps_model::{LinkedHub, RegistrationStatus};

use super::{DeviceRequest, HubConnector, Pipeline, RegisterAnswer};
use crate::metrics::device::{DeviceMetrics, Outcome};
use crate::metrics::hub::TimedHub;
use crate::metrics::refusal_log::RefusedRegistration;
use crate::respond::ApiError;

/// A register instruction's answer with its stored result, for counting.
#[derive(Debug)]
pub(super) struct Settled {
    /// What the device is told.
    pub(super) answer: RegisterAnswer,
    /// The stored status (`None` for a TPM challenge: nothing stored).
    pub(super) status: Option<RegistrationStatus>,
    /// The stored error code and message of a failed or disabled attempt.
    pub(super) error: Option<(i32, String)>,
}

impl Settled {
    pub(super) fn challenge(answer: RegisterAnswer) -> Self {
        Settled {
            answer,
            status: None,
            error: None,
        }
    }
}

impl Pipeline {
    /// Count into `metrics` (shared with the server's `/metrics` registry)
    /// instead of the pipeline's own unexposed ones; hub calls are timed
    /// from now on.
    pub fn with_metrics(mut self, metrics: Arc<DeviceMetrics>) -> Self {
        self.hubs = Arc::new(TimedHubs {
            inner: self.hubs.clone(),
            metrics: metrics.clone(),
        });
        self.metrics = metrics;
        self
    }

    /// The pipeline's metrics.
    pub fn metrics(&self) -> Arc<DeviceMetrics> {
        self.metrics.clone()
    }

    /// Count a finished register instruction, and log it when it failed
    /// after authentication (refusals are logged by `guarded`, which knows
    /// their specific reason).
    pub(super) fn observe_register(
        &self,
        request: &DeviceRequest,
        answer: &Result<Settled, ApiError>,
        elapsed: Duration,
    ) {
        self.metrics
            .latency
            .register
            .record(request.transport, elapsed);
        let (outcome, code) = match answer {
            Err(err) => (Outcome::of_status(err.code.http_status()), Some(err.code.0)),
            Ok(settled) => match (settled.status, &settled.error) {
                (None, _) => (Outcome::Challenged, None),
                (Some(RegistrationStatus::Assigned), _) => (Outcome::Assigned, None),
                (Some(RegistrationStatus::Failed), error) => {
                    (Outcome::Failed, error.as_ref().map(|e| e.0))
                }
                (Some(_), error) => (Outcome::Disabled, error.as_ref().map(|e| e.0)),
            },
        };
        self.metrics
            .registration(request.transport, outcome, code, &request.id_scope);
        if let Ok(Settled {
            error: Some((code, message)),
            ..
        }) = answer
        {
            self.refusal_log.write(&RefusedRegistration {
                instruction: "register",
                outcome,
                code: *code,
                scope: &request.id_scope,
                registration_id: &request.registration_id,
                transport: request.transport,
                peer: request.peer,
                reason: message,
            });
        }
    }

    /// Log a refused or failed instruction with its specific reason (the
    /// device gets the generic answer), and count a throttled one.
    ///
    /// The credential check at MQTT CONNECT is neither logged nor counted:
    /// the connection is accepted unverified and each of its requests is
    /// refused (and logged, and counted) by the pipeline like any other, so
    /// logging the CONNECT too would give one refused registration two lines.
    pub(super) fn observe_error(
        &self,
        instruction: &'static str,
        request: &DeviceRequest,
        error: &ApiError,
    ) {
        let outcome = Outcome::of_status(error.code.http_status());
        if outcome == Outcome::Throttled {
            self.metrics.throttled(request.transport);
        }
        if instruction == "connect" {
            return;
        }
        self.refusal_log.write(&RefusedRegistration {
            instruction,
            outcome,
            code: error.code.0,
            scope: &request.id_scope,
            registration_id: &request.registration_id,
            transport: request.transport,
            peer: request.peer,
            reason: &error.message,
        });
    }
}

/// Hands out hub clients whose calls are timed.
struct TimedHubs {
    inner: Arc<dyn HubConnector>,
    metrics: Arc<DeviceMetrics>,
}

impl HubConnector for TimedHubs {
    fn hub(&self, linked: &LinkedHub) -> Result<Arc<dyn IotHub>, HubError> {
        let hub = self.inner.hub(linked)?;
        Ok(Arc::new(TimedHub::new(hub, self.metrics.clone())))
    }
}
