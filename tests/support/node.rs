//! Running the official Azure IoT Node.js SDKs as real clients.
//!
//! The packages are installed once per target directory from the npm
//! registry by [`crate::npm`] (keyed on the exact package list, with a time
//! limit), and each scenario runs as its own `node` child process with a
//! timeout: an SDK defect (a crash in a socket callback, an endless poll
//! loop) then costs one test, not the run.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// The SDK packages and the versions our interop claims are proven against.
pub const PACKAGES: &[&str] = &[
    "azure-iot-provisioning-device@1.9.1",
    "azure-iot-provisioning-device-http@1.9.1",
    "azure-iot-provisioning-device-mqtt@1.8.1",
    "azure-iot-provisioning-device-amqp@1.9.1",
    "azure-iot-security-symmetric-key@1.8.2",
    "azure-iot-security-x509@1.7.12",
    "azure-iot-provisioning-service@1.11.2",
    "azure-iothub@1.16.6",
];

/// Install the SDK packages unless already present (through [`crate::npm`]);
/// returns the directory holding `node_modules`.
pub fn ensure_installed() -> Result<PathBuf> {
    crate::npm::ensure_installed(PACKAGES)
}

/// One Node.js scenario: a script, environment, and a time limit.
pub struct NodeScript<'a> {
    /// JavaScript source; it prints one JSON line on stdout as its result.
    pub source: &'a str,
    /// Environment variables (e.g. `NODE_EXTRA_CA_CERTS`, inputs).
    pub env: Vec<(String, String)>,
    /// Kill the process after this long.
    pub timeout: Duration,
}

/// What a script printed.
#[derive(Debug)]
pub struct NodeOutput {
    /// The last stdout line parsed as JSON.
    pub result: serde_json::Value,
    /// All of stderr (for failure messages).
    pub stderr: String,
    /// How long the process ran.
    pub elapsed: Duration,
}

/// Run a scenario with the SDK packages on the module path.
pub fn run(script: &NodeScript<'_>) -> Result<NodeOutput> {
    let dir = ensure_installed()?;
    let mut file = tempfile::Builder::new().suffix(".js").tempfile_in(&dir)?;
    file.write_all(script.source.as_bytes())?;
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(file.path())
        .current_dir(&dir)
        .envs(script.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting node")?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let out_reader =
        std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err_reader =
        std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > script.timeout {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_reader.join().unwrap_or_default();
            bail!(
                "node scenario timed out after {:?}; stderr:\n{stderr}",
                script.timeout
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let result = serde_json::from_str(last).with_context(|| {
        format!("node exited with {status}; stdout:\n{stdout}\nstderr:\n{stderr}")
    })?;
    Ok(NodeOutput {
        result,
        stderr,
        elapsed,
    })
}
