//! `tenant` (operator key), `token` and `compute-device-key`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use dps_client::admin::table::Kind;
use dps_client::admin::{
    compute_device_key, device_token, parse_key, Collection, ConnectionString, Credentials,
};
use dps_client::ClientError;
use serde_json::{json, Value};

use crate::args::{AllocationArg, ConnectionArgs, EtagArg};
use crate::output::Output;
use crate::settings::{report_out, ReportArgs};

#[derive(Subcommand, Debug)]
pub(crate) enum TenantCommand {
    /// Every tenant.
    List,
    /// One tenant.
    Show(TenantName),
    /// Create a tenant; prints its owner connection string (shown only this once).
    Create(TenantArgs),
    /// Change a tenant's host name, allocation default or linked hubs.
    Update(TenantArgs),
    /// Delete a tenant and everything it owns.
    Delete(TenantDeleteArgs),
    /// Every policy of a tenant with its keys and connection string.
    Keys(TenantName),
    /// A tenant's billed operations.
    Report(TenantReportArgs),
}

#[derive(Args, Debug)]
pub(crate) struct TenantName {
    /// The tenant's name.
    #[arg(long)]
    name: String,
}

#[derive(Args, Debug)]
pub(crate) struct TenantArgs {
    #[command(flatten)]
    name: TenantName,
    /// The host name in its connection strings (default: NAME.<server's host suffix>).
    #[arg(long)]
    service_host_name: Option<String>,
    /// Allocation policy of enrollments that name none.
    #[arg(long, value_enum)]
    default_allocation_policy: Option<AllocationArg>,
    /// Answer registers with the final result instead of 202.
    #[arg(long)]
    synchronous_register: Option<bool>,
    /// A hub to link (repeatable; on update, the whole list).
    #[arg(long)]
    hub_connection_string: Vec<String>,
    #[command(flatten)]
    etag: EtagArg,
}

#[derive(Args, Debug)]
pub(crate) struct TenantDeleteArgs {
    #[command(flatten)]
    name: TenantName,
    #[command(flatten)]
    etag: EtagArg,
    /// Yes, delete its enrollments, records and billing rows too.
    #[arg(long)]
    yes: bool,
}

#[derive(Args, Debug)]
pub(crate) struct TenantReportArgs {
    #[command(flatten)]
    name: TenantName,
    #[command(flatten)]
    range: ReportArgs,
}

