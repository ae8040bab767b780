//! `enrollment import|export`: 10,000 enrollments from a JSON-lines file
//! with a progress bar on a terminal, per-record failures, and an export
//! that imports unchanged.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Instant;

use anyhow::Result;
use serde_json::{json, Value};

use crate::pty::Pty;
use crate::support::{arg, assert_failed, System};

const COUNT: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_enrollments_import_from_a_file_with_progress_on_a_terminal() -> Result<()> {
    let system = System::start().await?;
    let mut lines = String::new();
    for n in 0..COUNT {
        let record = json!({"registrationId": format!("bulk-{n:05}"),
            "attestation": {"type": "symmetricKey"}, "initialTwin": {"tags": {"batch": n / 1000}}});
        lines.push_str(&format!("{record}\n"));
    }
    let file = system.write("enrollments.jsonl", &lines)?;

    // stderr on a terminal, stdout to a pipe (as `dps-admin … | tee log`).
    let pty = Pty::open()?;
    let env = [
        ("DPS_SERVICE_CONNECTION_STRING", system.connection_string()),
        ("DPS_SERVICE_ENDPOINT", system.endpoint()),
        ("DPS_CA", system.ca_file.display().to_string()),
        ("TERM", "xterm-256color".to_owned()),
    ];
    let started = Instant::now();
    let mut command = system.command(&["enrollment", "import", "--file", arg(&file)], &env);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(pty.terminal.try_clone()?));
    let child = command.spawn()?;
    drop(command);
    let terminal = pty.collect();
    let output = child.wait_with_output().await?;
    let seconds = started.elapsed().as_secs_f64();
    let screen = String::from_utf8_lossy(&terminal.join().expect("reader thread")).into_owned();
    let stdout = String::from_utf8(output.stdout)?;
    assert!(
        output.status.success(),
        "stdout {stdout}\nterminal {screen}"
    );
    eprintln!(
        "imported {COUNT} enrollments in {seconds:.1} s: {}",
        stdout.trim()
    );
    assert!(
        stdout.starts_with(&format!("imported {COUNT} of {COUNT} records in ")),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("; 0 failed"), "{stdout}");
    // The bar was drawn on the terminal: a counter out of 10000 and the bar.
    assert!(
        screen.contains(&format!("/{COUNT}")),
        "no progress on the terminal: {screen:?}"
    );
    assert!(screen.contains('['), "{screen:?}");
    assert!(
        !stdout.contains(&format!("/{COUNT}")),
        "no progress on the pipe"
    );

    // All 10,000 are there: listed page by page, and billed once each.
    let listed = system
        .admin(&["--json", "enrollment", "list", "--page-size", "1000"])
        .await?
        .json()?;
    let ids: BTreeSet<String> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["registrationId"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), COUNT);
    assert!(ids.contains("bulk-00000") && ids.contains("bulk-09999"));
    let report = system
        .admin(&["--json", "operations", "report"])
        .await?
        .json()?;
    assert_eq!(report["totals"]["enrollmentCreate"], COUNT);

    // The export writes them back as JSON lines.
    let export = system.dir.path().join("export.jsonl");
    let exported = system
        .admin(&["enrollment", "export", "--file", arg(&export)])
        .await?;
    assert!(exported.success, "{}", exported.stderr);
    assert_eq!(
        exported.stdout.trim(),
        format!("exported {COUNT} records to {}", export.display())
    );
    let text = std::fs::read_to_string(&export)?;
    let records: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(records.len(), COUNT);
    assert_eq!(records[1234]["initialTwin"]["tags"]["batch"], 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_reports_each_refused_record_and_is_quiet_on_a_pipe() -> Result<()> {
    let system = System::start().await?;
    assert!(
        system
            .admin(&["enrollment", "create", "--enrollment-id", "taken"])
            .await?
            .success
    );
    let file = system.write(
        "mixed.jsonl",
        "{\"registrationId\":\"fresh-1\",\"attestation\":{\"type\":\"symmetricKey\"}}\n\
         {\"registrationId\":\"taken\",\"attestation\":{\"type\":\"symmetricKey\"}}\n\
         \n\
         {\"registrationId\":\"fresh-2\",\"attestation\":{\"type\":\"none\"}}\n",
    )?;
    let run = system
        .admin(&[
            "enrollment",
            "import",
            "--file",
            arg(&file),
            "--batch-size",
            "2",
        ])
        .await?;
    assert!(!run.success, "a refused record fails the command");
    assert!(
        run.stderr.is_empty(),
        "no progress on a pipe: {:?}",
        run.stderr
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with("imported 1 of 3 records"),
        "{}",
        run.stdout
    );
    assert!(lines[0].ends_with("; 2 failed"), "{}", run.stdout);
    assert!(
        lines[1].starts_with("LINE  ID       CODE    MESSAGE"),
        "{}",
        run.stdout
    );
    assert!(
        lines[2].starts_with("2     taken    409201  "),
        "{}",
        run.stdout
    );
    assert!(lines[3].starts_with("4     fresh-2  400"), "{}", run.stdout);

    // JSON: the same report for machines.
    let delete = system.write(
        "delete.jsonl",
        "{\"registrationId\":\"fresh-1\"}\n{\"registrationId\":\"never-was\"}\n",
    )?;
    let run = system
        .admin(&[
            "--json",
            "enrollment",
            "import",
            "--file",
            arg(&delete),
            "--mode",
            "delete",
        ])
        .await?;
    assert!(!run.success);
    let report: Value = serde_json::from_str(&run.stdout)?;
    assert_eq!(report["succeeded"], 1);
    assert_eq!(
        report["failures"],
        json!([{"line": 2, "id": "never-was", "errorCode": 404201,
        "message": report["failures"][0]["message"]}])
    );

    // A file that is wrong is refused whole, before anything is written.
    let bad = system.write(
        "bad.jsonl",
        "{\"registrationId\":\"ok-1\"}\n{\"registrationId\":\"OK-1\"}\n",
    )?;
    let run = system
        .admin(&["enrollment", "import", "--file", arg(&bad)])
        .await?;
    assert_failed(&run, &["bad.jsonl line 2", "also on line 1"]);
    let shown = system
        .admin(&["enrollment", "show", "--enrollment-id", "ok-1"])
        .await?;
    assert_failed(&shown, &["404201"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_with_keys_restores_the_same_keys() -> Result<()> {
    let system = System::start().await?;
    for id in ["g-1", "g-2"] {
        assert!(
            system
                .admin(&["enrollment-group", "create", "--enrollment-id", id])
                .await?
                .success
        );
    }
    let keys = |id: &'static str| {
        let system = &system;
        async move {
            let shown = system
                .admin(&[
                    "--json",
                    "enrollment-group",
                    "show",
                    "--enrollment-id",
                    id,
                    "--show-keys",
                ])
                .await?
                .json()?;
            anyhow::Ok(shown["attestation"]["symmetricKey"].clone())
        }
    };
    let before = (keys("g-1").await?, keys("g-2").await?);
    let export = system.dir.path().join("groups.jsonl");
    let exported = system
        .admin(&[
            "enrollment-group",
            "export",
            "--include-keys",
            "--file",
            arg(&export),
        ])
        .await?;
    assert!(exported.success, "{}", exported.stderr);

    // Deleted and imported again from the export: the same keys.
    for id in ["g-1", "g-2"] {
        assert!(
            system
                .admin(&["enrollment-group", "delete", "--enrollment-id", id])
                .await?
                .success
        );
    }
    let run = system
        .admin(&["enrollment-group", "import", "--file", arg(&export)])
        .await?;
    assert!(run.success, "{} {}", run.stdout, run.stderr);
    assert_eq!((keys("g-1").await?, keys("g-2").await?), before);

    // Without a file the export goes to stdout, its count to stderr.
    let run = system.admin(&["enrollment-group", "export"]).await?;
    assert_eq!(run.stdout.lines().count(), 2);
    assert_eq!(run.stderr.trim(), "exported 2 records");
    assert!(!run.stdout.contains("primaryKey"), "no keys unless asked");
    Ok(())
}
