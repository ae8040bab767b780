//! Printing answers: a table for people, JSON with `--json`.

use std::process::ExitCode;

use anyhow::Result;
use dps_client::admin::table::{Kind, Table};
use serde_json::{json, Value};

/// How to print.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Output {
    pub(crate) json: bool,
}

impl Output {
    /// One record: pretty JSON, or a FIELD/VALUE table.
    pub(crate) fn record(self, record: &Value) -> Result<ExitCode> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(record)?);
        } else {
            print!("{}", Table::record(record));
        }
        Ok(ExitCode::SUCCESS)
    }

    /// A list: a JSON array, or a table with `kind`'s columns. A listing
    /// cut short says on stderr how to go on.
    pub(crate) fn list(
        self,
        kind: Kind,
        items: &[Value],
        continuation: Option<&str>,
    ) -> Result<ExitCode> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(items)?);
        } else {
            print!("{}", Table::list(kind, items));
        }
        if let Some(token) = continuation {
            eprintln!("more records follow: add --continuation {token}");
        }
        Ok(ExitCode::SUCCESS)
    }

    /// A list answered as a JSON array by the service.
    pub(crate) fn array(self, kind: Kind, answer: &Value) -> Result<ExitCode> {
        let items = answer.as_array().map(Vec::as_slice).unwrap_or_default();
        self.list(kind, items, None)
    }

    /// A deletion.
    pub(crate) fn deleted(self, what: &str, id: &str) -> Result<ExitCode> {
        if self.json {
            println!("{}", json!({"deleted": what, "id": id}));
        } else {
            println!("deleted {what} {id}");
        }
        Ok(ExitCode::SUCCESS)
    }

    /// One value (a token, a key), alone on a line, or as a JSON object.
    pub(crate) fn value(self, object: Value, field: &str) -> Result<ExitCode> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(&object)?);
        } else {
            println!("{}", object[field].as_str().unwrap_or_default());
        }
        Ok(ExitCode::SUCCESS)
    }
}