pub(crate) async fn tenant(
    command: TenantCommand,
    connection: &ConnectionArgs,
    out: Output,
) -> Result<ExitCode> {
    let client = connection.operator_client()?;
    match command {
        TenantCommand::List => out.array(Kind::Tenant, &client.list_tenants().await?),
        TenantCommand::Show(name) => out.record(&client.get_tenant(&name.name).await?),
        TenantCommand::Create(args) | TenantCommand::Update(args) => {
            let mut body = json!({});
            if let Some(host) = &args.service_host_name {
                body["serviceHostName"] = json!(host);
            }
            if let Some(policy) = args.default_allocation_policy {
                body["defaultAllocationPolicy"] = json!(policy.wire());
            }
            if let Some(synchronous) = args.synchronous_register {
                body["synchronousRegister"] = json!(synchronous);
            }
            if !args.hub_connection_string.is_empty() {
                let hubs: Vec<Value> = args
                    .hub_connection_string
                    .iter()
                    .map(|cs| json!({"connectionString": cs}))
                    .collect();
                body["linkedHubs"] = json!(hubs);
            }
            let answer = client
                .put_tenant(&args.name.name, &body, args.etag.etag.as_deref())
                .await?;
            out.record(&answer)
        }
        TenantCommand::Delete(args) => {
            if !args.yes {
                bail!(
                    "deleting tenant {} deletes its enrollments, registration records and \
                     billing rows: add --yes",
                    args.name.name
                );
            }
            client
                .delete_tenant(&args.name.name, args.etag.etag.as_deref())
                .await?;
            out.deleted("tenant", &args.name.name)
        }
        TenantCommand::Keys(name) => {
            let keys = client.list_tenant_keys(&name.name).await?;
            if out.json {
                out.record(&keys)
            } else {
                out.array(Kind::Keys, &keys["value"])
            }
        }
        TenantCommand::Report(args) => {
            let (from, to) = (args.range.from.as_deref(), args.range.to.as_deref());
            report_out(out, &client.tenant_report(&args.name.name, from, to).await?)
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct TokenArgs {
    /// Sign for this policy instead of the connection string's (needs --key).
    #[arg(long, visible_alias = "pn", requires = "key")]
    policy_name: Option<String>,
    /// The key to sign with, base64 (policy, device or group key).
    #[arg(long)]
    key: Option<String>,
    /// The token's audience: the service host name (default: the connection
    /// string's HostName); for --operator, a name of the server (default: --endpoint's host).
    #[arg(long)]
    host_name: Option<String>,
    /// A device token for this registration id (needs --id-scope and --key or --group-key).
    #[arg(long, visible_alias = "rid", requires = "id_scope")]
    registration_id: Option<String>,
    /// The tenant's ID scope, for a device token.
    #[arg(long)]
    id_scope: Option<String>,
    /// Derive the device key from this enrollment group key.
    #[arg(long, conflicts_with = "key")]
    group_key: Option<String>,
    /// An operator token (tenant management), signed with the operator key.
    #[arg(long, conflicts_with_all = ["policy_name", "registration_id"])]
    operator: bool,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    duration: u64,
}

pub(crate) async fn token(
    args: TokenArgs,
    connection: &ConnectionArgs,
    out: Output,
) -> Result<ExitCode> {
    let lifetime = Duration::from_secs(args.duration);
    let expiry = std::time::SystemTime::now() + lifetime;
    let expiry = expiry
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let token = if let Some(registration_id) = &args.registration_id {
        let scope = args.id_scope.as_deref().context("--id-scope is required")?;
        let key = match (&args.key, &args.group_key) {
            (Some(key), None) => key.clone(),
            (None, Some(group_key)) => compute_device_key(group_key, registration_id)?,
            _ => bail!("a device token needs --key (the device's) or --group-key"),
        };
        device_token(scope, registration_id, &parse_key("--key", &key)?, lifetime)
    } else if args.operator {
        let resolved = connection.resolve()?;
        let key = args
            .key
            .or(resolved.operator_key)
            .context("an operator token needs --operator-key (or --key)")?;
        // Its audience is a name of the server: the one requests go to.
        let audience = args
            .host_name
            .or(resolved.endpoint)
            .context("an operator token needs --host-name or --endpoint (a name of the server)")?;
        Credentials::operator(&key).token(&audience, lifetime)
    } else {
        let resolved = connection.resolve()?;
        let base = resolved.connection_string;
        let host_name = args
            .host_name
            .or_else(|| base.as_ref().map(|c| c.host_name.clone()))
            .context("give --host-name, or a connection string")?;
        let policy = match (args.policy_name, args.key, base) {
            (Some(key_name), Some(key), _) => ConnectionString {
                host_name,
                key_name,
                key: parse_key("--key", &key)?,
            },
            (None, None, Some(base)) => ConnectionString { host_name, ..base },
            (None, Some(_), _) => bail!("--key signs for --policy-name: give both"),
            _ => bail!("give a connection string, or --policy-name and --key"),
        };
        policy.token(lifetime)
    };
    out.value(json!({"token": token, "expiresOn": expiry}), "token")
}

#[derive(Args, Debug)]
pub(crate) struct ComputeKeyArgs {
    /// The device's registration id.
    #[arg(long, visible_alias = "rid")]
    registration_id: String,
    /// The enrollment group's key, base64.
    #[arg(long, required_unless_present = "enrollment_id")]
    key: Option<String>,
    /// Read the key of this symmetric-key enrollment group through the service API.
    #[arg(long, visible_aliases = ["eid", "group-id"], conflicts_with = "key")]
    enrollment_id: Option<String>,
    /// With --enrollment-id: derive from the group's secondary key.
    #[arg(long)]
    secondary: bool,
}

pub(crate) async fn compute_key(
    args: ComputeKeyArgs,
    connection: &ConnectionArgs,
    out: Output,
) -> Result<ExitCode> {
    let group_key = match (&args.key, &args.enrollment_id) {
        (Some(key), _) => key.clone(),
        (None, Some(group)) => {
            let client = connection.tenant_client()?;
            let attestation = client
                .attestation_mechanism(Collection::Groups, group)
                .await?;
            let slot = if args.secondary {
                "secondaryKey"
            } else {
                "primaryKey"
            };
            match attestation["symmetricKey"][slot].as_str() {
                Some(key) => key.to_owned(),
                None => {
                    return Err(ClientError::Config {
                        reason: format!("enrollment group {group} has no symmetric {slot}"),
                    }
                    .into())
                }
            }
        }
        (None, None) => bail!("give --key or --enrollment-id"),
    };
    let key = compute_device_key(&group_key, &args.registration_id)?;
    out.value(
        json!({"registrationId": args.registration_id, "key": key}),
        "key",
    )
}
