//! TLS for both endpoints: the server certificate (from files, or a
//! development CA and server certificate generated at first start and kept in
//! the data directory), and a client-certificate policy that *requests* a
//! certificate without requiring one and accepts any chain at the TLS layer —
//! X.509 attestation judges the chain afterwards, against enrollments.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

use crate::ServiceError;

/// Where the server certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain (leaf first). With `key_file`; else a development
    /// certificate is generated.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Names and IP addresses the generated development certificate covers.
    #[serde(default = "default_names")]
    pub dev_names: Vec<String>,
}

fn default_names() -> Vec<String> {
    vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            cert_file: None,
            key_file: None,
            dev_names: default_names(),
        }
    }
}

/// The certificate material a server presents.
#[derive(Clone, Debug)]
pub struct ServerIdentity {
    /// Chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// PEM of the certificate clients should trust (the development CA, or
    /// the configured chain's last certificate).
    pub trust_pem: String,
    /// Private key (PKCS#8 DER).
    key_der: Vec<u8>,
}

impl ServerIdentity {
    /// Load from files or generate a development identity under `data_dir/tls`.
    pub fn load_or_generate(settings: &TlsSettings, data_dir: &Path) -> Result<Self, ServiceError> {
        match (&settings.cert_file, &settings.key_file) {
            (Some(cert), Some(key)) => Self::from_files(cert, key),
            (None, None) => Self::development(&data_dir.join("tls"), &settings.dev_names),
            _ => Err(ServiceError::Config {
                reason: "tls.cert_file and tls.key_file must be given together".to_owned(),
            }),
        }
    }

    fn from_files(cert: &Path, key: &Path) -> Result<Self, ServiceError> {
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let chain = pem_certificates(&cert_pem)?;
        let key = pem_private_key(&key_pem)?;
        let trust_pem = split_pem(&cert_pem).last().cloned().unwrap_or_default();
        Ok(ServerIdentity {
            chain,
            trust_pem,
            key_der: key.secret_der().to_vec(),
        })
    }

    /// A development CA and a server certificate for `names`, generated once
    /// and kept in `dir`. When the names change only the server certificate
    /// is reissued, by the same CA (its key is kept as `ca.key`), so clients
    /// that already trust `ca.pem` keep working.
    pub fn development(dir: &Path, names: &[String]) -> Result<Self, ServiceError> {
        let names_file = dir.join("names.txt");
        let wanted = names.join("\n");
        let [ca, server, key, ca_key] = [
            dir.join("ca.pem"),
            dir.join("server.pem"),
            dir.join("server.key"),
            dir.join("ca.key"),
        ];
        let current = std::fs::read_to_string(&names_file).ok();
        let complete = [&ca, &server, &key].iter().all(|p| p.exists());
        if current.as_deref() != Some(wanted.as_str()) || !complete {
            std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
            // Data directories from before `ca.key` was kept get a new CA.
            let kept_ca = match (read(&ca), read(&ca_key)) {
                (Ok(ca_pem), Ok(ca_key_pem)) => Some((ca_pem, ca_key_pem)),
                _ => None,
            };
            let generated = generate_development(names, kept_ca)?;
            write_private(&ca_key, &generated.ca_key_pem)?;
            write_private(&key, &generated.key_pem)?;
            std::fs::write(&ca, &generated.ca_pem).map_err(|e| io_error(&ca, e))?;
            std::fs::write(&server, &generated.server_pem).map_err(|e| io_error(&server, e))?;
            std::fs::write(&names_file, &wanted).map_err(|e| io_error(&names_file, e))?;
        }
        let mut identity = Self::from_files(&server, &key)?;
        identity.trust_pem = read(&ca)?;
        Ok(identity)
    }

