//! Cross-checks with the openssl command-line tool: chains we accept, openssl
//! accepts, and a chain we refuse, openssl refuses.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dps_attestation::sas::unix_now;
use dps_attestation::x509::{verify_group, TrustAnchor};
use dps_attestation::AttestationError;

use crate::pki::{Alg, Chain, Issued, Spec};
use crate::process::{installed, run};

/// `openssl verify -CAfile root.pem -untrusted inter.pem leaf.pem`: does it print OK?
fn openssl_verifies(
    dir: &Path,
    root: &Issued,
    inter: &Issued,
    leaf: &Issued,
) -> anyhow::Result<bool> {
    for (file, cert) in [("root.pem", root), ("inter.pem", inter), ("leaf.pem", leaf)] {
        std::fs::write(dir.join(file), cert.pem())?;
    }
    let out = run(
        Command::new("openssl").current_dir(dir).args([
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "inter.pem",
            "leaf.pem",
        ]),
        Duration::from_secs(30),
    )?;
    Ok(out.success && out.stdout.trim() == "leaf.pem: OK")
}

#[test]
fn openssl_agrees_on_valid_chains() -> anyhow::Result<()> {
    anyhow::ensure!(installed("openssl"), "openssl is required (CI installs it)");
    let now = unix_now();
    for (root, inter, leaf) in [
        (Alg::Rsa(0), Alg::Rsa(1), Alg::Rsa(2)),
        (Alg::P256, Alg::P256, Alg::P256),
        (Alg::P384, Alg::Rsa(1), Alg::P256),
    ] {
        let chain = Chain::new(root, inter, leaf);
        let dir = tempfile::tempdir()?;
        assert!(
            openssl_verifies(dir.path(), &chain.root, &chain.intermediate, &chain.leaf)?,
            "openssl refused {root:?}/{inter:?}/{leaf:?}"
        );
        let anchor = TrustAnchor::new(chain.root.pem(), "root", true)?;
        let verified = verify_group(&chain.presented(), &[&anchor], Some("dev1"), now)?;
        assert_eq!(verified.registration_id, "dev1");
    }
    Ok(())
}

#[test]
fn openssl_agrees_on_an_issuer_without_the_ca_flag() -> anyhow::Result<()> {
    anyhow::ensure!(installed("openssl"), "openssl is required (CI installs it)");
    let root = Spec::ca("root", Alg::Rsa(0)).self_signed();
    let not_ca = Spec::ca("inter", Alg::Rsa(1)).not_ca().signed_by(&root);
    let leaf = Spec::leaf("dev1", Alg::P256).signed_by(&not_ca);
    let dir = tempfile::tempdir()?;
    assert!(!openssl_verifies(dir.path(), &root, &not_ca, &leaf)?);
    let anchor = TrustAnchor::new(root.der(), "root", true)?;
    assert!(matches!(
        verify_group(&[leaf.der(), not_ca.der()], &[&anchor], None, unix_now()),
        Err(AttestationError::NotACertificateAuthority { .. })
    ));
    Ok(())
}
