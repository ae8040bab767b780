//! Running official Node SDK scenarios: the packages come from the
//! workspace's one npm installer (`tests/support/npm.rs`, shared with
//! `dps-e2e`: keyed on the exact package list, with a time limit); each
//! scenario runs as one script in a child process with a timeout, and its
//! JSON result is read from stdout.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::process::Command;

// Included by path rather than through a dev-dependency on dps-e2e, which
// would build the whole server for the emulator's tests; there its items are
// public API, here they are private.
#[allow(unreachable_pub)]
#[path = "../../../../tests/support/npm.rs"]
mod npm;

static SCRIPT_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory whose `node_modules` holds exactly `packages` (`name@version`),
/// installed on first use (the installer blocks, so off the async workers).
pub(crate) async fn npm_packages(packages: &[&str]) -> anyhow::Result<PathBuf> {
    let packages: Vec<String> = packages.iter().map(|p| (*p).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let packages: Vec<&str> = packages.iter().map(String::as_str).collect();
        npm::ensure_installed(&packages)
    })
    .await
    .context("the npm installer panicked")?
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
