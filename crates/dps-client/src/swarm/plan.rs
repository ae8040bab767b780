//! Which devices a swarm provisions, with what credentials, and the
//! enrollments that let them in.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use dps_attestation::keys::{derive_device_key, generate_key};
use dps_attestation::sas::SymmetricKey;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{json, Value};

use crate::{CertificateRequest, ClientError, Credential, KeyType};

/// The kind of credential a swarm device uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// Individual enrollment with its own symmetric key.
    Symmetric,
    /// Member of a symmetric-key enrollment group (derived key).
    Group,
    /// Member of an X.509 enrollment group (leaf signed by the swarm's CA chain).
    X509,
}

impl DeviceKind {
    /// The short name used in registration ids and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Symmetric => "symmetric",
            DeviceKind::Group => "group",
            DeviceKind::X509 => "x509",
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Relative weights of the device kinds: `symmetric=70,group=20,x509=10`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    /// Weight of individual symmetric-key devices.
    pub symmetric: u32,
    /// Weight of symmetric-key group devices.
    pub group: u32,
    /// Weight of X.509 group devices.
    pub x509: u32,
}

impl Mix {
    /// Only devices of one kind.
    pub fn only(kind: DeviceKind) -> Self {
        let mut mix = Mix {
            symmetric: 0,
            group: 0,
            x509: 0,
        };
        match kind {
            DeviceKind::Symmetric => mix.symmetric = 1,
            DeviceKind::Group => mix.group = 1,
            DeviceKind::X509 => mix.x509 = 1,
        }
        mix
    }

    /// The kind of the `index`-th device: the kinds are interleaved in
    /// proportion to their weights, so any prefix of the swarm has the mix.
    pub fn kind_of(&self, index: u64) -> DeviceKind {
        let total = u64::from(self.symmetric) + u64::from(self.group) + u64::from(self.x509);
        let slot = index % total.max(1);
        if slot < u64::from(self.symmetric) {
            DeviceKind::Symmetric
        } else if slot < u64::from(self.symmetric) + u64::from(self.group) {
            DeviceKind::Group
        } else {
            DeviceKind::X509
        }
    }
}

impl Default for Mix {
    fn default() -> Self {
        Mix::only(DeviceKind::Symmetric)
    }
}

impl FromStr for Mix {
    type Err = ClientError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| ClientError::Config {
            reason: format!("mix {text:?}: {reason}"),
        };
        let mut mix = Mix {
            symmetric: 0,
            group: 0,
            x509: 0,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| invalid(format!("{part:?} is not KIND=WEIGHT")))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| invalid(format!("{weight:?} is not a whole number")))?;
            match name.trim().to_ascii_lowercase().as_str() {
                "symmetric" | "sym" => mix.symmetric = weight,
                "group" => mix.group = weight,
                "x509" => mix.x509 = weight,
                other => {
                    return Err(invalid(format!(
                        "unknown kind {other:?} (symmetric, group, x509)"
                    )))
                }
            }
        }
        if u64::from(mix.symmetric) + u64::from(mix.group) + u64::from(mix.x509) == 0 {
            return Err(invalid("all weights are zero".to_owned()));
        }
        Ok(mix)
    }
}

/// What a swarm is made of.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// Registration ids are `{prefix}-{kind}-{index}`.
    pub prefix: String,
    /// How many devices.
    pub count: u64,
    /// The kinds, by weight.
    pub mix: Mix,
    /// Individual devices' keys are derived from this base64 key and their
    /// registration id (so a re-run finds the same keys); random when absent.
    pub seed_key: Option<String>,
    /// The symmetric-key group's base64 key; random when absent.
    pub group_key: Option<String>,
    /// Id of the symmetric-key enrollment group.
    pub group_id: String,
    /// Id of the X.509 enrollment group.
    pub x509_group_id: String,
    /// Every device asks for an operational certificate with a key of this
    /// type (its key and request are made with the plan, before the clock
    /// starts); `None`: no certificate requests.
    pub issue_certificates: Option<KeyType>,
    /// The credential policy the swarm's enrollments and groups name
    /// (`credentialPolicyName`), so that their devices' requests are issued.
    pub credential_policy: Option<String>,
}

