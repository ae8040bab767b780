//! Entity tags for optimistic concurrency.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An opaque entity tag. Compared with surrounding quotes and a `W/` prefix
/// stripped, because clients echo etags in every form.
#[derive(Clone, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ETag(String);

impl ETag {
    /// A fresh random tag.
    pub fn generate() -> Self {
        ETag(format!("{:016x}", rand::random::<u64>()))
    }

    /// Wrap a tag as received.
    pub fn new(value: impl Into<String>) -> Self {
        ETag(value.into())
    }

    /// The tag as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag without `W/` and quotes.
    pub fn bare(&self) -> &str {
        strip(&self.0)
    }
}

fn strip(value: &str) -> &str {
    let value = value.trim();
    let value = value.strip_prefix("W/").unwrap_or(value);
    value.trim_matches('"')
}

impl PartialEq for ETag {
    fn eq(&self, other: &Self) -> bool {
        self.bare() == other.bare()
    }
}

impl fmt::Debug for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ETag({:?})", self.0)
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a conditional write requires of the current record (`If-Match`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// No `If-Match`: write unconditionally (create or replace).
    None,
    /// `If-Match: *`: the record must exist.
    Exists,
    /// `If-Match: <etag>`: the record must exist with this tag.
    Matches(ETag),
    /// Create only: the record must not exist.
    Absent,
}

impl Precondition {
    /// Interpret an `If-Match` header value.
    pub fn from_if_match(header: Option<&str>) -> Self {
        match header.map(str::trim) {
            None | Some("") => Precondition::None,
            Some("*") => Precondition::Exists,
            Some(tag) => Precondition::Matches(ETag::new(tag)),
        }
    }

    /// Does a record with `current` tag (or none) satisfy this precondition?
    pub fn allows(&self, current: Option<&ETag>) -> bool {
        match (self, current) {
            (Precondition::None, _) => true,
            (Precondition::Exists, current) => current.is_some(),
            (Precondition::Matches(wanted), Some(current)) => wanted == current,
            (Precondition::Matches(_), None) => false,
            (Precondition::Absent, current) => current.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_and_weak_forms_compare_equal() {
        assert_eq!(ETag::new("\"abc\""), ETag::new("abc"));
        assert_eq!(ETag::new("W/\"abc\""), ETag::new("abc"));
        assert_ne!(ETag::new("abc"), ETag::new("abd"));
    }

    #[test]
    fn preconditions() {
        let tag = ETag::new("t1");
        assert!(Precondition::from_if_match(None).allows(None));
        assert!(Precondition::from_if_match(Some("*")).allows(Some(&tag)));
        assert!(!Precondition::from_if_match(Some("*")).allows(None));
        assert!(Precondition::from_if_match(Some("\"t1\"")).allows(Some(&tag)));
        assert!(!Precondition::from_if_match(Some("t2")).allows(Some(&tag)));
        assert!(!Precondition::from_if_match(Some("t1")).allows(None));
        assert!(!Precondition::Absent.allows(Some(&tag)));
    }
}
