//! The administrator's HTTPS API (the service operations endpoint) under
//! load: dps in-process (SQLite in a temporary directory), one tenant whose
//! service host is the endpoint's address, and clients authorised by a SAS
//! token of the tenant's owner policy — the token an SDK signs once and
//! reuses.
//!
//! Phases, in order:
//! 1. seed N enrollments straight into the store (`import_enrollments`, in
//!    batches; not over HTTP, not a measured API figure);
//! 2. page through all N with `POST /enrollments/query`, `x-ms-max-item-count`
//!    and `x-ms-continuation` — one client, page after page, as a tool
//!    listing a tenant does — and extrapolate to 1,000,000;
//! 3. `PUT /enrollments/{id}` creates and 4. `GET /enrollments/{id}` reads of
//!    random existing enrollments, each from a pool of keep-alive clients (one
//!    connection each, opened during a warm-up, so the figures are
//!    requests, not TLS handshakes).
//!
//! Every create and every read also stores its billing row (the meter), as
//! it does in production.
//!
//! Run: `cargo bench -p dps-benches --bench service_api`
//! * `DPS_BENCH_QUERY_ENROLLMENTS` enrollments seeded and paged (default
//!   1,000,000: seeding takes ~11 s and paging ~22 s on a 2-core machine;
//!   with another count the paging time is also extrapolated to 1,000,000)
//! * `DPS_BENCH_QUERY_PAGE` items per page (default 1000, the largest dps serves)
//! * `DPS_BENCH_CREATES` enrollments created over HTTP (default 20,000)
//! * `DPS_BENCH_GETS` enrollment reads over HTTP (default 60,000)
//! * `DPS_BENCH_CONCURRENCY` keep-alive clients (default 32)
//! * `DPS_BENCH_STORAGE` overrides the storage URL (e.g. `memory://`, to see
//!   what the store costs, or a `postgres://` URL)
//!
//! Targets (issue): ≥ 5,000 creates/s and ≥ 15,000 reads/s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context as _, Result};
use dps_benches::system::{self, IMPORT_CHUNK, OWNER_POLICY};
use dps_benches::table::{latency_histogram, print_header, record, Meter, Row};
use dps_benches::{env_or, verdict, xorshift};
use dps_client::service::SERVICE_API_VERSION;
use dps_client::TlsTrust;
use dps_service::server::RunningServer;

const CREATE_TARGET: f64 = 5_000.0;
const GET_TARGET: f64 = 15_000.0;
/// The tenant's service host: the address the service endpoint listens on.
const SERVICE_HOST: &str = "127.0.0.2";

/// Seeded enrollments are `seed-{i:08}`; created ones `{prefix}-{i:08}`.
fn seeded_id(index: u64) -> String {
    format!("seed-{index:08}")
}

fn created_id(prefix: &str, index: u64) -> String {
    format!("{prefix}-{index:08}")
}

/// The service API as the administrator reaches it.
#[derive(Clone)]
struct Api {
    /// `https://127.0.0.2:port`
    base: Arc<str>,
    /// `SharedAccessSignature sr=127.0.0.2&sig=…&se=…&skn=provisioningserviceowner`
    token: Arc<str>,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}/{path}?api-version={SERVICE_API_VERSION}", self.base)
    }

    fn put_enrollment(&self, client: &reqwest::Client, id: &str) -> reqwest::RequestBuilder {
        client
            .put(self.url(&format!("enrollments/{id}")))
            .header("authorization", &*self.token)
            .header("content-type", "application/json")
            .body(system::typical_enrollment_json(id))
    }

    fn get_enrollment(&self, client: &reqwest::Client, id: &str) -> reqwest::RequestBuilder {
        client
            .get(self.url(&format!("enrollments/{id}")))
            .header("authorization", &*self.token)
    }

    fn query_page(
        &self,
        client: &reqwest::Client,
        page_size: usize,
        continuation: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let request = client
            .post(self.url("enrollments/query"))
            .header("authorization", &*self.token)
            .header("content-type", "application/json")
            .header("x-ms-max-item-count", page_size.to_string())
            .body(r#"{"query":"*"}"#);
        match continuation {
            Some(token) => request.header("x-ms-continuation", token),
            None => request,
        }
    }
}

