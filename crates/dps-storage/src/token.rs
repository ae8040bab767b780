//! Paging: page requests, pages and the opaque continuation token.
//!
//! A token is `base64url("v1:" + last key returned)`. Listings are ordered by
//! key, so resuming after the last key neither loses nor repeats a record even
//! when records are added or removed between pages.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::{StoreError, StoreResult};

const VERSION_PREFIX: &str = "v1:";
const MAX_KEY_LEN: usize = 128;
/// Longest token text accepted, well above any token this store hands out.
const MAX_TOKEN_LEN: usize = 512;

/// Largest page a listing returns, whatever the caller asks.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Where a listing resumes: opaque to callers, handed back verbatim.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContinuationToken {
    text: String,
    after_key: String,
}

impl ContinuationToken {
    /// The token resuming after `key` (a storage key: a lower-case id).
    pub(crate) fn after(key: &str) -> Self {
        ContinuationToken {
            text: URL_SAFE_NO_PAD.encode(format!("{VERSION_PREFIX}{key}")),
            after_key: key.to_owned(),
        }
    }

    /// Accept a token a client sent back (`x-ms-continuation`).
    pub fn parse(text: &str) -> StoreResult<Self> {
        let invalid = |reason| StoreError::InvalidContinuationToken {
            token: text.chars().take(MAX_TOKEN_LEN).collect(),
            reason,
        };
        if text.is_empty() || text.len() > MAX_TOKEN_LEN {
            return Err(invalid("wrong length"));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| invalid("not base64url"))?;
        let decoded = String::from_utf8(bytes).map_err(|_| invalid("not UTF-8"))?;
        let key = decoded
            .strip_prefix(VERSION_PREFIX)
            .ok_or_else(|| invalid("unknown token version"))?;
        let key_ok = !key.is_empty()
            && key.len() <= MAX_KEY_LEN
            && key.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'-' | b'.' | b'_' | b':')
            });
        if !key_ok {
            return Err(invalid("does not name a record key"));
        }
        Ok(ContinuationToken {
            text: text.trim().to_owned(),
            after_key: key.to_owned(),
        })
    }

    /// The token text to hand to the client.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The key the listing resumes after.
    pub(crate) fn after_key(&self) -> &str {
        &self.after_key
    }
}

impl std::fmt::Display for ContinuationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Which page of a listing to return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// Resume after this token; `None` starts at the beginning.
    pub continuation: Option<ContinuationToken>,
    /// Most records to return, clamped to `1..=MAX_PAGE_SIZE`.
    pub page_size: usize,
}

impl PageRequest {
    /// The first page of `page_size` records.
    pub fn first(page_size: usize) -> Self {
        PageRequest {
            continuation: None,
            page_size,
        }
    }

    /// The page after `token`.
    pub fn after(token: ContinuationToken, page_size: usize) -> Self {
        PageRequest {
            continuation: Some(token),
            page_size,
        }
    }

    /// The page size actually used.
    pub fn effective_size(&self) -> usize {
        self.page_size.clamp(1, MAX_PAGE_SIZE)
    }

    /// The key to resume after, if any.
    pub(crate) fn after_key(&self) -> Option<&str> {
        self.continuation.as_ref().map(ContinuationToken::after_key)
    }
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The records, in key order.
    pub items: Vec<T>,
    /// Present when more records follow.
    pub continuation: Option<ContinuationToken>,
}

impl<T> Page<T> {
    /// Build a page from up to `size + 1` rows fetched in key order: the extra
    /// row only tells that more follow.
    pub(crate) fn from_overfetch(mut rows: Vec<(String, T)>, size: usize) -> Self {
        let more = rows.len() > size;
        rows.truncate(size);
        let continuation = if more {
            rows.last().map(|(key, _)| ContinuationToken::after(key))
        } else {
            None
        };
        Page {
            items: rows.into_iter().map(|(_, item)| item).collect(),
            continuation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let token = ContinuationToken::after("dev-1.a_b:c");
        let parsed = ContinuationToken::parse(token.as_str()).unwrap();
        assert_eq!(parsed, token);
        assert_eq!(parsed.after_key(), "dev-1.a_b:c");
    }

    #[test]
    fn rejects_foreign_tokens() {
        for (text, reason) in [
            ("", "wrong length"),
            ("!!!", "not base64url"),
            (&URL_SAFE_NO_PAD.encode([0xff, 0xfe]), "not UTF-8"),
            (&URL_SAFE_NO_PAD.encode("v2:abc"), "unknown token version"),
            (&URL_SAFE_NO_PAD.encode("v1:"), "does not name a record key"),
            (
                &URL_SAFE_NO_PAD.encode("v1:Upper"),
                "does not name a record key",
            ),
        ] {
            let err = ContinuationToken::parse(text).unwrap_err();
            assert!(
                matches!(&err, StoreError::InvalidContinuationToken { token, reason: r } if token == text && *r == reason),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn page_size_is_clamped() {
        assert_eq!(PageRequest::first(0).effective_size(), 1);
        assert_eq!(PageRequest::first(97).effective_size(), 97);
        assert_eq!(
            PageRequest::first(usize::MAX).effective_size(),
            MAX_PAGE_SIZE
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in ".{0,600}") {
            match ContinuationToken::parse(&text) {
                Ok(token) => prop_assert!(!token.after_key().is_empty()),
                Err(err) => prop_assert!(
                    matches!(err, StoreError::InvalidContinuationToken { .. }),
                    "unexpected error {err}"
                ),
            }
        }

        #[test]
        fn parse_never_panics_on_base64_of_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let text = URL_SAFE_NO_PAD.encode(&bytes);
            let _ = ContinuationToken::parse(&text);
        }

        #[test]
        fn every_key_round_trips(key in "[a-z0-9]([a-z0-9._:-]{0,126}[a-z0-9-])?") {
            let token = ContinuationToken::after(&key);
            let parsed = ContinuationToken::parse(token.as_str()).unwrap();
            prop_assert_eq!(parsed.after_key(), key.as_str());
        }
    }
}