    /// An identity generated in memory (tests).
    pub fn generate_in_memory(names: &[String]) -> Result<Self, ServiceError> {
        let generated = generate_development(names, None)?;
        let key = pem_private_key(&generated.key_pem)?;
        Ok(ServerIdentity {
            chain: pem_certificates(&generated.server_pem)?,
            trust_pem: generated.ca_pem,
            key_der: key.secret_der().to_vec(),
        })
    }

    /// A rustls server configuration: TLS 1.2 and 1.3, client certificate
    /// requested but optional, ALPN h2 and http/1.1.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, ServiceError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(AnyClientCertificate {
            algorithms: provider.signature_verification_algorithms,
        });
        let key = PrivateKeyDer::try_from(self.key_der.clone()).map_err(|e| ServiceError::Tls {
            reason: format!("private key: {e}"),
        })?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(tls_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), key)
            .map_err(tls_error)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

struct GeneratedIdentity {
    ca_pem: String,
    ca_key_pem: String,
    server_pem: String,
    key_pem: String,
}

/// A server certificate for `names`, issued by `kept_ca` (its PEM and key)
/// or by a new CA.
fn generate_development(
    names: &[String],
    kept_ca: Option<(String, String)>,
) -> Result<GeneratedIdentity, ServiceError> {
    let rcgen_error = |e: rcgen::Error| ServiceError::Tls {
        reason: format!("generating the development certificate: {e}"),
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "dps development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // A kept CA is re-signed in memory from the same key and name only to
    // issue with: the leaf names the same subject and key identifier, so it
    // chains to the `ca.pem` clients already trust.
    let (ca_key, kept_ca_pem) = match kept_ca {
        Some((pem, key_pem)) => (KeyPair::from_pem(&key_pem).map_err(rcgen_error)?, Some(pem)),
        None => (KeyPair::generate().map_err(rcgen_error)?, None),
    };
    let ca_cert = ca_params.self_signed(&ca_key).map_err(rcgen_error)?;
    let ca_pem = kept_ca_pem.unwrap_or_else(|| ca_cert.pem());

    let mut params = CertificateParams::new(names.to_vec()).map_err(rcgen_error)?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("dps"),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let cert = params
        .signed_by(&key, &ca_cert, &ca_key)
        .map_err(rcgen_error)?;
    Ok(GeneratedIdentity {
        server_pem: format!("{}{}", cert.pem(), ca_pem),
        ca_pem,
        ca_key_pem: ca_key.serialize_pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The names the development certificate must cover for `config`: the
/// configured `dev_names` first (the first one is the default public host),
/// then every listen address (device, MQTT, service), the device public host
/// and the tenants' service host names. An unspecified listen address
/// (`0.0.0.0`, `::`) stands for `localhost`, `127.0.0.1` and this machine's
/// host name.
pub fn development_names(config: &crate::ServiceConfig) -> Vec<String> {
    let mut names = config.tls.dev_names.clone();
    let mut add = |name: String| {
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    };
    let mut listens = vec![config.device.listen, config.service.listen];
    if config.device.mqtt.enabled {
        listens.push(config.device.mqtt.listen_addr(config.device.listen));
    }
    if config.device.amqp.enabled {
        listens.push(config.device.amqp.listen_addr(config.device.listen));
    }
    for addr in listens {
        if addr.ip().is_unspecified() {
            add("localhost".to_owned());
            add("127.0.0.1".to_owned());
            if let Some(host) = host_name() {
                add(host);
            }
        } else {
            add(addr.ip().to_string());
        }
    }
    let hosts = config
        .device
        .public_host
        .iter()
        .cloned()
        .chain(config.tenants.iter().map(|t| {
            t.service_host_name
                .clone()
                .unwrap_or_else(|| format!("{}.{}", t.name, config.service.host_suffix))
        }));
    // A certificate name must be ASCII; anything else is left to fail where
    // it is used rather than stopping the start here.
    for host in hosts.filter(|h| h.is_ascii()) {
        add(strip_port(&host).to_owned());
    }
    names
}

/// `host` without a `:port` (IPv6 literals in brackets lose them too).
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.parse::<u16>().is_ok() => name,
        _ => host,
    }
}

fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Requests a client certificate, never requires one, accepts any chain (the
/// handshake signature is still checked, so the client holds the key).
#[derive(Debug)]
struct AnyClientCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Every certificate in a PEM text.
pub fn pem_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, ServiceError> {
    use rustls_pki_types::pem::PemObject;
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServiceError::Tls {
            reason: format!("certificate PEM: {e}"),
        })?;
    if chain.is_empty() {
        return Err(ServiceError::Tls {
            reason: "no certificate in the PEM file".to_owned(),
        });
    }
    Ok(chain)
}

fn pem_private_key(pem: &str) -> Result<PrivateKeyDer<'static>, ServiceError> {
    use rustls_pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| ServiceError::Tls {
        reason: format!("private key PEM: {e}"),
    })
}

