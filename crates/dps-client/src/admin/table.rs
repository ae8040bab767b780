//! Plain-text tables for people: one row per record with the columns an
//! operator scans for, or one `FIELD  VALUE` row per field of a single
//! record. Machines read `--json` instead; the columns may change.

use std::fmt;

use serde_json::Value;

/// What a list holds (which columns to show).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Individual enrollments.
    Enrollment,
    /// Enrollment groups.
    Group,
    /// Registration records.
    Registration,
    /// Linked IoT hubs.
    LinkedHub,
    /// Shared access policies.
    Policy,
    /// CA certificates.
    Certificate,
    /// Tenants.
    Tenant,
    /// Shared access policies with their keys (`listKeys`).
    Keys,
    /// Tenant certificate authorities (certificate issuance).
    CertificateAuthority,
    /// Credential policies (certificate issuance).
    CredentialPolicy,
    /// Certificates issued to a registration.
    IssuedCertificate,
}

/// A table: headers and rows of cells, rendered with aligned columns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column headers.
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Add a row (missing cells are empty, extra cells dropped).
    pub fn push(&mut self, mut row: Vec<String>) {
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    /// The rows.
    pub fn rows(&self) -> &[Vec<String>] {
        &self.rows
    }

    /// One row per item of a list, with the columns of `kind`. The
    /// registration columns of enrollments appear only when an item has a
    /// `registrationState` (dps answers it on GET, not in queries).
    pub fn list(kind: Kind, items: &[Value]) -> Table {
        let columns: Vec<(&str, Cell)> = columns(kind)
            .into_iter()
            .filter(|(header, _)| {
                kind != Kind::Enrollment
                    || !REGISTRATION_COLUMNS.contains(header)
                    || items.iter().any(|i| i["registrationState"].is_object())
            })
            .collect();
        let mut table = Table::new(columns.iter().map(|(header, _)| *header));
        for item in items {
            table.push(columns.iter().map(|(_, cell)| cell(item)).collect());
        }
        table
    }

    /// One `FIELD  VALUE` row per leaf of a record (`attestation.type`,
    /// `iotHubs[0]`); multi-line strings (PEM) show their first line.
    pub fn record(record: &Value) -> Table {
        let mut table = Table::new(["FIELD", "VALUE"]);
        flatten("", record, &mut table);
        table
    }

    /// An operations report: one row per kind, then the total.
    pub fn report(report: &Value) -> Table {
        let mut table = Table::new(["OPERATION", "COUNT"]);
        if let Some(totals) = report["totals"].as_object() {
            for (kind, count) in totals {
                table.push(vec![kind.clone(), scalar(count)]);
            }
        }
        table.push(vec!["total".to_owned(), scalar(&report["total"])]);
        table
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: &[String]| -> fmt::Result {
            let mut text = String::new();
            for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
                if i + 1 == cells.len() {
                    text.push_str(cell);
                } else {
                    text.push_str(&format!("{cell:<width$}  "));
                }
            }
            writeln!(f, "{}", text.trim_end())
        };
        line(f, &self.headers)?;
        for row in &self.rows {
            line(f, row)?;
        }
        Ok(())
    }
}

type Cell = fn(&Value) -> String;

/// Columns of an individual enrollment's registration record.
const REGISTRATION_COLUMNS: [&str; 2] = ["REGISTRATION", "HUB"];

