//! A software TPM (swtpm) on loopback for TPM tests, killed on drop.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Why TPM tests cannot run here (a tool is missing), if they cannot.
pub fn missing_tools() -> Option<String> {
    let missing: Vec<&str> = [
        "swtpm",
        "tpm2_getcap",
        "tpm2_createek",
        "tpm2_activatecredential",
        "tpm2_import",
        "tpm2_hmac",
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

fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// A running swtpm with fresh state.
pub struct SoftwareTpm {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl SoftwareTpm {
    /// Start one (retrying on a port race).
    pub fn start() -> Result<Self> {
        let mut last = None;
        for _ in 0..5 {
            match Self::try_start() {
                Ok(tpm) => return Ok(tpm),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("swtpm did not start")))
    }

    fn try_start() -> Result<Self> {
        let port = free_port_pair()?;
        let dir = tempfile::tempdir()?;
        let child = Command::new("swtpm")
            .arg("socket")
            .arg("--tpmstate")
            .arg(format!("dir={}", dir.path().display()))
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
        let mut tpm = SoftwareTpm {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = tpm.child.try_wait()? {
                bail!("swtpm exited at start: {status}");
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(tpm);
            }
            if Instant::now() > deadline {
                bail!("swtpm did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The TCTI string tpm2-tools reach it with.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }
}

impl Drop for SoftwareTpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port P with P+1 also free (swtpm's server and control ports).
fn free_port_pair() -> Result<u16> {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.1:0")?;
        let port = first.local_addr()?.port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no two adjacent free loopback ports")
}
