//! A real dps server in the test process (SQLite in a scratch directory, the
//! hub emulator with one hub, one tenant whose service host name does not
//! resolve, so every command must use `--endpoint`), and the `dps-admin`
//! binary run against it as an operator would run it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context as _, Result};
use dps_attestation::keys::generate_key;
use dps_hub_sim::{HubSim, HubSimConfig, RunningHubSim};
use dps_model::{LinkedHub, Tenant};
use dps_service::server::RunningServer;
use dps_service::ServiceConfig;
use serde_json::Value;

/// The hub linked to the tenant.
pub(crate) const HUB: &str = "hub-a.admin.test";

/// A running server, its hub emulator and the tenant.
pub(crate) struct System {
    pub(crate) server: RunningServer,
    pub(crate) _hubs: RunningHubSim,
    pub(crate) tenant: Tenant,
    pub(crate) ca_file: PathBuf,
    pub(crate) dir: tempfile::TempDir,
}

/// What a run of `dps-admin` did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// Stdout as JSON (the run must have succeeded).
    pub(crate) fn json(&self) -> Result<Value> {
        if !self.success {
            bail!("dps-admin failed: {}", self.stderr);
        }
        serde_json::from_str(&self.stdout)
            .with_context(|| format!("stdout is not JSON: {}", self.stdout))
    }
}

impl System {
    /// Start the emulator and the server on loopback ports of their own, and
    /// create the tenant `admin-test` with the hub linked.
    pub(crate) async fn start() -> Result<System> {
        let dir = tempfile::tempdir()?;
        let hubs = HubSim::start(HubSimConfig::new(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            &[HUB],
        ))
        .await
        .context("starting the hub emulator")?;
        let hub_ca = dir.path().join("hub-ca.pem");
        std::fs::write(&hub_ca, hubs.ca_pem().context("the emulator's CA")?)?;
        let mut config = ServiceConfig {
            data_dir: dir.path().join("data"),
            operator_key: Some(generate_key()),
            ..ServiceConfig::default()
        };
        config.device.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.device.mqtt.enabled = false;
        // Another address than the device listener's: the two must differ,
        // and port 0 alone would make them equal.
        config.service.listen = SocketAddr::from(([127, 0, 0, 2], 0));
        config.tls.dev_names = vec!["127.0.0.1".to_owned(), "127.0.0.2".to_owned()];
        config.hubs.trusted_ca_files = vec![hub_ca];
        config.hubs.resolve.insert(HUB.to_owned(), hubs.addr());
        let server = dps_service::server::start(config)
            .await
            .map_err(|e| anyhow::anyhow!("starting dps: {e:?}"))?;
        let ca_file = dir.path().join("dps-ca.pem");
        std::fs::write(&ca_file, server.trust_pem())?;
        let mut tenant = Tenant::new("admin-test", "admin-test.dps.invalid")?;
        tenant.linked_hubs = vec![LinkedHub::new(
            HUB,
            hubs.connection_string(HUB).context("the hub exists")?,
        )];
        let tenant = server.store().create_tenant(tenant).await?;
        Ok(System {
            server,
            _hubs: hubs,
            tenant,
            ca_file,
            dir,
        })
    }

    /// The owner's service connection string.
    pub(crate) fn connection_string(&self) -> String {
        self.tenant
            .connection_string(dps_model::tenant::OWNER_POLICY)
            .expect("the owner policy exists")
    }

    /// The service listener, `127.0.0.2:PORT`.
    pub(crate) fn endpoint(&self) -> String {
        self.server
            .service_addr()
            .expect("service listener")
            .to_string()
    }

    /// Run `dps-admin` with the connection in the environment (as an
    /// operator's shell would have it) and no profile file.
    pub(crate) async fn admin(&self, args: &[&str]) -> Result<Run> {
        let env = [
            ("DPS_SERVICE_CONNECTION_STRING", self.connection_string()),
            ("DPS_SERVICE_ENDPOINT", self.endpoint()),
            ("DPS_CA", self.ca_file.display().to_string()),
        ];
        self.admin_with(args, &env).await
    }

    /// Run `dps-admin` with exactly this environment (besides PATH), stdin
    /// closed and stdout/stderr piped.
    pub(crate) async fn admin_with(&self, args: &[&str], env: &[(&str, String)]) -> Result<Run> {
        let output = self
            .command(args, env)
            .stdin(Stdio::null())
            .output()
            .await?;
        Ok(Run {
            success: output.status.success(),
            stdout: String::from_utf8(output.stdout)?,
            stderr: String::from_utf8(output.stderr)?,
        })
    }

    /// The command, with a clean environment: HOME in the scratch directory
    /// so no profile of the machine's user is read.
    pub(crate) fn command(&self, args: &[&str], env: &[(&str, String)]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_dps-admin"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .kill_on_drop(true);
        command
    }

    /// The operator's home directory (profiles go to `.config/dps/`).
    pub(crate) fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Write a file in the scratch directory.
    pub(crate) fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

/// `path` as a `&str` argument.
pub(crate) fn arg(path: &Path) -> &str {
    path.to_str().expect("scratch paths are UTF-8")
}

/// Assert that a run failed and its stderr holds every one of `needles`.
pub(crate) fn assert_failed(run: &Run, needles: &[&str]) {
    assert!(
        !run.success,
        "expected a failure, got stdout {}",
        run.stdout
    );
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "stderr lacks {needle:?}: {}",
            run.stderr
        );
    }
}
