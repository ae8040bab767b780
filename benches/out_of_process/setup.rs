//! The processes of the out-of-process bench: both hub emulators, the
//! store seeded before the server starts, the server's configuration.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use dps_benches::env_or;
use dps_benches::procs::{self, HubSimProc, Proc};
use dps_client::swarm::{Mix, PlanOptions, SwarmPlan};
use dps_model::{IdScope, IndividualEnrollment, LinkedHub, Tenant};
use dps_storage::{SqliteOptions, SqliteStore, Store};

pub(crate) const HUBS: [&str; 4] = [
    "hub-0.oop.test",
    "hub-1.oop.test",
    "hub-2.oop.test",
    "hub-3.oop.test",
];
pub(crate) const S1_HUBS: [&str; 4] = [
    "s1-0.oop.test",
    "s1-1.oop.test",
    "s1-2.oop.test",
    "s1-3.oop.test",
];
/// The main tenant's service host: the service listener's address.
pub(crate) const SERVICE_HOST: &str = "127.0.0.2";

/// A device transport the swarm speaks, and where the server serves it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) enum Transport {
    #[default]
    Https,
    Mqtt,
    MqttWs,
    /// AMQP 1.0 over TLS, on its own port.
    Amqp,
    /// AMQP over WebSocket, on the HTTPS port.
    AmqpWs,
}

impl Transport {
    pub(crate) fn parse(name: &str) -> Option<Transport> {
        match name.trim() {
            "https" => Some(Transport::Https),
            "mqtt" => Some(Transport::Mqtt),
            "mqtt-ws" => Some(Transport::MqttWs),
            "amqp" => Some(Transport::Amqp),
            "amqp-ws" => Some(Transport::AmqpWs),
            _ => None,
        }
    }

    /// The value of `dps-device swarm --transport`.
    pub(crate) fn arg(self) -> &'static str {
        match self {
            Transport::Https => "https",
            Transport::Mqtt => "mqtt",
            Transport::MqttWs => "mqtt-ws",
            Transport::Amqp => "amqp",
            Transport::AmqpWs => "amqp-ws",
        }
    }
}

/// Which tenant a phase's devices belong to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Tenancy {
    /// The main tenant: the unthrottled hubs, `202 assigning` + poll.
    #[default]
    Main,
    /// The same hubs, `synchronousRegister` on: the register answers the
    /// final state, no poll follows.
    Synchronous,
    /// The hubs throttled like S1 units.
    S1,
}

/// The processes and what the phases need to reach them.
pub(crate) struct Setup {
    pub(crate) dir: PathBuf,
    pub(crate) bin: PathBuf,
    pub(crate) server: Proc,
    pub(crate) hubs: HubSimProc,
    pub(crate) s1: HubSimProc,
    pub(crate) device: SocketAddr,
    pub(crate) mqtt: SocketAddr,
    pub(crate) amqp: SocketAddr,
    pub(crate) service: SocketAddr,
    pub(crate) admin: SocketAddr,
    /// The server's development CA (PEM file).
    pub(crate) server_ca: PathBuf,
    pub(crate) scope: String,
    pub(crate) s1_scope: String,
    pub(crate) sync_scope: String,
    pub(crate) owner_connection_string: String,
    pub(crate) seed_key: String,
}

/// Import the individual symmetric-key enrollments of a swarm of `count`
/// devices under `prefix`, keys derived from `seed_key` as `dps-device swarm
/// --seed-key` derives them, in batches of 10,000.
async fn seed_swarm(
    store: &SqliteStore,
    scope: &IdScope,
    prefix: &str,
    count: u64,
    seed_key: &str,
) -> Result<()> {
    let mut options = PlanOptions::new(
        prefix,
        count,
        Mix::only(dps_client::swarm::DeviceKind::Symmetric),
    );
    options.seed_key = Some(seed_key.to_owned());
    let plan = SwarmPlan::prepare(options)?;
    for devices in plan.devices.chunks(10_000) {
        let batch = devices
            .iter()
            .filter_map(|device| plan.individual_enrollment(device))
            .map(|e| Ok(IndividualEnrollment::from_json(e.to_string().as_bytes())?))
            .collect::<Result<Vec<_>>>()?;
        store.import_enrollments(scope, batch).await?;
    }
    Ok(())
}

