//! Bulk import and export of enrollments or groups as JSON lines: one record
//! per line, the service's own JSON shape, so an export imports unchanged.
//!
//! An import checks the whole file before writing anything (every line a
//! JSON object with an id, no id twice), then sends the records ten at a
//! time (the service's bulk limit) over a few connections at once. Each
//! record succeeds or fails on its own, as in the service's bulk API; the
//! report names the failed ones by line. A failure of a whole request
//! (credentials, network) stops the import.
//!
//! An export pages through the collection. The service leaves keys and
//! certificate bodies out of queries; with `include_secrets` each record's
//! attestation is read with `attestationmechanism` (one request per record),
//! so that an import elsewhere keeps the same keys.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::Value;

use super::credentials::config;
use super::records::MAX_PAGE_SIZE;
use super::{AdminClient, BulkMode, Collection};
use crate::ClientError;

/// Items per bulk request: the service's limit.
pub const MAX_BATCH: usize = 10;

/// How an import runs.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Which collection the lines belong to.
    pub collection: Collection,
    /// What to do with each record.
    pub mode: BulkMode,
    /// Bulk requests in flight at once.
    pub concurrency: usize,
    /// Records per bulk request (1 to [`MAX_BATCH`]).
    pub batch_size: usize,
}

impl ImportOptions {
    /// Defaults: create, 4 requests in flight, 10 records each.
    pub fn new(collection: Collection) -> Self {
        ImportOptions {
            collection,
            mode: BulkMode::Create,
            concurrency: 4,
            batch_size: MAX_BATCH,
        }
    }
}

/// A record the service refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemFailure {
    /// Its line in the file (from 1).
    pub line: usize,
    /// Its id.
    pub id: String,
    /// The service's 6-digit code.
    pub error_code: Option<i64>,
    /// The service's message.
    pub message: String,
}

/// What an import did.
#[derive(Clone, Debug, Default)]
pub struct ImportReport {
    /// Records in the file.
    pub total: usize,
    /// Records written (or deleted).
    pub succeeded: usize,
    /// Records refused, in line order.
    pub failures: Vec<ItemFailure>,
    /// Bulk requests made.
    pub requests: usize,
}

/// One checked line.
#[derive(Debug)]
struct Line {
    number: usize,
    id: String,
    record: Value,
}

/// Check a JSON-lines file for `collection`: every non-blank line a JSON
/// object with an id, no id twice (ids are case-insensitive). Answers the
/// number of records.
pub fn check_file(path: &Path, collection: Collection) -> Result<usize, ClientError> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for line in lines(path, collection)? {
        let line = line?;
        if let Some(first) = seen.insert(line.id.to_lowercase(), line.number) {
            return Err(input(
                path,
                line.number,
                &format!(
                    "{} {:?} is also on line {first}",
                    collection.id_field(),
                    line.id
                ),
            ));
        }
    }
    Ok(seen.len())
}

/// Import `path` (checked with [`check_file`] first); `progress` is called
/// with the number of records each finished request settled.
pub async fn import_file(
    client: &AdminClient,
    path: &Path,
    options: &ImportOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<ImportReport, ClientError> {
    if !(1..=MAX_BATCH).contains(&options.batch_size) {
        return Err(config(format!(
            "the batch size must be 1 to {MAX_BATCH} (the service's bulk limit)"
        )));
    }
    let total = check_file(path, options.collection)?;
    let mut lines = lines(path, options.collection)?;
    let batches = std::iter::from_fn(move || {
        let mut batch = Vec::with_capacity(options.batch_size);
        for line in lines.by_ref() {
            match line {
                Ok(line) => batch.push(line),
                Err(error) => return Some(Err(error)),
            }
            if batch.len() == options.batch_size {
                break;
            }
        }
        (!batch.is_empty()).then_some(Ok(batch))
    });
    let mut report = ImportReport {
        total,
        ..ImportReport::default()
    };
    let mut results = futures::stream::iter(batches)
        .map_ok(|batch| send_batch(client, options, batch))
        .try_buffer_unordered(options.concurrency.max(1));
    while let Some((settled, failures)) = results.try_next().await? {
        report.requests += 1;
        report.succeeded += settled - failures.len();
        report.failures.extend(failures);
        progress(settled);
    }
    report.failures.sort_by_key(|f| f.line);
    Ok(report)
}

/// Send one batch; answers how many records it settled and which failed.
async fn send_batch(
    client: &AdminClient,
    options: &ImportOptions,
    batch: Vec<Line>,
) -> Result<(usize, Vec<ItemFailure>), ClientError> {
    let records: Vec<Value> = batch.iter().map(|line| line.record.clone()).collect();
    let answer = client
        .bulk(options.collection, options.mode, &records)
        .await?;
    let by_id: HashMap<String, &Line> = batch.iter().map(|l| (l.id.to_lowercase(), l)).collect();
    let mut failures = Vec::new();
    for error in answer["errors"].as_array().into_iter().flatten() {
        let id = error[options.collection.id_field()]
            .as_str()
            .unwrap_or_default();
        let line = by_id.get(&id.to_lowercase()).map_or(0, |l| l.number);
        failures.push(ItemFailure {
            line,
            id: id.to_owned(),
            error_code: error["errorCode"].as_i64(),
            message: error["errorStatus"].as_str().unwrap_or_default().to_owned(),
        });
    }
    Ok((batch.len(), failures))
}

/// The records of `path`, one per non-blank line.
fn lines(
    path: &Path,
    collection: Collection,
) -> Result<impl Iterator<Item = Result<Line, ClientError>> + '_, ClientError> {
    let file = File::open(path).map_err(|e| config(format!("reading {}: {e}", path.display())))?;
    Ok(BufReader::new(file)
        .lines()
        .enumerate()
        .filter_map(move |(index, text)| {
            let number = index + 1;
            let text = match text {
                Ok(text) => text,
                Err(e) => return Some(Err(input(path, number, &e.to_string()))),
            };
            if text.trim().is_empty() {
                return None;
            }
            Some(parse_line(path, number, &text, collection))
        }))
}

