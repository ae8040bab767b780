//! Running one tpm2-tools program with a time limit.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ClientError;

/// What a finished tool printed.
pub(super) struct Finished {
    pub(super) stdout: String,
}

/// Run `program args` in `dir` against `tcti`; fail unless it exits 0
/// within `limit` (it is killed then).
pub(super) fn run(
    program: &str,
    args: &[&str],
    dir: &Path,
    tcti: &str,
    limit: Duration,
) -> Result<Finished, ClientError> {
    let failed = |reason: String| ClientError::Tpm {
        command: program.to_owned(),
        reason,
    };
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("TPM2TOOLS_TCTI", tcti)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            failed(format!(
                "cannot start it ({e}); is tpm2-tools installed (apt-get install tpm2-tools)?"
            ))
        })?;
    // Readers on their own threads, so a chatty tool never blocks on a full pipe.
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(pipe) = stdout.as_mut() {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(pipe) = stderr.as_mut() {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    });
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(failed(format!("waiting for it: {e}"))),
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(format!(
                "no answer within {} s (is the TPM at {tcti:?} reachable?)",
                limit.as_secs()
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if !status.success() {
        let message = stderr.trim();
        return Err(failed(format!(
            "{status}: {}",
            if message.is_empty() {
                "no message"
            } else {
                message
            }
        )));
    }
    Ok(Finished { stdout })
}
