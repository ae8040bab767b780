//! A real software TPM (swtpm) on loopback, driven with tpm2-tools the way
//! the device SDKs drive their TPM.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{installed, run_ok, Finished};

/// Time limit for any one tpm2-tools command.
const TOOL_LIMIT: Duration = Duration::from_secs(60);
/// Persistent handles the C SDK uses.
pub(crate) const EK_HANDLE: &str = "0x81010001";
pub(crate) const SRK_HANDLE: &str = "0x81000001";

/// Why the TPM tests cannot run here, if they cannot.
pub(crate) fn missing_tools() -> Option<String> {
    let missing: Vec<&str> = [
        "swtpm",
        "tpm2_createek",
        "tpm2_activatecredential",
        "tpm2_import",
    ]
    .into_iter()
    .filter(|tool| !installed(tool))
    .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "not installed: {} (apt-get install swtpm swtpm-tools tpm2-tools)",
            missing.join(", ")
        )
    })
}

/// A running swtpm, killed on drop, with its state in a temporary directory.
pub(crate) struct SoftwareTpm {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl SoftwareTpm {
    pub(crate) fn start() -> anyhow::Result<Self> {
        let mut last_error = None;
        for _ in 0..5 {
            match Self::try_start() {
                Ok(tpm) => return Ok(tpm),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn try_start() -> anyhow::Result<Self> {
        let port = free_port_pair()?;
        let dir = tempfile::tempdir()?;
        let state = dir.path().join("state");
        std::fs::create_dir(&state)?;
        let child = Command::new("swtpm")
            .arg("socket")
            .arg("--tpmstate")
            .arg(format!("dir={}", state.display()))
            .arg("--tpm2")
            .args([
                "--server",
                &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
            ])
            .args([
                "--ctrl",
                &format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1),
            ])
            .args(["--flags", "not-need-init,startup-clear"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut tpm = SoftwareTpm { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = tpm.child.try_wait()? {
                anyhow::bail!("swtpm exited at start: {status}");
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(tpm);
            }
            anyhow::ensure!(Instant::now() < deadline, "swtpm did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Run one tpm2-tools command against this TPM; fail unless it succeeds.
    pub(crate) fn tool(&self, program: &str, args: &[&str]) -> anyhow::Result<Finished> {
        run_ok(&mut self.command(program, args), TOOL_LIMIT)
    }

    /// Run one tpm2-tools command; report its outcome whatever it is.
    pub(crate) fn try_tool(&self, program: &str, args: &[&str]) -> anyhow::Result<Finished> {
        crate::process::run(&mut self.command(program, args), TOOL_LIMIT)
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command.args(args).current_dir(self.dir.path()).env(
            "TPM2TOOLS_TCTI",
            format!("swtpm:host=127.0.0.1,port={}", self.port),
        );
        command
    }
}

impl Drop for SoftwareTpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port P with P+1 also free (swtpm's server and control ports).
fn free_port_pair() -> anyhow::Result<u16> {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.1:0")?;
        let port = first.local_addr()?.port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no two adjacent free loopback ports")
}
