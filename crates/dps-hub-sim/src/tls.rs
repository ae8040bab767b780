//! The server certificate: generated (CA + server cert) or loaded from files.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsSource;
use crate::HubSimError;

pub(crate) struct TlsMaterial {
    pub(crate) config: Arc<ServerConfig>,
    /// PEM of the generated CA; `None` with certificates from files.
    pub(crate) ca_pem: Option<String>,
}

fn tls_error(reason: impl std::fmt::Display) -> HubSimError {
    HubSimError::Tls {
        reason: reason.to_string(),
    }
}

/// Names the generated certificate covers, ports stripped, duplicates removed.
pub(crate) fn certificate_names(
    hosts: &[String],
    listen_ip: IpAddr,
    extra: &[String],
) -> Vec<String> {
    let mut names = BTreeSet::new();
    names.insert("localhost".to_owned());
    names.insert(Ipv4Addr::LOCALHOST.to_string());
    if !listen_ip.is_unspecified() {
        names.insert(listen_ip.to_string());
    }
    for host in hosts.iter().chain(extra) {
        names.insert(strip_port(host).to_ascii_lowercase());
    }
    names.into_iter().collect()
}

pub(crate) fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

pub(crate) fn load(
    source: &TlsSource,
    hosts: &[String],
    listen_ip: IpAddr,
) -> Result<TlsMaterial, HubSimError> {
    let (chain, key, ca_pem) = match source {
        TlsSource::Generate { extra_names } => {
            let names = certificate_names(hosts, listen_ip, extra_names);
            let (chain, key, ca_pem) = generate(&names)?;
            (chain, key, Some(ca_pem))
        }
        TlsSource::Files { cert, key } => {
            let cert_pem = std::fs::read(cert)
                .map_err(|e| tls_error(format!("reading {}: {e}", cert.display())))?;
            let key_pem = std::fs::read(key)
                .map_err(|e| tls_error(format!("reading {}: {e}", key.display())))?;
            let chain = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_error(format!("{}: {e}", cert.display())))?;
            if chain.is_empty() {
                return Err(tls_error(format!(
                    "{} holds no certificate",
                    cert.display()
                )));
            }
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| tls_error(format!("{}: {e}", key.display())))?;
            (chain, key, None)
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_error)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        config: Arc::new(config),
        ca_pem,
    })
}

type Generated = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, String);

fn generate(names: &[String]) -> Result<Generated, HubSimError> {
    let ca_key = KeyPair::generate().map_err(tls_error)?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("dps-hub-sim test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut ca_params);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(tls_error)?;

    let server_key = KeyPair::generate().map_err(tls_error)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(names.first().map_or("dps-hub-sim", String::as_str));
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e| tls_error(format!("{n:?} cannot be a certificate name: {e}"))),
        })
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut params);
    let server_cert = params
        .signed_by(&server_key, &ca_cert, &ca_key)
        .map_err(tls_error)?;
    let key = PrivateKeyDer::try_from(server_key.serialize_der()).map_err(tls_error)?;
    Ok((
        vec![server_cert.der().clone(), ca_cert.der().clone()],
        key,
        ca_cert.pem(),
    ))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "dps-hub-sim");
    dn
}

fn set_validity(params: &mut CertificateParams) {
    // UTCTime-representable dates: some TLS stacks dislike rcgen's year-4096 default.
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_hosts_loopback_and_listen_ip() {
        let names = certificate_names(
            &["Hub-A.example".into(), "hub-b.example:8443".into()],
            "127.0.0.20".parse().unwrap(),
            &["extra.example".into()],
        );
        assert_eq!(
            names,
            [
                "127.0.0.1",
                "127.0.0.20",
                "extra.example",
                "hub-a.example",
                "hub-b.example",
                "localhost"
            ]
        );
    }

    #[test]
    fn generated_material_builds_a_server_config() {
        let material = load(
            &TlsSource::default(),
            &["hub-a.example".into()],
            "127.0.0.1".parse().unwrap(),
        )
        .unwrap();
        assert!(material
            .ca_pem
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
