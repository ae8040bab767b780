//! Timestamps as the Azure service writes them: UTC, 7 fraction digits, `Z`.

use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// Format as `2020-04-10T05:24:22.4718526Z`.
pub fn format(t: &DateTime<Utc>) -> String {
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.nanosecond() % 1_000_000_000 / 100
    )
}

/// Serde `with` module for `DateTime<Utc>` in Azure form; accepts any RFC 3339 input.
pub mod azure {
    use super::*;

    /// Serialize in Azure form.
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    /// Deserialize any RFC 3339 timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// Serde `with` module for `Option<DateTime<Utc>>` in Azure form.
pub mod azure_opt {
    use super::*;

    /// Serialize in Azure form.
    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&format(t)),
            None => s.serialize_none(),
        }
    }

    /// Deserialize an optional RFC 3339 timestamp; unparsable values are dropped,
    /// since they only ever appear in read-only fields a client echoes back.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        Ok(s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| t.with_timezone(&Utc)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seven_digit_fraction() {
        let t = DateTime::parse_from_rfc3339("2020-04-10T05:24:22.471852612Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format(&t), "2020-04-10T05:24:22.4718526Z");
    }
}
