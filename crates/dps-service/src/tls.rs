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
    /// and kept in `dir` (regenerated when the names change).
    pub fn development(dir: &Path, names: &[String]) -> Result<Self, ServiceError> {
        let names_file = dir.join("names.txt");
        let wanted = names.join("\n");
        let paths = [
            dir.join("ca.pem"),
            dir.join("server.pem"),
            dir.join("server.key"),
        ];
        let current = std::fs::read_to_string(&names_file).ok();
        if current.as_deref() != Some(wanted.as_str()) || !paths.iter().all(|p| p.exists()) {
            let generated = generate_development(names)?;
            std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
            write_private(&paths[2], &generated.key_pem)?;
            std::fs::write(&paths[0], &generated.ca_pem).map_err(|e| io_error(&paths[0], e))?;
            std::fs::write(&paths[1], &generated.server_pem).map_err(|e| io_error(&paths[1], e))?;
            std::fs::write(&names_file, &wanted).map_err(|e| io_error(&names_file, e))?;
        }
        let mut identity = Self::from_files(&paths[1], &paths[2])?;
        identity.trust_pem = read(&paths[0])?;
        Ok(identity)
    }

    /// An identity generated in memory (tests).
    pub fn generate_in_memory(names: &[String]) -> Result<Self, ServiceError> {
        let generated = generate_development(names)?;
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
    server_pem: String,
    key_pem: String,
}

fn generate_development(names: &[String]) -> Result<GeneratedIdentity, ServiceError> {
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
    let ca_key = KeyPair::generate().map_err(rcgen_error)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(rcgen_error)?;

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
        ca_pem: ca_cert.pem(),
        server_pem: format!("{}{}", cert.pem(), ca_cert.pem()),
        key_pem: key.serialize_pem(),
    })
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
