//! Shared access signature tokens: `SharedAccessSignature sr=…&sig=…&se=…[&skn=…]`.
//!
//! One implementation serves device registration tokens
//! (`{idScope}/registrations/{registrationId}`, `skn=registration`), service-API
//! tokens (`sr` = host name, `skn` = policy) and IoT hub tokens.
//!
//! The signature is checked over the `sr` value exactly as it appears in the
//! token (still percent-encoded): clients differ in escape casing and in whether
//! they encode at all, and each signs what it sends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::AttestationError;

const SCHEME: &str = "SharedAccessSignature";

/// Characters left unescaped by `encodeURIComponent`, which is what the
/// official SDKs use for `sr` and `sig`.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// The clock-skew allowance applied to `se` unless configured otherwise.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The longest time ahead a token's `se` may lie unless configured otherwise:
/// two days. The official device SDKs sign for 30 s (aziot), 40 min to 1 h
/// (C, Node, Python, Java) and 1 day (C#), so twice the longest leaves room
/// for a device clock that runs ahead, while a token signed once for an
/// absurd expiry (`se = 2^64-1`) cannot be replayed forever.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(2 * 24 * 3600);

/// A decoded symmetric key (the bytes behind a base64 key string).
///
/// The HMAC-SHA256 key schedule (the inner and outer padded key blocks) is
/// computed once at construction, so a key kept between requests signs and
/// verifies with two fewer SHA-256 blocks per use.
#[derive(Clone)]
pub struct SymmetricKey {
    bytes: Vec<u8>,
    keyed: Hmac<Sha256>,
}

impl SymmetricKey {
    /// Decode a base64 key as found in enrollments and connection strings.
    pub fn from_base64(encoded: &str) -> Result<Self, AttestationError> {
        BASE64
            .decode(encoded.trim())
            .map(SymmetricKey::from_bytes)
            .map_err(|_| AttestationError::InvalidKey {
                reason: "not valid base64".to_owned(),
            })
    }

    /// Wrap raw key bytes.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        let bytes = bytes.into();
        // HMAC accepts keys of any length; new_from_slice cannot fail for it.
        let keyed = Hmac::<Sha256>::new_from_slice(&bytes).expect("HMAC takes any key length");
        SymmetricKey { bytes, keyed }
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The key in standard base64, as stored in enrollments.
    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.bytes)
    }

    /// base64(HMAC-SHA256(key, message)).
    pub fn sign(&self, message: &[u8]) -> String {
        BASE64.encode(self.hmac_sha256(message))
    }

    /// HMAC-SHA256(key, message), raw.
    pub fn hmac_sha256(&self, message: &[u8]) -> [u8; 32] {
        self.hmac_parts(&[message])
    }

    /// HMAC-SHA256 over the concatenation of `parts`, without building it.
    fn hmac_parts(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

impl PartialEq for SymmetricKey {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.bytes.ct_eq(&other.bytes))
    }
}

impl Eq for SymmetricKey {}

impl std::fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys never reach logs.
        write!(f, "SymmetricKey(<{} bytes>)", self.bytes.len())
    }
}

/// A parsed SAS token. `resource_raw` is kept exactly as sent for signature checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SasToken {
    /// The `sr` value as it appears in the token (possibly percent-encoded).
    pub resource_raw: String,
    /// The percent-decoded `sr` value.
    pub resource: String,
    /// The percent-decoded base64 signature.
    pub signature: String,
    /// The `se` value as it appears in the token (signed verbatim).
    pub expiry_raw: String,
    /// Expiry in Unix seconds.
    pub expiry: u64,
    /// The percent-decoded `skn` value, if present.
    pub key_name: Option<String>,
}

