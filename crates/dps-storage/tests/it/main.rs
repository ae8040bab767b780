//! The conformance battery against every backend, and SQLite-only behaviour
//! (durability across reopen, schema versions, options).

mod battery;
mod sqlite;
