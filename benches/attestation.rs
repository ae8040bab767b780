//! Attestation throughput and latency, single thread (= per core): SAS tokens
//! with individual and group-derived keys, X.509 chain verification with
//! ECDSA P-256 and RSA-2048 (with the process's signature cache cold, and
//! warm for a group's shared intermediate), and TPM challenge creation.
//!
//! Run: `cargo bench -p dps-benches --bench attestation`
//! (`DPS_BENCH_SECONDS` sets the time per case, default 3; `DPS_BENCH_FILTER`
//! runs only the cases whose name contains it, e.g. `SAS`, `X.509`, `TPM`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use dps_attestation::keys::derive_device_key;
use dps_attestation::sas::{
    create_token, registration_resource, unix_now, Audience, ExpiryPolicy, SasToken, SymmetricKey,
};
use dps_attestation::tpm::TpmChallenge;
use dps_attestation::x509::{
    clear_signature_cache, verify_group, verify_individual, TrustAnchor, SIGNATURE_CACHE_ENTRIES,
};
use dps_model::{X509CertificateWithInfo, X509Certificates};
use hdrhistogram::Histogram;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rsa::pkcs8::EncodePrivateKey as _;
use rsa::traits::PublicKeyParts as _;

struct Case {
    name: &'static str,
    /// Minimum verifications per second per core, if the case has a target.
    target: Option<f64>,
}

/// CPU time this thread has used, from /proc (Linux; USER_HZ is 100 by ABI).
/// Throughput per core is judged by CPU time, not wall time, because the
/// 2-core machine is shared: wall-clock rates fall with every other process.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Run `op` repeatedly for `duration`, timing each call.
fn measure(case: Case, duration: Duration, mut op: impl FnMut()) -> bool {
    for _ in 0..100 {
        op();
    }
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    let cpu_start = thread_cpu_time();
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < duration {
        // Time batches of 16 calls: cheap operations are shorter than the
        // clock's own overhead would allow to resolve one by one.
        let batch = Instant::now();
        for _ in 0..16 {
            op();
        }
        let per_call = batch.elapsed().as_nanos() as u64 / 16;
        histogram.record_n(per_call.max(1), 16).expect("in range");
        count += 16;
    }
    let wall_rate = count as f64 / start.elapsed().as_secs_f64();
    let cpu = match (cpu_start, thread_cpu_time()) {
        (Some(a), Some(b)) if b > a => Some(b - a),
        _ => None,
    };
    let core_rate = cpu.map_or(wall_rate, |cpu| count as f64 / cpu.as_secs_f64());
    let met = case.target.is_none_or(|t| core_rate >= t);
    println!(
        "{:<64} {:>9.0} /s per core {:>9.0} /s wall   p50 {:>9}  p90 {:>9}  p99 {:>9}   {}",
        case.name,
        core_rate,
        wall_rate,
        fmt_ns(histogram.value_at_quantile(0.50)),
        fmt_ns(histogram.value_at_quantile(0.90)),
        fmt_ns(histogram.value_at_quantile(0.99)),
        match case.target {
            Some(t) if met => format!("(target ≥ {t:.0}/s per core: met)"),
            Some(t) => format!("(target ≥ {t:.0}/s per core: MISSED)"),
            None => String::new(),
        }
    );
    met
}

fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} µs", ns as f64 / 1e3)
    }
}

fn ecdsa_key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("P-256 key")
}

fn rsa_key() -> (KeyPair, rsa::RsaPrivateKey) {
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("RSA key");
    let pkcs8 = key.to_pkcs8_der().expect("PKCS#8");
    (KeyPair::try_from(pkcs8.as_bytes()).expect("rcgen key"), key)
}

fn params(common_name: &str, ca: bool) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "dps bench");
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2040, 1, 1);
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
    }
    params
}

/// A device of a bench group: its registration id and its chain as
/// presented ([leaf, intermediate]).
type Device = (String, Vec<Vec<u8>>);

