//! Timestamps as the Azure service writes them: UTC, 7 fraction digits, `Z`.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// Format as `2020-04-10T05:24:22.4718526Z`.
pub fn format(t: &DateTime<Utc>) -> String {
    // Every JSON answer formats its timestamps: plain integer formatting is
    // several times cheaper than interpreting a strftime pattern each time.
    // Years outside 0..=9999 take chrono's spelling of them (sign, digits).
    let fraction = t.nanosecond() % 1_000_000_000 / 100;
    if !(0..=9999).contains(&t.year()) {
        return format!("{}.{fraction:07}Z", t.format("%Y-%m-%dT%H:%M:%S"));
    }
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{fraction:07}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        // chrono keeps a leap second as nanoseconds past 10^9: second 60.
        t.second() + t.nanosecond() / 1_000_000_000
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

    proptest::proptest! {
        /// The same text as chrono's own formatting, for any instant
        /// (including leap seconds and years beyond four digits).
        #[test]
        fn same_as_strftime(seconds in -62_135_596_800i64..253_402_300_799 * 4, nanos in 0u32..2_000_000_000) {
            let t = DateTime::from_timestamp(seconds, nanos).unwrap_or_default();
            let expected = format!(
                "{}.{:07}Z",
                t.format("%Y-%m-%dT%H:%M:%S"),
                t.nanosecond() % 1_000_000_000 / 100
            );
            proptest::prop_assert_eq!(format(&t), expected);
        }
    }
}
