//! `dps-admin`: administer a provisioning service (dps, or Azure IoT Hub
//! DPS for the Azure routes) through its service API. Command names follow
//! `az iot dps …`. Flag parsing and printing only: the work is in
//! `dps_client::admin`.

mod args;
mod bulk;
mod issuance;
mod output;
mod records;
mod settings;
mod tenants;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dps_client::admin::describe;
use dps_client::ClientError;

use crate::args::ConnectionArgs;
use crate::output::Output;

/// Administer a dps instance (or Azure IoT Hub DPS) through its service API.
#[derive(Parser, Debug)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Individual enrollments (`az iot dps enrollment`).
    #[command(subcommand)]
    Enrollment(records::EnrollmentCommand),
    /// Enrollment groups (`az iot dps enrollment-group`).
    #[command(subcommand)]
    EnrollmentGroup(records::GroupCommand),
    /// Registration records (`az iot dps enrollment-group registration`).
    #[command(subcommand)]
    Registration(records::RegistrationCommand),
    /// Linked IoT hubs (`az iot dps linked-hub`).
    #[command(subcommand)]
    LinkedHub(settings::LinkedHubCommand),
    /// Shared access policies and their keys (`az iot dps policy`).
    #[command(subcommand)]
    Policy(settings::PolicyCommand),
    /// CA certificates and their proof of possession (`az iot dps certificate`).
    #[command(subcommand)]
    Certificate(settings::CertificateCommand),
    /// Certificate authorities that issue devices' operational certificates.
    #[command(subcommand, visible_alias = "ca")]
    CertificateAuthority(issuance::AuthorityCommand),
    /// Credential policies: which CA issues, validity, accepted key types.
    #[command(subcommand)]
    CredentialPolicy(issuance::CredentialPolicyCommand),
    /// Certificates issued to a registration: list and revoke.
    #[command(subcommand)]
    IssuedCertificate(issuance::IssuedCommand),
    /// The tenant's allocation default and synchronous register.
    #[command(subcommand)]
    Settings(settings::SettingsCommand),
    /// Billed operations.
    #[command(subcommand)]
    Operations(settings::OperationsCommand),
    /// Tenants (operator key).
    #[command(subcommand)]
    Tenant(tenants::TenantCommand),
    /// Mint a SAS token for a shared access policy, a device or the operator.
    Token(tenants::TokenArgs),
    /// The device key of a registration id in a symmetric-key enrollment group.
    ComputeDeviceKey(tenants::ComputeKeyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("dps-admin: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let out = Output { json: cli.json };
    let outcome = runtime.block_on(async {
        let connection = &cli.connection;
        match cli.command {
            Command::Enrollment(command) => records::enrollment(command, connection, out).await,
            Command::EnrollmentGroup(command) => records::group(command, connection, out).await,
            Command::Registration(command) => records::registration(command, connection, out).await,
            Command::LinkedHub(command) => settings::linked_hub(command, connection, out).await,
            Command::Policy(command) => settings::policy(command, connection, out).await,
            Command::Certificate(command) => settings::certificate(command, connection, out).await,
            Command::CertificateAuthority(command) => {
                issuance::authority(command, connection, out).await
            }
            Command::CredentialPolicy(command) => {
                issuance::credential_policy(command, connection, out).await
            }
            Command::IssuedCertificate(command) => issuance::issued(command, connection, out).await,
            Command::Settings(command) => settings::settings(command, connection, out).await,
            Command::Operations(command) => settings::operations(command, connection, out).await,
            Command::Tenant(command) => tenants::tenant(command, connection, out).await,
            Command::Token(args) => tenants::token(args, connection, out).await,
            Command::ComputeDeviceKey(args) => tenants::compute_key(args, connection, out).await,
        }
    });
    match outcome {
        Ok(code) => code,
        Err(err) => {
            match err.downcast_ref::<ClientError>() {
                Some(error) => eprintln!("dps-admin: {}", describe(error)),
                None => eprintln!("dps-admin: {err:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