impl SasToken {
    /// Parse `SharedAccessSignature k=v&k=v…` with fields in any order and
    /// case-insensitive field names.
    pub fn parse(token: &str) -> Result<Self, AttestationError> {
        let malformed = |reason: &str| AttestationError::MalformedToken {
            reason: reason.to_owned(),
        };
        let token = token.trim();
        let rest = match token.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case(SCHEME) => rest.trim_start(),
            _ => return Err(malformed("missing the SharedAccessSignature scheme")),
        };
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for pair in rest.split('&') {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| malformed("a field is not of the form key=value"))?;
            let slot = match key.to_ascii_lowercase().as_str() {
                "sr" => &mut sr,
                "sig" => &mut sig,
                "se" => &mut se,
                "skn" => &mut skn,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(malformed("a field appears twice"));
            }
        }
        let resource_raw = sr.ok_or_else(|| malformed("missing sr"))?;
        let signature = decode(sig.ok_or_else(|| malformed("missing sig"))?)?;
        let expiry_raw = se.ok_or_else(|| malformed("missing se"))?;
        let expiry = decode(expiry_raw)?
            .parse::<u64>()
            .map_err(|_| malformed("se is not a decimal number of seconds"))?;
        if resource_raw.is_empty() || signature.is_empty() {
            return Err(malformed("empty sr or sig"));
        }
        Ok(SasToken {
            resource: decode(resource_raw)?,
            resource_raw: resource_raw.to_owned(),
            signature,
            expiry_raw: expiry_raw.to_owned(),
            expiry,
            key_name: skn.map(decode).transpose()?,
        })
    }

    /// The string the signature covers: raw `sr`, newline, raw `se`.
    pub fn string_to_sign(&self) -> String {
        format!("{}\n{}", self.resource_raw, self.expiry_raw)
    }

    /// Check the audience, the expiry and the signature against one or more
    /// candidate keys (primary, secondary…). Returns the index of the key that
    /// matched.
    pub fn verify(
        &self,
        expected: &Audience<'_>,
        keys: &[&SymmetricKey],
        policy: &ExpiryPolicy,
    ) -> Result<usize, AttestationError> {
        self.check_audience(expected)?;
        self.check_expiry(policy)?;
        self.check_signature(keys)
    }

    /// Case-insensitive audience check on the decoded `sr`, tolerating a
    /// trailing `/` and a `:port` on the host part.
    pub fn check_audience(&self, expected: &Audience<'_>) -> Result<(), AttestationError> {
        if audience_matches(&self.resource, expected.0) {
            Ok(())
        } else {
            Err(AttestationError::WrongAudience {
                expected: expected.0.to_owned(),
                actual: self.resource.clone(),
            })
        }
    }

    /// Expired when `se + skew < now`; too long-lived when
    /// `se > now + max_lifetime + skew` (the skew forgives a signer whose
    /// clock runs ahead). Saturating arithmetic: any `u64` is judged, none
    /// overflows.
    pub fn check_expiry(&self, policy: &ExpiryPolicy) -> Result<(), AttestationError> {
        let now = policy.now();
        let skew = policy.clock_skew.as_secs();
        if self.expiry.saturating_add(skew) < now {
            return Err(AttestationError::TokenExpired {
                expiry: self.expiry,
                now,
            });
        }
        if let Some(max) = policy.max_lifetime {
            let latest = now.saturating_add(max.as_secs()).saturating_add(skew);
            if self.expiry > latest {
                return Err(AttestationError::TokenLifetimeTooLong {
                    expiry: self.expiry,
                    max_lifetime_secs: max.as_secs(),
                });
            }
        }
        Ok(())
    }

    /// Constant-time comparison against each candidate key; the index of the
    /// first key whose signature matches.
    pub fn check_signature(&self, keys: &[&SymmetricKey]) -> Result<usize, AttestationError> {
        // A SHA-256 signature is 32 bytes; room for more so that longer
        // (wrong) signatures decode and then simply fail to match.
        let mut buffer = [0u8; 64];
        let presented = match BASE64.decode_slice(self.signature.as_bytes(), &mut buffer) {
            Ok(len) => &buffer[..len],
            Err(_) => return Err(AttestationError::BadSignature),
        };
        let message = [
            self.resource_raw.as_bytes(),
            b"\n",
            self.expiry_raw.as_bytes(),
        ];
        let mut matched = None;
        for (index, key) in keys.iter().enumerate() {
            let expected = key.hmac_parts(&message);
            // Compare against every key so timing does not tell which one matched.
            if bool::from(expected.as_slice().ct_eq(presented)) && matched.is_none() {
                matched = Some(index);
            }
        }
        matched.ok_or(AttestationError::BadSignature)
    }
}