/// Send and read the whole answer (so the connection is reused); `Ok` only for 200.
async fn send(request: reqwest::RequestBuilder) -> Result<()> {
    let response = request.send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    ensure!(
        status == reqwest::StatusCode::OK,
        "{status}: {}",
        String::from_utf8_lossy(&body[..body.len().min(200)])
    );
    Ok(())
}

/// What the pool of clients does in a phase.
#[derive(Clone, Copy)]
enum Operation {
    /// Create `{prefix}-{i}` for i in 0..count.
    Create { prefix: &'static str },
    /// Read a random one of the first `seeded` seeded enrollments or the
    /// first `created` enrollments made by `Create { prefix }`.
    Get {
        seeded: u64,
        prefix: &'static str,
        created: u64,
    },
}

/// `count` operations spread over the clients, each client one request at a time.
async fn pool_phase(
    api: &Api,
    clients: &[reqwest::Client],
    name: &str,
    operation: Operation,
    count: u64,
) -> Result<Row> {
    let next = Arc::new(AtomicU64::new(0));
    let meter = Meter::start();
    let mut workers = tokio::task::JoinSet::new();
    for (worker, client) in clients.iter().enumerate() {
        let (api, client, next) = (api.clone(), client.clone(), next.clone());
        workers.spawn(async move {
            let mut latency = latency_histogram();
            let mut failures = 0u64;
            let mut first_error = None;
            let mut random = 0x9e37_79b9_7f4a_7c15_u64 ^ (worker as u64 + 1);
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    break;
                }
                let request = match operation {
                    Operation::Create { prefix } => {
                        api.put_enrollment(&client, &created_id(prefix, index))
                    }
                    Operation::Get {
                        seeded,
                        prefix,
                        created,
                    } => {
                        let pick = xorshift(&mut random) % (seeded + created).max(1);
                        let id = if pick < seeded {
                            seeded_id(pick)
                        } else {
                            created_id(prefix, pick - seeded)
                        };
                        api.get_enrollment(&client, &id)
                    }
                };
                let started = Instant::now();
                match send(request).await {
                    Ok(()) => record(&mut latency, started.elapsed()),
                    Err(error) => {
                        failures += 1;
                        first_error.get_or_insert_with(|| error.to_string());
                    }
                }
            }
            (latency, failures, first_error)
        });
    }
    let mut latency = latency_histogram();
    let mut failures = 0;
    while let Some(done) = workers.join_next().await {
        let (part, failed, error) = done?;
        latency.add(&part)?;
        failures += failed;
        if let Some(error) = error {
            eprintln!("{name}: e.g. {error}");
        }
    }
    let row = Row::new(name, clients.len(), latency, failures, &meter);
    row.print();
    Ok(row)
}

