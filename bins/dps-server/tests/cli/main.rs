//! The `dps-server` command itself, run as a child process: what it prints at
//! start (the operator key only on the start that generated it, tenant and
//! device secrets only on the start that created them) and which operator
//! keys it refuses to start with (not base64, or fewer than 32 bytes),
//! naming the setting at fault and never echoing the key.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

/// How long one start may take to print its banner (it provisions a sample
/// device through the in-process hub emulator).
const BANNER_DEADLINE: Duration = Duration::from_secs(60);

fn server() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dps-server"));
    command
        .env("RUST_LOG", "info")
        .env_remove("DPS_CONFIG")
        .env_remove("DPS_OPERATOR_KEY")
        .env_remove("DPS_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Start the development setup (no configuration file) on `data_dir`, with
/// both endpoints on ephemeral loopback ports, and return everything it
/// printed (stdout and stderr) up to the end of its banner; then stop it.
async fn embedded_banner(data_dir: &Path, service_ip: &str) -> Result<String> {
    embedded_banner_on(data_dir, "127.0.0.1", service_ip).await
}

/// [`embedded_banner`] with the device endpoint on `device_ip`.
async fn embedded_banner_on(data_dir: &Path, device_ip: &str, service_ip: &str) -> Result<String> {
    let (stdout, stderr) = embedded_start(data_dir, device_ip, service_ip, &[]).await?;
    Ok(format!("{stdout}{stderr}"))
}

/// Start the development setup with `extra` flags; what it printed on stdout
/// and on stderr, each up to the end of its banner; then stop it.
async fn embedded_start(
    data_dir: &Path,
    device_ip: &str,
    service_ip: &str,
    extra: &[&str],
) -> Result<(String, String)> {
    let mut child = server()
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--device-listen", &format!("{device_ip}:0")])
        .args(["--service-listen", &format!("{service_ip}:0")])
        .args(extra)
        .spawn()
        .context("spawning dps-server")?;
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut stderr = BufReader::new(child.stderr.take().context("stderr")?).lines();
    let mut printed = String::new();
    let mut logged = String::new();
    let read = async {
        // The banner ends with the command line that provisions another device.
        let mut seen_last_heading = false;
        loop {
            tokio::select! {
                line = stdout.next_line() => {
                    let Some(line) = line? else { bail!("dps-server exited:\n{printed}{logged}") };
                    printed.push_str(&line);
                    printed.push('\n');
                    if seen_last_heading && line.contains("dps-device") {
                        return Ok(());
                    }
                    seen_last_heading |= line.starts_with("provision another device");
                }
                line = stderr.next_line() => {
                    if let Some(line) = line? {
                        logged.push_str(&line);
                        logged.push('\n');
                    }
                }
            }
        }
    };
    let outcome = tokio::time::timeout(BANNER_DEADLINE, read).await;
    child.start_kill()?;
    child.wait().await?;
    match outcome {
        Ok(Ok(())) => Ok((printed, logged)),
        Ok(Err(err)) => Err(err),
        Err(_) => bail!("no banner within {BANNER_DEADLINE:?}:\n{printed}{logged}"),
    }
}

/// With `--log-format json` and both streams redirected: every stderr line
/// is a JSON object, nothing carries colour codes, and the banner is on
/// stdout; and rustls' "Illegal SNI extension" warning stays filtered out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_go_to_stderr_without_colour() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let (stdout, stderr) = embedded_start(
        &data_dir,
        "127.0.0.1",
        "127.0.0.5",
        &["--log-format", "json"],
    )
    .await?;
    assert!(stdout.contains("service endpoint:"), "{stdout}");
    // The operator finds the metrics and the MQTT endpoint in the banner.
    assert!(stdout.contains("/metrics"), "{stdout}");
    assert!(stdout.contains("mqtt endpoint:"), "{stdout}");
    assert!(
        !stdout.contains('\x1b') && !stderr.contains('\x1b'),
        "{stdout}{stderr}"
    );
    assert!(stderr.lines().count() > 0, "no log line at all");
    for line in stderr.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("not a JSON log line: {line}"))?;
        assert!(value.get("level").is_some(), "{line}");
    }
    assert!(!stderr.contains("Illegal SNI"), "{stderr}");

    // Text logs, redirected, are not coloured either.
    let (_, text) = embedded_start(&data_dir, "127.0.0.1", "127.0.0.5", &[]).await?;
    assert!(!text.contains('\x1b'), "{text}");
    Ok(())
}

