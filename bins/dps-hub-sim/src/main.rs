//! `dps-hub-sim`: run the IoT hub registry emulator (one or more hubs on one
//! HTTPS listener) until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use dps_hub_sim::{HubSim, HubSimConfig, HubSpec, HubTier, Throttling, TlsSource};

/// IoT hub registry emulator (devices and twins over HTTPS).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on. The official Node hub client always dials port
    /// 443, so give it a loopback address of its own at 443 (needs root).
    #[arg(long, default_value = "127.0.0.1:8443", env = "DPS_HUB_SIM_LISTEN")]
    listen: SocketAddr,
    /// A hub to serve: NAME (key reused from the data file or generated) or
    /// NAME=BASE64KEY. Repeatable. None: the hubs stored in --data-file.
    #[arg(long = "hub", value_name = "NAME[=KEY]")]
    hubs: Vec<HubSpec>,
    /// Persist devices and twins in this JSON file (loaded at start).
    #[arg(long, env = "DPS_HUB_SIM_DATA_FILE")]
    data_file: Option<PathBuf>,
    /// Server certificate chain (PEM); generated with a fresh CA when absent.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Private key of --cert (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Extra DNS names or IPs for the generated certificate. Repeatable.
    #[arg(long = "cert-name", value_name = "NAME")]
    cert_names: Vec<String>,
    /// Throttle every hub like an IoT hub of this tier (Free, B1-B3, S1-S3):
    /// identity registry and twin operation limits, 429 with Retry-After.
    /// Off when absent.
    #[arg(long, value_name = "TIER")]
    tier: Option<HubTier>,
    /// Units of --tier per hub.
    #[arg(long, default_value_t = 1, requires = "tier")]
    units: u32,
    /// Run the throttling clock this many times faster than real time.
    #[arg(long, default_value_t = 1.0, requires = "tier")]
    throttle_speedup: f64,
    /// Where to write the generated CA certificate (PEM) for clients to trust.
    #[arg(long, default_value_os_t = std::env::temp_dir().join("dps-hub-sim-ca.pem"))]
    ca_out: PathBuf,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("dps-hub-sim: cannot start the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("dps-hub-sim: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let tls = match (args.cert, args.key) {
        (Some(cert), Some(key)) => TlsSource::Files { cert, key },
        _ => TlsSource::Generate {
            extra_names: args.cert_names,
        },
    };
    let throttling = args.tier.map(|tier| Throttling {
        speedup: args.throttle_speedup,
        ..Throttling::new(tier, args.units)
    });
    let hubs = args
        .hubs
        .into_iter()
        .map(|hub| match &throttling {
            Some(t) => hub.throttled(t.clone()),
            None => hub,
        })
        .collect();
    let sim = HubSim::start(HubSimConfig {
        listen: args.listen,
        hubs,
        data_file: args.data_file,
        tls,
    })
    .await?;
    println!("listening on https://{}", sim.addr());
    for host in sim.hosts() {
        if let Some(cs) = sim.connection_string(&host) {
            println!("{cs}");
        }
    }
    if let Some(pem) = sim.ca_pem() {
        std::fs::write(&args.ca_out, pem)
            .with_context(|| format!("writing the CA to {}", args.ca_out.display()))?;
        println!("CA certificate: {}", args.ca_out.display());
    }
    stop_signal().await?;
    eprintln!("dps-hub-sim: shutting down");
    sim.shutdown().await;
    Ok(())
}

async fn stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
