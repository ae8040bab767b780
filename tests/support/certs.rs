//! Certificates for X.509 devices, generated at test time.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A certificate with its key, able to sign others when it is a CA.
pub struct Issued {
    /// The signed certificate: what a device presents, or what the server
    /// is told to trust when this is a CA.
    pub cert: rcgen::Certificate,
    /// The certificate's private key: signs the device's TLS handshake, or
    /// the certificates this CA issues.
    pub key: KeyPair,
}

impl Issued {
    /// The certificate in PEM, as enrollments and device clients take it.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// The private key in PEM (PKCS#8), for a device client's TLS identity.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

fn params(common_name: &str, ca: bool) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
    } else {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    }
    params
}

/// A self-signed certificate (CA or device).
pub fn self_signed(common_name: &str, ca: bool) -> Issued {
    let key = KeyPair::generate().expect("key");
    let cert = params(common_name, ca)
        .self_signed(&key)
        .expect("self-signed");
    Issued { cert, key }
}

/// A certificate signed by `issuer`.
pub fn signed_by(common_name: &str, ca: bool, issuer: &Issued) -> Issued {
    let key = KeyPair::generate().expect("key");
    let cert = params(common_name, ca)
        .signed_by(&key, &issuer.cert, &issuer.key)
        .expect("signed");
    Issued { cert, key }
}
