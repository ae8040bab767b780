//! Certificates made at test time with rcgen: roots, intermediates and leaves
//! with ECDSA (P-256, P-384) or RSA-2048 keys.

use std::sync::OnceLock;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
};
use rsa::pkcs8::EncodePrivateKey as _;

/// "Now" for verification in tests: 2026-05-28T20:26:40Z, inside the default validity.
pub(crate) const NOW: u64 = 1_780_000_000;

/// Key algorithm of a generated certificate.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Alg {
    P256,
    P384,
    Ed25519,
    /// RSA-2048; `usize` picks one of a few keys generated once per process.
    Rsa(usize),
}

/// RSA key generation is slow, and rcgen's ring backend cannot do it: make a
/// few keys with the `rsa` crate, once per test process.
fn rsa_pkcs8(slot: usize) -> &'static [u8] {
    static KEYS: [OnceLock<Vec<u8>>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    KEYS[slot % KEYS.len()].get_or_init(|| {
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("RSA keygen");
        key.to_pkcs8_der().expect("PKCS#8").as_bytes().to_vec()
    })
}

/// One of the process's cached RSA-2048 keys.
pub(crate) fn rsa_key(slot: usize) -> rsa::RsaPrivateKey {
    use rsa::pkcs8::DecodePrivateKey as _;
    rsa::RsaPrivateKey::from_pkcs8_der(rsa_pkcs8(slot)).expect("cached key decodes")
}

pub(crate) fn key(alg: Alg) -> KeyPair {
    match alg {
        Alg::P256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
        Alg::P384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap(),
        Alg::Ed25519 => KeyPair::generate_for(&PKCS_ED25519).unwrap(),
        Alg::Rsa(slot) => KeyPair::try_from(rsa_pkcs8(slot)).unwrap(),
    }
}

/// A certificate with its key.
pub(crate) struct Issued {
    pub(crate) cert: rcgen::Certificate,
    pub(crate) key: KeyPair,
}

impl Issued {
    pub(crate) fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    pub(crate) fn pem(&self) -> String {
        self.cert.pem()
    }
}

/// What to put in a certificate.
pub(crate) struct Spec<'a> {
    pub(crate) common_name: &'a str,
    pub(crate) organization: Option<&'a str>,
    pub(crate) alg: Alg,
    pub(crate) ca: bool,
    /// Validity as (from year, to year), 1 January 00:00 UTC each.
    pub(crate) years: (i32, i32),
    pub(crate) serial: Option<&'a [u8]>,
    /// Last changes to the parameters (extensions, constraints, names).
    pub(crate) tweak: Option<&'a dyn Fn(&mut CertificateParams)>,
}

impl<'a> Spec<'a> {
    pub(crate) fn ca(common_name: &'a str, alg: Alg) -> Self {
        Spec {
            common_name,
            organization: Some("dps tests"),
            alg,
            ca: true,
            years: (2020, 2040),
            serial: None,
            tweak: None,
        }
    }

    pub(crate) fn leaf(common_name: &'a str, alg: Alg) -> Self {
        Spec {
            ca: false,
            organization: None,
            ..Spec::ca(common_name, alg)
        }
    }

    pub(crate) fn years(self, from: i32, to: i32) -> Self {
        Spec {
            years: (from, to),
            ..self
        }
    }

    pub(crate) fn not_ca(self) -> Self {
        Spec { ca: false, ..self }
    }

    pub(crate) fn tweaked(self, tweak: &'a dyn Fn(&mut CertificateParams)) -> Self {
        Spec {
            tweak: Some(tweak),
            ..self
        }
    }

    fn params(&self) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut name = DistinguishedName::new();
        if let Some(org) = self.organization {
            name.push(DnType::OrganizationName, org);
        }
        name.push(DnType::CommonName, self.common_name);
        params.distinguished_name = name;
        params.not_before = date_time_ymd(self.years.0, 1, 1);
        params.not_after = date_time_ymd(self.years.1, 1, 1);
        if let Some(serial) = self.serial {
            params.serial_number = Some(SerialNumber::from_slice(serial));
        }
        if self.ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::DigitalSignature,
            ];
        }
        if let Some(tweak) = self.tweak {
            tweak(&mut params);
        }
        params
    }

    pub(crate) fn self_signed(self) -> Issued {
        let key = key(self.alg);
        let cert = self.params().self_signed(&key).unwrap();
        Issued { cert, key }
    }

    pub(crate) fn signed_by(self, issuer: &Issued) -> Issued {
        let key = key(self.alg);
        let cert = self
            .params()
            .signed_by(&key, &issuer.cert, &issuer.key)
            .unwrap();
        Issued { cert, key }
    }
}

/// root → intermediate → leaf `dev1`, all valid 2020–2040.
pub(crate) struct Chain {
    pub(crate) root: Issued,
    pub(crate) intermediate: Issued,
    pub(crate) leaf: Issued,
}

impl Chain {
    pub(crate) fn new(root: Alg, intermediate: Alg, leaf: Alg) -> Self {
        let root = Spec::ca("dps test root", root).self_signed();
        let intermediate = Spec::ca("dps test intermediate", intermediate).signed_by(&root);
        let leaf = Spec::leaf("dev1", leaf).signed_by(&intermediate);
        Chain {
            root,
            intermediate,
            leaf,
        }
    }

    /// What the TLS layer hands over: leaf and intermediate.
    pub(crate) fn presented(&self) -> Vec<Vec<u8>> {
        vec![self.leaf.der(), self.intermediate.der()]
    }
}

/// The chain bomb of issue #15: `cas` Ed25519 CA certificates that all bear
/// one subject, each signed by the next (the last self-signed), and a leaf
/// `common_name` signed by the first; presented leaf first, then the CAs in
/// reverse, so that a builder trying every same-named candidate in order
/// finds each real issuer last (about cas²/2 signature checks).
pub(crate) fn same_subject_bomb(cas: usize, common_name: &str) -> Vec<Vec<u8>> {
    let mut issued: Vec<Issued> = Vec::with_capacity(cas);
    issued.push(Spec::ca("bomb", Alg::Ed25519).self_signed());
    for _ in 1..cas {
        let next = Spec::ca("bomb", Alg::Ed25519).signed_by(issued.last().expect("one"));
        issued.push(next);
    }
    // issued[cas-1] signs nothing; the leaf hangs below it.
    let leaf = Spec::leaf(common_name, Alg::Ed25519).signed_by(issued.last().expect("one"));
    let mut presented = vec![leaf.der()];
    presented.extend(issued.iter().map(Issued::der));
    presented
}