/// The value after `prefix` on the first line that has it, up to a space.
fn value_after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let rest = &line[line.find(prefix)? + prefix.len()..];
        rest.split_whitespace().next()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_key_is_printed_only_by_the_start_that_generated_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let key_file = data_dir.join("operator.key");

    let first = embedded_banner(&data_dir, "127.0.0.2").await?;
    let operator_key = std::fs::read_to_string(&key_file)?.trim().to_owned();
    assert!(
        first.contains(&format!("operator key:       {operator_key}")),
        "the first start shows the key it generated:\n{first}"
    );
    // The tenant and the sample device are created by this start: their
    // secrets are shown once.
    let owner_key =
        value_after(&first, "SharedAccessKey=").context("the first start's connection string")?;
    let device_key = value_after(&first, "--key ").context("the sample device's key")?;

    // The connection string's HostName has no port; the banner says where the
    // service really is, in the flags the tools take.
    let service =
        value_after(&first, "service endpoint:   https://").context("service endpoint")?;
    let device = value_after(&first, "device endpoint:    https://").context("device endpoint")?;
    assert!(
        service.starts_with("127.0.0.2:") && !service.ends_with(":0"),
        "{first}"
    );
    let line = |needle: &str| {
        first
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_default()
    };
    assert!(
        line("service connection:").contains(&format!("--endpoint {service}")),
        "{first}"
    );
    assert!(
        line("dps-admin ").contains(&format!("--endpoint {service}")),
        "{first}"
    );
    assert!(
        line("dps-device swarm")
            .contains(&format!("--endpoint {device} --service-endpoint {service}")),
        "{first}"
    );
    assert!(
        line("official SDKs:").contains("ip_unprivileged_port_start=443"),
        "{first}"
    );

    let second = embedded_banner(&data_dir, "127.0.0.2").await?;
    assert_eq!(
        std::fs::read_to_string(&key_file)?.trim(),
        operator_key,
        "the key file is kept"
    );
    assert!(
        second.contains(&format!("operator key:       in {}", key_file.display())),
        "a later start names the key file:\n{second}"
    );
    for (secret, what) in [
        (operator_key.as_str(), "operator key"),
        (owner_key, "tenant owner key"),
        (device_key, "sample device key"),
    ] {
        assert!(
            !second.contains(secret),
            "the second start printed the {what}:\n{second}"
        );
    }
    assert!(!second.contains("SharedAccessKey="), "{second}");
    assert!(
        second.contains("POST /tenants/default/listKeys"),
        "a later start says where the keys are:\n{second}"
    );
    Ok(())
}

/// The sample device is provisioned through `dps-client` dialling the device
/// endpoint by its IP address and verifying the certificate against the
/// development CA: it succeeds only when the certificate names that address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_development_certificate_covers_every_listen_address() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let first = embedded_banner(&data_dir, "127.0.0.4").await?;
    assert!(first.contains("provisioned sample-device-1"), "{first}");
    let ca = std::fs::read_to_string(data_dir.join("tls").join("ca.pem"))?;

    // A later start on other addresses reissues the server certificate from
    // the same CA, so what trusted it before still does.
    let second = embedded_banner_on(&data_dir, "127.0.0.43", "127.0.0.44").await?;
    assert!(second.contains("provisioned sample-device-1"), "{second}");
    assert_eq!(
        std::fs::read_to_string(data_dir.join("tls").join("ca.pem"))?,
        ca,
        "the development CA is kept"
    );
    let names = std::fs::read_to_string(data_dir.join("tls").join("names.txt"))?;
    for ip in ["127.0.0.43", "127.0.0.44"] {
        assert!(names.lines().any(|n| n == ip), "{ip} not in {names}");
    }
    Ok(())
}

