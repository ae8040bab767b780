//! `dps-device swarm`: many devices, a progress bar, a summary.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use dps_client::service::ServiceClient;
use dps_client::swarm::{self, Mix, PlanOptions, SwarmConfig, SwarmPlan, SwarmProgress};
use dps_client::{ClientError, TlsTrust};
use indicatif::{ProgressBar, ProgressStyle};

/// Flags of `swarm`.
#[derive(Args, Debug)]
pub(crate) struct SwarmArgs {
    /// Device endpoint, HOST[:PORT] (default port: 443, 8883 for --transport mqtt, 5671 for amqp).
    #[arg(long, env = "DPS_ENDPOINT")]
    endpoint: String,
    /// How the devices talk to the service.
    #[arg(long, value_enum, default_value_t)]
    transport: crate::TransportArg,
    /// The tenant's ID scope.
    #[arg(long, env = "DPS_ID_SCOPE")]
    id_scope: String,
    /// How many devices.
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// Devices provisioning at the same time.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Kinds of devices by weight: symmetric (individual), group (symmetric-key group), x509 (X.509 group).
    #[arg(long, default_value = "symmetric=100")]
    mix: Mix,
    /// Registration ids are PREFIX-KIND-NNNNNNN (default: swarm-<random>).
    #[arg(long)]
    prefix: Option<String>,
    /// Base64 key the individual devices' keys are derived from (reuse it to re-run against the same enrollments).
    #[arg(long, env = "DPS_SWARM_SEED_KEY")]
    seed_key: Option<String>,
    /// Base64 key of the symmetric-key group (default: random).
    #[arg(long, env = "DPS_SWARM_GROUP_KEY")]
    group_key: Option<String>,
    /// Create the enrollments (and groups) through the service API first.
    #[arg(long, requires = "service_connection_string")]
    create_enrollments: bool,
    /// After the run, delete what --create-enrollments created: the
    /// enrollments and groups, and the registration records of the group
    /// members (device identities on the hubs stay).
    #[arg(long, requires = "create_enrollments")]
    cleanup: bool,
    /// Service API endpoint, HOST[:PORT] (default: the connection string's
    /// HostName on port 443; dps-server's own default is 127.0.0.1:9443).
    #[arg(long)]
    service_endpoint: Option<String>,
    /// Service connection string (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…).
    #[arg(long, env = "DPS_SERVICE_CONNECTION_STRING")]
    service_connection_string: Option<String>,
    /// Trust this CA (PEM file) in addition to the web PKI roots.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Write the generated X.509 CA chain and device certificates here.
    #[arg(long)]
    write_certs: Option<PathBuf>,
    /// Poll every N ms instead of honouring Retry-After (0: poll at once).
    /// dps finishes a registration before it answers 202, so with its
    /// default Retry-After of 1 s every device waits a second it need not:
    /// use 0 to measure the server, leave it out to measure what devices see.
    #[arg(long)]
    poll_interval_ms: Option<u64>,
    /// Start at most this many devices per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Give up on a device after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Write one CSV row per device (registration id, kind, outcome, hub,
    /// error, start and latency in ms) to FILE.
    #[arg(long, value_name = "FILE")]
    latency_csv: Option<PathBuf>,
    /// Write an HdrHistogram interval log of the latencies (µs, one
    /// histogram per second) to FILE.
    #[arg(long, value_name = "FILE")]
    histogram_log: Option<PathBuf>,
    /// Every device asks for an operational certificate (its key pair and
    /// request are made before the clock starts). With --create-enrollments,
    /// a CA and a credential policy (PREFIX-ca, PREFIX-policy) are created
    /// on dps for the run unless --credential-policy names one.
    #[arg(long)]
    issue_certificate: bool,
    /// The devices' key type with --issue-certificate.
    #[arg(long, value_enum, default_value_t, requires = "issue_certificate")]
    key_type: crate::KeyTypeArg,
    /// An existing credential policy the created enrollments name.
    #[arg(long, requires = "issue_certificate")]
    credential_policy: Option<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

pub(crate) async fn run(args: SwarmArgs) -> Result<ExitCode> {
    let prefix = args
        .prefix
        .clone()
        .unwrap_or_else(|| format!("swarm-{:06x}", rand_suffix()));
    let mut options = PlanOptions::new(prefix, args.count, args.mix);
    options.seed_key = args.seed_key.clone();
    options.group_key = args.group_key.clone();
    let created_policy =
        args.issue_certificate && args.create_enrollments && args.credential_policy.is_none();
    if args.issue_certificate {
        options.issue_certificates = Some(args.key_type.into());
        options.credential_policy = args
            .credential_policy
            .clone()
            .or_else(|| created_policy.then(|| format!("{}-policy", options.prefix)));
    }
    let plan = SwarmPlan::prepare(options)?;
    let extra_ca =
        match &args.ca {
            Some(path) => vec![std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?],
            None => Vec::new(),
        };
    let trust = TlsTrust::new(true, &extra_ca)?;
    if let Some(dir) = &args.write_certs {
        let written = plan.write_certificates(dir)?;
        eprintln!(
            "wrote the CA chain and {written} device certificates to {}",
            dir.display()
        );
    }
    let service = if args.create_enrollments {
        let connection = args
            .service_connection_string
            .as_deref()
            .context("--create-enrollments needs --service-connection-string")?;
        Some(Arc::new(ServiceClient::from_connection_string(
            connection,
            args.service_endpoint.as_deref(),
            &trust,
        )?))
    } else {
        None
    };
    if let (Some(service), true) = (&service, created_policy) {
        create_policy(service, &plan.options.prefix)
            .await
            .context("creating the swarm's CA and credential policy")?;
    }
    if let Some(service) = &service {
        match swarm::create_enrollments(service.clone(), &plan, SERVICE_CONCURRENCY).await {
            Ok(written) => eprintln!("created {written} enrollments and groups"),
            Err(error) => {
                let hint = service_hint(&error, args.service_endpoint.is_some());
                // Undo what was created before the refusal; a failure here
                // must not hide the refusal itself.
                if args.cleanup {
                    if let Err(cleanup_error) = cleanup(service, &plan, created_policy).await {
                        eprintln!("dps-device: {cleanup_error:#}");
                    }
                }
                return Err(anyhow::Error::new(error).context(format!(
                    "creating the enrollments{}",
                    hint.unwrap_or_default()
                )));
            }
        }
    } else if plan.ca().is_some() {
        eprintln!(
            "note: X.509 devices use a CA generated for this run; without --create-enrollments \
             no enrollment group trusts it"
        );
    }

    let mut config = SwarmConfig::new(args.endpoint.clone(), args.id_scope.clone(), trust);
    config.concurrency = args.concurrency;
    config.timeout = Duration::from_secs(args.timeout);
    config.poll_interval = args.poll_interval_ms.map(Duration::from_millis);
    config.rate = args.rate;
    config.transport = args.transport.into();
    config.keep_samples = args.latency_csv.is_some() || args.histogram_log.is_some();
    let progress = Arc::new(SwarmProgress::default());
    let bar = progress_bar(args.count, args.quiet);
    let ticker = {
        let (progress, bar) = (progress.clone(), bar.clone());
        tokio::spawn(async move {
            loop {
                bar.set_position(progress.done.load(Ordering::Relaxed));
                bar.set_message(format!(
                    "{} failed",
                    progress.failed.load(Ordering::Relaxed)
                ));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let plan = Arc::new(plan);
    let report = swarm::run(&config, plan.clone(), progress).await;
    ticker.abort();
    bar.finish_and_clear();
    if let Some(path) = &args.latency_csv {
        write_file(path, |out| report.write_latency_csv(out))?;
    }
    if let Some(path) = &args.histogram_log {
        write_file(path, |out| report.write_histogram_log(out))?;
    }
    if let (Some(service), true) = (&service, args.cleanup) {
        cleanup(service, &plan, created_policy).await?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{report}");
    }
    Ok(if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Service API requests in flight while creating or deleting enrollments.
const SERVICE_CONCURRENCY: usize = 16;

async fn cleanup(
    service: &Arc<ServiceClient>,
    plan: &SwarmPlan,
    created_policy: bool,
) -> Result<()> {
    let removed = swarm::delete_enrollments(service.clone(), plan, SERVICE_CONCURRENCY)
        .await
        .context("deleting the swarm's enrollments (--cleanup)")?;
    eprintln!(
        "deleted {} enrollments, {} groups and {} group members' registration records",
        removed.enrollments, removed.groups, removed.registrations
    );
    if created_policy {
        // The policy first: a CA named by a policy cannot be deleted.
        let prefix = &plan.options.prefix;
        service
            .delete_credential_policy(&format!("{prefix}-policy"))
            .await
            .context("deleting the swarm's credential policy (--cleanup)")?;
        service
            .delete_certificate_authority(&format!("{prefix}-ca"))
            .await
            .context("deleting the swarm's CA (--cleanup)")?;
        eprintln!("deleted the swarm's credential policy and CA");
    }
    Ok(())
}

/// A CA dps generates and a policy over it accepting both key types the
/// swarm can use, named after the run (`PREFIX-ca`, `PREFIX-policy`).
async fn create_policy(service: &ServiceClient, prefix: &str) -> Result<(), ClientError> {
    let ca = format!("{prefix}-ca");
    service
        .create_certificate_authority(&ca, &format!("{prefix} swarm issuing CA"))
        .await?;
    let policy = serde_json::json!({
        "certificateAuthorityName": ca,
        "validityPeriodInDays": 30,
        "acceptedKeyTypes": ["ecdsaP256", "rsa2048"],
    });
    service
        .put_credential_policy(&format!("{prefix}-policy"), &policy)
        .await?;
    eprintln!("created CA {ca} and credential policy {prefix}-policy");
    Ok(())
}

/// Why the service API could not be reached, when the likely cause is the
/// connection string's host name without a port.
fn service_hint(error: &ClientError, endpoint_given: bool) -> Option<&'static str> {
    (matches!(error, ClientError::Network { .. }) && !endpoint_given).then_some(
        " (without --service-endpoint the connection string's HostName is dialled on \
         port 443; give --service-endpoint HOST:PORT, e.g. 127.0.0.1:9443 for \
         dps-server's default)",
    )
}

fn write_file(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    write(&mut out)
        .and_then(|()| out.flush())
        .with_context(|| format!("writing {}", path.display()))
}

fn progress_bar(count: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(count);
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} {per_sec} (eta {eta}) {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0)
        & 0xFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_service_api_without_endpoint_names_the_flag() {
        let network = ClientError::Network {
            endpoint: "127.0.0.1".to_owned(),
            reason: "connection refused".to_owned(),
        };
        let hint = service_hint(&network, false).expect("a hint");
        assert!(
            hint.contains("--service-endpoint") && hint.contains("9443"),
            "{hint}"
        );
        assert_eq!(service_hint(&network, true), None);
        let refused = ClientError::Authentication {
            status: 401,
            error_code: Some(401002),
            message: String::new(),
        };
        assert_eq!(service_hint(&refused, false), None);
    }
}
