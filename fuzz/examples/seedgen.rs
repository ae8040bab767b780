//! Writes the seed corpora (`corpus/<target>/seed-*`) and the X.509 fixtures
//! (`fixtures/`): a few valid inputs per target, so the fuzzer starts from
//! inputs that get past the first checks. Run from `fuzz/`:
//!
//! ```text
//! cargo +nightly run --example seedgen
//! ```
//!
//! Certificate keys are fresh on every run: rerunning rewrites the fixtures
//! and the chain seeds together (they must match), so commit both or neither.

use std::fs;
use std::path::Path;

use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::BytesMut;
use dps_attestation::sas::{create_token, SymmetricKey};
use dps_fuzz::frame;
use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    IsCa, KeyPair, KeyUsagePurpose, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
};
use rumqttc::mqttbytes::v4::{Connect, Login, Packet, Publish, Subscribe};
use rumqttc::mqttbytes::QoS;

fn write(target: &str, seeds: &[Vec<u8>]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    for (i, seed) in seeds.iter().enumerate() {
        fs::write(dir.join(format!("seed-{i:02}")), seed).unwrap();
    }
}

fn texts(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

fn with_selector(selector: u8, body: &str) -> Vec<u8> {
    let mut out = vec![selector];
    out.extend_from_slice(body.as_bytes());
    out
}

struct Issued {
    cert: Certificate,
    key: KeyPair,
}

fn params(cn: &str, ca: bool) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "dps fuzz");
    name.push(DnType::CommonName, cn);
    params.distinguished_name = name;
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2040, 1, 1);
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
    }
    params
}

fn root(cn: &str, alg: &'static SignatureAlgorithm) -> Issued {
    let key = KeyPair::generate_for(alg).unwrap();
    let cert = params(cn, true).self_signed(&key).unwrap();
    Issued { cert, key }
}

fn issue(cn: &str, ca: bool, alg: &'static SignatureAlgorithm, by: &Issued) -> Issued {
    let key = KeyPair::generate_for(alg).unwrap();
    let cert = params(cn, ca).signed_by(&key, &by.cert, &by.key).unwrap();
    Issued { cert, key }
}

fn der(issued: &Issued) -> &[u8] {
    issued.cert.der()
}

/// An RSA `TPM2B_PUBLIC` shaped like a TCG EK template (or the SDKs' SRK).
fn tpm2b_public(modulus_byte: u8, aes_bits: u16, attributes: u32, with_policy: bool) -> Vec<u8> {
    let mut modulus = vec![modulus_byte; 256];
    modulus[0] |= 0x80;
    modulus[255] |= 1;
    let policy = if with_policy {
        vec![0x83; 32]
    } else {
        Vec::new()
    };
    let mut tpmt = Vec::new();
    tpmt.extend_from_slice(&0x0001u16.to_be_bytes()); // RSA
    tpmt.extend_from_slice(&0x000Bu16.to_be_bytes()); // SHA-256
    tpmt.extend_from_slice(&attributes.to_be_bytes());
    tpmt.extend_from_slice(&(policy.len() as u16).to_be_bytes());
    tpmt.extend_from_slice(&policy);
    tpmt.extend_from_slice(&0x0006u16.to_be_bytes()); // AES
    tpmt.extend_from_slice(&aes_bits.to_be_bytes());
    tpmt.extend_from_slice(&0x0043u16.to_be_bytes()); // CFB
    tpmt.extend_from_slice(&0x0010u16.to_be_bytes()); // scheme NULL
    tpmt.extend_from_slice(&2048u16.to_be_bytes());
    tpmt.extend_from_slice(&0u32.to_be_bytes());
    tpmt.extend_from_slice(&256u16.to_be_bytes());
    tpmt.extend_from_slice(&modulus);
    let mut out = (tpmt.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&tpmt);
    out
}

fn packets(packets: &[Packet]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for packet in packets {
        packet.write(&mut out, usize::MAX).unwrap();
    }
    out.to_vec()
}

