//! Hub write coalescing: registrations in flight for the same hub are
//! written with one bulk registry call (`POST /devices`, identity and initial
//! twin per entry, up to 100 a call) instead of a call or two per device.
//!
//! Batching is "whatever queued while the previous call was in flight": per
//! hub, at most one bulk call runs; a registration arriving while none runs
//! starts one at once (no gather window, so a lone device waits for nothing),
//! and the registrations arriving meanwhile go together in the next call. The
//! call runs in its own task, so a device that hangs up abandons only its own
//! answer.
//!
//! Each device's outcome is its own (`dps_hub::provision_devices`): an entry
//! the hub refused fails that device only. A throttled hub (429, already
//! retried by the hub client within its deadline) is retried here, honouring
//! `Retry-After`, for as long as each waiting device's [`PATIENCE`] lasts —
//! meanwhile the device is simply still being registered (`assigning`), and
//! it fails only if the hub stays throttled for all of it.
//!
//! Queues are keyed by the linked hub's connection string: two tenants
//! linking the same hub with different credentials never share a call. A
//! queue lives only while it has work: its writer removes it when it finds
//! it empty, so memory follows the hubs being written to now, not every hub
//! (or rotated connection string) ever seen.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dps_hub::wire::MAX_BULK_DEVICES;
use dps_hub::{provision_devices, DeviceProvisioning, HubError, IotHub};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long a registration keeps waiting for a throttled hub: below the
/// 30-second request timeout of the official Node SDK and of `dps-client`, so
/// the device still gets its answer on the same request.
pub(crate) const PATIENCE: Duration = Duration::from_secs(25);

/// Wait before retrying a throttled call whose 429 named no `Retry-After`.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);

/// On a throttled hub, calls are sized to what the hub takes in about this
/// long, so the oldest devices go first instead of all waiting for one call
/// as large as everything queued.
const THROTTLED_CALL_SPAN: Duration = Duration::from_secs(1);

/// The write queues of the hubs being written to, one per connection string.
type Queues = Arc<Mutex<HashMap<String, Arc<HubQueue>>>>;

/// The write queues of every hub, one per connection string.
#[derive(Default)]
pub(crate) struct HubBatches {
    /// Locked before a queue's own state wherever both are held.
    queues: Queues,
    patience: Option<Duration>,
    call_span: Option<Duration>,
}

#[derive(Default)]
struct HubQueue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    waiting: VecDeque<Pending>,
    /// A writer task is running for this queue.
    writing: bool,
}

