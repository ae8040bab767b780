//! The one npm installer of the workspace's tests: the official Azure IoT
//! Node.js SDK packages, installed from the npm registry into
//! `<target>/node-interop/npm-<key>/node_modules`, where `<key>` is a hash of
//! the exact package list — a version bump is a new directory, never a stale
//! reuse — with a time limit on `npm install` and an error that says what to
//! check.
//!
//! `dps-e2e` uses it as `dps_e2e::npm`; `dps-hub-sim`'s tests include this
//! file by path (a dev-dependency on `dps-e2e` would build the whole server
//! for the emulator's tests), so it uses only `std` and `anyhow`.
//!
//! Parallel tests and test binaries are serialised by an exclusive file lock
//! per key; npm installs into a staging directory that is renamed into place
//! with a marker naming the packages, so an interrupted install is never
//! mistaken for a finished one.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// Default limit for one `npm install`; `DPS_NPM_TIMEOUT_SECS` overrides it.
pub const NPM_TIMEOUT: Duration = Duration::from_secs(600);

/// The marker file a finished install holds: the packages, one a line.
const MARKER: &str = ".installed";

/// `<target>/node-interop`: `$CARGO_TARGET_DIR`, else the `target` directory
/// next to the workspace's `Cargo.lock`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("node-interop");
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").exists())
        .unwrap_or(manifest);
    workspace.join("target").join("node-interop")
}

/// The packages as the marker records them: sorted, deduplicated, one a line.
fn manifest(packages: &[&str]) -> String {
    let mut sorted: Vec<&str> = packages.iter().map(|p| p.trim()).collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.join("\n")
}

/// The cache key of a package list: 64-bit FNV-1a of its sorted
/// `name@version` lines, in hex. Order does not matter; any other change
/// (a version, a package) gives another key. FNV because it is stable across
/// Rust releases (std's hasher is not promised to be) and a cache key needs
/// no cryptography; the marker's exact text guards against a collision.
pub fn install_key(packages: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in manifest(packages).bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The directory whose `node_modules` holds exactly `packages`
/// (`name@version`), installing them first if needed.
pub fn ensure_installed(packages: &[&str]) -> Result<PathBuf> {
    let root = cache_root();
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let key = install_key(packages);
    let dir = root.join(format!("npm-{key}"));
    let expected = manifest(packages);
    let lock = std::fs::File::create(root.join(format!("npm-{key}.lock")))?;
    lock.lock().context("locking the npm install directory")?;
    if std::fs::read_to_string(dir.join(MARKER)).ok().as_deref() == Some(expected.as_str()) {
        return Ok(dir);
    }
    // Under the lock: anything here is a stale or foreign directory.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let staging = root.join(format!(".npm-{key}.staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    std::fs::write(
        staging.join("package.json"),
        "{\"name\":\"dps-node-interop\",\"private\":true}\n",
    )?;
    let mut npm = Command::new("npm");
    npm.args([
        "install",
        "--no-audit",
        "--no-fund",
        "--no-save",
        "--loglevel=error",
    ])
    .args(packages)
    .current_dir(&staging);
    if let Err(error) = run_with_timeout(npm, timeout(), packages) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(error);
    }
    std::fs::write(staging.join(MARKER), &expected)?;
    std::fs::rename(&staging, &dir)
        .with_context(|| format!("moving {} into place", staging.display()))?;
    Ok(dir)
}

fn timeout() -> Duration {
    std::env::var("DPS_NPM_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(NPM_TIMEOUT)
}

/// Run npm, killing it after `limit`; the error says what to check.
fn run_with_timeout(mut npm: Command, limit: Duration, packages: &[&str]) -> Result<()> {
    let mut child = npm
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running npm (are Node.js and npm installed and on PATH?)")?;
    let mut stderr = child.stderr.take().context("npm's stderr")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = reader.join().unwrap_or_default();
            bail!(
                "npm install {packages:?} did not finish within {limit:?} and was killed: is the npm \
                 registry reachable from here (`npm config get registry`, HTTPS_PROXY)? \
                 DPS_NPM_TIMEOUT_SECS sets a longer limit. npm said: {}",
                tail(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = reader.join().unwrap_or_default();
    if !status.success() {
        bail!(
            "npm install {packages:?} failed ({status}): {}",
            tail(&stderr)
        );
    }
    Ok(())
}

/// The last 2,000 characters of npm's output (its errors come last).
fn tail(text: &str) -> &str {
    let start = text
        .char_indices()
        .rev()
        .nth(2000)
        .map_or(0, |(index, _)| index);
    text[start..].trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_the_exact_package_list() {
        let a = ["azure-iothub@1.16.6", "azure-iot-common@1.13.2"];
        // The same length, another version: the bug of a length-keyed marker.
        let b = ["azure-iothub@1.16.7", "azure-iot-common@1.13.2"];
        assert_eq!(a.join(",").len(), b.join(",").len());
        assert_ne!(install_key(&a), install_key(&b));
        // Order and duplicates do not matter.
        let reordered = ["azure-iot-common@1.13.2", "azure-iothub@1.16.6", a[0]];
        assert_eq!(install_key(&a), install_key(&reordered));
        assert_ne!(install_key(&a), install_key(&a[..1]));
        assert_eq!(install_key(&a).len(), 16);
        // Stable across runs and Rust releases: a known value.
        assert_eq!(install_key(&[]), "cbf29ce484222325");
    }

    #[test]
    fn a_hung_npm_is_killed_with_a_clear_error() {
        let mut sleeper = Command::new("sleep");
        sleeper.arg("30");
        let started = Instant::now();
        let error = run_with_timeout(sleeper, Duration::from_millis(200), &["x@1.0.0"])
            .expect_err("killed");
        assert!(started.elapsed() < Duration::from_secs(10));
        let text = error.to_string();
        assert!(
            text.contains("did not finish within 200ms") && text.contains("DPS_NPM_TIMEOUT_SECS"),
            "{text}"
        );
    }
}
