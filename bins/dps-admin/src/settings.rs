//! `linked-hub`, `policy`, `certificate`, `settings` and `operations`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use dps_client::admin::table::{Kind, Table};
use dps_client::admin::{ConnectionString, KeyType};
use serde_json::{json, Value};

use crate::args::{AllocationArg, ConnectionArgs, EtagArg};
use crate::output::Output;

#[derive(Subcommand, Debug)]
pub(crate) enum LinkedHubCommand {
    /// Every linked hub.
    List,
    /// One hub (its connection string without the key).
    Show(HubName),
    /// Link a hub (the hub is not contacted).
    Create(HubCreateArgs),
    /// Change a linked hub's weight, policy flag, location or key.
    Update(HubUpdateArgs),
    /// Unlink a hub (its devices stay on it).
    Delete(HubName),
}

#[derive(Args, Debug)]
pub(crate) struct HubName {
    /// The hub's host name.
    #[arg(long)]
    linked_hub: String,
}

#[derive(Args, Debug)]
pub(crate) struct HubSettings {
    /// Weight in evenly weighted allocation (1 to 1000; default 1).
    #[arg(long)]
    allocation_weight: Option<u32>,
    /// Whether allocation policies may choose this hub (default true).
    #[arg(long)]
    apply_allocation_policy: Option<bool>,
    /// The hub's region, for geoLatency allocation.
    #[arg(long)]
    location: Option<String>,
}

#[derive(Args, Debug)]
pub(crate) struct HubCreateArgs {
    /// The hub's connection string (a policy with registry write and service connect).
    #[arg(long)]
    hub_connection_string: String,
    #[command(flatten)]
    settings: HubSettings,
}

#[derive(Args, Debug)]
pub(crate) struct HubUpdateArgs {
    #[command(flatten)]
    name: HubName,
    /// A new connection string (key rotation).
    #[arg(long)]
    hub_connection_string: Option<String>,
    #[command(flatten)]
    settings: HubSettings,
    #[command(flatten)]
    etag: EtagArg,
}

impl HubSettings {
    fn apply(&self, hub: &mut Value) {
        if let Some(weight) = self.allocation_weight {
            hub["allocationWeight"] = json!(weight);
        }
        if let Some(apply) = self.apply_allocation_policy {
            hub["applyAllocationPolicy"] = json!(apply);
        }
        if let Some(location) = &self.location {
            hub["location"] = json!(location);
        }
    }
}

pub(crate) async fn linked_hub(
    command: LinkedHubCommand,
    connection: &ConnectionArgs,
    out: Output,
) -> Result<ExitCode> {
    let client = connection.tenant_client()?;
    match command {
        LinkedHubCommand::List => out.array(Kind::LinkedHub, &client.list_linked_hubs().await?),
        LinkedHubCommand::Show(hub) => out.record(&client.get_linked_hub(&hub.linked_hub).await?),
        LinkedHubCommand::Create(args) => {
            let host = hub_host(&args.hub_connection_string)?;
            let mut hub = json!({"connectionString": args.hub_connection_string});
            args.settings.apply(&mut hub);
            out.record(&client.put_linked_hub(&host, &hub, None).await?)
        }
        LinkedHubCommand::Update(args) => {
            // A PUT replaces every field: start from the stored ones. The
            // shown connection string has no key, which keeps the stored key.
            let host = &args.name.linked_hub;
            let mut hub = client.get_linked_hub(host).await?;
            if let Some(connection_string) = &args.hub_connection_string {
                hub["connectionString"] = json!(connection_string);
            }
            args.settings.apply(&mut hub);
            let etag = args.etag.etag.as_deref();
            out.record(&client.put_linked_hub(host, &hub, etag).await?)
        }
        LinkedHubCommand::Delete(hub) => {
            client.delete_linked_hub(&hub.linked_hub, None).await?;
            out.deleted("linked hub", &hub.linked_hub)
        }
    }
}

