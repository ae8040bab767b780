//! Listing beyond one page: page size 10 over 25 enrollments, `--top` and
//! `--continuation`, and the billed query pages proving the pages were real.

use anyhow::{Context as _, Result};
use dps_model::IndividualEnrollment;
use serde_json::{json, Value};

use crate::support::System;

async fn seed(system: &System, count: usize) -> Result<Vec<String>> {
    let ids: Vec<String> = (0..count).map(|n| format!("page-dev-{n:02}")).collect();
    let enrollments = ids
        .iter()
        .map(|id| {
            let body = json!({"registrationId": id, "attestation": {"type": "symmetricKey",
                "symmetricKey": {"primaryKey": dps_attestation::keys::generate_key()}}});
            IndividualEnrollment::from_json(body.to_string().as_bytes())
        })
        .collect::<Result<Vec<_>, _>>()?;
    system
        .server
        .store()
        .import_enrollments(&system.tenant.id_scope, enrollments)
        .await?;
    Ok(ids)
}

fn ids(listing: &Value) -> Vec<String> {
    listing
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["registrationId"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Billed query pages so far.
async fn query_pages(system: &System) -> Result<u64> {
    let report = system
        .admin(&["--json", "operations", "report"])
        .await?
        .json()?;
    Ok(report["totals"]["enrollmentQuery"].as_u64().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_follows_continuation_tokens_beyond_the_first_page() -> Result<()> {
    let system = System::start().await?;
    let all = seed(&system, 25).await?;

    // Everything, ten at a time: three billed pages (10, 10, 5).
    let listing = system
        .admin(&["--json", "enrollment", "list", "--page-size", "10"])
        .await?
        .json()?;
    assert_eq!(ids(&listing), all);
    assert_eq!(query_pages(&system).await?, 3);

    // The table shows the same 25, one line each.
    let table = system
        .admin(&["enrollment", "list", "--page-size", "10"])
        .await?;
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 26, "{}", table.stdout);
    for (line, id) in lines[1..].iter().zip(&all) {
        assert!(line.starts_with(&format!("{id} ")), "{line}");
    }

    // --top stops in the middle of the second page and says how to go on…
    let first = system
        .admin(&[
            "--json",
            "enrollment",
            "list",
            "--page-size",
            "10",
            "--top",
            "15",
        ])
        .await?;
    assert_eq!(ids(&first.json()?), all[..15]);
    let token = first
        .stderr
        .trim()
        .strip_prefix("more records follow: add --continuation ")
        .context(first.stderr.clone())?
        .to_owned();
    // … and the token resumes exactly after the 15th.
    let rest = system
        .admin(&[
            "--json",
            "enrollment",
            "list",
            "--page-size",
            "10",
            "--continuation",
            &token,
        ])
        .await?;
    assert_eq!(ids(&rest.json()?), all[15..]);
    assert!(rest.stderr.is_empty(), "{}", rest.stderr);

    // A bad page size is refused by the client, a bad token by the service.
    let zero = system
        .admin(&["enrollment", "list", "--page-size", "0"])
        .await?;
    assert!(
        !zero.success && zero.stderr.contains("page size"),
        "{}",
        zero.stderr
    );
    let bad = system
        .admin(&["enrollment", "list", "--continuation", "not-a-token"])
        .await?;
    assert!(
        !bad.success && bad.stderr.contains("error 400004"),
        "{}",
        bad.stderr
    );
    Ok(())
}
