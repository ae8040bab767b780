//! `dps-server`: run the Device Provisioning Service.
//!
//! Parses flags into `dps_service::ServiceConfig`, starts the service and
//! serves until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dps_service::operator_key::OperatorKeyOrigin;
use dps_service::ServiceConfig;

mod banner;
mod embedded;
mod logging;

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
    /// Operator key for tenant management: base64 of at least 32 bytes
    /// (generated into the data directory when absent, and printed once).
    #[arg(long, env = "DPS_OPERATOR_KEY")]
    operator_key: Option<String>,
    /// Run the in-process IoT hub emulator and link it to a `default`
    /// tenant (the default when no configuration file is given).
    #[arg(long)]
    hub_emulator: bool,
    /// Log line format on stderr (the banner is on stdout).
    #[arg(long, env = "DPS_LOG_FORMAT", value_enum, default_value_t)]
    log_format: logging::LogFormat,
}

fn main() -> ExitCode {
    let args = Args::parse();
    logging::init(args.log_format);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("dps-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => ServiceConfig::from_file(path)?,
        None => ServiceConfig::default(),
    };
    let embedded = args.hub_emulator || args.config.is_none();
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if args.storage.is_some() {
        config.storage_url = args.storage;
    }
    if let Some(addr) = args.device_listen {
        config.device.listen = addr;
    }
    if let Some(addr) = args.service_listen {
        config.service.listen = addr;
    }
    if args.operator_key.is_some() {
        config.operator_key = args.operator_key;
    }
    // Before anything in the data directory is opened (the store, the hub
    // emulator's file): a second server on it stops here, naming it.
    let _lock = dps_service::data_lock::DataDirLock::acquire(&config.data_dir)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let hubs = if embedded {
            Some(embedded::start_hub_emulator(&mut config).await?)
        } else {
            None
        };
        // After the emulator: it adds the `default` tenant, whose host counts.
        config.tls.dev_names = dps_service::tls::development_names(&config);
        let data_dir = config.data_dir.clone();
        let declared_tenants: Vec<String> = config.tenants.iter().map(|t| t.name.clone()).collect();
        let dev_ca = config
            .tls
            .cert_file
            .is_none()
            .then(|| data_dir.join("tls").join("ca.pem"));
        let started = std::time::SystemTime::now();
        let server = dps_service::server::start(config).await?;
        show_operator_key(&server);
        match &hubs {
            Some(hubs) => embedded::show(&server, hubs, &data_dir, started).await?,
            None => {
                println!("device endpoint:    https://{}", server.device_addr);
                println!("service endpoint:   https://{}", server.service_addr);
                if let Some(addr) = server.admin_addr {
                    println!("admin (health):     http://{addr}/readyz");
                }
                let mut first_scope = None;
                for name in &declared_tenants {
                    if let Some(tenant) = server.store.tenant_by_name(name).await? {
                        println!(
                            "tenant {name}: ID scope {}, service host {} \
                             (keys: POST /tenants/{name}/listKeys with the operator key)",
                            tenant.id_scope, tenant.service_host_name
                        );
                        first_scope.get_or_insert(tenant.id_scope.as_str().to_owned());
                    }
                }
                banner::print_client_hints(
                    server.device_addr,
                    server.service_addr,
                    first_scope.as_deref(),
                    dev_ca.as_deref(),
                );
            }
        }
        wait_for_signal().await;
        println!("shutting down");
        server.shutdown().await;
        if let Some(hubs) = hubs {
            hubs.shutdown().await;
        }
        anyhow::Ok(())
    })
}

/// The operator key is shown only by the start that generated it; start-up
/// output ends up in logs, so later starts name the file instead.
fn show_operator_key(server: &dps_service::server::RunningServer) {
    match &server.operator_key_origin {
        OperatorKeyOrigin::Generated { path } => println!(
            "operator key:       {} (generated; shown only now, kept in {})",
            server.operator_key,
            path.display()
        ),
        OperatorKeyOrigin::Stored { path } => {
            println!("operator key:       in {}", path.display())
        }
        _ => println!("operator key:       as configured"),
    }
}

pub(crate) async fn wait_for_signal() {
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