/// Run `dps-server` expecting it to refuse to start; its stderr.
async fn refused_start(command: &mut Command) -> Result<String> {
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .context("dps-server did not exit")??;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "dps-server started although it should not have: {stderr}"
    );
    Ok(stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_directory_stops_at_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let mut first = server()
        .arg("--data-dir")
        .arg(&data_dir)
        .args([
            "--device-listen",
            "127.0.0.6:0",
            "--service-listen",
            "127.0.0.8:0",
        ])
        .spawn()?;
    let mut stdout = BufReader::new(first.stdout.take().context("stdout")?).lines();
    // Its first banner line comes once the store is open and it serves.
    if tokio::time::timeout(BANNER_DEADLINE, stdout.next_line())
        .await
        .context("the first server did not start")??
        .is_none()
    {
        let output = first.wait_with_output().await?;
        bail!(
            "the first server exited: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let started = std::time::Instant::now();
    let stderr = refused_start(server().arg("--data-dir").arg(&data_dir).args([
        "--device-listen",
        "127.0.0.7:0",
        "--service-listen",
        "127.0.0.9:0",
    ]))
    .await?;
    let elapsed = started.elapsed();
    assert!(
        stderr.contains(&format!("data directory {}", data_dir.display()))
            && stderr.contains(&data_dir.join("dps.lock").display().to_string()),
        "{stderr}"
    );
    // It stopped before opening anything: no hub emulator save was cancelled.
    assert!(!stderr.contains("WARN"), "{stderr}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert!(first.try_wait()?.is_none(), "the first server kept running");
    first.start_kill()?;
    first.wait().await?;
    Ok(())
}

fn config_file(dir: &Path, operator_key: Option<&str>) -> Result<std::path::PathBuf> {
    let path = dir.join("dps.toml");
    let mut text = format!("data_dir = {:?}\n", dir.join("data").display().to_string());
    if let Some(key) = operator_key {
        text.push_str(&format!("operator_key = {key:?}\n"));
    }
    text.push_str("[device]\nlisten = \"127.0.0.1:0\"\n[service]\nlisten = \"127.0.0.3:0\"\n");
    std::fs::write(&path, text)?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_and_non_base64_operator_keys_are_refused_at_start() -> Result<()> {
    let short = "YSBrZXkgb2YgMjAgYnl0ZXMhISE="; // 20 bytes once decoded
    let not_base64 = "an operator password, not a key";

    // In the configuration file.
    for (key, says) in [(short, "decodes to 20 bytes"), (not_base64, "not base64")] {
        let dir = tempfile::tempdir()?;
        let config = config_file(dir.path(), Some(key))?;
        let stderr = refused_start(server().arg("--config").arg(&config)).await?;
        assert!(
            stderr.contains("operator_key") && stderr.contains(says),
            "{stderr}"
        );
        assert!(!stderr.contains(key), "the key was echoed: {stderr}");
    }

    // As a flag (the same setting).
    let dir = tempfile::tempdir()?;
    let config = config_file(dir.path(), None)?;
    let stderr = refused_start(
        server()
            .arg("--config")
            .arg(&config)
            .args(["--operator-key", short]),
    )
    .await?;
    assert!(
        stderr.contains("operator_key") && stderr.contains("--operator-key"),
        "{stderr}"
    );
    assert!(!stderr.contains(short), "the key was echoed: {stderr}");

    // In the data directory's key file, written by hand.
    let dir = tempfile::tempdir()?;
    let config = config_file(dir.path(), None)?;
    let key_file = dir.path().join("data").join("operator.key");
    std::fs::create_dir_all(key_file.parent().context("data dir")?)?;
    std::fs::write(&key_file, format!("{short}\n"))?;
    let stderr = refused_start(server().arg("--config").arg(&config)).await?;
    assert!(
        stderr.contains(&key_file.display().to_string()) && stderr.contains("20 bytes"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&key_file)?,
        format!("{short}\n"),
        "a refused key file is left alone"
    );
    Ok(())
}

/// The first log line of a server started from a configuration file that
/// ends with `extra_toml`, with `flags` added; then the server is stopped.
async fn first_log_line(dir: &Path, extra_toml: &str, flags: &[&str]) -> Result<String> {
    let path = config_file(dir, None)?;
    let mut text = std::fs::read_to_string(&path)?;
    text.push_str(extra_toml);
    std::fs::write(&path, text)?;
    let mut child = server().arg("--config").arg(&path).args(flags).spawn()?;
    let mut stderr = BufReader::new(child.stderr.take().context("stderr")?).lines();
    let line = tokio::time::timeout(BANNER_DEADLINE, stderr.next_line())
        .await
        .context("no log line")??
        .context("dps-server exited without a log line")?;
    child.start_kill()?;
    child.wait().await?;
    Ok(line)
}

/// `[log] format` in the file chooses the log format; `--log-format` wins
/// over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_format_comes_from_the_file_unless_the_flag_says_otherwise() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let json_section = "[log]\nformat = \"json\"\n";
    let line = first_log_line(dir.path(), json_section, &[]).await?;
    let value: serde_json::Value =
        serde_json::from_str(&line).with_context(|| format!("not a JSON log line: {line}"))?;
    assert!(value.get("level").is_some(), "{line}");

    let line = first_log_line(dir.path(), json_section, &["--log-format", "text"]).await?;
    assert!(
        serde_json::from_str::<serde_json::Value>(&line).is_err(),
        "the flag asked for text: {line}"
    );
    assert!(line.contains("INFO"), "{line}");
    Ok(())
}

/// A server whose port is taken stops at once naming the port, before it
/// opens its database or starts the hub emulator (nothing of either is left
/// in its data directory, and no warning about an interrupted task).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_stops_the_server_before_it_opens_anything() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let taken = std::net::TcpListener::bind("127.0.0.10:0")?;
    let port = taken.local_addr()?.to_string();
    let stderr = refused_start(server().arg("--data-dir").arg(&data_dir).args([
        "--device-listen",
        "127.0.0.11:0",
        "--service-listen",
        &port,
    ]))
    .await?;
    assert!(
        stderr.contains(&format!("cannot listen on {port}")),
        "{stderr}"
    );
    for opened in ["dps.db", "hub-emulator.json", "hub-emulator-ca.pem", "tls"] {
        assert!(
            !data_dir.join(opened).exists(),
            "{opened} was created: {stderr}"
        );
    }
    assert!(!stderr.contains("WARN"), "{stderr}");
    drop(taken);
    Ok(())
}
