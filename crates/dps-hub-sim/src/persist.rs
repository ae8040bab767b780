//! The optional JSON data file.
//!
//! Policy: after a change, a background task waits [`DEBOUNCE`] (so a burst of
//! writes costs one file write), snapshots every hub and writes the file
//! atomically (temporary file in the same directory, then rename). A final
//! write happens at shutdown, so a graceful stop loses nothing; a crash loses at
//! most the last [`DEBOUNCE`] of changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::registry::Registry;
use crate::state::SimState;
use crate::HubSimError;

/// Delay between a change and the file write that records it.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// The whole file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct PersistedState {
    /// By lower-case host name.
    pub(crate) hubs: BTreeMap<String, PersistedHub>,
}

/// One hub in the file (its key included, so restarts keep connection strings).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PersistedHub {
    pub(crate) host_name: String,
    pub(crate) key_name: String,
    pub(crate) key: String,
    pub(crate) registry: Registry,
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> HubSimError {
    HubSimError::DataFile {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The saved state, or `None` when the file does not exist yet.
pub(crate) fn load(path: &Path) -> Result<Option<PersistedState>, HubSimError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| file_error(path, format!("not a hub emulator data file: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_error(path, e)),
    }
}

/// Write atomically: temp file, flush to disk, rename over the old file.
pub(crate) fn save(path: &Path, state: &PersistedState) -> Result<(), HubSimError> {
    use std::io::Write as _;
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| file_error(path, e))?;
    let tmp = temp_path(path);
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        // The file holds hub keys: owner-only where the platform allows.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        file_error(path, e)
    })
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Write after changes (debounced) until `shutdown` flips, then once more.
pub(crate) async fn writer(
    state: Arc<SimState>,
    path: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = state.changed.notified() => {}
            _ = shutdown.changed() => break,
        }
        tokio::time::sleep(DEBOUNCE).await;
        write_now(&state, &path).await;
    }
    write_now(&state, &path).await;
}

async fn write_now(state: &Arc<SimState>, path: &Path) {
    let snapshot = state.snapshot();
    let path = path.to_owned();
    let result = tokio::task::spawn_blocking(move || save(&path, &snapshot)).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "hub emulator could not save its data file"),
        Err(err) => tracing::warn!(error = %err, "hub emulator save task failed"),
    }
}