impl PlanOptions {
    /// `count` devices of `mix` with ids under `prefix`, fresh keys.
    pub fn new(prefix: impl Into<String>, count: u64, mix: Mix) -> Self {
        let prefix = prefix.into();
        PlanOptions {
            group_id: format!("{prefix}-group"),
            x509_group_id: format!("{prefix}-x509-group"),
            prefix,
            count,
            mix,
            seed_key: None,
            group_key: None,
            issue_certificates: None,
            credential_policy: None,
        }
    }
}

/// The swarm's X.509 CA chain: an ECDSA P-256 root and intermediate; the
/// devices' leaves are signed by the intermediate.
pub struct SwarmCa {
    root: Issued,
    intermediate: Issued,
}

struct Issued {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl SwarmCa {
    fn generate(prefix: &str) -> Result<Self, ClientError> {
        let root_key = KeyPair::generate().map_err(cert_error)?;
        let root = ca_params(&format!("{prefix} swarm root CA"))?
            .self_signed(&root_key)
            .map_err(cert_error)?;
        let intermediate_key = KeyPair::generate().map_err(cert_error)?;
        let intermediate = ca_params(&format!("{prefix} swarm intermediate CA"))?
            .signed_by(&intermediate_key, &root, &root_key)
            .map_err(cert_error)?;
        Ok(SwarmCa {
            root: Issued {
                cert: root,
                key: root_key,
            },
            intermediate: Issued {
                cert: intermediate,
                key: intermediate_key,
            },
        })
    }

    /// The root certificate (PEM): what the X.509 group trusts.
    pub fn root_pem(&self) -> String {
        self.root.cert.pem()
    }

    /// The intermediate certificate (PEM), sent by devices after their leaf.
    pub fn intermediate_pem(&self) -> String {
        self.intermediate.cert.pem()
    }

    /// A device certificate (CN = `registration_id`) and its key, both PEM;
    /// the chain is leaf then intermediate.
    pub fn issue(&self, registration_id: &str) -> Result<(String, String), ClientError> {
        let key = KeyPair::generate().map_err(cert_error)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
        params
            .distinguished_name
            .push(DnType::CommonName, registration_id);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params
            .signed_by(&key, &self.intermediate.cert, &self.intermediate.key)
            .map_err(cert_error)?;
        Ok((
            format!("{}{}", cert.pem(), self.intermediate.cert.pem()),
            key.serialize_pem(),
        ))
    }

    /// Write the root and intermediate (certificate and key) to `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), ClientError> {
        write_file(&dir.join("root-ca.pem"), &self.root.cert.pem())?;
        write_file(&dir.join("root-ca.key"), &self.root.key.serialize_pem())?;
        write_file(
            &dir.join("intermediate-ca.pem"),
            &self.intermediate.cert.pem(),
        )?;
        write_file(
            &dir.join("intermediate-ca.key"),
            &self.intermediate.key.serialize_pem(),
        )
    }
}

fn ca_params(common_name: &str) -> Result<CertificateParams, ClientError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn cert_error(e: rcgen::Error) -> ClientError {
    ClientError::Config {
        reason: format!("generating a certificate: {e}"),
    }
}

fn write_file(path: &Path, contents: &str) -> Result<(), ClientError> {
    std::fs::write(path, contents).map_err(|e| ClientError::Config {
        reason: format!("writing {}: {e}", path.display()),
    })
}

/// One device of the swarm.
#[derive(Clone, Debug)]
pub struct SwarmDevice {
    /// Its registration id.
    pub registration_id: String,
    /// Its kind.
    pub kind: DeviceKind,
    /// Its credential.
    pub credential: Credential,
    /// For individual symmetric-key devices: the key (base64) its enrollment needs.
    pub individual_key: Option<String>,
    /// Its certificate request, when the swarm asks for certificates.
    pub certificate_request: Option<CertificateRequest>,
}

