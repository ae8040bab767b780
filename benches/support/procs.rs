//! dps as separate processes: the real `dps-server`, `dps-hub-sim` and
//! `dps-device swarm` binaries started as children on loopback, their CPU
//! time and resident memory read from `/proc/<pid>/` (Linux), and the
//! server's `/metrics` read over its admin listener.
//!
//! The binaries are the ones built next to the bench (`target/release/`),
//! rebuilt by `cargo build --release` before the bench starts them so that
//! a bench never measures a stale server; `DPS_BENCH_BIN_DIR` names another
//! directory (and skips the build).

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use tokio::process::{Child, Command};

/// The three binaries a bench starts.
const BINARIES: [(&str, &str); 3] = [
    ("dps-server", "dps-server"),
    ("dps-hub-sim-bin", "dps-hub-sim"),
    ("dps-device", "dps-device"),
];

/// Where the binaries are: `DPS_BENCH_BIN_DIR`, else the bench's own
/// profile directory after `cargo build --release` of the three packages.
pub fn binaries_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("DPS_BENCH_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    // target/release/deps/<bench> → target/release
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the bench's directory")?
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace")?;
    let mut build = std::process::Command::new(cargo);
    build.current_dir(workspace).args(["build", "--release"]);
    for (package, _) in BINARIES {
        build.args(["-p", package]);
    }
    eprintln!(
        "building the binaries: cargo build --release -p dps-server -p dps-hub-sim-bin -p dps-device"
    );
    let status = build.status().context("running cargo build")?;
    ensure!(status.success(), "cargo build of the binaries failed");
    for (_, binary) in BINARIES {
        ensure!(
            dir.join(binary).exists(),
            "{} not found (set DPS_BENCH_BIN_DIR to the directory holding the binaries)",
            dir.join(binary).display()
        );
    }
    Ok(dir)
}

/// User + system CPU seconds of a process so far, from `/proc/<pid>/stat`
/// (`pid` may be `self`); `None` once it is gone or off Linux.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 12th and 13th of them, in clock ticks (100 per second on Linux).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Resident memory of a process in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A free port on `ip` (bound and released: another process could take it
/// in between, which on a bench machine does not happen).
pub fn free_port(ip: IpAddr) -> Result<SocketAddr> {
    Ok(TcpListener::bind(SocketAddr::new(ip, 0))?.local_addr()?)
}

/// A running child process whose output goes to a log file; killed when
/// dropped.
pub struct Proc {
    child: Child,
    pid: String,
    log: PathBuf,
    name: String,
}

