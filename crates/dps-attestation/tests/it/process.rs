//! Running external programs (openssl, swtpm, tpm2-tools) with time limits.

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Is `program` on the PATH?
pub(crate) fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Output of a finished program.
pub(crate) struct Finished {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Run `command` to completion, killing it after `limit`.
pub(crate) fn run(command: &mut Command, limit: Duration) -> anyhow::Result<Finished> {
    let description = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {description}: {e}"))?;
    // Read both pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = wait_with_limit(&mut child, limit)
        .ok_or_else(|| anyhow::anyhow!("{description} did not finish within {limit:?}"))?;
    Ok(Finished {
        success: status.success(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Run `command` and fail unless it exits successfully.
pub(crate) fn run_ok(command: &mut Command, limit: Duration) -> anyhow::Result<Finished> {
    let description = format!("{command:?}");
    let finished = run(command, limit)?;
    anyhow::ensure!(
        finished.success,
        "{description} failed:\n{}\n{}",
        finished.stdout,
        finished.stderr
    );
    Ok(finished)
}

/// Wait for `child` at most `limit`; kill it and return `None` past that.
pub(crate) fn wait_with_limit(
    child: &mut Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}
