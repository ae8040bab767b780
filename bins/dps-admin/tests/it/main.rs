//! `dps-admin` against a real dps server: every command group, etag
//! conflicts, paging beyond one page, bulk import of 10,000 enrollments
//! with a progress bar on a terminal, table and JSON output.

mod bulk;
mod enrollments;
mod errors;
mod groups;
mod issuance;
mod paging;
mod pty;
mod settings;
mod support;
mod tenants;