struct Pending {
    request: DeviceProvisioning,
    deadline: Instant,
    answer: oneshot::Sender<Result<(), HubError>>,
    /// The hub's last refusal of this device's write, answered if the
    /// device's patience runs out before a retry.
    throttled: Option<HubError>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl HubBatches {
    /// Batches whose devices wait at most `patience` for a throttled hub,
    /// whose calls to a throttled hub span about `call_span`.
    #[cfg(test)]
    pub(crate) fn with_patience(patience: Duration, call_span: Duration) -> Self {
        HubBatches {
            patience: Some(patience),
            call_span: Some(call_span),
            ..HubBatches::default()
        }
    }

    /// Queues held now (tests: idle ones are gone).
    #[cfg(test)]
    pub(crate) fn queue_count(&self) -> usize {
        lock(&self.queues).len()
    }

    /// Make `request` true on `hub` (reached with `connection_string`),
    /// together with whatever else is queued for that hub.
    pub(crate) async fn provision(
        &self,
        connection_string: &str,
        hub: Arc<dyn IotHub>,
        request: DeviceProvisioning,
    ) -> Result<(), HubError> {
        let (answer, answered) = oneshot::channel();
        // Queued under the map's lock, so a writer retiring its empty queue
        // (which takes the same lock) cannot drop this device with it.
        let start_writer = {
            let mut queues = lock(&self.queues);
            let queue = queues.entry(connection_string.to_owned()).or_default();
            let mut state = lock(&queue.state);
            state.waiting.push_back(Pending {
                request,
                deadline: Instant::now() + self.patience.unwrap_or(PATIENCE),
                answer,
                throttled: None,
            });
            let start = !std::mem::replace(&mut state.writing, true);
            drop(state);
            start.then(|| Arc::clone(queue))
        };
        if let Some(queue) = start_writer {
            let writer = Writer {
                queues: Arc::clone(&self.queues),
                key: connection_string.to_owned(),
                queue,
                span: self.call_span.unwrap_or(THROTTLED_CALL_SPAN),
            };
            tokio::spawn(write_queue(writer, hub));
        }
        answered.await.unwrap_or_else(|_| {
            Err(HubError::InvalidResponse {
                host: String::new(),
                status: 0,
                reason: "the hub writer stopped before answering".to_owned(),
            })
        })
    }
}

/// What a queue's writer task holds: the map, so it can retire its queue.
struct Writer {
    queues: Queues,
    key: String,
    queue: Arc<HubQueue>,
    span: Duration,
}

impl Writer {
    /// Remove the queue from the map if it is still empty, under the map's
    /// lock (taken before the queue's, as `provision` does); `false` if a
    /// device arrived meanwhile and the writer must go on.
    fn retire(&self) -> bool {
        let mut queues = lock(&self.queues);
        let mut state = lock(&self.queue.state);
        if !state.waiting.is_empty() {
            return false;
        }
        state.writing = false;
        drop(state);
        if queues
            .get(&self.key)
            .is_some_and(|held| Arc::ptr_eq(held, &self.queue))
        {
            queues.remove(&self.key);
        }
        true
    }
}

/// The writer of one queue: bulk calls until the queue is empty.
///
/// Calls carry up to `size` devices, oldest first: 100 while the hub keeps
/// up. A throttled call tells how fast the hub takes operations (its entries
/// over its `Retry-After`); the call size drops to [`THROTTLED_CALL_SPAN`]'s
/// worth of that, the devices go back to the head of the queue, and the next
/// call waits only as long as its own entries need. Each call that passes
/// makes the size half as large again. A device fails only when its patience
/// is over and the hub's last answer to it was still 429. Without this, a
/// throttled hub would make every queued device wait for one call as large
/// as the whole queue, and the devices arriving meanwhile would make the next
/// one larger still. The writer ends, retiring its queue, when the queue is
/// empty.
async fn write_queue(writer: Writer, hub: Arc<dyn IotHub>) {
    let (queue, span) = (&writer.queue, writer.span);
    let mut size = MAX_BULK_DEVICES;
    loop {
        let batch: Vec<Pending> = {
            let mut state = lock(&queue.state);
            // Devices that hung up need no write; devices still throttled
            // past their patience get the hub's refusal.
            let now = Instant::now();
            let (expired, waiting): (VecDeque<Pending>, VecDeque<Pending>) =
                std::mem::take(&mut state.waiting)
                    .into_iter()
                    .filter(|p| !p.answer.is_closed())
                    .partition(|p| p.throttled.is_some() && p.deadline <= now);
            state.waiting = waiting;
            for mut pending in expired {
                if let Some(refusal) = pending.throttled.take() {
                    let _ = pending.answer.send(Err(refusal));
                }
            }
            if state.waiting.is_empty() {
                drop(state);
                if writer.retire() {
                    return;
                }
                continue;
            }
            let take = state.waiting.len().min(size);
            state.waiting.drain(..take).collect()
        };
        let sent = batch.len();
        let requests: Vec<DeviceProvisioning> = batch.iter().map(|p| p.request.clone()).collect();
        let outcomes = provision_devices(hub.as_ref(), &requests).await;
        let now = Instant::now();
        let mut retry_after: Option<Duration> = None;
        let mut again = Vec::new();
        for (mut pending, outcome) in batch.into_iter().zip(outcomes) {
            match outcome {
                // Retried in a smaller call, which needs less than this
                // call's `Retry-After`: kept while the device is patient.
                Err(refusal @ HubError::Throttled { .. }) if now < pending.deadline => {
                    let wait = match &refusal {
                        HubError::Throttled {
                            retry_after: Some(after),
                            ..
                        } => *after,
                        _ => DEFAULT_RETRY,
                    };
                    retry_after = Some(retry_after.map_or(wait, |w| w.max(wait)));
                    pending.throttled = Some(refusal);
                    again.push(pending);
                }
                outcome => {
                    let _ = pending.answer.send(outcome);
                }
            }
        }
        let Some(wait) = retry_after else {
            // Half as large again: back to 100 quickly once the hub keeps
            // up, without leaping past what a throttled hub takes.
            size = (size + size.div_ceil(2)).min(MAX_BULK_DEVICES);
            continue;
        };
        // The hub takes about `sent / wait` operations a second.
        let per_second = sent as f64 / wait.as_secs_f64().max(0.001);
        size = ((per_second * span.as_secs_f64()) as usize).clamp(1, MAX_BULK_DEVICES);
        let pause = wait
            .mul_f64((size as f64 / sent as f64).min(1.0))
            .max(Duration::from_millis(10));
        tracing::debug!(
            host = hub.host_name(),
            devices = again.len(),
            ?wait,
            next_call = size,
            ?pause,
            "hub throttled; retrying in smaller bulk writes"
        );
        {
            // Back at the head of the queue, in their order.
            let mut state = lock(&queue.state);
            for pending in again.into_iter().rev() {
                state.waiting.push_front(pending);
            }
        }
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use dps_attestation::sas::SymmetricKey;
    use dps_hub::wire::{BulkRegistryOperationResult, Device, ExportImportDevice, Twin};
    use dps_hub::{DeviceAuth, IfMatch, TwinAction};
    use dps_model::{DeviceCapabilities, DeviceId};

    /// A hub that answers bulk calls after a pause, throttles the first
    /// `throttle_first` calls, and counts calls and entries.
    #[derive(Default)]
    struct CountingHub {
        calls: AtomicUsize,
        entries: AtomicUsize,
        throttle_first: usize,
        pause: Duration,
    }

    #[async_trait]
    impl IotHub for CountingHub {
        fn host_name(&self) -> &str {
            "hub.example"
        }
        async fn bulk_registry(
            &self,
            devices: &[ExportImportDevice],
        ) -> Result<BulkRegistryOperationResult, HubError> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.pause).await;
            if call < self.throttle_first {
                return Err(HubError::Throttled {
                    host: "hub.example".into(),
                    status: 429,
                    retry_after: Some(Duration::from_millis(20)),
                    code: None,
                    message: "slow down".into(),
                });
            }
            self.entries.fetch_add(devices.len(), Ordering::SeqCst);
            Ok(BulkRegistryOperationResult {
                is_successful: true,
                ..Default::default()
            })
        }
        async fn put_device(&self, _: &Device, _: IfMatch) -> Result<Device, HubError> {
            unreachable!("every write goes through the bulk call")
        }
        async fn get_device(&self, _: &DeviceId) -> Result<Device, HubError> {
            unreachable!("not used")
        }
        async fn delete_device(&self, _: &DeviceId, _: IfMatch) -> Result<(), HubError> {
            unreachable!("not used")
        }
        async fn get_twin(&self, _: &DeviceId) -> Result<Twin, HubError> {
            unreachable!("not used")
        }
        async fn replace_twin(&self, _: &DeviceId, _: &Twin, _: IfMatch) -> Result<Twin, HubError> {
            unreachable!("not used")
        }
        async fn patch_twin(&self, _: &DeviceId, _: &Twin, _: IfMatch) -> Result<Twin, HubError> {
            unreachable!("not used")
        }
    }