/// A prepared swarm: every device with its credential, and the material the
/// enrollments need. Credentials (including X.509 keys and certificates) are
/// made before the clock starts, so a run measures provisioning only.
pub struct SwarmPlan {
    /// The devices, in provisioning order.
    pub devices: Vec<SwarmDevice>,
    /// The options it was made from.
    pub options: PlanOptions,
    group_key: String,
    ca: Option<SwarmCa>,
}

impl SwarmPlan {
    /// Make the devices and their credentials.
    pub fn prepare(options: PlanOptions) -> Result<Self, ClientError> {
        let key = |given: &Option<String>| -> Result<SymmetricKey, ClientError> {
            let encoded = given.clone().unwrap_or_else(generate_key);
            SymmetricKey::from_base64(&encoded).map_err(|e| ClientError::Config {
                reason: format!("swarm key: {e}"),
            })
        };
        let seed = key(&options.seed_key)?;
        let group = key(&options.group_key)?;
        let ca = if options.mix.x509 > 0 {
            Some(SwarmCa::generate(&options.prefix)?)
        } else {
            None
        };
        let mut devices = Vec::with_capacity(usize::try_from(options.count).unwrap_or(0));
        for index in 0..options.count {
            let kind = options.mix.kind_of(index);
            let registration_id = format!("{}-{}-{index:07}", options.prefix, kind.as_str());
            let (credential, individual_key) = match kind {
                DeviceKind::Symmetric => {
                    let device_key = derive_device_key(&seed, &registration_id);
                    let encoded = device_key.to_base64();
                    (Credential::SymmetricKey(device_key), Some(encoded))
                }
                DeviceKind::Group => (
                    Credential::SymmetricKey(derive_device_key(&group, &registration_id)),
                    None,
                ),
                DeviceKind::X509 => {
                    let ca = ca.as_ref().ok_or_else(|| ClientError::Config {
                        reason: "an X.509 device without a CA".to_owned(),
                    })?;
                    let (chain_pem, key_pem) = ca.issue(&registration_id)?;
                    (Credential::X509 { chain_pem, key_pem }, None)
                }
            };
            let certificate_request = options
                .issue_certificates
                .map(|key_type| CertificateRequest::generate(key_type, &registration_id))
                .transpose()?;
            devices.push(SwarmDevice {
                registration_id,
                kind,
                credential,
                individual_key,
                certificate_request,
            });
        }
        Ok(SwarmPlan {
            devices,
            options,
            group_key: group.to_base64(),
            ca,
        })
    }

    /// The X.509 CA chain, when the swarm has X.509 devices.
    pub fn ca(&self) -> Option<&SwarmCa> {
        self.ca.as_ref()
    }

    /// How many devices of a kind.
    pub fn count(&self, kind: DeviceKind) -> usize {
        self.devices.iter().filter(|d| d.kind == kind).count()
    }

    /// The individual enrollment (service API JSON) of a symmetric-key device.
    pub fn individual_enrollment(&self, device: &SwarmDevice) -> Option<Value> {
        let key = device.individual_key.as_ref()?;
        Some(self.with_policy(json!({
            "registrationId": device.registration_id,
            "attestation": {"type": "symmetricKey",
                "symmetricKey": {"primaryKey": key, "secondaryKey": key}},
            "provisioningStatus": "enabled",
        })))
    }

    /// `record` naming the plan's credential policy, if it has one.
    fn with_policy(&self, mut record: Value) -> Value {
        if let Some(policy) = &self.options.credential_policy {
            record["credentialPolicyName"] = json!(policy);
        }
        record
    }

    /// Every individual enrollment the swarm needs.
    pub fn individual_enrollments(&self) -> Vec<Value> {
        self.devices
            .iter()
            .filter_map(|d| self.individual_enrollment(d))
            .collect()
    }