/// The resource a token must be issued for, e.g. `0ne00000A0A/registrations/dev1`
/// or a host name.
#[derive(Clone, Copy, Debug)]
pub struct Audience<'a>(pub &'a str);

/// How expiry is judged: the allowed clock skew, the longest lifetime left
/// to a token, and the clock itself.
#[derive(Clone, Debug)]
pub struct ExpiryPolicy {
    /// Added to `se` before comparing with now.
    pub clock_skew: Duration,
    /// How far ahead of now (plus the skew) `se` may lie; `None` accepts any
    /// future expiry (only for verifiers that mint their own tokens).
    pub max_lifetime: Option<Duration>,
    /// A fixed "now" in Unix seconds (tests and known-answer vectors), or the system clock.
    pub fixed_now: Option<u64>,
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        ExpiryPolicy {
            clock_skew: DEFAULT_CLOCK_SKEW,
            max_lifetime: Some(DEFAULT_MAX_LIFETIME),
            fixed_now: None,
        }
    }
}

impl ExpiryPolicy {
    /// Judge expiry at a fixed instant (Unix seconds).
    pub fn at(now_unix: u64) -> Self {
        ExpiryPolicy {
            fixed_now: Some(now_unix),
            ..ExpiryPolicy::default()
        }
    }

    /// The same policy with another lifetime cap (`None`: uncapped).
    pub fn with_max_lifetime(self, max_lifetime: Option<Duration>) -> Self {
        ExpiryPolicy {
            max_lifetime,
            ..self
        }
    }

    /// "Now" in Unix seconds by this policy's clock.
    pub fn now(&self) -> u64 {
        self.fixed_now.unwrap_or_else(unix_now)
    }
}

/// Seconds since the Unix epoch by the system clock.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Build a token for `resource`, percent-encoding `sr` as the C and C# SDKs do.
pub fn create_token(
    resource: &str,
    key: &SymmetricKey,
    expiry_unix: u64,
    key_name: Option<&str>,
) -> String {
    let sr = utf8_percent_encode(resource, COMPONENT).to_string();
    let se = expiry_unix.to_string();
    let sig = key.sign(format!("{sr}\n{se}").as_bytes());
    let mut token = format!(
        "{SCHEME} sr={sr}&sig={}&se={se}",
        utf8_percent_encode(&sig, COMPONENT)
    );
    if let Some(name) = key_name {
        token.push_str("&skn=");
        token.push_str(&utf8_percent_encode(name, COMPONENT).to_string());
    }
    token
}

/// The resource URI of a device registration token.
pub fn registration_resource(id_scope: &str, registration_id: &str) -> String {
    format!("{id_scope}/registrations/{registration_id}")
}

fn decode(value: &str) -> Result<String, AttestationError> {
    percent_decode_str(value)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| AttestationError::MalformedToken {
            reason: "a field is not valid UTF-8 once percent-decoded".to_owned(),
        })
}

