//! Per-device results of a swarm, for plotting: a CSV with one row per
//! device, and an HdrHistogram interval log (one histogram of the assigned
//! devices' latencies per second of the run) that HdrHistogram's own tools
//! (`HistogramLogProcessor`, HistogramLogAnalyzer) read.

use std::io::{self, Write};
use std::time::Duration;

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;

use super::plan::DeviceKind;
use super::report::{new_histogram, HISTOGRAM_MAX_MICROS};
use super::SwarmReport;

/// One device's run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwarmSample {
    /// Its position in the plan.
    pub device: usize,
    /// Its registration id.
    pub registration_id: String,
    /// Its kind.
    pub kind: DeviceKind,
    /// When it started, from the swarm's start.
    pub started: Duration,
    /// From its start (new client, new connection) to its outcome.
    pub latency: Duration,
    /// How it ended.
    pub outcome: SampleOutcome,
}

/// How one device's run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SampleOutcome {
    /// Assigned to this hub.
    Assigned {
        /// The hub's host name.
        hub: String,
    },
    /// Failed.
    Failed {
        /// [`ClientError::class`](crate::ClientError::class).
        class: &'static str,
        /// The service's 6-digit code, if any.
        error_code: Option<i32>,
    },
}

/// Width of one interval of the HdrHistogram log.
const LOG_INTERVAL: Duration = Duration::from_secs(1);

impl SwarmReport {
    /// Write the samples as CSV: a header, then one row per device in plan
    /// order — `registration_id,kind,outcome,hub,error,start_ms,latency_ms`
    /// (`outcome` is `assigned` or `failed`; `error` is `class` or
    /// `class/code`). Empty without samples.
    pub fn write_latency_csv(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "registration_id,kind,outcome,hub,error,start_ms,latency_ms"
        )?;
        for sample in &self.samples {
            let (outcome, hub, error) = match &sample.outcome {
                SampleOutcome::Assigned { hub } => ("assigned", hub.as_str(), String::new()),
                SampleOutcome::Failed { class, error_code } => (
                    "failed",
                    "",
                    match error_code {
                        Some(code) => format!("{class}/{code}"),
                        None => (*class).to_owned(),
                    },
                ),
            };
            writeln!(
                out,
                "{},{},{outcome},{},{},{:.3},{:.3}",
                csv_field(&sample.registration_id),
                sample.kind,
                csv_field(hub),
                csv_field(&error),
                millis(sample.started),
                millis(sample.latency),
            )?;
        }
        Ok(())
    }

    /// Write an HdrHistogram interval log (V2, deflated) of the assigned
    /// devices' latencies in microseconds: one histogram per second of the
    /// run, by the second each device finished, timestamps relative to the
    /// swarm's start (`BaseTime`). Failed devices are left out (their
    /// latency is the time to fail, not to provision).
    pub fn write_histogram_log(&self, out: &mut impl Write) -> io::Result<()> {
        let mut serializer = V2DeflateSerializer::new();
        let mut log = IntervalLogWriterBuilder::new()
            .add_comment("dps-device swarm: provisioning latency in microseconds, per second")
            .with_base_time(self.started_at)
            .with_start_time(self.started_at)
            .with_max_value_divisor(1000.0)
            .begin_log_with(out, &mut serializer)?;
        let mut finished: Vec<(u64, u64)> = self
            .samples
            .iter()
            .filter(|s| matches!(s.outcome, SampleOutcome::Assigned { .. }))
            .map(|s| {
                let end = s.started + s.latency;
                let micros = u64::try_from(s.latency.as_micros()).unwrap_or(u64::MAX);
                (
                    end.as_secs() / LOG_INTERVAL.as_secs(),
                    micros.clamp(1, HISTOGRAM_MAX_MICROS),
                )
            })
            .collect();
        finished.sort_unstable();
        let tag = Tag::new("provision");
        for interval in finished.chunk_by(|a, b| a.0 == b.0) {
            let mut histogram = new_histogram();
            for (_, micros) in interval {
                histogram
                    .record(*micros)
                    .map_err(|e| io::Error::other(format!("recording {micros} µs: {e:?}")))?;
            }
            log.write_histogram(
                &histogram,
                LOG_INTERVAL * interval[0].0 as u32,
                LOG_INTERVAL,
                tag,
            )
            .map_err(|e| io::Error::other(format!("writing the histogram log: {e:?}")))?;
        }
        Ok(())
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Quote a field that holds a comma, quote or line break (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    use super::*;

    fn sample(device: usize, started_ms: u64, latency_ms: u64, ok: bool) -> SwarmSample {
        SwarmSample {
            device,
            registration_id: format!("t-symmetric-{device:07}"),
            kind: DeviceKind::Symmetric,
            started: Duration::from_millis(started_ms),
            latency: Duration::from_millis(latency_ms),
            outcome: if ok {
                SampleOutcome::Assigned {
                    hub: "hub-a.test".to_owned(),
                }
            } else {
                SampleOutcome::Failed {
                    class: "authentication",
                    error_code: Some(401002),
                }
            },
        }
    }

    fn report() -> SwarmReport {
        let mut report = SwarmReport::empty();
        report.samples = vec![
            sample(0, 0, 12, true),
            sample(1, 5, 900, true),
            sample(2, 10, 1500, true),
            sample(3, 20, 30, false),
        ];
        report
    }

    #[test]
    fn the_csv_has_a_row_per_device() {
        let mut csv = Vec::new();
        report().write_latency_csv(&mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 5, "{csv}");
        assert_eq!(
            lines[0],
            "registration_id,kind,outcome,hub,error,start_ms,latency_ms"
        );
        assert_eq!(
            lines[1],
            "t-symmetric-0000000,symmetric,assigned,hub-a.test,,0.000,12.000"
        );
        assert_eq!(
            lines[4],
            "t-symmetric-0000003,symmetric,failed,,authentication/401002,20.000,30.000"
        );
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }

    #[test]
    fn the_histogram_log_holds_every_assigned_device_by_second() {
        let mut log = Vec::new();
        report().write_histogram_log(&mut log).unwrap();
        let mut deserializer = Deserializer::new();
        let mut intervals = Vec::new();
        for entry in IntervalLogIterator::new(&log) {
            if let LogEntry::Interval(interval) = entry.unwrap() {
                let bytes = base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    interval.encoded_histogram(),
                )
                .unwrap();
                let histogram: hdrhistogram::Histogram<u64> =
                    deserializer.deserialize(&mut bytes.as_slice()).unwrap();
                intervals.push((interval.start_timestamp(), histogram.len()));
            }
        }
        // Two devices finished in second 0, one in second 1; the failure is out.
        assert_eq!(
            intervals,
            vec![(Duration::ZERO, 2), (Duration::from_secs(1), 1)]
        );
    }
}