/// One group: root (the anchor) → intermediate → a leaf per registration id
/// in `ids` (the leaves share one key: only their bytes differ). Returns the
/// anchor and the devices.
fn group(keys: [KeyPair; 3], ids: Vec<String>) -> (TrustAnchor, Vec<Device>) {
    let [root_key, inter_key, leaf_key] = keys;
    let root = params("bench root", true)
        .self_signed(&root_key)
        .expect("root");
    let inter = params("bench intermediate", true)
        .signed_by(&inter_key, &root, &root_key)
        .expect("intermediate");
    let devices = ids
        .into_iter()
        .map(|id| {
            let leaf = params(&id, false)
                .signed_by(&leaf_key, &inter, &inter_key)
                .expect("leaf");
            (id, vec![leaf.der().to_vec(), inter.der().to_vec()])
        })
        .collect();
    let anchor = TrustAnchor::new(root.der(), "bench root", true).expect("anchor");
    (anchor, devices)
}

/// root → intermediate → leaf `dev1`; returns (anchor, [leaf, intermediate]).
fn chain(keys: [KeyPair; 3]) -> (TrustAnchor, Vec<Vec<u8>>) {
    let (anchor, mut devices) = group(keys, vec!["dev1".to_owned()]);
    (anchor, devices.remove(0).1)
}

/// An RSA-2048 `TPM2B_PUBLIC` as a TPM reports its EK/SRK.
fn tpm_public(key: &rsa::RsaPrivateKey, attributes: u32) -> String {
    use base64::Engine as _;
    let modulus = key.n().to_bytes_be();
    let mut tpmt = Vec::new();
    tpmt.extend_from_slice(&[0x00, 0x01, 0x00, 0x0B]);
    tpmt.extend_from_slice(&attributes.to_be_bytes());
    tpmt.extend_from_slice(&[0x00, 0x00]); // authPolicy
    tpmt.extend_from_slice(&[0x00, 0x06, 0x00, 0x80, 0x00, 0x43, 0x00, 0x10, 0x08, 0x00]);
    tpmt.extend_from_slice(&[0, 0, 0, 0]);
    tpmt.extend_from_slice(&(modulus.len() as u16).to_be_bytes());
    tpmt.extend_from_slice(&modulus);
    let mut tpm2b = (tpmt.len() as u16).to_be_bytes().to_vec();
    tpm2b.extend_from_slice(&tpmt);
    base64::engine::general_purpose::STANDARD.encode(tpm2b)
}

