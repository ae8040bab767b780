//! `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…` service connection strings.

use std::fmt;
use std::str::FromStr;

use dps_attestation::sas::SymmetricKey;

use crate::HubError;

const HOST_NAME: &str = "HostName";
const KEY_NAME: &str = "SharedAccessKeyName";
const KEY: &str = "SharedAccessKey";

/// A parsed IoT hub service connection string.
///
/// Parts may come in any order and their names are matched case-insensitively;
/// unknown parts (`DeviceId`, `GatewayHostName`…) are ignored. The key is kept
/// decoded and never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    host_name: String,
    key_name: String,
    key: SymmetricKey,
    /// The key as written, so [`fmt::Display`] can round-trip the string.
    key_text: String,
}

impl ConnectionString {
    /// Parse a connection string.
    pub fn parse(text: &str) -> Result<Self, HubError> {
        let (mut host_name, mut key_name, mut key) = (None, None, None);
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) =
                part.split_once('=')
                    .ok_or_else(|| HubError::InvalidConnectionStringPart {
                        part: part_name(part),
                        reason: "expected Name=Value".to_owned(),
                    })?;
            let slot = if name.eq_ignore_ascii_case(HOST_NAME) {
                &mut host_name
            } else if name.eq_ignore_ascii_case(KEY_NAME) {
                &mut key_name
            } else if name.eq_ignore_ascii_case(KEY) {
                &mut key
            } else {
                continue;
            };
            *slot = Some(value.trim());
        }
        let host_name = host_name
            .filter(|h| !h.is_empty())
            .ok_or(HubError::MissingConnectionStringPart { part: HOST_NAME })?;
        if host_name.contains(['/', ' ', '?', '#', '@']) {
            return Err(HubError::InvalidConnectionStringPart {
                part: HOST_NAME,
                reason: format!("{host_name:?} is not a host name"),
            });
        }
        let key_name = key_name
            .filter(|k| !k.is_empty())
            .ok_or(HubError::MissingConnectionStringPart { part: KEY_NAME })?;
        let key_text = key
            .filter(|k| !k.is_empty())
            .ok_or(HubError::MissingConnectionStringPart { part: KEY })?;
        let key = SymmetricKey::from_base64(key_text).map_err(|_| {
            HubError::InvalidConnectionStringPart {
                part: KEY,
                reason: "not valid base64".to_owned(),
            }
        })?;
        Ok(ConnectionString {
            host_name: host_name.to_owned(),
            key_name: key_name.to_owned(),
            key,
            key_text: key_text.to_owned(),
        })
    }

    /// Build one from its parts (the key in base64).
    pub fn new(host_name: &str, key_name: &str, key_base64: &str) -> Result<Self, HubError> {
        Self::parse(&format!(
            "{HOST_NAME}={host_name};{KEY_NAME}={key_name};{KEY}={key_base64}"
        ))
    }

    /// The hub host name (`HostName`), possibly with a `:port`.
    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    /// The shared access policy name (`SharedAccessKeyName`).
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// The policy key (`SharedAccessKey`), decoded.
    pub fn key(&self) -> &SymmetricKey {
        &self.key
    }
}

/// Names the part in errors without echoing a value that might be a key.
fn part_name(part: &str) -> &'static str {
    let lower = part.to_ascii_lowercase();
    if lower.starts_with("hostname") {
        HOST_NAME
    } else if lower.starts_with("sharedaccesskeyname") {
        KEY_NAME
    } else if lower.starts_with("sharedaccesskey") {
        KEY
    } else {
        "a part"
    }
}

impl FromStr for ConnectionString {
    type Err = HubError;
    fn from_str(s: &str) -> Result<Self, HubError> {
        Self::parse(s)
    }
}