/// Page through every enrollment; returns the row (one per page) and how
/// many enrollments the pages held.
async fn query_phase(api: &Api, client: &reqwest::Client, page_size: usize) -> Result<(Row, u64)> {
    let mut latency = latency_histogram();
    let mut items = 0u64;
    let mut continuation: Option<String> = None;
    let meter = Meter::start();
    loop {
        let started = Instant::now();
        let response = api
            .query_page(client, page_size, continuation.as_deref())
            .send()
            .await?;
        let status = response.status();
        let next = response
            .headers()
            .get("x-ms-continuation")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await?;
        ensure!(
            status == reqwest::StatusCode::OK,
            "query page: {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
        // Parsed as a client would, inside the page's time.
        let page: Vec<serde_json::Value> = serde_json::from_slice(&body)?;
        record(&mut latency, started.elapsed());
        items += page.len() as u64;
        match next {
            Some(token) => continuation = Some(token),
            None => break,
        }
    }
    let name = format!("query page ({page_size} items), one client");
    let row = Row::new(name, 1, latency, 0, &meter);
    row.print();
    Ok((row, items))
}

async fn start() -> Result<(RunningServer, Api, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let mut config = system::server_config(&dir.path().join("data"), None);
    config.storage_url = std::env::var("DPS_BENCH_STORAGE").ok();
    let server = dps_service::server::start(config).await?;
    let tenant = system::tenant("admin-bench", SERVICE_HOST, None);
    let token = system::owner_token(&tenant, SERVICE_HOST)?;
    server.store().create_tenant(tenant).await?;
    let api = Api {
        base: format!(
            "https://{}",
            server.service_addr().expect("service listener")
        )
        .into(),
        token: token.into(),
    };
    Ok((server, api, dir))
}

fn main() -> Result<()> {
    let seeded: u64 = env_or("DPS_BENCH_QUERY_ENROLLMENTS", 1_000_000);
    let page_size: usize = env_or("DPS_BENCH_QUERY_PAGE", 1000);
    let creates: u64 = env_or("DPS_BENCH_CREATES", 20_000);
    let gets: u64 = env_or("DPS_BENCH_GETS", 60_000);
    let concurrency: usize = env_or("DPS_BENCH_CONCURRENCY", 32).max(1);
    dps_benches::runtime()?.block_on(async move {
        let (server, api, _dir) = start().await?;
        let scope = server
            .store()
            .tenant_by_name("admin-bench")
            .await?
            .context("tenant")?
            .id_scope;
        println!(
            "dps service API on {} ({}), {} cores; SAS token of policy {OWNER_POLICY}; api-version {SERVICE_API_VERSION}",
            server.service_addr().expect("service listener"),
            std::env::var("DPS_BENCH_STORAGE").unwrap_or_else(|_| "SQLite".to_owned()),
            dps_benches::cores()
        );
        let seconds = system::import_typical(server.store().as_ref(), &scope, seeded, seeded_id).await?;
        println!(
            "seeded {seeded} enrollments through the store in {seconds:.1} s ({:.0}/s, batches of {IMPORT_CHUNK}; not over HTTP)\n",
            seeded as f64 / seconds.max(1e-9)
        );

        let trust = TlsTrust::new(false, &[server.trust_pem()])?;
        let clients = (0..concurrency)
            .map(|_| system::keep_alive_client(&trust))
            .collect::<Result<Vec<_>>>()?;
        print_header("requests");
        // The enrollments paged are exactly the seeded ones: paged before
        // anything is created over HTTP. One small page first opens the
        // connection (not timed).
        let query = if seeded > 0 {
            send(api.query_page(&clients[0], 1, None)).await?;
            Some(query_phase(&api, &clients[0], page_size).await?)
        } else {
            None
        };
        // Opens every client's connection and warms the code paths.
        pool_phase(
            &api,
            &clients,
            "warm-up: creates (connections opened here)",
            Operation::Create { prefix: "warm" },
            (concurrency * 20) as u64,
        )
        .await?;

        let created = pool_phase(
            &api,
            &clients,
            "PUT /enrollments/{id} (create)",
            Operation::Create { prefix: "api" },
            creates,
        )
        .await?;
        let read = pool_phase(
            &api,
            &clients,
            "GET /enrollments/{id}",
            Operation::Get {
                seeded,
                prefix: "api",
                created: creates,
            },
            gets,
        )
        .await?;

        println!();
        println!(
            "creates {:>7.0}/s   target >= {CREATE_TARGET:.0}/s   {}",
            created.rate,
            verdict(created.rate >= CREATE_TARGET)
        );
        println!(
            "gets    {:>7.0}/s   target >= {GET_TARGET:.0}/s   {}",
            read.rate,
            verdict(read.rate >= GET_TARGET)
        );
        if let Some((row, items)) = &query {
            let seconds = row.count as f64 / row.rate.max(1e-9);
            let basis = if *items == 1_000_000 {
                "measured".to_owned()
            } else {
                format!("extrapolated from {items} stored")
            };
            println!(
                "query paging: {items} enrollments in {} pages of up to {page_size} in {seconds:.2} s = {:.0} enrollments/s \
                 -> {:.1} s per 1,000,000 ({basis})",
                row.count,
                *items as f64 / seconds.max(1e-9),
                seconds * 1_000_000.0 / (*items).max(1) as f64
            );
            ensure!(*items == seeded, "the query returned {items} of {seeded} enrollments");
        }
        let failures = created.failures + read.failures;
        ensure!(failures == 0, "{failures} requests failed");
        server.shutdown().await;
        anyhow::Ok(())
    })
}