fn main() {
    // --- X.509: a verified root (the fixture anchor), chains under it.
    let anchor = root("fuzz-root", &PKCS_ECDSA_P256_SHA256);
    let intermediate = issue("fuzz-intermediate", true, &PKCS_ECDSA_P384_SHA384, &anchor);
    let leaf_direct = issue("fuzz-device", false, &PKCS_ECDSA_P256_SHA256, &anchor);
    let leaf_via = issue("fuzz-device", false, &PKCS_ED25519, &intermediate);
    let stranger = root("fuzz-root", &PKCS_ED25519);
    let leaf_stranger = issue("fuzz-device", false, &PKCS_ECDSA_P256_SHA256, &stranger);
    fs::create_dir_all("fixtures").unwrap();
    fs::write("fixtures/anchor.der", der(&anchor)).unwrap();
    fs::write("fixtures/leaf.der", der(&leaf_direct)).unwrap();
    write(
        "x509_chain",
        &[
            [vec![0], frame(&[der(&leaf_direct)])].concat(),
            [vec![1], frame(&[der(&leaf_direct), der(&anchor)])].concat(),
            [vec![1], frame(&[der(&leaf_via), der(&intermediate)])].concat(),
            [
                vec![0],
                frame(&[der(&leaf_via), der(&intermediate), der(&anchor)]),
            ]
            .concat(),
            [vec![2], frame(&[der(&leaf_stranger), der(&stranger)])].concat(),
        ],
    );
    write(
        "x509_der",
        &[
            der(&anchor).to_vec(),
            der(&leaf_via).to_vec(),
            anchor.cert.pem().into_bytes(),
            BASE64.encode(der(&intermediate)).into_bytes(),
            leaf_direct.cert.pem().replace('\n', "\\r\\n").into_bytes(),
        ],
    );

    // --- SAS tokens.
    let key = SymmetricKey::from_bytes(vec![42u8; 32]);
    write(
        "sas_token",
        &[
            create_token(
                "0ne00000A0A/registrations/dev1",
                &key,
                1_700_000_000,
                Some("registration"),
            )
            .into_bytes(),
            create_token(
                "dps.example.com",
                &key,
                1_700_000_000,
                Some("provisioningserviceowner"),
            )
            .into_bytes(),
            b"SharedAccessSignature sr=0ne00000A0A/registrations/dev1&sig=AAAA&se=1700000000"
                .to_vec(),
            b"sharedaccesssignature SE=1&SKN=x&SIG=a%2Bb%3D&SR=hub.example:8443/devices/d%C3%A9v"
                .to_vec(),
        ],
    );
    write(
        "sas_resource",
        &texts(&[
            "0ne00000A0A\0dev1\0hub.example:443/x",
            "SharedAccessSignature sr=a&sig=b&se=1",
        ]),
    );

    // --- Register bodies.
    let ek = BASE64.encode(tpm2b_public(0x5a, 128, 0x0003_00B2, true));
    let srk = BASE64.encode(tpm2b_public(0x33, 128, 0x0003_0472, false));
    let tpm_body = format!(
        r#"{{"registrationId":"tpm-dev","tpm":{{"endorsementKey":"{ek}","storageRootKey":"{srk}"}}}}"#
    );
    write(
        "register_request",
        &texts(&[
            r#"{"registrationId":"dev1"}"#,
            r#"{"registrationId":"dev1","payload":{"modelId":"dtmi:x;1","n":[1,2.5,null,true]}}"#,
            &tpm_body,
            r#"{"registrationId":"dev1","payload":null,"csr":"MIIB"}"#,
            "  ",
        ]),
    );

    // --- Service API bodies.
    let individual = [
        r#"{"registrationId":"dev1","attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"AAAA","secondaryKey":"BBBB"}},"provisioningStatus":"enabled","reprovisionPolicy":{"updateHubAssignment":true,"migrateDeviceData":false},"allocationPolicy":"hashed","iotHubs":["hub1.example"]}"#,
        r#"{"registrationId":"dev2","deviceId":"d2","attestation":{"type":"tpm","tpm":{"endorsementKey":"AToAAQALAAMAsgAg"}},"initialTwin":{"tags":{"a":1},"properties":{"desired":{"b":{"c":"d"}}}},"capabilities":{"iotEdge":true}}"#,
        r#"{"registrationId":"dev3","attestation":{"type":"x509","x509":{"clientCertificates":{"primary":{"certificate":"MIIB"}}}},"allocationPolicy":"custom","customAllocationDefinition":{"webhookUrl":"https://fn.example/api","apiVersion":"2021-10-01"},"initialTwinState":{"tags":{"t":1},"desiredProperties":{"p":2}},"etag":"\"abc\"","createdDateTimeUtc":"2020-04-10T05:24:22.4718526Z"}"#,
    ];
    let group = [
        r#"{"enrollmentGroupId":"g1","attestation":{"type":"symmetricKey"},"iotHubHostName":"hub1.example","optionalDeviceInformation":{"x":1}}"#,
        r#"{"enrollmentGroupId":"g2","attestation":{"type":"x509","x509":{"signingCertificates":{"primary":{"certificate":"MIIB"}},"caReferences":{"primary":"ca1"}}},"allocationPolicy":"geoLatency","lastUpdatedDateTimeUtc":"2021-01-01T00:00:00Z"}"#,
    ];
    let mut seeds: Vec<Vec<u8>> = individual.iter().map(|b| with_selector(0, b)).collect();
    seeds.extend(group.iter().map(|b| with_selector(1, b)));
    write("enrollment_json", &seeds);
    write(
        "bulk_twin_json",
        &[
            with_selector(
                0,
                &format!(r#"{{"mode":"create","enrollments":[{}]}}"#, individual[0]),
            ),
            with_selector(
                1,
                &format!(
                    r#"{{"mode":"updateIfMatchETag","enrollmentGroups":[{}]}}"#,
                    group[1]
                ),
            ),
            with_selector(
                2,
                r#"{"tags":{"floor":3},"properties":{"desired":{"interval":30,"deep":{"a":[{"b":1e300}]}}}}"#,
            ),
            with_selector(3, r#"{"query":"SELECT * FROM enrollments"}"#),
            with_selector(
                4,
                r#"{"mode":"delete","enrollments":[{"registrationId":"x"}]}"#,
            ),
        ],
    );

    // --- MQTT.
    let token = create_token(
        "0ne00000A0A/registrations/dev1",
        &key,
        1_700_000_000,
        Some("registration"),
    );
    let mut connect = Connect::new("dev1");
    connect.keep_alive = 30;
    connect.login = Some(Login::new(
        "0ne00000A0A/registrations/dev1/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1",
        token,
    ));
    let subscribe = Subscribe::new("$dps/registrations/res/#", QoS::AtLeastOnce);
    let mut register = Publish::new(
        "$dps/registrations/PUT/iotdps-register/?$rid=f8e0059b-d980-45f3-8294-114f265b32ca",
        QoS::AtLeastOnce,
        br#"{"registrationId":"dev1"}"#.to_vec(),
    );
    register.pkid = 1;
    let status = Publish::new(
        "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=4.6a26.8dac",
        QoS::AtMostOnce,
        Vec::new(),
    );
    write(
        "mqtt_packet",
        &[
            packets(&[
                Packet::Connect(connect),
                Packet::Subscribe(subscribe.clone()),
            ]),
            packets(&[
                Packet::Subscribe(subscribe),
                Packet::Publish(register),
                Packet::PingReq,
            ]),
            packets(&[Packet::Publish(status), Packet::Disconnect]),
        ],
    );
    write(
        "mqtt_topics",
        &texts(&[
            "0ne00000A0A/registrations/dev-1/api-version=2019-03-31\0$dps/registrations/PUT/iotdps-register/?$rid=1",
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=4.6a26.8dac",
        ]),
    );

    // --- TPM.
    let ek_bytes = tpm2b_public(0x5a, 128, 0x0003_00B2, true);
    let srk_bytes = tpm2b_public(0x33, 128, 0x0003_0472, false);
    let ek_256 = tpm2b_public(0x77, 256, 0x0003_00B2, true);
    write(
        "tpm_public",
        &[
            frame(&[&ek_bytes, &srk_bytes]),
            frame(&[&ek_256]),
            frame(&[&ek_bytes[2..], &srk_bytes]), // bare TPMT_PUBLIC
        ],
    );

    // --- Connection strings and continuation tokens.
    let hub_key = BASE64.encode([7u8; 32]);
    write(
        "connection_string",
        &texts(&[
            &format!("HostName=hub1.example;SharedAccessKeyName=iothubowner;SharedAccessKey={hub_key}"),
            &format!(" sharedaccesskey = {hub_key} ; hostname=hub.example:8443;SharedAccessKeyName=registryReadWrite;DeviceId=x;"),
        ]),
    );
    write(
        "continuation_token",
        &[
            URL_SAFE_NO_PAD.encode("v1:dev-1").into_bytes(),
            URL_SAFE_NO_PAD.encode("v1:group.a_b:c").into_bytes(),
            format!(" {} ", URL_SAFE_NO_PAD.encode("v1:x")).into_bytes(),
        ],
    );
}