fn columns(kind: Kind) -> Vec<(&'static str, Cell)> {
    match kind {
        Kind::Enrollment => vec![
            ("REGISTRATION ID", |v| text(&v["registrationId"])),
            ("DEVICE ID", |v| text(&v["deviceId"])),
            ("ATTESTATION", |v| text(&v["attestation"]["type"])),
            ("PROVISIONING", |v| text(&v["provisioningStatus"])),
            ("REGISTRATION", |v| text(&v["registrationState"]["status"])),
            ("HUB", |v| text(&v["registrationState"]["assignedHub"])),
            ("UPDATED", |v| time(&v["lastUpdatedDateTimeUtc"])),
            ("ETAG", |v| text(&v["etag"])),
        ],
        Kind::Group => vec![
            ("GROUP ID", |v| text(&v["enrollmentGroupId"])),
            ("ATTESTATION", |v| text(&v["attestation"]["type"])),
            ("PROVISIONING", |v| text(&v["provisioningStatus"])),
            ("ALLOCATION", |v| text(&v["allocationPolicy"])),
            ("HUBS", |v| text(&v["iotHubs"])),
            ("UPDATED", |v| time(&v["lastUpdatedDateTimeUtc"])),
            ("ETAG", |v| text(&v["etag"])),
        ],
        Kind::Registration => vec![
            ("REGISTRATION ID", |v| text(&v["registrationId"])),
            ("DEVICE ID", |v| text(&v["deviceId"])),
            ("STATUS", |v| text(&v["status"])),
            ("SUBSTATUS", |v| text(&v["substatus"])),
            ("HUB", |v| text(&v["assignedHub"])),
            ("UPDATED", |v| time(&v["lastUpdatedDateTimeUtc"])),
            ("ETAG", |v| text(&v["etag"])),
        ],
        Kind::LinkedHub => vec![
            ("HOST NAME", |v| text(&v["hostName"])),
            ("WEIGHT", |v| text(&v["allocationWeight"])),
            ("APPLY POLICY", |v| text(&v["applyAllocationPolicy"])),
            ("LOCATION", |v| text(&v["location"])),
        ],
        Kind::Policy => vec![
            ("NAME", |v| text(&v["keyName"])),
            ("RIGHTS", |v| text(&v["rights"])),
        ],
        Kind::Certificate => vec![
            ("NAME", |v| text(&v["name"])),
            ("SUBJECT", |v| text(&v["info"]["subjectName"])),
            ("VERIFIED", |v| text(&v["isVerified"])),
            ("NOT AFTER", |v| time(&v["info"]["notAfterUtc"])),
            ("SHA-256", |v| text(&v["info"]["sha256Thumbprint"])),
            ("ETAG", |v| text(&v["etag"])),
        ],
        Kind::CertificateAuthority => vec![
            ("NAME", |v| text(&v["name"])),
            ("CREATED", |v| time(&v["createdDateTimeUtc"])),
            ("ETAG", |v| text(&v["etag"])),
        ],
        Kind::CredentialPolicy => vec![
            ("NAME", |v| text(&v["name"])),
            ("CA", |v| text(&v["certificateAuthorityName"])),
            ("VALIDITY DAYS", |v| text(&v["validityPeriodInDays"])),
            ("KEY TYPES", |v| text(&v["acceptedKeyTypes"])),
            ("UPDATED", |v| time(&v["lastUpdatedDateTimeUtc"])),
            ("ETAG", |v| text(&v["etag"])),
        ],
        Kind::IssuedCertificate => vec![
            ("SERIAL", |v| text(&v["serialNumber"])),
            ("STATUS", |v| text(&v["status"])),
            ("DEVICE ID", |v| text(&v["deviceId"])),
            ("CA", |v| text(&v["certificateAuthorityName"])),
            ("ISSUED", |v| time(&v["issuedDateTimeUtc"])),
            ("NOT AFTER", |v| time(&v["notAfter"])),
            ("SHA-256", |v| text(&v["sha256Thumbprint"])),
        ],
        Kind::Tenant => vec![
            ("NAME", |v| text(&v["name"])),
            ("ID SCOPE", |v| text(&v["idScope"])),
            ("SERVICE HOST NAME", |v| text(&v["serviceHostName"])),
            ("ALLOCATION", |v| text(&v["defaultAllocationPolicy"])),
            ("HUBS", |v| count(&v["linkedHubs"])),
            ("POLICIES", |v| count(&v["accessPolicies"])),
            ("CERTIFICATES", |v| count(&v["caCertificates"])),
        ],
        Kind::Keys => vec![
            ("NAME", |v| text(&v["keyName"])),
            ("RIGHTS", |v| text(&v["rights"])),
            ("PRIMARY CONNECTION STRING", |v| {
                text(&v["primaryConnectionString"])
            }),
        ],
    }
}

