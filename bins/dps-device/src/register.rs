//! `dps-device register`: one device.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use dps_client::{ClientError, Credential, ProvisioningClient, Tpm2Tools};
use serde_json::{json, Value};

/// Flags of `register`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("credential").required(true)
    .args(["key", "group_key", "cert", "tpm"])))]
pub(crate) struct RegisterArgs {
    /// Device endpoint, HOST[:PORT] (default port: 443, 8883 for --transport mqtt, 5671 for amqp).
    #[arg(long, env = "DPS_ENDPOINT")]
    endpoint: String,
    /// How the device talks to the service.
    #[arg(long, value_enum, default_value_t)]
    transport: crate::TransportArg,
    /// The tenant's ID scope.
    #[arg(long, env = "DPS_ID_SCOPE")]
    id_scope: String,
    /// Registration id (for --tpm, defaults to the one derived from the EK).
    #[arg(long)]
    registration_id: Option<String>,
    /// Individual enrollment symmetric key (base64).
    #[arg(long, env = "DPS_DEVICE_KEY")]
    key: Option<String>,
    /// Enrollment group key (base64): the device key is derived from it.
    #[arg(long, env = "DPS_GROUP_KEY")]
    group_key: Option<String>,
    /// Device certificate chain (PEM file, leaf first).
    #[arg(long, requires = "cert_key")]
    cert: Option<PathBuf>,
    /// Private key of --cert (PEM file).
    #[arg(long, requires = "cert")]
    cert_key: Option<PathBuf>,
    /// TPM through tpm2-tools, by TCTI (device:/dev/tpmrm0, swtpm:host=127.0.0.1,port=2321).
    #[arg(long)]
    tpm: Option<String>,
    /// Trust this CA (PEM file) in addition to the web PKI roots.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// JSON payload for a custom allocation webhook.
    #[arg(long)]
    payload: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Ask for an operational certificate: a new key pair and a certificate
    /// request (CN = the registration id) go with the registration; the
    /// enrollment's credential policy decides whether a CA issues it.
    #[arg(long, requires_all = ["cert_out", "key_out"])]
    issue_certificate: bool,
    /// The key type of the new key pair.
    #[arg(long, value_enum, default_value_t, requires = "issue_certificate")]
    key_type: crate::KeyTypeArg,
    /// Write the issued chain (PEM, leaf first) here.
    #[arg(long, value_name = "FILE", requires = "issue_certificate")]
    cert_out: Option<PathBuf>,
    /// Write the new private key (PEM, PKCS#8; created with mode 0600) here.
    #[arg(long, value_name = "FILE", requires = "issue_certificate")]
    key_out: Option<PathBuf>,
    /// api-version to send (default: 2021-06-01, or 2026-04-01 with --issue-certificate).
    #[arg(long)]
    api_version: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: RegisterArgs) -> Result<ExitCode> {
    let (credential, registration_id) = credential(&args)?;
    let mut builder = ProvisioningClient::builder(&args.endpoint, &args.id_scope, &registration_id)
        .credential(credential)
        .transport(args.transport.into())
        .timeout(Duration::from_secs(args.timeout));
    if let Some(path) = &args.ca {
        builder = builder.trust_ca_pem(read(path)?);
    }
    if args.issue_certificate {
        builder = builder.issue_certificate(args.key_type.into());
    }
    if let Some(version) = &args.api_version {
        builder = builder.api_version(version);
    }
    if let Some(payload) = &args.payload {
        builder = builder
            .payload(serde_json::from_str::<Value>(payload).context("--payload is not JSON")?);
    }
    match builder.build()?.register().await {
        Ok(registration) => {
            if args.issue_certificate {
                write_issued(&args, &registration)?;
            }
            if args.json {
                let mut out = serde_json::to_value(&registration)?;
                out["status"] = json!("assigned");
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("status         assigned");
                println!("assigned hub   {}", registration.assigned_hub);
                println!("device id      {}", registration.device_id);
                if let Some(substatus) = &registration.substatus {
                    println!(
                        "substatus      {}",
                        serde_json::to_value(substatus)?.as_str().unwrap_or("?")
                    );
                }
                if let Some(connection) = &registration.hub_connection_string {
                    println!("connection     {connection}");
                }
                if let Some(issued) = &registration.issued_certificate {
                    println!("certificate    {} ({})", issued.thumbprint, issued.key_type);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) if args.json => {
            println!("{}", serde_json::to_string_pretty(&error_json(&error))?);
            Ok(ExitCode::FAILURE)
        }
        Err(error) => Err(error).context(format!("registering {registration_id}")),
    }
}

/// Write the issued chain and its key where asked; a registration that
/// returned no certificate (a service that ignored the request) is an error:
/// the device asked for one and would otherwise be left without.
fn write_issued(args: &RegisterArgs, registration: &dps_client::Registration) -> Result<()> {
    let issued = registration.issued_certificate.as_ref().context(
        "the service assigned the device but returned no certificate \
         (issuedCertificateChain): it does not issue certificates at this api-version",
    )?;
    if let (Some(cert_out), Some(key_out)) = (&args.cert_out, &args.key_out) {
        write_private(key_out, &issued.private_key_pem)?;
        std::fs::write(cert_out, &issued.chain_pem)
            .with_context(|| format!("writing {}", cert_out.display()))?;
    }
    Ok(())
}

/// Write a private key readable by its owner only (created so, never
/// widened afterwards: no moment where another user could read it).
fn write_private(path: &PathBuf, contents: &str) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut file| {
            // An existing file keeps its mode on open: narrow it before
            // the key is written into it.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            file.write_all(contents.as_bytes())
        })
        .with_context(|| format!("writing {}", path.display()))
}

fn credential(args: &RegisterArgs) -> Result<(Credential, String)> {
    let need_id = || {
        args.registration_id
            .clone()
            .context("--registration-id is required for this credential")
    };
    if let Some(key) = &args.key {
        return Ok((Credential::symmetric_key(key)?, need_id()?));
    }
    if let Some(group_key) = &args.group_key {
        let id = need_id()?;
        return Ok((Credential::group_key(group_key, &id)?, id));
    }
    if let (Some(cert), Some(key)) = (&args.cert, &args.cert_key) {
        let credential = Credential::X509 {
            chain_pem: read(cert)?,
            key_pem: read(key)?,
        };
        return Ok((credential, need_id()?));
    }
    if let Some(tcti) = &args.tpm {
        let tpm = Tpm2Tools::new(tcti.clone())?;
        let id = match &args.registration_id {
            Some(id) => id.clone(),
            None => tpm.registration_id()?,
        };
        return Ok((Credential::Tpm(Arc::new(tpm)), id));
    }
    anyhow::bail!("give one of --key, --group-key, --cert/--cert-key, --tpm")
}

fn error_json(error: &ClientError) -> Value {
    json!({
        "status": "error",
        "class": error.class(),
        "errorCode": error.error_code(),
        "transient": error.is_transient(),
        "message": error.to_string(),
    })
}

fn read(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
