//! Who the administrator is: a tenant's shared access policy (from a service
//! connection string) or the server's operator key — and the SAS tokens each
//! one signs, including device tokens for `dps-admin token`.

use std::fmt;
use std::time::Duration;

use dps_attestation::keys::derive_device_key;
use dps_attestation::sas::{create_token, registration_resource, unix_now, SymmetricKey};

use crate::ClientError;

/// The policy name of operator tokens (their `sr` is a name of the server).
pub const OPERATOR_POLICY: &str = "operator";

/// A service connection string:
/// `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`.
///
/// `Debug` and `Display` leave the key out, so a connection string can be
/// shown in messages without leaking it.
#[derive(Clone)]
pub struct ConnectionString {
    /// The tenant's service host name: the audience (`sr`) of its tokens.
    /// It need not resolve; requests may go to another endpoint.
    pub host_name: String,
    /// The shared access policy.
    pub key_name: String,
    /// The policy's key.
    pub key: SymmetricKey,
}

impl ConnectionString {
    /// Parse; names are case-insensitive, unknown parts are ignored (as the
    /// SDKs do), and the key keeps its trailing `=`.
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let mut host_name = None;
        let mut key_name = None;
        let mut key = None;
        for (index, part) in text.split(';').enumerate() {
            if part.trim().is_empty() {
                continue;
            }
            // The part itself is not quoted: it may be a pasted key.
            let (name, value) = part.split_once('=').ok_or_else(|| {
                config(format!(
                    "connection string: part {} is not NAME=VALUE",
                    index + 1
                ))
            })?;
            match name.trim().to_ascii_lowercase().as_str() {
                "hostname" => host_name = Some(value.trim().to_owned()),
                "sharedaccesskeyname" => key_name = Some(value.trim().to_owned()),
                "sharedaccesskey" => key = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        let missing = |field: &str| config(format!("connection string: no {field}"));
        let host_name = host_name
            .filter(|h| !h.is_empty())
            .ok_or_else(|| missing("HostName"))?;
        let key_name = key_name
            .filter(|k| !k.is_empty())
            .ok_or_else(|| missing("SharedAccessKeyName"))?;
        let key = SymmetricKey::from_base64(&key.ok_or_else(|| missing("SharedAccessKey"))?)
            .map_err(|e| config(format!("connection string SharedAccessKey: {e}")))?;
        Ok(ConnectionString {
            host_name,
            key_name,
            key,
        })
    }

    /// The whole string, key included (for writing it where the operator asked).
    pub fn to_secret_string(&self) -> String {
        format!(
            "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
            self.host_name,
            self.key_name,
            self.key.to_base64()
        )
    }

    /// A service token of this policy, valid for `lifetime`.
    pub fn token(&self, lifetime: Duration) -> String {
        create_token(
            &self.host_name,
            &self.key,
            unix_now() + lifetime.as_secs(),
            Some(&self.key_name),
        )
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host_name", &self.host_name)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HostName={};SharedAccessKeyName={};SharedAccessKey=<hidden>",
            self.host_name, self.key_name
        )
    }
}

/// What signs the requests of an [`AdminClient`](super::AdminClient).
#[derive(Clone, Debug)]
pub enum Credentials {
    /// A tenant's shared access policy: every route but `/tenants`.
    Policy(ConnectionString),
    /// The server's operator key: the `/tenants` routes only.
    Operator(SymmetricKey),
}

impl Credentials {
    /// The operator key as `dps-server` keeps it: used decoded when it is
    /// valid base64, else as raw bytes (the server reads it the same way).
    pub fn operator(key: &str) -> Self {
        let key = key.trim();
        Credentials::Operator(
            SymmetricKey::from_base64(key)
                .unwrap_or_else(|_| SymmetricKey::from_bytes(key.as_bytes())),
        )
    }

    /// A token for one request to `endpoint` (`host[:port]`), valid for
    /// `lifetime`. A policy's audience is its tenant's host name; the
    /// operator's is the host the request goes to, which the server checks
    /// against its own names.
    pub fn token(&self, endpoint: &str, lifetime: Duration) -> String {
        match self {
            Credentials::Policy(connection) => connection.token(lifetime),
            Credentials::Operator(key) => create_token(
                endpoint_host(endpoint),
                key,
                unix_now() + lifetime.as_secs(),
                Some(OPERATOR_POLICY),
            ),
        }
    }
}

/// The host of `host[:port]` (an IPv6 literal keeps its brackets).
fn endpoint_host(endpoint: &str) -> &str {
    match endpoint.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) && !host.is_empty() => host,
        _ => endpoint,
    }
}

