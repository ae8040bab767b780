//! Running official Node SDK scenarios: install npm packages once into a cache
//! directory shared by all tests (and test runs), run one script per scenario in
//! a child process with a timeout, read its JSON result from stdout.
//!
//! Self-contained so it can move to a shared test-support crate.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::process::Command;
use tokio::sync::Mutex;

/// npm installs in this process are serialised (other processes are handled
/// by the atomic rename).
static INSTALL: Mutex<()> = Mutex::const_new(());
static SCRIPT_COUNTER: AtomicU64 = AtomicU64::new(0);

const NPM_TIMEOUT: Duration = Duration::from_secs(300);

/// Where npm packages are cached: `$CARGO_TARGET_DIR/node-interop`, else the
/// workspace's `target/node-interop`.
pub(crate) fn cache_root() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("node-interop"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/node-interop"),
    }
}

/// A directory whose `node_modules` holds exactly `packages` (`name@version`),
/// installed on first use. Parallel installers (threads or processes) each
/// install into a private directory and rename it into place; the loser of
/// the race discards its copy.
pub(crate) async fn npm_packages(packages: &[&str]) -> anyhow::Result<PathBuf> {
    let name = packages
        .iter()
        .map(|p| p.replace(['/', '@'], "_"))
        .collect::<Vec<_>>()
        .join("+");
    let root = cache_root();
    let dir = root.join(&name);
    let marker = dir.join(".installed");
    if marker.exists() {
        return Ok(dir);
    }
    let _guard = INSTALL.lock().await;
    if marker.exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let staging = root.join(format!(
        ".{name}.staging-{}-{}",
        std::process::id(),
        SCRIPT_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    std::fs::write(staging.join("package.json"), r#"{"private":true}"#)?;
    let mut npm = Command::new("npm");
    npm.arg("install")
        .args(["--no-audit", "--no-fund", "--no-save", "--loglevel=error"])
        .args(packages)
        .current_dir(&staging)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(NPM_TIMEOUT, npm.output())
        .await
        .context("npm install timed out")?
        .context("running npm (is Node.js installed?)")?;
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(&staging);
        bail!(
            "npm install {packages:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::write(staging.join(".installed"), b"")?;
    if std::fs::rename(&staging, &dir).is_err() {
        // Someone else finished first (or a stale partial dir is in the way).
        let _ = std::fs::remove_dir_all(&staging);
        if !marker.exists() {
            bail!("{} exists but is not a completed install", dir.display());
        }
    }
    Ok(dir)
}

/// Run `script` with Node in `package_dir` (so `require` finds its
/// `node_modules`), with `args` and `env`, and parse the last stdout line as JSON.
pub(crate) async fn run_node_json(
    package_dir: &Path,
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let file = package_dir.join(format!(
        "scenario-{}-{}.js",
        std::process::id(),
        SCRIPT_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&file, script)?;
    let mut node = Command::new("node");
    node.arg(&file)
        .args(args)
        .current_dir(package_dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (key, value) in env {
        node.env(key, value);
    }
    let result = tokio::time::timeout(timeout, node.output()).await;
    let _ = std::fs::remove_file(&file);
    let output = result
        .with_context(|| format!("node scenario timed out after {timeout:?}"))?
        .context("running node")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("node exited with {}: {stderr}\n{stdout}", output.status);
    }
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .with_context(|| format!("node printed nothing; stderr: {stderr}"))?;
    serde_json::from_str(last).with_context(|| format!("node printed non-JSON: {last}"))
}