    /// A hub with a token bucket, answering 429 with the `Retry-After` a
    /// call's entries need, as IoT Hub's registry throttle does.
    struct BucketHub {
        rate: f64,
        capacity: f64,
        state: Mutex<(f64, Instant)>,
        calls: AtomicUsize,
        entries: AtomicUsize,
    }

    #[async_trait]
    impl IotHub for BucketHub {
        fn host_name(&self) -> &str {
            "bucket.example"
        }
        async fn bulk_registry(
            &self,
            devices: &[ExportImportDevice],
        ) -> Result<BulkRegistryOperationResult, HubError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let cost = devices.len() as f64;
            let mut state = lock(&self.state);
            let now = Instant::now();
            let tokens = (state.0 + (now - state.1).as_secs_f64() * self.rate).min(self.capacity);
            *state = (tokens, now);
            if tokens < cost.min(self.capacity) {
                return Err(HubError::Throttled {
                    host: "bucket.example".into(),
                    status: 429,
                    retry_after: Some(Duration::from_secs_f64(
                        (cost.min(self.capacity) - tokens) / self.rate,
                    )),
                    code: None,
                    message: "slow down".into(),
                });
            }
            state.0 -= cost;
            self.entries.fetch_add(devices.len(), Ordering::SeqCst);
            Ok(BulkRegistryOperationResult {
                is_successful: true,
                ..Default::default()
            })
        }
        async fn put_device(&self, _: &Device, _: IfMatch) -> Result<Device, HubError> {
            unreachable!("every write goes through the bulk call")
        }
        async fn get_device(&self, _: &DeviceId) -> Result<Device, HubError> {
            unreachable!("not used")
        }
        async fn delete_device(&self, _: &DeviceId, _: IfMatch) -> Result<(), HubError> {
            unreachable!("not used")
        }
        async fn get_twin(&self, _: &DeviceId) -> Result<Twin, HubError> {
            unreachable!("not used")
        }
        async fn replace_twin(&self, _: &DeviceId, _: &Twin, _: IfMatch) -> Result<Twin, HubError> {
            unreachable!("not used")
        }
        async fn patch_twin(&self, _: &DeviceId, _: &Twin, _: IfMatch) -> Result<Twin, HubError> {
            unreachable!("not used")
        }
    }

    fn request(i: usize) -> DeviceProvisioning {
        let key = SymmetricKey::from_bytes(vec![3; 32]);
        DeviceProvisioning {
            device_id: DeviceId::new(format!("d{i}")).unwrap(),
            auth: DeviceAuth::SymmetricKey {
                primary: key.clone(),
                secondary: key,
            },
            capabilities: DeviceCapabilities::default(),
            initial_twin: None,
            twin_action: TwinAction::ApplyInitial,
        }
    }

    async fn run(
        batches: Arc<HubBatches>,
        hub: Arc<CountingHub>,
        devices: usize,
    ) -> Vec<Result<(), HubError>> {
        let tasks: Vec<_> = (0..devices)
            .map(|i| {
                let (batches, hub) = (Arc::clone(&batches), Arc::clone(&hub));
                tokio::spawn(async move { batches.provision("cs", hub, request(i)).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        outcomes
    }

    #[tokio::test]
    async fn a_lone_device_is_written_at_once_and_a_crowd_shares_calls() {
        let hub = Arc::new(CountingHub {
            pause: Duration::from_millis(20),
            ..CountingHub::default()
        });
        let batches = Arc::new(HubBatches::default());
        let started = Instant::now();
        assert!(run(Arc::clone(&batches), Arc::clone(&hub), 1).await[0].is_ok());
        assert!(started.elapsed() < Duration::from_millis(200));
        assert_eq!(hub.calls.load(Ordering::SeqCst), 1);

        // 250 at once: the first call takes who came first, the rest queue
        // behind it and go 100 at a time.
        let outcomes = run(batches, Arc::clone(&hub), 250).await;
        assert!(outcomes.iter().all(Result::is_ok));
        let calls = hub.calls.load(Ordering::SeqCst) - 1;
        assert!((3..=5).contains(&calls), "{calls} calls for 250 devices");
        assert_eq!(hub.entries.load(Ordering::SeqCst), 251);
    }

    /// 60 devices at once against a hub taking 300 operations a second, 5
    /// in hand at the start: every device is written, the first ones long before the
    /// last (calls shrink to what the hub takes instead of all 60 waiting for
    /// one call), and well within the devices' patience.
    #[tokio::test]
    async fn a_rate_limited_hub_gets_small_calls_and_no_device_fails() {
        let hub = Arc::new(BucketHub {
            rate: 300.0,
            capacity: 100.0,
            state: Mutex::new((5.0, Instant::now())),
            calls: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
        });
        // Calls sized to 50 ms of the hub's rate: about 15 devices.
        let batches = Arc::new(HubBatches::with_patience(
            Duration::from_secs(5),
            Duration::from_millis(50),
        ));
        let started = Instant::now();
        let tasks: Vec<_> = (0..60)
            .map(|i| {
                let (batches, hub) = (Arc::clone(&batches), Arc::clone(&hub));
                tokio::spawn(async move {
                    let outcome = batches.provision("cs", hub, request(i)).await;
                    (outcome, started.elapsed())
                })
            })
            .collect();
        let mut finished = Vec::new();
        for task in tasks {
            let (outcome, at) = task.await.unwrap();
            assert!(outcome.is_ok(), "{outcome:?}");
            finished.push(at);
        }
        finished.sort();
        assert_eq!(hub.entries.load(Ordering::SeqCst), 60);
        assert!(hub.calls.load(Ordering::SeqCst) > 2);
        // 60 operations at 300/s: about 0.2 s in all; the first devices are
        // not held back to the end.
        assert!(finished[59] < Duration::from_secs(2), "{:?}", finished[59]);
        assert!(finished[9] < finished[59], "{finished:?}");
    }

    /// Wait (briefly) until every writer has retired its queue: a writer
    /// answers its devices before it finds its queue empty.
    async fn until_no_queues(batches: &HubBatches) -> usize {
        for _ in 0..200 {
            if batches.queue_count() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        batches.queue_count()
    }

    /// Queues are dropped once idle: after writes to 50 hubs the map is
    /// empty, and a hub written to again gets a working queue anew.
    #[tokio::test]
    async fn idle_queues_are_pruned_and_come_back_on_demand() {
        let hub = Arc::new(CountingHub {
            pause: Duration::from_millis(2),
            ..CountingHub::default()
        });
        let batches = Arc::new(HubBatches::default());
        for round in 0..2 {
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    let (batches, hub) = (Arc::clone(&batches), Arc::clone(&hub));
                    let connection_string = format!("cs-{}", i % 50);
                    tokio::spawn(async move {
                        batches.provision(&connection_string, hub, request(i)).await
                    })
                })
                .collect();
            for task in tasks {
                assert!(task.await.unwrap().is_ok());
            }
            assert_eq!(until_no_queues(&batches).await, 0, "round {round}");
        }
        assert_eq!(hub.entries.load(Ordering::SeqCst), 400);

        // A throttled queue whose devices ran out of patience is pruned too.
        let stubborn = Arc::new(CountingHub {
            throttle_first: usize::MAX,
            ..CountingHub::default()
        });
        let impatient = Arc::new(HubBatches::with_patience(
            Duration::from_millis(30),
            THROTTLED_CALL_SPAN,
        ));
        let outcomes = run(Arc::clone(&impatient), stubborn, 3).await;
        assert!(outcomes.iter().all(Result::is_err));
        assert_eq!(until_no_queues(&impatient).await, 0);
    }

    #[tokio::test]
    async fn throttled_writes_wait_within_patience_then_fail_past_it() {
        let hub = Arc::new(CountingHub {
            throttle_first: 3,
            ..CountingHub::default()
        });
        let batches = Arc::new(HubBatches::with_patience(
            Duration::from_secs(5),
            THROTTLED_CALL_SPAN,
        ));
        let outcomes = run(batches, Arc::clone(&hub), 10).await;
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        assert_eq!(hub.entries.load(Ordering::SeqCst), 10);

        let stubborn = Arc::new(CountingHub {
            throttle_first: usize::MAX,
            ..CountingHub::default()
        });
        let impatient = Arc::new(HubBatches::with_patience(
            Duration::from_millis(60),
            THROTTLED_CALL_SPAN,
        ));
        let outcomes = run(impatient, stubborn, 3).await;
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, Err(HubError::Throttled { .. }))));
    }
}
