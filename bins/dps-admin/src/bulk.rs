//! `enrollment import|export` (and the same for groups): JSON lines, with a
//! progress bar when stderr is a terminal and silence otherwise.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use dps_client::admin::bulk::{self as admin_bulk, ExportOptions, ImportOptions, MAX_BATCH};
use dps_client::admin::table::Table;
use dps_client::admin::{AdminClient, BulkMode, Collection};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::output::Output;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum ModeArg {
    /// Create; an existing id fails that record.
    Create,
    /// Create or replace.
    Update,
    /// Replace when the record's etag matches.
    UpdateIfMatch,
    /// Delete.
    Delete,
}

#[derive(Args, Debug)]
pub(crate) struct ImportArgs {
    /// JSON-lines file: one enrollment (or group) object per line.
    #[arg(long)]
    file: PathBuf,
    /// What to do with each record.
    #[arg(long, value_enum, default_value = "create")]
    mode: ModeArg,
    /// Bulk requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Records per request (the service takes at most 10).
    #[arg(long, default_value_t = MAX_BATCH)]
    batch_size: usize,
}

#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    /// Write here (default: standard output).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Read each record's keys and certificates too (one more request per record).
    #[arg(long)]
    include_keys: bool,
    /// Records per query page (at most 1000).
    #[arg(long, default_value_t = dps_client::admin::MAX_PAGE_SIZE)]
    page_size: u32,
}

pub(crate) async fn import(
    client: &AdminClient,
    collection: Collection,
    args: ImportArgs,
    out: Output,
) -> Result<ExitCode> {
    let options = ImportOptions {
        collection,
        mode: match args.mode {
            ModeArg::Create => BulkMode::Create,
            ModeArg::Update => BulkMode::Update,
            ModeArg::UpdateIfMatch => BulkMode::UpdateIfMatchEtag,
            ModeArg::Delete => BulkMode::Delete,
        },
        concurrency: args.concurrency,
        batch_size: args.batch_size,
    };
    let total = admin_bulk::check_file(&args.file, collection)?;
    let bar = bar(Some(total as u64));
    let started = Instant::now();
    let report =
        admin_bulk::import_file(client, &args.file, &options, &|n| bar.inc(n as u64)).await;
    bar.finish_and_clear();
    let report = report?;
    let seconds = started.elapsed().as_secs_f64();
    if out.json {
        let failures: Vec<_> = report
            .failures
            .iter()
            .map(|f| json!({"line": f.line, "id": f.id, "errorCode": f.error_code, "message": f.message}))
            .collect();
        let summary = json!({"total": report.total, "succeeded": report.succeeded,
            "failed": report.failures.len(), "requests": report.requests,
            "seconds": seconds, "failures": failures});
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{} {} of {} records in {seconds:.1} s ({:.0}/s, {} requests); {} failed",
            match options.mode {
                BulkMode::Delete => "deleted",
                _ => "imported",
            },
            report.succeeded,
            report.total,
            report.total as f64 / seconds.max(0.001),
            report.requests,
            report.failures.len()
        );
        if !report.failures.is_empty() {
            let mut table = Table::new(["LINE", "ID", "CODE", "MESSAGE"]);
            for f in &report.failures {
                let code = f.error_code.map(|c| c.to_string()).unwrap_or_default();
                table.push(vec![
                    f.line.to_string(),
                    f.id.clone(),
                    code,
                    f.message.clone(),
                ]);
            }
            print!("{table}");
        }
    }
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) async fn export(
    client: &AdminClient,
    collection: Collection,
    args: ExportArgs,
    out: Output,
) -> Result<ExitCode> {
    let options = ExportOptions {
        page_size: args.page_size,
        include_secrets: args.include_keys,
        ..ExportOptions::new(collection)
    };
    let mut writer: Box<dyn Write> = match &args.file {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let bar = bar(None);
    let written = admin_bulk::export(client, &options, &mut writer, &|n| bar.inc(n as u64)).await;
    bar.finish_and_clear();
    let written = written?;
    drop(writer);
    // The records went to stdout when no file was named: the count goes to
    // stderr then, so the output stays pure JSON lines.
    if let Some(path) = &args.file {
        if out.json {
            println!("{}", json!({"exported": written, "file": path}));
        } else {
            println!("exported {written} records to {}", path.display());
        }
    } else {
        eprintln!("exported {written} records");
    }
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
fn bar(length: Option<u64>) -> ProgressBar {
    let bar = match length {
        Some(length) => ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let template = if length.is_some() {
        "{elapsed_precise} [{bar:40}] {pos}/{len} {per_sec} (eta {eta})"
    } else {
        "{elapsed_precise} {spinner} {pos} records {per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
