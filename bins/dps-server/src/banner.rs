//! The part of the start banner that tells a client how to connect: the
//! endpoints really in use (a connection string's `HostName` carries no port,
//! so tools need `--endpoint` unless the service is on 443), and what the
//! official SDKs, which always dial 443 and 8883, need.

use std::net::SocketAddr;
use std::path::Path;

/// Print the `dps-admin` and `dps-device` command lines for these endpoints
/// and the one line about the official SDKs' fixed ports. Secrets are not
/// repeated: the commands read the connection string from the environment.
pub(crate) fn print_client_hints(
    device: SocketAddr,
    service: SocketAddr,
    id_scope: Option<&str>,
    ca: Option<&Path>,
) {
    let ca = ca.map_or_else(
        || "<the server's CA>".to_owned(),
        |p| p.display().to_string(),
    );
    let scope = id_scope.unwrap_or("<ID scope>");
    println!("clients (with DPS_SERVICE_CONNECTION_STRING set to the service connection string):");
    println!("  dps-admin --endpoint {service} --ca {ca} enrollment list");
    println!(
        "  dps-device swarm --endpoint {device} --service-endpoint {service} --ca {ca} \
         --id-scope {scope} --create-enrollments --cleanup --count 100"
    );
    if device.port() != 443 {
        println!(
            "official SDKs:      dial ports 443 and 8883 only (this server: {} and {}); to listen there \
             run as root, grant CAP_NET_BIND_SERVICE, or `sysctl net.ipv4.ip_unprivileged_port_start=443`",
            device.port(),
            service.port()
        );
    }
}