fn split_pem(pem: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in pem.lines() {
        current.push_str(line);
        current.push('\n');
        if line.starts_with("-----END") {
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

fn read(path: &Path) -> Result<String, ServiceError> {
    std::fs::read_to_string(path).map_err(|e| io_error(path, e))
}

pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), ServiceError> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).map_err(|e| io_error(path, e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| io_error(path, e))
}

fn io_error(path: &Path, e: std::io::Error) -> ServiceError {
    ServiceError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn tls_error(e: rustls::Error) -> ServiceError {
    ServiceError::Tls {
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rustls client trusting `ca_pem` connects to `identity` as `name`.
    fn verifies(identity: &ServerIdentity, ca_pem: &str, name: &str) -> bool {
        let mut roots = rustls::RootCertStore::empty();
        for cert in pem_certificates(ca_pem).unwrap() {
            roots.add(cert).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client), server_name).unwrap();
        let mut server =
            rustls::ServerConnection::new(identity.server_config(&[]).unwrap()).unwrap();
        // Pump the handshake in memory; a name mismatch fails the client.
        for _ in 0..10 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            if server.process_new_packets().is_err() {
                return false;
            }
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            if client.process_new_packets().is_err() {
                return false;
            }
            if !client.is_handshaking() && !server.is_handshaking() {
                return true;
            }
        }
        false
    }

    #[test]
    fn new_names_reissue_the_server_certificate_from_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServerIdentity::development(dir.path(), &default_names()).unwrap();
        assert!(verifies(&first, &first.trust_pem, "127.0.0.1"));
        assert!(!verifies(&first, &first.trust_pem, "127.0.0.40"));

        let mut names = default_names();
        names.push("127.0.0.40".to_owned());
        let second = ServerIdentity::development(dir.path(), &names).unwrap();
        assert_eq!(second.trust_pem, first.trust_pem, "the CA is kept");
        assert_ne!(second.chain[0], first.chain[0], "the leaf is reissued");
        // A client that trusted the CA of the first start accepts the new name.
        assert!(verifies(&second, &first.trust_pem, "127.0.0.40"));
        assert!(verifies(&second, &first.trust_pem, "localhost"));
    }

    #[test]
    fn every_listen_address_and_host_name_is_covered() {
        let mut config = crate::ServiceConfig::default();
        config.device.listen = "127.0.0.40:8443".parse().unwrap();
        config.service.listen = "0.0.0.0:9443".parse().unwrap();
        config.device.mqtt.listen = Some("127.0.0.41:8883".parse().unwrap());
        config.device.public_host = Some("dps.example.test:8443".to_owned());
        let names = development_names(&config);
        assert_eq!(names[..2], default_names()[..], "the configured names lead");
        for name in ["127.0.0.40", "127.0.0.41", "dps.example.test"] {
            assert!(names.contains(&name.to_owned()), "{name} in {names:?}");
        }
        assert!(!names.iter().any(|n| n == "0.0.0.0"), "{names:?}");
        assert_eq!(strip_port("[::1]:443"), "::1");
        assert_eq!(strip_port("::1"), "::1");
    }
}
