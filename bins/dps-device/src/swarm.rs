//! `dps-device swarm`: many devices, a progress bar, a summary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use dps_client::service::ServiceClient;
use dps_client::swarm::{self, Mix, PlanOptions, SwarmConfig, SwarmPlan, SwarmProgress};
use dps_client::TlsTrust;
use indicatif::{ProgressBar, ProgressStyle};

/// Flags of `swarm`.
#[derive(Args, Debug)]
pub(crate) struct SwarmArgs {
    /// Device endpoint, HOST[:PORT] (port 443 by default).
    #[arg(long, env = "DPS_ENDPOINT")]
    endpoint: String,
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
    /// Service API endpoint, HOST[:PORT] (default: the connection string's HostName).
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
    #[arg(long)]
    poll_interval_ms: Option<u64>,
    /// Start at most this many devices per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Give up on a device after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
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
    if args.create_enrollments {
        let connection = args
            .service_connection_string
            .as_deref()
            .context("--create-enrollments needs --service-connection-string")?;
        let service = ServiceClient::from_connection_string(
            connection,
            args.service_endpoint.as_deref(),
            &trust,
        )?;
        let written = swarm::create_enrollments(Arc::new(service), &plan, 16)
            .await
            .context("creating the enrollments")?;
        eprintln!("created {written} enrollments and groups");
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
    let report = swarm::run(&config, Arc::new(plan), progress).await;
    ticker.abort();
    bar.finish_and_clear();
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
