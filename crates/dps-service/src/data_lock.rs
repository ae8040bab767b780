//! One server per data directory: an exclusive lock on `data_dir/dps.lock`,
//! taken before anything in the directory is opened, so a second server
//! fails at once with a message naming the directory, instead of opening the
//! database (and the hub emulator's file) and then failing on a port.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use crate::ServiceError;

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "dps.lock";

/// Held for as long as the server runs; the OS releases the lock when the
/// process ends, however it ends, so a crash leaves no stale lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Create `data_dir` if needed and lock it, or fail if another process
    /// holds the lock.
    pub fn acquire(data_dir: &Path) -> Result<Self, ServiceError> {
        let io = |path: &Path, e: std::io::Error| ServiceError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(data_dir).map_err(|e| io(data_dir, e))?;
        let path = data_dir.join(LOCK_FILE);
        // Not truncated: the file's content (the holder's pid) is only a hint
        // for people, the lock is what counts.
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                return Err(ServiceError::Config {
                    reason: format!(
                        "data directory {} is in use by another dps-server{} (it holds the lock \
                         on {}); stop that server or choose another --data-dir",
                        data_dir.display(),
                        if holder.is_empty() {
                            String::new()
                        } else {
                            format!(" (pid {holder})")
                        },
                        path.display()
                    ),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(&path, e)),
        }
        use std::io::Write as _;
        let mut writer = &file;
        let _ = file.set_len(0);
        let _ = writeln!(writer, "{}", std::process::id());
        Ok(DataDirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let first = DataDirLock::acquire(&data_dir).unwrap();
        assert_eq!(first.path(), data_dir.join(LOCK_FILE));
        let err = DataDirLock::acquire(&data_dir).unwrap_err().to_string();
        assert!(err.contains(&data_dir.display().to_string()), "{err}");
        assert!(err.contains(LOCK_FILE), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        DataDirLock::acquire(&data_dir).unwrap();
    }
}