    /// The enrollment groups the swarm needs (service API JSON), with ids.
    pub fn enrollment_groups(&self) -> Vec<(String, Value)> {
        let mut groups = Vec::new();
        if self.options.mix.group > 0 {
            groups.push((
                self.options.group_id.clone(),
                self.with_policy(json!({
                    "enrollmentGroupId": self.options.group_id,
                    "attestation": {"type": "symmetricKey",
                        "symmetricKey": {"primaryKey": self.group_key, "secondaryKey": self.group_key}},
                    "provisioningStatus": "enabled",
                })),
            ));
        }
        if let Some(ca) = &self.ca {
            // The root as the group's signing certificate: trusted as the
            // administrator uploads it, no proof-of-possession round.
            groups.push((
                self.options.x509_group_id.clone(),
                self.with_policy(json!({
                    "enrollmentGroupId": self.options.x509_group_id,
                    "attestation": {"type": "x509",
                        "x509": {"signingCertificates": {"primary": {"certificate": ca.root_pem()}}}},
                    "provisioningStatus": "enabled",
                })),
            ));
        }
        groups
    }

    /// Write the CA chain and every X.509 device's certificate and key to `dir`.
    pub fn write_certificates(&self, dir: &Path) -> Result<usize, ClientError> {
        std::fs::create_dir_all(dir).map_err(|e| ClientError::Config {
            reason: format!("creating {}: {e}", dir.display()),
        })?;
        let Some(ca) = &self.ca else {
            return Ok(0);
        };
        ca.write(dir)?;
        let mut written = 0;
        for device in &self.devices {
            if let Credential::X509 { chain_pem, key_pem } = &device.credential {
                write_file(
                    &dir.join(format!("{}.pem", device.registration_id)),
                    chain_pem,
                )?;
                write_file(
                    &dir.join(format!("{}.key", device.registration_id)),
                    key_pem,
                )?;
                written += 1;
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_interleaves() {
        let mix: Mix = "symmetric=70, group=20,x509=10".parse().unwrap();
        assert_eq!(
            mix,
            Mix {
                symmetric: 70,
                group: 20,
                x509: 10
            }
        );
        let kinds: Vec<DeviceKind> = (0..1000).map(|i| mix.kind_of(i)).collect();
        let count = |k| kinds.iter().filter(|x| **x == k).count();
        assert_eq!(
            (
                count(DeviceKind::Symmetric),
                count(DeviceKind::Group),
                count(DeviceKind::X509)
            ),
            (700, 200, 100)
        );
        for bad in ["", "symmetric=0", "tpm=3", "group", "x509=-1"] {
            assert!(
                matches!(bad.parse::<Mix>(), Err(ClientError::Config { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn plans_have_matching_keys_and_certificates() {
        let mut options = PlanOptions::new("t", 10, "symmetric=1,group=1,x509=1".parse().unwrap());
        let seed = generate_key();
        options.seed_key = Some(seed.clone());
        let plan = SwarmPlan::prepare(options.clone()).unwrap();
        assert_eq!(plan.devices.len(), 10);
        assert_eq!(plan.devices[2].registration_id, "t-x509-0000002");
        assert_eq!(plan.individual_enrollments().len(), 4);
        assert_eq!(plan.enrollment_groups().len(), 2);
        // The same seed gives the same individual keys.
        let again = SwarmPlan::prepare(options).unwrap();
        assert_eq!(
            plan.devices[0].individual_key,
            again.devices[0].individual_key
        );
        let Credential::X509 { chain_pem, .. } = &plan.devices[2].credential else {
            panic!("x509 device without a certificate")
        };
        assert_eq!(chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(plan.devices.iter().all(|d| d.certificate_request.is_none()));
        assert!(plan.enrollment_groups()[0]
            .1
            .get("credentialPolicyName")
            .is_none());
    }

    #[test]
    fn issuing_plans_prepare_requests_and_name_the_policy() {
        let mut options = PlanOptions::new("i", 3, "symmetric=1,group=1,x509=1".parse().unwrap());
        options.issue_certificates = Some(KeyType::EcdsaP256);
        options.credential_policy = Some("swarm-policy".to_owned());
        let plan = SwarmPlan::prepare(options).unwrap();
        assert!(plan.devices.iter().all(|d| d
            .certificate_request
            .as_ref()
            .is_some_and(|r| r.key_type() == KeyType::EcdsaP256)));
        for record in plan
            .individual_enrollments()
            .into_iter()
            .chain(plan.enrollment_groups().into_iter().map(|(_, g)| g))
        {
            assert_eq!(record["credentialPolicyName"], "swarm-policy", "{record}");
        }
    }
}