/// The HostName of a hub connection string.
fn hub_host(connection_string: &str) -> Result<String> {
    match connection_string
        .split(';')
        .filter_map(|part| part.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("hostname"))
    {
        Some((_, host)) if !host.trim().is_empty() => Ok(host.trim().to_owned()),
        _ => bail!("the hub connection string has no HostName"),
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum PolicyCommand {
    /// Every shared access policy (without keys).
    List,
    /// One policy (without keys).
    Show(PolicyName),
    /// Create a policy; prints its keys and connection string.
    Create(PolicyArgs),
    /// Change a policy's rights or keys.
    Update(PolicyArgs),
    /// Delete a policy (the last one with ServiceConfig cannot go).
    Delete(PolicyName),
    /// Replace one key with a new random one; prints the keys.
    RegenerateKey(RegenerateArgs),
}

#[derive(Args, Debug)]
pub(crate) struct PolicyName {
    /// The policy's name.
    #[arg(long, visible_alias = "pn")]
    policy_name: String,
}

#[derive(Args, Debug)]
pub(crate) struct PolicyArgs {
    #[command(flatten)]
    name: PolicyName,
    /// Rights, comma-separated: EnrollmentRead, EnrollmentWrite,
    /// RegistrationStatusRead, RegistrationStatusWrite, ServiceConfig, DeviceConnect.
    #[arg(long, value_delimiter = ',')]
    rights: Option<Vec<String>>,
    /// Primary key, base64 (default: kept, or generated).
    #[arg(long)]
    primary_key: Option<String>,
    /// Secondary key, base64.
    #[arg(long)]
    secondary_key: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum KeyArg {
    Primary,
    Secondary,
}

#[derive(Args, Debug)]
pub(crate) struct RegenerateArgs {
    #[command(flatten)]
    name: PolicyName,
    /// Which key.
    #[arg(long, value_enum)]
    key_type: KeyArg,
}

pub(crate) async fn policy(
    command: PolicyCommand,
    connection: &ConnectionArgs,
    out: Output,
) -> Result<ExitCode> {
    let resolved = connection.resolve()?;
    let client = resolved.tenant_client()?;
    let host = resolved.connection_string.map(|c| c.host_name);
    let with_keys = |mut policy: Value| -> Result<ExitCode> {
        add_connection_string(&mut policy, host.as_deref());
        out.record(&policy)
    };
    match command {
        PolicyCommand::List => out.array(Kind::Policy, &client.list_policies().await?),
        PolicyCommand::Show(name) => out.record(&client.get_policy(&name.policy_name).await?),
        PolicyCommand::Create(args) | PolicyCommand::Update(args) => {
            let rights = match args.rights {
                Some(rights) => json!(rights),
                None => client.get_policy(&args.name.policy_name).await?["rights"].clone(),
            };
            if rights.is_null() {
                bail!("give --rights");
            }
            let mut body = json!({"rights": rights});
            if let Some(key) = args.primary_key {
                body["primaryKey"] = json!(key);
            }
            if let Some(key) = args.secondary_key {
                body["secondaryKey"] = json!(key);
            }
            with_keys(
                client
                    .put_policy(&args.name.policy_name, &body, None)
                    .await?,
            )
        }
        PolicyCommand::Delete(name) => {
            client.delete_policy(&name.policy_name, None).await?;
            out.deleted("policy", &name.policy_name)
        }
        PolicyCommand::RegenerateKey(args) => {
            let key = match args.key_type {
                KeyArg::Primary => KeyType::Primary,
                KeyArg::Secondary => KeyType::Secondary,
            };
            with_keys(client.regenerate_key(&args.name.policy_name, key).await?)
        }
    }
}

/// Add `primaryConnectionString` to a policy answered with its keys.
fn add_connection_string(policy: &mut Value, host: Option<&str>) {
    let (Some(host), Some(name), Some(key)) = (
        host,
        policy["keyName"].as_str(),
        policy["primaryKey"].as_str(),
    ) else {
        return;
    };
    let text = format!("HostName={host};SharedAccessKeyName={name};SharedAccessKey={key}");
    if let Ok(parsed) = ConnectionString::parse(&text) {
        policy["primaryConnectionString"] = json!(parsed.to_secret_string());
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum CertificateCommand {
    /// Every CA certificate.
    List,
    /// One CA certificate.
    Show(CertificateName),
    /// Upload a CA certificate (PEM or DER file).
    Create(CertificateUpload),
    /// Replace a CA certificate.
    Update(CertificateUpload),
    /// Delete a CA certificate.
    Delete(CertificateEtag),
    /// A code to prove possession of the CA's key with.
    GenerateVerificationCode(CertificateEtag),
    /// Verify with a certificate whose CN is the code, signed by the CA.
    Verify(CertificateVerify),
}

#[derive(Args, Debug)]
pub(crate) struct CertificateName {
    /// The certificate's name in the tenant.
    #[arg(long, visible_alias = "name")]
    certificate_name: String,
}

#[derive(Args, Debug)]
pub(crate) struct CertificateEtag {
    #[command(flatten)]
    name: CertificateName,
    #[command(flatten)]
    etag: EtagArg,
}

#[derive(Args, Debug)]
pub(crate) struct CertificateUpload {
    #[command(flatten)]
    name: CertificateName,
    /// The CA certificate file.
    #[arg(long)]
    path: PathBuf,
    /// Keep it verified (dps accepts this only where it restates an earlier
    /// proof for the same certificate; a new CA needs `verify`).
    #[arg(long)]
    verified: bool,
    #[command(flatten)]
    etag: EtagArg,
}

#[derive(Args, Debug)]
pub(crate) struct CertificateVerify {
    #[command(flatten)]
    name: CertificateName,
    /// The proof: a certificate with CN = the verification code, signed by the CA.
    #[arg(long)]
    path: PathBuf,
    #[command(flatten)]
    etag: EtagArg,
}

pub(crate) async fn certificate(
    command: CertificateCommand,
    connection: &ConnectionArgs,
    out: Output,
) -> Result<ExitCode> {
    let client = connection.tenant_client()?;
    match command {
        CertificateCommand::List => {
            out.array(Kind::Certificate, &client.list_certificates().await?)
        }
        CertificateCommand::Show(name) => {
            out.record(&client.get_certificate(&name.certificate_name).await?)
        }
        CertificateCommand::Create(args) | CertificateCommand::Update(args) => {
            let pem = certificate_text(&args.path)?;
            let etag = args.etag.etag.as_deref();
            let name = &args.name.certificate_name;
            out.record(
                &client
                    .put_certificate(name, &pem, args.verified, etag)
                    .await?,
            )
        }
        CertificateCommand::Delete(args) => {
            let name = &args.name.certificate_name;
            client
                .delete_certificate(name, args.etag.etag.as_deref())
                .await?;
            out.deleted("certificate", name)
        }
        CertificateCommand::GenerateVerificationCode(args) => {
            let name = &args.name.certificate_name;
            let answer = client
                .generate_verification_code(name, args.etag.etag.as_deref())
                .await?;
            out.record(&answer)
        }
        CertificateCommand::Verify(args) => {
            let proof = certificate_text(&args.path)?;
            let name = &args.name.certificate_name;
            let etag = args.etag.etag.as_deref();
            out.record(&client.verify_certificate(name, &proof, etag).await?)
        }
    }
}

/// PEM as is; anything else (DER) as base64, which the service also takes.
fn certificate_text(path: &PathBuf) -> Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(match String::from_utf8(bytes) {
        Ok(text) if text.contains("-----BEGIN") => text,
        Ok(text) => text.trim().to_owned(),
        Err(e) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(e.into_bytes())
        }
    })
}

#[derive(Subcommand, Debug)]
pub(crate) enum SettingsCommand {
    /// The tenant's settings.
    Show,
    /// Change the settings given.
    Update(SettingsArgs),
}

#[derive(Args, Debug)]
pub(crate) struct SettingsArgs {
    /// Allocation policy of enrollments that name none.
    #[arg(long, value_enum)]
    default_allocation_policy: Option<AllocationArg>,
    /// Answer a device's register with the final result instead of 202.
    #[arg(long)]
    synchronous_register: Option<bool>,
    #[command(flatten)]
    etag: EtagArg,
}

pub(crate) async fn settings(
    command: SettingsCommand,
    connection: &ConnectionArgs,
    out: Output,
) -> Result<ExitCode> {
    let client = connection.tenant_client()?;
    match command {
        SettingsCommand::Show => out.record(&client.get_settings().await?),
        SettingsCommand::Update(args) => {
            let mut body = json!({});
            if let Some(policy) = args.default_allocation_policy {
                body["defaultAllocationPolicy"] = json!(policy.wire());
            }
            if let Some(synchronous) = args.synchronous_register {
                body["synchronousRegister"] = json!(synchronous);
            }
            out.record(
                &client
                    .put_settings(&body, args.etag.etag.as_deref())
                    .await?,
            )
        }
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum OperationsCommand {
    /// Billed operations per kind over a time range (default: the last 24 hours).
    Report(ReportArgs),
}

#[derive(Args, Debug)]
pub(crate) struct ReportArgs {
    /// Start (RFC 3339, inclusive).
    #[arg(long)]
    pub(crate) from: Option<String>,
    /// End (RFC 3339, exclusive; default now).
    #[arg(long)]
    pub(crate) to: Option<String>,
    /// Another tenant's report (operator key).
    #[arg(long)]
    tenant: Option<String>,
}

pub(crate) async fn operations(
    command: OperationsCommand,
    connection: &ConnectionArgs,
    out: Output,
) -> Result<ExitCode> {
    let OperationsCommand::Report(args) = command;
    let (from, to) = (args.from.as_deref(), args.to.as_deref());
    let report = match &args.tenant {
        Some(tenant) => {
            connection
                .operator_client()?
                .tenant_report(tenant, from, to)
                .await?
        }
        None => {
            connection
                .tenant_client()?
                .operations_report(from, to)
                .await?
        }
    };
    report_out(out, &report)
}

/// A report: JSON as answered, or per-kind totals.
pub(crate) fn report_out(out: Output, report: &Value) -> Result<ExitCode> {
    if out.json {
        return out.record(report);
    }
    println!(
        "{} from {} to {}",
        report["idScope"].as_str().unwrap_or("-"),
        report["from"].as_str().unwrap_or("-"),
        report["to"].as_str().unwrap_or("-")
    );
    print!("{}", Table::report(report));
    Ok(ExitCode::SUCCESS)
}
