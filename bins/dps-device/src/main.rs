//! `dps-device`: a device simulator over `dps-client` — provision one device
//! (`register`) or a swarm of them (`swarm`) against any DPS endpoint.

mod register;
mod swarm;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Device simulator for dps (or Azure IoT Hub DPS).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Provision one device and print where it was assigned.
    Register(register::RegisterArgs),
    /// Provision many devices, each over its own TLS connection, and report
    /// throughput, latency percentiles and the per-hub distribution.
    Swarm(swarm::SwarmArgs),
}

/// `--transport` of `register` and `swarm`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum TransportArg {
    /// HTTPS (port 443 unless the endpoint names one).
    #[default]
    Https,
    /// MQTT 3.1.1 over TLS (port 8883 unless the endpoint names one).
    Mqtt,
    /// MQTT over WebSocket over TLS (port 443 unless the endpoint names one).
    MqttWs,
}

impl From<TransportArg> for dps_client::Transport {
    fn from(arg: TransportArg) -> Self {
        match arg {
            TransportArg::Https => dps_client::Transport::Https,
            TransportArg::Mqtt => dps_client::Transport::Mqtt,
            TransportArg::MqttWs => dps_client::Transport::MqttWs,
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("dps-device: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Register(args) => register::run(args).await,
            Command::Swarm(args) => swarm::run(args).await,
        }
    });
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("dps-device: {err:#}");
            ExitCode::FAILURE
        }
    }
}
