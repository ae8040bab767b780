//! Identifiers: ID scope, registration id, device id, enrollment group id.
//!
//! Registration and group ids are case-insensitive: they keep the spelling
//! they were created with, compare and hash by their lower-case form, and
//! [`RegistrationId::key`] gives the form storage looks them up by.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::ModelError;

const MAX_ID_LEN: usize = 128;

fn is_id_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':')
}

/// Registration and enrollment-group id rule: 1..=128 of `[A-Za-z0-9-._:]`,
/// starting with an alphanumeric and ending with an alphanumeric or `-`.
fn check_enrollment_style_id(kind: &'static str, value: &str) -> Result<(), ModelError> {
    let invalid = |reason| ModelError::InvalidId {
        kind,
        value: value.to_owned(),
        reason,
    };
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if bytes.len() > MAX_ID_LEN {
        return Err(invalid("must be at most 128 characters"));
    }
    if !bytes.iter().all(|&b| is_id_char(b)) {
        return Err(invalid(
            "may contain only letters, digits and the characters - . _ :",
        ));
    }
    if !bytes[0].is_ascii_alphanumeric() {
        return Err(invalid("must start with a letter or a digit"));
    }
    let last = bytes[bytes.len() - 1];
    if !(last.is_ascii_alphanumeric() || last == b'-') {
        return Err(invalid("must end with a letter, a digit or -"));
    }
    Ok(())
}

macro_rules! case_insensitive_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validate and wrap an id.
            pub fn new(value: impl Into<String>) -> Result<Self, ModelError> {
                let value = value.into();
                check_enrollment_style_id($kind, &value)?;
                Ok($name(value))
            }

            /// The id as it was created.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The lower-case form used for lookups and uniqueness.
            pub fn key(&self) -> String {
                self.0.to_ascii_lowercase()
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.eq_ignore_ascii_case(&other.0)
            }
        }
        impl Eq for $name {}
        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                for b in self.0.bytes() {
                    state.write_u8(b.to_ascii_lowercase());
                }
            }
        }
        impl TryFrom<String> for $name {
            type Error = ModelError;
            fn try_from(value: String) -> Result<Self, ModelError> {
                $name::new(value)
            }
        }
        impl std::str::FromStr for $name {
            type Err = ModelError;
            fn from_str(value: &str) -> Result<Self, ModelError> {
                $name::new(value)
            }
        }
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

case_insensitive_id!(
    /// A device's registration id: case-insensitive, ≤128 characters of `[A-Za-z0-9-._:]`.
    RegistrationId,
    "registrationId"
);
case_insensitive_id!(
    /// An enrollment group's id: same rules as a registration id.
    EnrollmentGroupId,
    "enrollmentGroupId"
);

/// An ID scope: the tenant selector in every device request, e.g. `0ne00000A0A`.
/// Compared case-insensitively.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdScope(String);

impl IdScope {
    /// Validate and wrap an ID scope: 1..=64 ASCII letters and digits.
    pub fn new(value: impl Into<String>) -> Result<Self, ModelError> {
        let value = value.into();
        let invalid = |reason| ModelError::InvalidId {
            kind: "idScope",
            value: value.clone(),
            reason,
        };
        if value.is_empty() || value.len() > 64 {
            return Err(invalid("must be 1 to 64 characters"));
        }
        if !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid("may contain only letters and digits"));
        }
        Ok(IdScope(value))
    }

    /// A fresh scope in the cloud's style: `0ne` followed by 8 upper-case hex digits.
    pub fn generate() -> Self {
        IdScope(format!("0ne{:08X}", rand::random::<u32>()))
    }

    /// The scope as created.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lower-case form used for lookups.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl PartialEq for IdScope {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for IdScope {}