/// The full connection string, key included: for handing to clients, not for logs.
impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{HOST_NAME}={};{KEY_NAME}={};{KEY}={}",
            self.host_name, self.key_name, self.key_text
        )
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host_name", &self.host_name)
            .field("key_name", &self.key_name)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY_B64: &str = "c2VjcmV0LWtleS1ieXRlcy0xMjM0NTY3ODkwYWJjZA==";

    #[test]
    fn any_order_and_case() {
        let cs = ConnectionString::parse(&format!(
            "sharedaccesskey={KEY_B64}; HostName=hub-a.example ;SharedAccessKeyName=iothubowner;DeviceId=x"
        ))
        .unwrap();
        assert_eq!(cs.host_name(), "hub-a.example");
        assert_eq!(cs.key_name(), "iothubowner");
        assert_eq!(cs.key().to_base64(), KEY_B64);
        assert_eq!(
            cs.to_string(),
            format!(
                "HostName=hub-a.example;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY_B64}"
            )
        );
    }

    #[test]
    fn missing_parts_are_named() {
        let missing = |text: &str| match ConnectionString::parse(text) {
            Err(HubError::MissingConnectionStringPart { part }) => part,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(missing(""), "HostName");
        assert_eq!(
            missing(&format!("SharedAccessKeyName=a;SharedAccessKey={KEY_B64}")),
            "HostName"
        );
        assert_eq!(
            missing(&format!("HostName=h;SharedAccessKey={KEY_B64}")),
            "SharedAccessKeyName"
        );
        assert_eq!(
            missing("HostName=h;SharedAccessKeyName=a"),
            "SharedAccessKey"
        );
        assert_eq!(
            missing("HostName=h;SharedAccessKeyName=a;SharedAccessKey="),
            "SharedAccessKey"
        );
    }

    #[test]
    fn bad_key_and_garbage_are_invalid_parts() {
        assert!(matches!(
            ConnectionString::parse("HostName=h;SharedAccessKeyName=a;SharedAccessKey=!!"),
            Err(HubError::InvalidConnectionStringPart {
                part: "SharedAccessKey",
                ..
            })
        ));
        assert!(matches!(
            ConnectionString::parse("HostName=h;garbage"),
            Err(HubError::InvalidConnectionStringPart { .. })
        ));
        assert!(matches!(
            ConnectionString::parse(&format!(
                "HostName=https://h/x;SharedAccessKeyName=a;SharedAccessKey={KEY_B64}"
            )),
            Err(HubError::InvalidConnectionStringPart {
                part: "HostName",
                ..
            })
        ));
    }

    #[test]
    fn debug_hides_the_key() {
        let cs = ConnectionString::new("h", "iothubowner", KEY_B64).unwrap();
        let shown = format!("{cs:?}");
        assert!(!shown.contains(KEY_B64), "{shown}");
        assert!(shown.contains("iothubowner"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in ".{0,200}") {
            let _ = ConnectionString::parse(&text);
        }

        #[test]
        fn round_trips(
            host in "[a-z][a-z0-9-]{0,20}(\\.[a-z0-9-]{1,10}){0,3}",
            policy in "[A-Za-z][A-Za-z0-9_-]{0,20}",
            key in proptest::collection::vec(any::<u8>(), 1..64),
            order in 0usize..6,
        ) {
            let key = SymmetricKey::from_bytes(key).to_base64();
            let parts = [
                format!("HostName={host}"),
                format!("SharedAccessKeyName={policy}"),
                format!("SharedAccessKey={key}"),
            ];
            let orders = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
            let text = orders[order].iter().map(|&i| parts[i].as_str()).collect::<Vec<_>>().join(";");
            let cs = ConnectionString::parse(&text).unwrap();
            prop_assert_eq!(cs.host_name(), host.as_str());
            prop_assert_eq!(cs.key_name(), policy.as_str());
            prop_assert_eq!(cs.key().to_base64(), key.clone());
            prop_assert_eq!(ConnectionString::parse(&cs.to_string()).unwrap(), cs);
        }
    }
}
