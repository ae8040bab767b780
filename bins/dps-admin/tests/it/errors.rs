//! Failures a person meets first: no connection, a host name that does not
//! lead to the server, a wrong key. Each names the cause and what to do,
//! exits non-zero, and never prints the key.

use anyhow::Result;

use crate::support::{assert_failed, System};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_problems_say_what_to_do() -> Result<()> {
    let system = System::start().await?;
    let key = system.tenant.access_policies[0].primary_key.clone();

    let nothing = system.admin_with(&["enrollment", "list"], &[]).await?;
    assert_failed(
        &nothing,
        &[
            "no service connection string",
            "DPS_SERVICE_CONNECTION_STRING",
        ],
    );

    // The connection string alone: its HostName names the tenant, not the server.
    let ca = system.ca_file.display().to_string();
    let no_endpoint = system
        .admin_with(
            &[
                "enrollment",
                "list",
                "--connection-string",
                &system.connection_string(),
                "--ca",
                &ca,
            ],
            &[],
        )
        .await?;
    assert_failed(
        &no_endpoint,
        &[
            "cannot reach the service at admin-test.dps.invalid",
            "--endpoint HOST:PORT",
        ],
    );

    // The server's certificate is not trusted without --ca.
    let no_ca = system
        .admin_with(
            &[
                "enrollment",
                "list",
                "--connection-string",
                &system.connection_string(),
                "--endpoint",
                &system.endpoint(),
            ],
            &[],
        )
        .await?;
    assert_failed(&no_ca, &["cannot reach the service", "certificate", "--ca"]);

    // A wrong key: the service's code and message, and a hint.
    let wrong = system
        .connection_string()
        .replace(&key, "d3Jvbmcta2V5LXdyb25nLWtleQ==");
    let env = [
        ("DPS_SERVICE_CONNECTION_STRING", wrong),
        ("DPS_SERVICE_ENDPOINT", system.endpoint()),
        ("DPS_CA", ca.clone()),
    ];
    let refused = system.admin_with(&["enrollment", "list"], &env).await?;
    assert_failed(
        &refused,
        &["error 401002 (HTTP 401)", "hint: the service refused"],
    );

    // A garbled connection string is named without being echoed.
    let bare_key = key.trim_end_matches('=');
    let garbled = system
        .admin_with(
            &["enrollment", "list", "--connection-string", bare_key],
            &[],
        )
        .await?;
    assert_failed(&garbled, &["connection string: part 1 is not NAME=VALUE"]);

    // The device endpoint is not the service endpoint.
    let device = [
        ("DPS_SERVICE_CONNECTION_STRING", system.connection_string()),
        (
            "DPS_SERVICE_ENDPOINT",
            system
                .server
                .device_addr()
                .expect("device HTTPS listener")
                .to_string(),
        ),
        ("DPS_CA", ca),
    ];
    let wrong_listener = system.admin_with(&["enrollment", "list"], &device).await?;
    assert!(!wrong_listener.success);

    for run in [
        &nothing,
        &no_endpoint,
        &no_ca,
        &refused,
        &garbled,
        &wrong_listener,
    ] {
        assert!(
            !run.stderr.contains(bare_key),
            "a key reached the terminal: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("Some("), "{}", run.stderr);
    }
    Ok(())
}
