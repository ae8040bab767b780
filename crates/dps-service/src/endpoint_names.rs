//! The names the server answers to, taken from configuration and from the
//! server certificate — never from a request. They make the device
//! endpoint's `Location` headers and the audience of operator tokens.
//!
//! A client's `Host` header is chosen by the client: echoing it into
//! `Location` let anyone make the server point at another host
//! (`Host: evil.example` → `Location: https://evil.example/…`). The
//! certificate's names are the ones clients can verify, so they are the ones
//! the server speaks of.

use std::net::{IpAddr, SocketAddr};

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The DNS and IP subject-alternative names of a DER certificate, in the
/// certificate's order (IPs as text). Unparsable certificates have none.
pub(crate) fn certificate_names(der: &[u8]) -> Vec<String> {
    let Ok((_, certificate)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = certificate.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            GeneralName::IPAddress(bytes) => ip_from_bytes(bytes).map(|ip| ip.to_string()),
            _ => None,
        })
        .collect()
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// The authority (`host[:port]`) of the device endpoint's `Location`
/// headers: `public_host` when configured, else the first non-wildcard name
/// of the server certificate with the listener's port (left out when 443),
/// else the listen address itself.
pub(crate) fn location_authority(
    public_host: Option<&str>,
    chain: &[CertificateDer<'_>],
    listen: SocketAddr,
) -> String {
    if let Some(host) = public_host.map(str::trim).filter(|h| !h.is_empty()) {
        return host.to_owned();
    }
    let host = chain
        .first()
        .map(|leaf| certificate_names(leaf.as_ref()))
        .unwrap_or_default()
        .into_iter()
        .find(|name| !name.starts_with('*'))
        .unwrap_or_else(|| match listen.ip() {
            ip if ip.is_unspecified() => "localhost".to_owned(),
            ip => ip.to_string(),
        });
    let host = if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else {
        host
    };
    match listen.port() {
        443 => host,
        port => format!("{host}:{port}"),
    }
}

/// The host names an operator token's `sr` may name: the configured list,
/// or else the server certificate's names plus the service listen address
/// (unless it is the unspecified address).
pub(crate) fn operator_audience(
    configured: &[String],
    chain: &[CertificateDer<'_>],
    service_listen: SocketAddr,
) -> Vec<String> {
    if !configured.is_empty() {
        return configured.iter().map(|h| h.trim().to_owned()).collect();
    }
    let mut names = chain
        .first()
        .map(|leaf| certificate_names(leaf.as_ref()))
        .unwrap_or_default();
    if !service_listen.ip().is_unspecified() {
        names.push(service_listen.ip().to_string());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(names: &[&str]) -> CertificateDer<'static> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names).unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn names_come_in_certificate_order_with_ips_as_text() {
        let cert = leaf(&["dps.example", "127.0.0.7", "::1", "*.wild.example"]);
        assert_eq!(
            certificate_names(cert.as_ref()),
            ["dps.example", "127.0.0.7", "::1", "*.wild.example"]
        );
        assert!(certificate_names(b"not a certificate").is_empty());
    }

    #[test]
    fn location_uses_configuration_then_the_certificate_then_the_address() {
        let listen: SocketAddr = "127.0.0.5:8443".parse().unwrap();
        let chain = [leaf(&["*.wild.example", "dps.example", "127.0.0.5"])];
        assert_eq!(
            location_authority(Some("global.dps.example"), &chain, listen),
            "global.dps.example"
        );
        assert_eq!(location_authority(None, &chain, listen), "dps.example:8443");
        let on_443: SocketAddr = "0.0.0.0:443".parse().unwrap();
        assert_eq!(location_authority(None, &chain, on_443), "dps.example");
        assert_eq!(location_authority(None, &[leaf(&["::1"])], on_443), "[::1]");
        assert_eq!(location_authority(None, &[], listen), "127.0.0.5:8443");
        assert_eq!(location_authority(None, &[], on_443), "localhost");
    }

    #[test]
    fn operator_audience_defaults_to_certificate_names_and_the_listen_address() {
        let chain = [leaf(&["dps.example", "127.0.0.9"])];
        let listen: SocketAddr = "127.0.0.8:9443".parse().unwrap();
        assert_eq!(
            operator_audience(&[], &chain, listen),
            ["dps.example", "127.0.0.9", "127.0.0.8"]
        );
        let any: SocketAddr = "0.0.0.0:443".parse().unwrap();
        assert_eq!(
            operator_audience(&[], &chain, any),
            ["dps.example", "127.0.0.9"]
        );
        assert_eq!(
            operator_audience(&[" ops.example ".to_owned()], &chain, listen),
            ["ops.example"]
        );
    }
}