impl Hash for IdScope {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for b in self.0.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}
impl TryFrom<String> for IdScope {
    type Error = ModelError;
    fn try_from(value: String) -> Result<Self, ModelError> {
        IdScope::new(value)
    }
}
impl std::str::FromStr for IdScope {
    type Err = ModelError;
    fn from_str(value: &str) -> Result<Self, ModelError> {
        IdScope::new(value)
    }
}
impl From<IdScope> for String {
    fn from(id: IdScope) -> String {
        id.0
    }
}
impl fmt::Display for IdScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for IdScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdScope({:?})", self.0)
    }
}

/// An IoT hub device id: case-sensitive, ≤128 ASCII characters from the IoT
/// Hub identity registry's set (`+` and `#` are refused: device SDKs cannot use them).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl DeviceId {
    /// Validate and wrap a device id.
    pub fn new(value: impl Into<String>) -> Result<Self, ModelError> {
        let value = value.into();
        let invalid = |reason| ModelError::InvalidId {
            kind: "deviceId",
            value: value.clone(),
            reason,
        };
        if value.is_empty() || value.len() > MAX_ID_LEN {
            return Err(invalid("must be 1 to 128 characters"));
        }
        let allowed = |b: u8| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'%'
                        | b'_'
                        | b'*'
                        | b'?'
                        | b'!'
                        | b'('
                        | b')'
                        | b','
                        | b':'
                        | b'='
                        | b'@'
                        | b'$'
                        | b'\''
                )
        };
        if !value.bytes().all(allowed) {
            return Err(invalid(
                "may contain only letters, digits and - . % _ * ? ! ( ) , : = @ $ '",
            ));
        }
        Ok(DeviceId(value))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&RegistrationId> for DeviceId {
    fn from(id: &RegistrationId) -> Self {
        // Registration id characters are a subset of device id characters.
        DeviceId(id.as_str().to_owned())
    }
}
impl TryFrom<String> for DeviceId {
    type Error = ModelError;
    fn try_from(value: String) -> Result<Self, ModelError> {
        DeviceId::new(value)
    }
}
impl From<DeviceId> for String {
    fn from(id: DeviceId) -> String {
        id.0
    }
}
impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn registration_id_rules() {
        assert!(RegistrationId::new("dev-1.a_b:c").is_ok());
        assert!(RegistrationId::new("a").is_ok());
        assert!(RegistrationId::new("dev-").is_ok());
        for bad in [
            "",
            "-dev",
            "dev.",
            "dev 1",
            "dev/1",
            "dév",
            &"a".repeat(129),
        ] {
            let err = RegistrationId::new(bad).unwrap_err();
            assert!(
                matches!(err, ModelError::InvalidId { kind: "registrationId", ref value, .. } if value == bad),
                "{bad}: {err}"
            );
        }
        assert!(RegistrationId::new("a".repeat(128)).is_ok());
    }

    #[test]
    fn case_insensitive_equality_keeps_spelling() {
        let a = RegistrationId::new("MyDevice").unwrap();
        let b = RegistrationId::new("mydevice").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "MyDevice");
        assert_eq!(a.key(), "mydevice");
        let scope = IdScope::generate();
        assert!(scope.as_str().starts_with("0ne") && scope.as_str().len() == 11);
        assert_eq!(
            IdScope::new("0NE00000A0A").unwrap(),
            IdScope::new("0ne00000a0a").unwrap()
        );
    }

    #[test]
    fn device_id_rules() {
        assert!(DeviceId::new("a$b@c=d'e").is_ok());
        assert!(DeviceId::new("a+b").is_err());
        assert!(DeviceId::new("a#b").is_err());
    }

    proptest! {
        #[test]
        fn any_string_validates_without_panic(s in ".{0,200}") {
            let _ = RegistrationId::new(s.clone());
            let _ = IdScope::new(s.clone());
            let _ = DeviceId::new(s);
        }

        #[test]
        fn valid_ids_round_trip_through_json(s in "[A-Za-z0-9]([A-Za-z0-9._:-]{0,126}[A-Za-z0-9-])?") {
            let id = RegistrationId::new(s.clone()).unwrap();
            let json = serde_json::to_string(&id).unwrap();
            let back: RegistrationId = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back.as_str(), s.as_str());
        }
    }
}
