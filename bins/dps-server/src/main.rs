//! `dps-server`: run the Device Provisioning Service.
//!
//! Flags become `dps_service::config::Overrides` laid over the configuration
//! file; `dps_service::server::Server` does the rest. Serves until Ctrl-C or
//! SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dps_service::banner::{self, TenantStyle};
use dps_service::config::{LogFormat, Overrides};
use dps_service::server::Server;
use dps_service::ServiceConfig;

mod logging;

// Every request allocates (TLS buffers, HTTP parts, JSON, rows); under load
// glibc's malloc and free took about a tenth of the server's CPU, mimalloc a
// fraction of that (issue 19; BENCHMARKING.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A Device Provisioning Service wire-compatible with Azure IoT Hub DPS.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TOML configuration file (every setting has a default).
    #[arg(long, short, env = "DPS_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (SQLite database, generated certificates).
    #[arg(long, env = "DPS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Storage URL: sqlite://PATH, postgres://… or memory:// (tests).
    #[arg(long, env = "DPS_STORAGE")]
    storage: Option<String>,
    /// Device endpoint address (official SDKs dial port 443).
    #[arg(long, env = "DPS_DEVICE_LISTEN")]
    device_listen: Option<SocketAddr>,
    /// Service operations endpoint address.
    #[arg(long, env = "DPS_SERVICE_LISTEN")]
    service_listen: Option<SocketAddr>,
    /// Admin listener address (/healthz, /readyz, /metrics; plain HTTP,
    /// 127.0.0.1:9090 by default).
    #[arg(long, env = "DPS_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Operator key for tenant management: base64 of at least 32 bytes
    /// (generated into the data directory when absent, and printed once).
    #[arg(long, env = "DPS_OPERATOR_KEY")]
    operator_key: Option<String>,
    /// Run the in-process IoT hub emulator and link it to a `default`
    /// tenant (the default when no configuration file is given).
    #[arg(long)]
    hub_emulator: bool,
    /// Log line format on stderr, text or json (default: `[log] format`,
    /// else text). The banner is on stdout.
    #[arg(long, env = "DPS_LOG_FORMAT")]
    log_format: Option<LogFormat>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let embedded = args.hub_emulator || args.config.is_none();
    let config = match &args.config {
        Some(path) => ServiceConfig::from_file(path),
        None => Ok(ServiceConfig::default()),
    };
    let result = config.map_err(anyhow::Error::from).and_then(|mut config| {
        config.apply_overrides(Overrides {
            data_dir: args.data_dir,
            storage_url: args.storage,
            device_listen: args.device_listen,
            service_listen: args.service_listen,
            admin_listen: args.admin_listen,
            operator_key: args.operator_key,
            log_format: args.log_format,
        });
        logging::init(config.log.format);
        tokio::runtime::Runtime::new()?.block_on(run(config, embedded))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("dps-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: ServiceConfig, embedded: bool) -> anyhow::Result<()> {
    let ca_file = config
        .tls
        .cert_file
        .is_none()
        .then(|| config.data_dir.join("tls").join("ca.pem"));
    let started = std::time::SystemTime::now();
    let mut builder = Server::builder(config);
    if embedded {
        builder = builder.hub_emulator();
    }
    let server = builder.start().await?;
    let style = match embedded {
        true => TenantStyle::Embedded,
        false => TenantStyle::Declared,
    };
    for line in banner::lines(&server, started, ca_file.as_deref(), style) {
        println!("{line}");
    }
    if embedded {
        let samples = dps_service::embedded::provision_samples(&server).await?;
        let ca = ca_file.unwrap_or_else(|| PathBuf::from("<the server's CA>"));
        for line in samples.lines(&server, &ca) {
            println!("{line}");
        }
    }
    wait_for_signal().await;
    println!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
