//! The start banner of a server: where it listens, its tenants, and the
//! command lines that reach it. Pure formatting of a [`RunningServer`];
//! the caller prints it (stdout, for `dps-server`).
//!
//! Secrets (the operator key, a tenant's connection string) appear only in
//! the banner of the start that created them: start-up output ends up in
//! logs, and later starts say where to fetch them instead.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use dps_model::Tenant;

use crate::operator_key::OperatorKeyOrigin;
use crate::server::RunningServer;

/// How the banner shows tenants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TenantStyle {
    /// The embedded mode's one tenant: its ID scope and, on the start that
    /// created it, its connection string.
    Embedded,
    /// One line per declared tenant (keys through the operator API).
    Declared,
}

/// The banner lines of `server`, started at `started` (what was created
/// since then is new), with `ca_file` the CA clients should trust, if known.
pub fn lines(
    server: &RunningServer,
    started: SystemTime,
    ca_file: Option<&Path>,
    style: TenantStyle,
) -> Vec<String> {
    let mut out = vec![operator_key_line(server)];
    let (device, service) = (server.device_addr(), server.service_addr());
    if let Some(addr) = device {
        out.push(format!("device endpoint:    https://{addr}"));
    }
    if let Some(addr) = server.mqtt_addr() {
        out.push(format!("mqtt endpoint:      mqtts://{addr}"));
    }
    if let Some(addr) = server.amqp_addr() {
        out.push(format!("amqp endpoint:      amqps://{addr}"));
    }
    if let Some(addr) = service {
        out.push(format!("service endpoint:   https://{addr}"));
    }
    if let Some(addr) = server.admin_addr() {
        out.push(format!(
            "admin:              http://{addr}/readyz  http://{addr}/metrics"
        ));
    }
    match (style, server.tenants().first()) {
        (TenantStyle::Embedded, Some(tenant)) => {
            out.push(format!("ID scope:           {}", tenant.id_scope));
            out.push(connection_line(tenant, service, started));
            if let Some(ca) = ca_file {
                out.push(format!("trust this CA:      {}", ca.display()));
            }
        }
        _ => out.extend(server.tenants().iter().map(|tenant| {
            format!(
                "tenant {name}: ID scope {scope}, service host {host} \
                 (keys: POST /tenants/{name}/listKeys with the operator key)",
                name = tenant.name,
                scope = tenant.id_scope,
                host = tenant.service_host_name
            )
        })),
    }
    if let (Some(device), Some(service)) = (device, service) {
        let scope = server.tenants().first().map(|t| t.id_scope.as_str());
        out.extend(client_hints(device, service, scope, ca_file));
    }
    out
}

/// The operator key is shown only by the start that generated it.
fn operator_key_line(server: &RunningServer) -> String {
    match server.operator_key_origin() {
        OperatorKeyOrigin::Generated { path } => format!(
            "operator key:       {} (generated; shown only now, kept in {})",
            server.operator_key(),
            path.display()
        ),
        OperatorKeyOrigin::Stored { path } => {
            format!("operator key:       in {}", path.display())
        }
        _ => "operator key:       as configured".to_owned(),
    }
}

fn connection_line(tenant: &Tenant, service: Option<SocketAddr>, started: SystemTime) -> String {
    let started_ms = started
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    if tenant.created.timestamp_millis() < started_ms {
        return format!(
            "service connection: POST /tenants/{}/listKeys with the operator key",
            tenant.name
        );
    }
    // The HostName carries no port: say where the service really is.
    let service = service.map_or_else(|| "<service listener off>".to_owned(), |a| a.to_string());
    format!(
        "service connection: {} (shown only now; with --endpoint {service} or --service-endpoint {service})",
        tenant
            .connection_string(dps_model::tenant::OWNER_POLICY)
            .unwrap_or_default(),
    )
}

/// The `dps-admin` and `dps-device` command lines for these endpoints and
/// the one line about the official SDKs' fixed ports. Secrets are not
/// repeated: the commands read the connection string from the environment.
pub fn client_hints(
    device: SocketAddr,
    service: SocketAddr,
    id_scope: Option<&str>,
    ca: Option<&Path>,
) -> Vec<String> {
    let ca = ca.map_or_else(
        || "<the server's CA>".to_owned(),
        |p| p.display().to_string(),
    );
    let scope = id_scope.unwrap_or("<ID scope>");
    let mut out = vec![
        "clients (with DPS_SERVICE_CONNECTION_STRING set to the service connection string):"
            .to_owned(),
        format!("  dps-admin --endpoint {service} --ca {ca} enrollment list"),
        format!(
            "  dps-device swarm --endpoint {device} --service-endpoint {service} --ca {ca} \
             --id-scope {scope} --create-enrollments --cleanup --count 100"
        ),
    ];
    if device.port() != 443 {
        out.push(format!(
            "official SDKs:      dial ports 443 and 8883 only (this server: {} and {}); to listen there \
             run as root, grant CAP_NET_BIND_SERVICE, or `sysctl net.ipv4.ip_unprivileged_port_start=443`",
            device.port(),
            service.port()
        ));
    }
    out
}