fn audience_matches(actual: &str, expected: &str) -> bool {
    fn normalise(s: &str) -> &str {
        s.trim_end_matches('/')
    }
    let (actual, expected) = (normalise(actual), normalise(expected));
    if actual.eq_ignore_ascii_case(expected) {
        return true;
    }
    // Tolerate a `:port` after the host in the token (clients that were given
    // `host:port` as HostName sign it), compared segment by segment.
    let (actual_host, actual_path) = actual.split_once('/').unwrap_or((actual, ""));
    let (expected_host, expected_path) = expected.split_once('/').unwrap_or((expected, ""));
    let actual_host = match actual_host.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => actual_host,
    };
    actual_host.eq_ignore_ascii_case(expected_host)
        && actual_path.eq_ignore_ascii_case(expected_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_KEY: &str =
        "18RQk/hOPJR9EbsJlk2j8WA6vWaj/yi+oaYg7zmxfQNdOyMSu+SJ8O7TSlZhDJCYmn4rzEiVKIzNiVAWjLxrGA==";

    #[test]
    fn spec_vector_signature() {
        let key = SymmetricKey::from_base64(DOC_KEY).unwrap();
        let token = create_token(
            "0ne00111111/registrations/my-symkey-device",
            &key,
            1663952627,
            Some("registration"),
        );
        assert_eq!(
            token,
            "SharedAccessSignature sr=0ne00111111%2Fregistrations%2Fmy-symkey-device\
             &sig=8VPprb8BiTkuVE0hBqHm%2FSVrzVpdD8VZcXugntdbhuU%3D&se=1663952627&skn=registration"
        );
        let parsed = SasToken::parse(&token).unwrap();
        assert_eq!(
            parsed.verify(
                &Audience("0NE00111111/registrations/MY-SYMKEY-DEVICE"),
                &[&key],
                &ExpiryPolicy::at(1663952627)
            ),
            Ok(0)
        );
    }

    #[test]
    fn unencoded_sr_as_node_sends_verifies() {
        let key = SymmetricKey::from_bytes(vec![7u8; 32]);
        let sr = "0ne00000A0A/registrations/dev1";
        let sig = key.sign(format!("{sr}\n1795397501").as_bytes());
        let token = format!(
            "SharedAccessSignature sr={sr}&sig={}&skn=registration&se=1795397501",
            utf8_percent_encode(&sig, COMPONENT)
        );
        let parsed = SasToken::parse(&token).unwrap();
        assert_eq!(
            parsed.verify(&Audience(sr), &[&key], &ExpiryPolicy::at(1795397000)),
            Ok(0)
        );
    }

    #[test]
    fn host_with_port_matches_host() {
        assert!(audience_matches("localhost:9443", "localhost"));
        assert!(audience_matches("LOCALHOST/", "localhost"));
        assert!(!audience_matches("otherhost", "localhost"));
        assert!(!audience_matches(
            "0ne1/registrations/a",
            "0ne1/registrations/b"
        ));
    }

    #[test]
    fn expired_and_wrong_key_are_typed() {
        let key = SymmetricKey::from_bytes(vec![1u8; 32]);
        let other = SymmetricKey::from_bytes(vec![2u8; 32]);
        let token = SasToken::parse(&create_token("hub.example", &key, 1000, None)).unwrap();
        assert!(matches!(
            token.check_expiry(&ExpiryPolicy::at(1000 + 301)),
            Err(AttestationError::TokenExpired { expiry: 1000, .. })
        ));
        assert_eq!(token.check_expiry(&ExpiryPolicy::at(1000 + 300)), Ok(()));
        assert_eq!(
            token.check_signature(&[&other]),
            Err(AttestationError::BadSignature)
        );
        assert_eq!(token.check_signature(&[&other, &key]), Ok(1));
    }

    #[test]
    fn expiry_beyond_the_lifetime_cap_is_refused() {
        let key = SymmetricKey::from_bytes(vec![1u8; 32]);
        let now = 1_800_000_000;
        let policy = ExpiryPolicy::at(now);
        let cap = DEFAULT_MAX_LIFETIME.as_secs() + DEFAULT_CLOCK_SKEW.as_secs();
        let at = |se: u64| SasToken::parse(&create_token("hub.example", &key, se, None)).unwrap();
        // The C# device SDK signs for one day: well inside the default cap.
        assert_eq!(at(now + 24 * 3600).check_expiry(&policy), Ok(()));
        assert_eq!(at(now + cap).check_expiry(&policy), Ok(()));
        assert_eq!(
            at(now + cap + 1).check_expiry(&policy),
            Err(AttestationError::TokenLifetimeTooLong {
                expiry: now + cap + 1,
                max_lifetime_secs: DEFAULT_MAX_LIFETIME.as_secs(),
            })
        );
        // `verify` applies the cap before the signature.
        assert!(matches!(
            at(u64::MAX).verify(&Audience("hub.example"), &[&key], &policy),
            Err(AttestationError::TokenLifetimeTooLong {
                expiry: u64::MAX,
                ..
            })
        ));
        // A verifier may lift the cap, and tighten it.
        let uncapped = ExpiryPolicy::at(now).with_max_lifetime(None);
        assert_eq!(at(u64::MAX).check_expiry(&uncapped), Ok(()));
        let hour = ExpiryPolicy::at(now).with_max_lifetime(Some(Duration::from_secs(3600)));
        assert_eq!(at(now + 3600 + 300).check_expiry(&hour), Ok(()));
        assert!(at(now + 3600 + 301).check_expiry(&hour).is_err());
    }

    #[test]
    fn the_largest_se_parses_and_is_refused_without_overflow() {
        let token = SasToken::parse(
            "SharedAccessSignature sr=a&sig=b&se=18446744073709551615&skn=registration",
        )
        .unwrap();
        assert_eq!(token.expiry, u64::MAX);
        for now in [0, 1_800_000_000, u64::MAX / 2] {
            assert!(matches!(
                token.check_expiry(&ExpiryPolicy::at(now)),
                Err(AttestationError::TokenLifetimeTooLong { .. })
            ));
        }
        // One more digit does not fit in u64: malformed, not a panic.
        assert!(matches!(
            SasToken::parse("SharedAccessSignature sr=a&sig=b&se=18446744073709551616"),
            Err(AttestationError::MalformedToken { .. })
        ));
    }

    proptest::proptest! {
        /// For every `se`, every clock and every cap, the verdict is exactly
        /// the interval rule, computed here in u128 where nothing saturates.
        #[test]
        fn expiry_verdict_is_the_interval_rule(
            se in proptest::prop_oneof![
                proptest::prelude::any::<u64>(),
                1_700_000_000u64..1_900_000_000,
                proptest::prelude::Just(u64::MAX),
            ],
            now in proptest::prop_oneof![
                proptest::prelude::any::<u64>(),
                1_750_000_000u64..1_850_000_000,
            ],
            skew in 0u64..100_000,
            cap in proptest::option::of(0u64..10_000_000),
        ) {
            let token = SasToken::parse(&format!("SharedAccessSignature sr=a&sig=b&se={se}"))
                .unwrap();
            let policy = ExpiryPolicy {
                clock_skew: Duration::from_secs(skew),
                max_lifetime: cap.map(Duration::from_secs),
                fixed_now: Some(now),
            };
            let verdict = token.check_expiry(&policy);
            let (se, now, skew) = (u128::from(se), u128::from(now), u128::from(skew));
            let saturated = |v: u128| v.min(u128::from(u64::MAX));
            if saturated(se + skew) < now {
                proptest::prop_assert!(
                    matches!(verdict, Err(AttestationError::TokenExpired { .. })),
                    "{verdict:?}"
                );
            } else if cap.is_some_and(|cap| se > saturated(now + u128::from(cap) + skew)) {
                proptest::prop_assert!(
                    matches!(verdict, Err(AttestationError::TokenLifetimeTooLong { .. })),
                    "{verdict:?}"
                );
            } else {
                proptest::prop_assert_eq!(verdict, Ok(()));
            }
        }
    }

    #[test]
    fn malformed_inputs_are_refused() {
        for bad in [
            "",
            "Bearer abc",
            "SharedAccessSignature sr=a&sig=b",
            "SharedAccessSignature sr=a&sig=b&se=x",
            "SharedAccessSignature sr=a&sr=a&sig=b&se=1",
            "SharedAccessSignature garbage",
        ] {
            assert!(
                matches!(
                    SasToken::parse(bad),
                    Err(AttestationError::MalformedToken { .. })
                ),
                "{bad}"
            );
        }
    }
}
