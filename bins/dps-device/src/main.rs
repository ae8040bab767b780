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
    /// AMQP 1.0 over TLS (port 5671 unless the endpoint names one).
    Amqp,
    /// AMQP over WebSocket over TLS (port 443 unless the endpoint names one).
    AmqpWs,
}

impl From<TransportArg> for dps_client::Transport {
    fn from(arg: TransportArg) -> Self {
        match arg {
            TransportArg::Https => dps_client::Transport::Https,
            TransportArg::Mqtt => dps_client::Transport::Mqtt,
            TransportArg::MqttWs => dps_client::Transport::MqttWs,
            TransportArg::Amqp => dps_client::Transport::Amqp,
            TransportArg::AmqpWs => dps_client::Transport::AmqpWs,
        }
    }
}

/// `--key-type` of `register --issue-certificate` and `swarm --issue-certificate`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum KeyTypeArg {
    /// ECDSA on NIST P-256.
    #[default]
    P256,
    /// RSA, 2048-bit modulus.
    Rsa2048,
}

impl From<KeyTypeArg> for dps_client::KeyType {
    fn from(arg: KeyTypeArg) -> Self {
        match arg {
            KeyTypeArg::P256 => dps_client::KeyType::EcdsaP256,
            KeyTypeArg::Rsa2048 => dps_client::KeyType::Rsa2048,
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
