//! `tenant …` with the operator key, profiles, and `token` for policies
//! and the operator, each used against the server.

use anyhow::Result;
use serde_json::json;

use crate::support::{assert_failed, System};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_manages_tenants_and_a_profile_reaches_the_new_one() -> Result<()> {
    let system = System::start().await?;
    let endpoint = system.endpoint();
    let ca = system.ca_file.display().to_string();
    let key = system.server.operator_key().to_owned();
    // Flags this time, no environment.
    let operator = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        all.extend([
            "--endpoint".into(),
            endpoint.clone(),
            "--ca".into(),
            ca.clone(),
        ]);
        all.extend(["--operator-key".into(), key.clone()]);
        all
    };
    let sys = &system;
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        sys.admin_with(&args, &[]).await
    };

    let created = run(operator(&[
        "--json",
        "tenant",
        "create",
        "--name",
        "second-tenant",
        "--service-host-name",
        "second.dps.invalid",
    ]))
    .await?
    .json()?;
    let owner = created["ownerConnectionString"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(owner
        .starts_with("HostName=second.dps.invalid;SharedAccessKeyName=provisioningserviceowner;"));
    let scope = created["idScope"].as_str().unwrap_or_default().to_owned();

    let table = run(operator(&["tenant", "list"])).await?;
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].starts_with("NAME           ID SCOPE"),
        "{}",
        table.stdout
    );
    assert!(lines.iter().any(|l| l.starts_with("admin-test ")));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("second-tenant  ") && l.contains(&scope)));

    // A profile for the new tenant; the environment holds nothing.
    let profiles = system.home().join(".config").join("dps");
    std::fs::create_dir_all(&profiles)?;
    std::fs::write(
        profiles.join("profiles.toml"),
        format!(
            "[profiles.second]\nconnection_string = \"{owner}\"\nendpoint = \"{endpoint}\"\nca = \"{ca}\"\n"
        ),
    )?;
    let created = system
        .admin_with(
            &[
                "--profile",
                "second",
                "enrollment",
                "create",
                "--enrollment-id",
                "p-1",
            ],
            &[],
        )
        .await?;
    assert!(created.success, "{}", created.stderr);
    let listed = system
        .admin_with(
            &["--json", "--profile", "second", "enrollment", "list"],
            &[],
        )
        .await?
        .json()?;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    // The first tenant does not see it.
    let first = system
        .admin(&["--json", "enrollment", "list"])
        .await?
        .json()?;
    assert_eq!(first, json!([]));
    // Naming a profile that does not exist says which exist.
    let unknown = system
        .admin_with(&["--profile", "third", "enrollment", "list"], &[])
        .await?;
    assert_failed(&unknown, &["no profile \"third\"", "second"]);

    let updated = run(operator(&[
        "--json",
        "tenant",
        "update",
        "--name",
        "second-tenant",
        "--synchronous-register",
        "true",
    ]))
    .await?
    .json()?;
    assert_eq!(updated["synchronousRegister"], true);
    assert_eq!(updated["ownerConnectionString"], serde_json::Value::Null);
    let shown = run(operator(&[
        "--json",
        "tenant",
        "show",
        "--name",
        "second-tenant",
    ]))
    .await?
    .json()?;
    assert_eq!(shown["serviceHostName"], "second.dps.invalid");
    let stale = run(operator(&[
        "tenant",
        "update",
        "--name",
        "second-tenant",
        "--synchronous-register",
        "false",
        "--etag",
        "stale",
    ]))
    .await?;
    assert_failed(&stale, &["error 412001"]);

    let keys = run(operator(&["tenant", "keys", "--name", "second-tenant"])).await?;
    assert!(keys.stdout.starts_with("NAME "), "{}", keys.stdout);
    assert!(
        keys.stdout.contains(&owner),
        "listKeys shows the owner connection string"
    );
    let report = run(operator(&[
        "--json",
        "tenant",
        "report",
        "--name",
        "second-tenant",
    ]))
    .await?
    .json()?;
    // One create and one page listed, through the profile.
    assert_eq!(
        report["totals"],
        json!({"enrollmentCreate": 1, "enrollmentQuery": 1}),
        "{report}"
    );
    let same = run(operator(&[
        "--json",
        "operations",
        "report",
        "--tenant",
        "second-tenant",
    ]))
    .await?
    .json()?;
    assert_eq!(same["totals"], report["totals"]);

    // A tenant token cannot manage tenants, nor the operator without its key.
    let refused = system
        .admin(&["tenant", "list", "--operator-key", "d3Jvbmc="])
        .await?;
    assert_failed(&refused, &["error 401002"]);
    let no_key = system.admin(&["tenant", "list"]).await?;
    assert_failed(&no_key, &["no operator key"]);

    let unconfirmed = run(operator(&["tenant", "delete", "--name", "second-tenant"])).await?;
    assert_failed(&unconfirmed, &["--yes"]);
    let deleted = run(operator(&[
        "tenant",
        "delete",
        "--name",
        "second-tenant",
        "--yes",
    ]))
    .await?;
    assert!(deleted.success, "{}", deleted.stderr);
    let orphan = system
        .admin_with(&["--profile", "second", "enrollment", "list"], &[])
        .await?;
    assert_failed(&orphan, &["error 401002"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_minted_for_a_policy_and_the_operator_are_accepted() -> Result<()> {
    let system = System::start().await?;
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(
            system.server.trust_pem().as_bytes(),
        )?)
        .build()?;
    let base = format!("https://{}", system.endpoint());

    // The connection string's policy, for ten minutes.
    let token = system
        .admin(&["--json", "token", "--duration", "600"])
        .await?
        .json()?;
    let expires = token["expiresOn"].as_u64().unwrap_or_default();
    let now = dps_attestation::sas::unix_now();
    assert!((now + 590..=now + 610).contains(&expires), "{token}");
    let answer = http
        .post(format!("{base}/enrollments/query"))
        .header("authorization", token["token"].as_str().unwrap_or_default())
        .send()
        .await?;
    assert_eq!(answer.status(), 200);

    // Any policy, given its name and key.
    let owner = &system.tenant.access_policies[0];
    let named = system
        .admin_with(
            &[
                "token",
                "--policy-name",
                &owner.key_name,
                "--key",
                &owner.primary_key,
                "--host-name",
                &system.tenant.service_host_name,
            ],
            &[],
        )
        .await?;
    assert!(
        named.stdout.contains("&skn=provisioningserviceowner"),
        "{}",
        named.stdout
    );
    let answer = http
        .get(format!("{base}/settings"))
        .header("authorization", named.stdout.trim())
        .send()
        .await?;
    assert_eq!(answer.status(), 200);

    // The operator's, for /tenants.
    let operator = system
        .admin_with(
            &[
                "token",
                "--operator",
                "--operator-key",
                system.server.operator_key(),
                "--endpoint",
                &system.endpoint(),
            ],
            &[],
        )
        .await?;
    let answer = http
        .get(format!("{base}/tenants"))
        .header("authorization", operator.stdout.trim())
        .send()
        .await?;
    assert_eq!(answer.status(), 200);
    // … which a tenant route refuses.
    let answer = http
        .get(format!("{base}/settings"))
        .header("authorization", operator.stdout.trim())
        .send()
        .await?;
    assert_eq!(answer.status(), 401);
    Ok(())
}