impl Proc {
    /// Spawn `binary` with `args`, output appended to `log`.
    pub fn spawn(binary: &Path, args: &[String], log: &Path) -> Result<Proc> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = Command::new(binary)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        let pid = child.id().context("the child's pid")?.to_string();
        Ok(Proc {
            child,
            pid,
            log: log.to_path_buf(),
            name: binary
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        })
    }

    /// Its process id.
    pub fn pid(&self) -> &str {
        &self.pid
    }

    /// CPU seconds used so far.
    pub fn cpu(&self) -> f64 {
        cpu_seconds(&self.pid).unwrap_or(f64::NAN)
    }

    /// Resident memory now, bytes.
    pub fn rss(&self) -> Option<u64> {
        rss_bytes(&self.pid)
    }

    /// Fail with the end of the log if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited with {status}: {}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stop with SIGTERM (clean shutdown), then wait up to 10 s.
    pub async fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid])
            .status();
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// Wait for the process to exit on its own, sampling its CPU time every
    /// 20 ms (the last sample before exit is what it used, to within one
    /// interval); returns the exit success and the CPU seconds.
    pub async fn wait_sampling(mut self) -> Result<(bool, f64)> {
        let mut cpu = 0.0;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok((status.success(), cpu));
            }
            if let Some(now) = cpu_seconds(&self.pid) {
                cpu = now;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Wait until `addr` accepts TCP connections (or `proc` dies, or 60 s pass).
pub async fn wait_listening(proc: &mut Proc, addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        proc.check_alive()?;
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{addr} never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The hub emulator as its own process, serving `hubs` (name, base64 key)
/// on `listen`; `throttle` is `(tier, units, speedup)`. Its generated CA is
/// written to `dir/<stem>-ca.pem`.
pub struct HubSimProc {
    /// The process.
    pub proc: Proc,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its CA (PEM file).
    pub ca_file: PathBuf,
    /// Its hubs: (host name, connection string).
    pub hubs: Vec<(String, String)>,
}

impl HubSimProc {
    /// Start it and wait until it listens.
    pub async fn start(
        bin: &Path,
        dir: &Path,
        stem: &str,
        hubs: &[&str],
        throttle: Option<(&str, u32, f64)>,
    ) -> Result<HubSimProc> {
        let addr = free_port(IpAddr::from([127, 0, 0, 1]))?;
        let ca_file = dir.join(format!("{stem}-ca.pem"));
        let mut args = vec![
            "--listen".to_owned(),
            addr.to_string(),
            "--ca-out".to_owned(),
            ca_file.display().to_string(),
        ];
        let mut linked = Vec::new();
        for host in hubs {
            let key = dps_attestation::keys::generate_key();
            args.push("--hub".to_owned());
            args.push(format!("{host}={key}"));
            linked.push((
                (*host).to_owned(),
                format!("HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey={key}"),
            ));
        }
        if let Some((tier, units, speedup)) = throttle {
            args.extend([
                "--tier".to_owned(),
                tier.to_owned(),
                "--units".to_owned(),
                units.to_string(),
                "--throttle-speedup".to_owned(),
                speedup.to_string(),
            ]);
        }
        let mut proc = Proc::spawn(
            &bin.join("dps-hub-sim"),
            &args,
            &dir.join(format!("{stem}.log")),
        )?;
        wait_listening(&mut proc, addr).await?;
        // The CA file is written after the listener is up.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ca_file.exists() {
            ensure!(Instant::now() < deadline, "{stem} wrote no CA file");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(HubSimProc {
            proc,
            addr,
            ca_file,
            hubs: linked,
        })
    }
}

/// Where a benched `dps-server` listens and keeps its data.
pub struct ServerPlaces<'a> {
    /// Data directory (generated TLS identity under `tls/`).
    pub data_dir: &'a Path,
    /// The SQLite database file.
    pub db: &'a Path,
    /// HTTPS device listener.
    pub device: SocketAddr,
    /// Service API listener (its address is also in the certificate).
    pub service: SocketAddr,
    /// Plain-HTTP admin listener (`/readyz`, `/metrics`).
    pub admin: SocketAddr,
}

/// A `dps-server` configuration file for a bench: SQLite at `places.db`,
/// the listeners of `places`, the per-tenant and per-address limits off
/// (a bench measures throughput, not the limits, which are on by default),
/// MQTT off; `extra` (TOML tables, e.g. `[device.mqtt]`, `[hubs]`) is
/// appended. Every other key keeps its default.
pub fn server_toml(places: &ServerPlaces<'_>, extra: &str) -> String {
    format!(
        r#"data_dir = "{data}"
storage_url = "sqlite://{db}"
operator_key = "{operator}"

[device]
listen = "{device}"

[service]
listen = "{service}"

[admin]
listen = "{admin}"

[throttling]
registrations_per_second = 0
polls_per_second = 0
service_requests_per_second = 0
failures_per_address_per_second = 0
failures_per_scope_per_second = 0

[tls]
dev_names = ["{device_ip}", "{service_ip}"]

{extra}
"#,
        data = places.data_dir.display(),
        db = places.db.display(),
        operator = dps_attestation::keys::generate_key(),
        device = places.device,
        service = places.service,
        admin = places.admin,
        device_ip = places.device.ip(),
        service_ip = places.service.ip(),
    )
}

/// `dps-server --config <file>` as its own process, ready when `/readyz`
/// on `admin` answers 200.
pub async fn start_server(
    bin: &Path,
    config_file: &Path,
    log: &Path,
    admin: SocketAddr,
) -> Result<Proc> {
    let args = vec!["--config".to_owned(), config_file.display().to_string()];
    let mut proc = Proc::spawn(&bin.join("dps-server"), &args, log)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        proc.check_alive()?;
        if let Ok(response) = client.get(format!("http://{admin}/readyz")).send().await {
            if response.status().is_success() {
                return Ok(proc);
            }
        }
        ensure!(Instant::now() < deadline, "dps-server never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The server's Prometheus text from its admin listener.
pub async fn metrics(admin: SocketAddr) -> Result<String> {
    Ok(reqwest::get(format!("http://{admin}/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// Sum of the samples of `series` (e.g. `dps_hub_call_duration_seconds_count`)
/// whose labels contain every one of `labels` (`call="bulk_registry"`).
pub fn metric_sum(text: &str, series: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            let bare = name.split('{').next()?;
            (bare == series && labels.iter().all(|l| name.contains(l)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// Hub calls the server made so far: (all calls, bulk registry calls).
pub async fn hub_calls(admin: SocketAddr) -> Result<(f64, f64)> {
    let text = metrics(admin).await?;
    let series = "dps_hub_call_duration_seconds_count";
    Ok((
        metric_sum(&text, series, &[]),
        metric_sum(&text, series, &["call=\"bulk_registry\""]),
    ))
}

/// Bytes of the files under `path` (a store's database, WAL and shared
/// memory files).
pub fn disk_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return std::fs::metadata(path).map_or(0, |m| m.len());
    };
    entries
        .filter_map(Result::ok)
        .map(|e| disk_bytes(&e.path()))
        .sum()
}

/// From `dps-device swarm --latency-csv` output: the rate at which the
/// first and the last 10 % of the assigned devices finished (devices per
/// second between the first finish and the 10 % mark, and between the 90 %
/// mark and the last finish). `None` with fewer than 20 assigned devices.
pub fn first_and_last_tenth_rates(csv: &str) -> Option<(f64, f64)> {
    let mut finished: Vec<f64> = csv
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let n = fields.len();
            // start_ms and latency_ms are the last two fields.
            (n >= 7 && fields[2] == "assigned")
                .then(|| {
                    Some(fields[n - 2].parse::<f64>().ok()? + fields[n - 1].parse::<f64>().ok()?)
                })
                .flatten()
        })
        .collect();
    if finished.len() < 20 {
        return None;
    }
    finished.sort_by(f64::total_cmp);
    let tenth = finished.len() / 10;
    let last = finished.len() - 1;
    let rate = |from: usize, to: usize| {
        (to - from) as f64 * 1000.0 / (finished[to] - finished[from]).max(1e-3)
    };
    Some((rate(0, tenth), rate(last - tenth, last)))
}

/// Mebibytes, for printing.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_adds_matching_samples_only() {
        let text = "# HELP x y\n\
            dps_hub_call_duration_seconds_count{call=\"bulk_registry\",result=\"ok\"} 3\n\
            dps_hub_call_duration_seconds_count{call=\"get_twin\",result=\"ok\"} 2\n\
            dps_hub_call_duration_seconds_sum{call=\"get_twin\",result=\"ok\"} 9\n";
        let series = "dps_hub_call_duration_seconds_count";
        assert_eq!(metric_sum(text, series, &[]), 5.0);
        assert_eq!(metric_sum(text, series, &["call=\"bulk_registry\""]), 3.0);
        assert_eq!(metric_sum(text, "absent", &[]), 0.0);
    }

    #[test]
    fn first_and_last_tenth_rates_come_from_finish_times() {
        let mut csv = "registration_id,kind,outcome,hub,error,start_ms,latency_ms\n".to_owned();
        // 100 devices, one finishing every 10 ms for the first half and every
        // 20 ms after; one failure, which does not count.
        let mut at = 0.0;
        for i in 0..100 {
            at += if i < 50 { 10.0 } else { 20.0 };
            csv.push_str(&format!(
                "d{i},symmetric,assigned,hub,,{:.3},5.000\n",
                at - 5.0
            ));
        }
        csv.push_str("bad,symmetric,failed,,network,0.000,1.000\n");
        let (first, last) = first_and_last_tenth_rates(&csv).expect("enough devices");
        assert!((first - 100.0).abs() < 0.01, "{first}");
        assert!((last - 50.0).abs() < 0.01, "{last}");
        assert_eq!(first_and_last_tenth_rates("header\n"), None);
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        assert!(cpu_seconds("self").is_some());
        assert!(rss_bytes("self").unwrap_or(0) > 0);
    }
}