fn parse_line(
    path: &Path,
    number: usize,
    text: &str,
    collection: Collection,
) -> Result<Line, ClientError> {
    // serde_json's message names the position, never the text, so no key
    // from the line reaches the terminal.
    let record: Value =
        serde_json::from_str(text).map_err(|e| input(path, number, &format!("not JSON: {e}")))?;
    if !record.is_object() {
        return Err(input(path, number, "not a JSON object"));
    }
    let id = collection
        .id_of(&record)
        .map_err(|_| input(path, number, &format!("no {}", collection.id_field())))?;
    Ok(Line { number, id, record })
}

fn input(path: &Path, line: usize, reason: &str) -> ClientError {
    config(format!("{} line {line}: {reason}", path.display()))
}

/// How an export runs.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Which collection.
    pub collection: Collection,
    /// Records per query page.
    pub page_size: u32,
    /// Read each record's keys and certificates too.
    pub include_secrets: bool,
    /// `attestationmechanism` requests in flight at once.
    pub concurrency: usize,
}

impl ExportOptions {
    /// Defaults: pages of 1,000, no secrets, 8 requests in flight.
    pub fn new(collection: Collection) -> Self {
        ExportOptions {
            collection,
            page_size: MAX_PAGE_SIZE,
            include_secrets: false,
            concurrency: 8,
        }
    }
}

/// Write every record of the collection to `out`, one JSON object per
/// line; `progress` is called with the records of each page. Answers how
/// many were written.
pub async fn export(
    client: &AdminClient,
    options: &ExportOptions,
    out: &mut dyn Write,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<usize, ClientError> {
    let collection = options.collection;
    let mut written = 0;
    let mut continuation: Option<String> = None;
    loop {
        let (mut items, next) = client
            .query_page(collection, Some(options.page_size), continuation.as_deref())
            .await?;
        if options.include_secrets {
            let attestations: Vec<Value> = futures::stream::iter(items.iter())
                .map(|item| async move {
                    let id = collection.id_of(item)?;
                    client.attestation_mechanism(collection, &id).await
                })
                .buffered(options.concurrency.max(1))
                .try_collect()
                .await?;
            for (item, attestation) in items.iter_mut().zip(attestations) {
                item["attestation"] = attestation;
            }
        }
        for item in &items {
            let line =
                serde_json::to_string(item).map_err(|e| ClientError::protocol(e.to_string()))?;
            writeln!(out, "{line}").map_err(|e| config(format!("writing the export: {e}")))?;
        }
        written += items.len();
        progress(items.len());
        match next {
            Some(token) => continuation = Some(token),
            None => break,
        }
    }
    out.flush()
        .map_err(|e| config(format!("writing the export: {e}")))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn a_file_is_checked_whole_before_anything_is_sent() {
        let good = file(
            "{\"registrationId\":\"a\",\"attestation\":{\"type\":\"symmetricKey\"}}\n\n\
             {\"registrationId\":\"b\"}\n",
        );
        assert_eq!(check_file(good.path(), Collection::Enrollments).unwrap(), 2);
        let error = |text: &str, collection| {
            check_file(file(text).path(), collection)
                .unwrap_err()
                .to_string()
        };
        let text = error(
            "{\"registrationId\":\"a\"}\n{\"registrationId\":\"A\"}\n",
            Collection::Enrollments,
        );
        assert!(
            text.contains("line 2") && text.contains("also on line 1"),
            "{text}"
        );
        let text = error("{\"registrationId\":\"a\"}\n", Collection::Groups);
        assert!(text.contains("line 1: no enrollmentGroupId"), "{text}");
        let text = error("{\"registrationId\":\"a\"}\n[1]\n", Collection::Enrollments);
        assert!(text.contains("line 2: not a JSON object"), "{text}");
        let secret = "c2VjcmV0LWtleS1tYXRlcmlhbA==";
        let text = error(
            &format!("{{\"primaryKey\": {secret}}}\n"),
            Collection::Enrollments,
        );
        assert!(
            text.contains("line 1: not JSON") && !text.contains(secret),
            "{text}"
        );
    }
}
