//! Service SAS tokens for one hub, signed with the connection string's policy
//! key and cached until three quarters of their lifetime have passed.

use std::sync::Mutex;
use std::time::Duration;

use dps_attestation::sas::{create_token, unix_now};
use reqwest::header::HeaderValue;

use crate::ConnectionString;

pub(crate) struct TokenCache {
    lifetime_secs: u64,
    cached: Mutex<Option<Cached>>,
}

struct Cached {
    header: HeaderValue,
    renew_at: u64,
}

impl TokenCache {
    pub(crate) fn new(lifetime: Duration) -> Self {
        TokenCache {
            // Shorter than a minute makes no sense with a 5-minute skew allowance.
            lifetime_secs: lifetime.as_secs().max(60),
            cached: Mutex::new(None),
        }
    }

    /// The `Authorization` header value: `SharedAccessSignature sr={host}&sig=…&se=…&skn={policy}`.
    pub(crate) fn header(&self, connection: &ConnectionString) -> HeaderValue {
        let now = unix_now();
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(token) = cached.as_ref().filter(|t| t.renew_at > now) {
            return token.header.clone();
        }
        let token = create_token(
            connection.host_name(),
            connection.key(),
            now + self.lifetime_secs,
            Some(connection.key_name()),
        );
        let mut header = match HeaderValue::from_str(&token) {
            Ok(header) => header,
            // Unreachable in practice: tokens are percent-encoded ASCII.
            Err(_) => HeaderValue::from_static("SharedAccessSignature invalid"),
        };
        header.set_sensitive(true);
        *cached = Some(Cached {
            header: header.clone(),
            renew_at: now + self.lifetime_secs * 3 / 4,
        });
        header
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_attestation::sas::{Audience, ExpiryPolicy, SasToken};

    #[test]
    fn token_is_cached_and_verifies_for_the_host() {
        let cs = ConnectionString::new(
            "hub-a.example",
            "iothubowner",
            "c2VjcmV0LWtleS1ieXRlcy0xMjM0NTY3ODkwYWJjZA==",
        )
        .unwrap();
        let cache = TokenCache::new(Duration::from_secs(3600));
        let first = cache.header(&cs);
        assert_eq!(first, cache.header(&cs));
        assert!(first.is_sensitive());
        let token = SasToken::parse(first.to_str().unwrap()).unwrap();
        assert_eq!(token.key_name.as_deref(), Some("iothubowner"));
        assert!(token.expiry >= unix_now() + 3500);
        token
            .verify(
                &Audience("hub-a.example"),
                &[cs.key()],
                &ExpiryPolicy::default(),
            )
            .unwrap();
    }
}