/// A device's SAS token for registering (`sr={idScope}/registrations/{id}`,
/// `skn=registration`), as the device SDKs make it.
pub fn device_token(
    id_scope: &str,
    registration_id: &str,
    key: &SymmetricKey,
    lifetime: Duration,
) -> String {
    create_token(
        &registration_resource(id_scope, registration_id),
        key,
        unix_now() + lifetime.as_secs(),
        Some("registration"),
    )
}

/// The device key of `registration_id` in a symmetric-key enrollment group
/// whose (base64) key is `group_key`: base64(HMAC-SHA256(group key, id)).
pub fn compute_device_key(group_key: &str, registration_id: &str) -> Result<String, ClientError> {
    if registration_id.is_empty() {
        return Err(config("a registration id is required".to_owned()));
    }
    let group_key =
        SymmetricKey::from_base64(group_key).map_err(|e| config(format!("the group key: {e}")))?;
    Ok(derive_device_key(&group_key, registration_id).to_base64())
}

/// Parse a base64 key given on the command line or in a file.
pub fn parse_key(what: &str, text: &str) -> Result<SymmetricKey, ClientError> {
    SymmetricKey::from_base64(text).map_err(|e| config(format!("{what}: {e}")))
}

pub(super) fn config(reason: String) -> ClientError {
    ClientError::Config { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS1vZi10aGUtb3duZXItcG9saWN5IQ==";

    #[test]
    fn connection_strings_parse_in_any_order_and_case() {
        let cs = ConnectionString::parse(&format!(
            " sharedaccesskey={KEY} ; HostName=factory.dps.test;SharedAccessKeyName=owner;Extra=1"
        ))
        .unwrap();
        assert_eq!(cs.host_name, "factory.dps.test");
        assert_eq!(cs.key_name, "owner");
        assert_eq!(cs.key.to_base64(), KEY);
        assert_eq!(
            cs.to_secret_string(),
            format!("HostName=factory.dps.test;SharedAccessKeyName=owner;SharedAccessKey={KEY}")
        );
        // Neither Debug nor Display shows the key.
        assert!(!format!("{cs:?}{cs}").contains(KEY));
    }

    #[test]
    fn bad_connection_strings_name_what_is_missing_without_the_key() {
        let error = |text: &str| ConnectionString::parse(text).unwrap_err().to_string();
        assert!(error("SharedAccessKeyName=a;SharedAccessKey=AAAA").contains("no HostName"));
        assert!(error("HostName=h;SharedAccessKey=AAAA").contains("no SharedAccessKeyName"));
        assert!(error("HostName=h;SharedAccessKeyName=a").contains("no SharedAccessKey"));
        let garbled = error("HostName=h;SharedAccessKeyName=a;SharedAccessKey=not base64!");
        assert!(garbled.contains("SharedAccessKey") && !garbled.contains("not base64!"));
        assert!(error("just-some-secret").contains("NAME=VALUE"));
        assert!(!error("just-some-secret").contains("just-some-secret"));
    }

    #[test]
    fn operator_keys_are_base64_or_raw_like_the_server_reads_them() {
        let Credentials::Operator(decoded) = Credentials::operator(KEY) else {
            unreachable!()
        };
        assert_eq!(decoded.to_base64(), KEY);
        let Credentials::Operator(raw) = Credentials::operator("not base64 !") else {
            unreachable!()
        };
        assert_eq!(raw.as_bytes(), b"not base64 !");
        let token = Credentials::operator(KEY).token("dps.example:9443", Duration::from_secs(60));
        assert!(token.starts_with("SharedAccessSignature sr=dps.example&sig="));
        assert_eq!(endpoint_host("[::1]:443"), "[::1]");
        assert_eq!(endpoint_host("dps.example"), "dps.example");
        assert!(token.ends_with("&skn=operator"));
    }

    #[test]
    fn device_keys_are_derived_from_the_group_key() {
        let derived = compute_device_key(KEY, "dev-1").unwrap();
        let expected =
            derive_device_key(&SymmetricKey::from_base64(KEY).unwrap(), "dev-1").to_base64();
        assert_eq!(derived, expected);
        assert_ne!(derived, compute_device_key(KEY, "dev-2").unwrap());
        assert!(compute_device_key("%%%", "dev-1").is_err());
        assert!(compute_device_key(KEY, "").is_err());
        let token = device_token(
            "0ne00000001",
            "dev-1",
            &SymmetricKey::from_base64(&derived).unwrap(),
            Duration::from_secs(60),
        );
        assert!(token.starts_with("SharedAccessSignature sr=0ne00000001%2Fregistrations%2Fdev-1&"));
        assert!(token.ends_with("&skn=registration"));
    }
}
