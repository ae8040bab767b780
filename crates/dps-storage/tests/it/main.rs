//! The conformance battery against every backend, and backend-only behaviour:
//! SQLite (durability across reopen, schema versions, options), PostgreSQL
//! (replicas racing on one database, migrations, connection failures).

mod battery;
mod postgres;
mod sqlite;
