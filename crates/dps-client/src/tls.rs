//! TLS for devices: which servers are trusted, and the per-device client
//! configuration (with the X.509 identity when there is one).
//!
//! [`TlsTrust`] parses the trust roots once; a swarm of thousands of devices
//! shares it, and each device still gets its own connection and a full
//! handshake: session resumption is off, because a real device has no
//! session to resume from another device.

use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::ClientError;

/// The servers a device trusts: the web PKI roots (optionally) and extra CAs.
#[derive(Clone)]
pub struct TlsTrust {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTrust")
            .field("roots", &self.roots.len())
            .finish()
    }
}

impl TlsTrust {
    /// Trust these PEM CAs, plus the web PKI roots when `system_roots`.
    pub fn new<S: AsRef<str>>(system_roots: bool, ca_pems: &[S]) -> Result<Self, ClientError> {
        let mut roots = RootCertStore::empty();
        if system_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for pem in ca_pems {
            let certificates = CertificateDer::pem_slice_iter(pem.as_ref().as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| config(format!("trusted CA PEM: {e}")))?;
            if certificates.is_empty() {
                return Err(config("a trusted CA PEM holds no certificate".to_owned()));
            }
            for certificate in certificates {
                roots
                    .add(certificate)
                    .map_err(|e| config(format!("trusted CA: {e}")))?;
            }
        }
        Ok(TlsTrust {
            roots: Arc::new(roots),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }

    /// How many roots are trusted.
    pub fn root_count(&self) -> usize {
        self.roots.len()
    }

    /// A client configuration: HTTP/1.1 (as the device SDKs speak), no
    /// session resumption, and the device certificate when given.
    pub fn client_config(
        &self,
        identity: Option<(&str, &str)>,
    ) -> Result<ClientConfig, ClientError> {
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| config(format!("TLS: {e}")))?
            .with_root_certificates(self.roots.clone());
        let mut tls = match identity {
            None => builder.with_no_client_auth(),
            Some((chain_pem, key_pem)) => {
                let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| config(format!("X.509 certificate PEM: {e}")))?;
                if chain.is_empty() {
                    return Err(config(
                        "the X.509 certificate PEM holds no certificate".to_owned(),
                    ));
                }
                let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                    .map_err(|e| config(format!("X.509 private key PEM: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| config(format!("X.509 identity: {e}")))?
            }
        };
        tls.resumption = Resumption::disabled();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tls)
    }

    /// The HTTP client of one device: its own connection pool (one
    /// connection), over [`TlsTrust::client_config`].
    pub fn http_client(
        &self,
        identity: Option<(&str, &str)>,
    ) -> Result<reqwest::Client, ClientError> {
        reqwest::Client::builder()
            .use_preconfigured_tls(self.client_config(identity)?)
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| config(format!("HTTP client: {e}")))
    }
}

fn config(reason: String) -> ClientError {
    ClientError::Config { reason }
}
