//! Running the official Azure IoT Python device SDK as a real client.
//!
//! `azure-iot-device` is installed once per target directory from PyPI with
//! `pip install --target` (an exclusive file lock serialises parallel tests),
//! and each scenario runs as its own `python3` child process with a timeout,
//! like the Node scenarios: an SDK that hangs or loops costs one test.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// The package and the version our interop claims are proven against.
pub const PACKAGES: &[&str] = &["azure-iot-device==2.14.0"];

/// Where the packages live: `<target>/python-interop/pkgs`.
pub fn install_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("python-interop")
}

/// Install the SDK unless already present; returns the directory to put on
/// `PYTHONPATH`.
pub fn ensure_installed() -> Result<PathBuf> {
    let dir = install_dir();
    std::fs::create_dir_all(&dir)?;
    let lock = std::fs::File::create(dir.join(".lock"))?;
    lock.lock().context("locking the pip install directory")?;
    let packages = dir.join("pkgs");
    let marker = dir.join(format!(".installed-{}", PACKAGES.join(",")));
    if !marker.exists() {
        let output = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-warn-script-location",
                "--upgrade",
                "--target",
            ])
            .arg(&packages)
            .args(PACKAGES)
            .output()
            .context("running pip (is Python 3 installed?)")?;
        if !output.status.success() {
            bail!(
                "pip install failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::fs::write(&marker, "")?;
    }
    Ok(packages)
}

/// One Python scenario: a script, environment, and a time limit.
pub struct PythonScript<'a> {
    /// Python source; it prints one JSON line on stdout as its result.
    pub source: &'a str,
    /// Environment variables (inputs).
    pub env: Vec<(String, String)>,
    /// Kill the process after this long.
    pub timeout: Duration,
}

/// What a script printed.
#[derive(Debug)]
pub struct PythonOutput {
    /// The last stdout line parsed as JSON.
    pub result: serde_json::Value,
    /// All of stderr (for failure messages).
    pub stderr: String,
    /// How long the process ran.
    pub elapsed: Duration,
}

/// Run a scenario with the SDK on the module path.
pub fn run(script: &PythonScript<'_>) -> Result<PythonOutput> {
    let packages = ensure_installed()?;
    let dir = install_dir();
    let mut file = tempfile::Builder::new().suffix(".py").tempfile_in(&dir)?;
    file.write_all(script.source.as_bytes())?;
    let started = Instant::now();
    let mut child = Command::new("python3")
        .arg(file.path())
        .current_dir(&dir)
        .env("PYTHONPATH", &packages)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(script.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting python3")?;
    let stdout = child.stdout.take().context("stdout is piped")?;
    let stderr = child.stderr.take().context("stderr is piped")?;
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
                "python scenario timed out after {:?}; stderr:\n{stderr}",
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
        format!("python exited with {status}; stdout:\n{stdout}\nstderr:\n{stderr}")
    })?;
    Ok(PythonOutput {
        result,
        stderr,
        elapsed,
    })
}