/// A cell: strings as they are, arrays joined, absent as `-`.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(","),
        other => scalar(other),
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// A time to the second: `2024-05-01T08:30:12.1234567Z` → `2024-05-01T08:30:12Z`.
fn time(value: &Value) -> String {
    match value.as_str() {
        Some(t) => match t.split_once('.') {
            Some((seconds, _)) if t.ends_with('Z') => format!("{seconds}Z"),
            _ => t.to_owned(),
        },
        None => text(value),
    }
}

fn count(value: &Value) -> String {
    value
        .as_array()
        .map_or_else(|| "-".to_owned(), |a| a.len().to_string())
}

fn flatten(prefix: &str, value: &Value, table: &mut Table) {
    let join = |key: &str| {
        if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        }
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                flatten(&join(key), child, table);
            }
        }
        Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
            for (index, child) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{index}]"), child, table);
            }
        }
        Value::String(s) if s.contains('\n') => {
            let first = s.lines().next().unwrap_or_default();
            let more = s.lines().count() - 1;
            table.push(vec![prefix.to_owned(), format!("{first} (+{more} lines)")]);
        }
        Value::Object(_) => table.push(vec![prefix.to_owned(), "{}".to_owned()]),
        other => table.push(vec![prefix.to_owned(), text(other)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_align_their_columns() {
        let items = [
            json!({"registrationId": "dev-1", "attestation": {"type": "symmetricKey"},
                   "provisioningStatus": "enabled", "etag": "e1",
                   "lastUpdatedDateTimeUtc": "2024-05-01T08:30:12.1234567Z",
                   "registrationState": {"status": "assigned", "assignedHub": "hub-a"}}),
            json!({"registrationId": "a-longer-device", "deviceId": "d",
                   "attestation": {"type": "tpm"}, "provisioningStatus": "disabled"}),
        ];
        let text = Table::list(Kind::Enrollment, &items).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        // Without any registrationState, its columns are left out.
        let bare = Table::list(Kind::Enrollment, &items[1..]).to_string();
        assert!(
            !bare.contains("  REGISTRATION ") && !bare.contains("HUB"),
            "{bare}"
        );
        assert!(bare.contains("PROVISIONING  UPDATED  ETAG\n"), "{bare}");
        assert!(lines[0].starts_with("REGISTRATION ID  DEVICE ID  ATTESTATION"));
        assert!(lines[1].starts_with("dev-1            -          symmetricKey  enabled"));
        assert!(lines[1].contains("assigned      hub-a  2024-05-01T08:30:12Z  e1"));
        assert!(lines[2].starts_with("a-longer-device  d          tpm"));
        // Every line's second column starts at the same place.
        assert!(lines
            .iter()
            .all(|l| &l[15..17] == "  " && &l[17..18] != " "));
    }

    #[test]
    fn a_record_is_one_row_per_leaf() {
        let record = json!({"enrollmentGroupId": "g", "iotHubs": ["a", "b"],
            "attestation": {"type": "x509", "x509": {"caReferences": {"primary": "root"}}},
            "initialTwin": {"tags": {}}, "certificate": "-----BEGIN\nAAAA\n-----END"});
        let table = Table::record(&record);
        let rows: Vec<(String, String)> = table
            .rows()
            .iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect();
        assert!(rows.contains(&(
            "attestation.x509.caReferences.primary".into(),
            "root".into()
        )));
        assert!(rows.contains(&("iotHubs".into(), "a,b".into())));
        assert!(rows.contains(&("initialTwin.tags".into(), "{}".into())));
        assert!(rows.contains(&("certificate".into(), "-----BEGIN (+2 lines)".into())));
    }

    #[test]
    fn reports_list_each_kind_and_the_total() {
        let report = json!({"totals": {"enrollmentCreate": 12, "enrollmentQuery": 3}, "total": 15});
        assert_eq!(
            Table::report(&report).to_string(),
            "OPERATION         COUNT\nenrollmentCreate  12\nenrollmentQuery   3\ntotal             15\n"
        );
    }
}