fn main() {
    let seconds = std::env::var("DPS_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(3.0);
    let duration = Duration::from_secs_f64(seconds);
    let filter = std::env::var("DPS_BENCH_FILTER").unwrap_or_default();
    let wanted = |name: &str| name.contains(filter.as_str());
    let now = unix_now();
    let mut all_met = true;
    println!(
        "dps-attestation, one thread, {seconds} s per case; load average {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    let resource = registration_resource("0ne00000A0A", "bench-device-000001");
    let policy = ExpiryPolicy::at(now);

    // SAS with an individual enrollment's keys: parse + audience + expiry +
    // constant-time check against primary and secondary.
    let name = "SAS verify, individual (primary+secondary)";
    if wanted(name) {
        let primary = SymmetricKey::from_bytes(vec![0x11; 64]);
        let secondary = SymmetricKey::from_bytes(vec![0x22; 64]);
        let token = create_token(&resource, &secondary, now + 3600, Some("registration"));
        all_met &= measure(
            Case {
                name,
                target: Some(500_000.0),
            },
            duration,
            || {
                let parsed = SasToken::parse(black_box(&token)).expect("parses");
                let matched = parsed
                    .verify(&Audience(&resource), &[&primary, &secondary], &policy)
                    .expect("verifies");
                black_box(matched);
            },
        );
    }

    // SAS with a group: derive the device key from both group keys, then verify.
    let name = "SAS verify, group-derived (derive x2+verify)";
    if wanted(name) {
        let group_primary = SymmetricKey::from_bytes(vec![0x33; 64]);
        let group_secondary = SymmetricKey::from_bytes(vec![0x44; 64]);
        let device_key = derive_device_key(&group_primary, "bench-device-000001");
        let token = create_token(&resource, &device_key, now + 3600, Some("registration"));
        all_met &= measure(
            Case {
                name,
                target: Some(500_000.0),
            },
            duration,
            || {
                let parsed = SasToken::parse(black_box(&token)).expect("parses");
                let id = "bench-device-000001";
                let derived = [
                    derive_device_key(&group_primary, id),
                    derive_device_key(&group_secondary, id),
                ];
                let matched = parsed
                    .verify(&Audience(&resource), &[&derived[0], &derived[1]], &policy)
                    .expect("verifies");
                black_box(matched);
            },
        );
    }

    // X.509 group chains: leaf + intermediate presented, root as cached anchor.
    // Cold: the signature cache is emptied before every call, so both links
    // are computed — a group's first device, or every device before the cache.
    let name = "X.509 chain verify, ECDSA P-256";
    if wanted(name) {
        let (anchor, presented) = chain([ecdsa_key(), ecdsa_key(), ecdsa_key()]);
        all_met &= measure(
            Case {
                name,
                target: Some(4_000.0),
            },
            duration,
            || {
                clear_signature_cache();
                let verified = verify_group(black_box(&presented), &[&anchor], Some("dev1"), now)
                    .expect("verifies");
                black_box(verified);
            },
        );
    }
    // The group path in steady state: every device a new leaf (its link
    // computed), the intermediate's link answered from the cache. The leaves
    // outnumber the cache twice over, so no leaf is still cached when its
    // turn comes again.
    let name = "X.509 chain verify, ECDSA P-256, same intermediate (cache warm)";
    if wanted(name) {
        let ids = (0..2 * SIGNATURE_CACHE_ENTRIES).map(|i| format!("dev{i:06}"));
        let (anchor, devices) = group([ecdsa_key(), ecdsa_key(), ecdsa_key()], ids.collect());
        clear_signature_cache();
        let mut next = 0;
        measure(Case { name, target: None }, duration, || {
            let (id, presented) = &devices[next % devices.len()];
            next += 1;
            let verified =
                verify_group(black_box(presented), &[&anchor], Some(id), now).expect("verifies");
            black_box(verified);
        });
    }
    // A device registering again with the same chain: both links cached.
    let name = "X.509 chain verify, ECDSA P-256, same chain (cache warm)";
    if wanted(name) {
        let (anchor, presented) = chain([ecdsa_key(), ecdsa_key(), ecdsa_key()]);
        measure(Case { name, target: None }, duration, || {
            let verified = verify_group(black_box(&presented), &[&anchor], Some("dev1"), now)
                .expect("verifies");
            black_box(verified);
        });
    }
    let name = "X.509 chain verify, RSA-2048";
    if wanted(name) {
        let (anchor, presented) = chain([rsa_key().0, rsa_key().0, rsa_key().0]);
        measure(Case { name, target: None }, duration, || {
            clear_signature_cache();
            let verified = verify_group(black_box(&presented), &[&anchor], Some("dev1"), now)
                .expect("verifies");
            black_box(verified);
        });
    }

    // X.509 individual: the leaf against the enrollment's stored PEM.
    let name = "X.509 individual verify (enrolled PEM)";
    if wanted(name) {
        let leaf_key = ecdsa_key();
        let leaf = params("dev1", false).self_signed(&leaf_key).expect("leaf");
        let enrolled = X509Certificates {
            primary: Some(X509CertificateWithInfo {
                certificate: Some(leaf.pem()),
                info: None,
            }),
            secondary: None,
        };
        let presented = vec![leaf.der().to_vec()];
        measure(Case { name, target: None }, duration, || {
            let verified =
                verify_individual(black_box(&presented), &enrolled, "dev1", now).expect("matches");
            black_box(verified);
        });
    }

    // TPM: one activation blob (two RSA-OAEP encryptions and the wrapping).
    let name = "TPM challenge create";
    if wanted(name) {
        let (ek, srk) = (rsa_key().1, rsa_key().1);
        let (ek, srk) = (tpm_public(&ek, 0x0003_00B2), tpm_public(&srk, 0x0003_0472));
        measure(Case { name, target: None }, duration, || {
            let challenge = TpmChallenge::create(&ek, &srk).expect("challenge");
            black_box(challenge);
        });
    }

    if !all_met {
        println!("some targets were missed");
    }
}