fn tenant(name: &str, host: &str, hubs: &HubSimProc) -> Result<Tenant> {
    let mut tenant = Tenant::new(name, host)?;
    tenant.linked_hubs = hubs
        .hubs
        .iter()
        .map(|(host, cs)| LinkedHub::new(host.clone(), cs.clone()))
        .collect();
    Ok(tenant)
}

/// Start both emulators, seed the store, write the configuration, start
/// the server. `phases` are (enrollment prefix, device count, tenant).
pub(crate) async fn start(phases: &[(&str, u64, Tenancy)]) -> Result<Setup> {
    let dir = tempfile::tempdir()?.keep();
    let bin = procs::binaries_dir()?;
    let hubs = HubSimProc::start(&bin, &dir, "hub-sim", &HUBS, None).await?;
    let speedup: f64 = env_or("DPS_BENCH_THROTTLE_SPEEDUP", 30.0);
    let s1 =
        HubSimProc::start(&bin, &dir, "hub-sim-s1", &S1_HUBS, Some(("S1", 1, speedup))).await?;

    let db = dir.join("dps.db");
    let seed_key = dps_attestation::keys::generate_key();
    let (scope, s1_scope, sync_scope, owner_connection_string) = {
        let store = SqliteStore::open(&db, SqliteOptions::default()).await?;
        let main = store
            .create_tenant(tenant("oop-bench", SERVICE_HOST, &hubs)?)
            .await?;
        let throttled = store
            .create_tenant(tenant("oop-s1", "s1.localhost", &s1)?)
            .await?;
        let synchronous = store
            .create_tenant(Tenant {
                synchronous_register: true,
                ..tenant("oop-sync", "sync.localhost", &hubs)?
            })
            .await?;
        for (prefix, count, tenancy) in phases {
            let scope = match tenancy {
                Tenancy::Main => &main.id_scope,
                Tenancy::Synchronous => &synchronous.id_scope,
                Tenancy::S1 => &throttled.id_scope,
            };
            seed_swarm(&store, scope, prefix, *count, &seed_key).await?;
        }
        let owner = main
            .connection_string(dps_benches::system::OWNER_POLICY)
            .context("owner policy")?;
        (
            main.id_scope.to_string(),
            throttled.id_scope.to_string(),
            synchronous.id_scope.to_string(),
            owner,
        )
    };

    let lo = IpAddr::from([127, 0, 0, 1]);
    let (device, mqtt, amqp, admin) = (
        procs::free_port(lo)?,
        procs::free_port(lo)?,
        procs::free_port(lo)?,
        procs::free_port(lo)?,
    );
    let service = procs::free_port(IpAddr::from([127, 0, 0, 2]))?;
    // AMQP on a port of its own (its default, 5671, may be taken).
    let amqp_section = format!("[device.amqp]\nlisten = \"{amqp}\"\n");
    let resolve: String = [(&hubs, &HUBS), (&s1, &S1_HUBS)]
        .iter()
        .flat_map(|(sim, names)| {
            names
                .iter()
                .map(move |host| format!("\"{host}\" = \"{}\"\n", sim.addr))
        })
        .collect();
    let extra = format!(
        "[device.mqtt]\nenabled = true\nlisten = \"{mqtt}\"\nwebsocket = true\n\n{amqp_section}\n\
         [hubs]\ntrusted_ca_files = [\"{}\", \"{}\"]\n\n[hubs.resolve]\n{resolve}",
        hubs.ca_file.display(),
        s1.ca_file.display()
    );
    let data_dir = dir.join("data");
    let places = procs::ServerPlaces {
        data_dir: &data_dir,
        db: &db,
        device,
        service,
        admin,
    };
    let config = procs::server_toml(&places, &extra);
    let config_file = dir.join("dps.toml");
    std::fs::write(&config_file, config)?;
    let server = procs::start_server(&bin, &config_file, &dir.join("server.log"), admin).await?;
    Ok(Setup {
        server_ca: dir.join("data").join("tls").join("ca.pem"),
        dir,
        bin,
        server,
        hubs,
        s1,
        device,
        mqtt,
        amqp,
        service,
        admin,
        scope,
        s1_scope,
        sync_scope,
        owner_connection_string,
        seed_key,
    })
}
