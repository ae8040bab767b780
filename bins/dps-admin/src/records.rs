//! `enrollment`, `enrollment-group` and `registration`.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use dps_client::admin::table::Kind;
use dps_client::admin::Collection;
use serde_json::json;

use crate::args::{ConnectionArgs, EtagArg, ListArgs, RecordArgs};
use crate::bulk::{self, ExportArgs, ImportArgs};
use crate::output::Output;

/// The commands of both `enrollment` and `enrollment-group`.
#[derive(Subcommand, Debug)]
pub(crate) enum RecordCommand {
    /// Create (or replace) from flags and/or a JSON file.
    Create(CreateArgs),
    /// Show one (keys and certificates with --show-keys).
    Show(ShowArgs),
    /// List, page by page.
    List(ListArgs),
    /// Change the fields given; the write is conditional on the etag.
    Update(UpdateArgs),
    /// Delete (an individual enrollment takes its registration record along).
    Delete(DeleteArgs),
    /// Create, replace or delete many from a JSON-lines file, 10 per request.
    Import(ImportArgs),
    /// Write every record as JSON lines.
    Export(ExportArgs),
}

pub(crate) type EnrollmentCommand = RecordCommand;
pub(crate) type GroupCommand = RecordCommand;

/// The id of an enrollment or group.
#[derive(Args, Debug)]
pub(crate) struct IdArg {
    /// Registration id (individual) or enrollment group id.
    #[arg(long = "enrollment-id", visible_aliases = ["eid", "group-id", "registration-id"])]
    id: String,
}

#[derive(Args, Debug)]
pub(crate) struct CreateArgs {
    /// Registration id (individual) or enrollment group id (default: the file's).
    #[arg(long = "enrollment-id", visible_aliases = ["eid", "group-id", "registration-id"])]
    id: Option<String>,
    #[command(flatten)]
    record: RecordArgs,
}

#[derive(Args, Debug)]
pub(crate) struct ShowArgs {
    #[command(flatten)]
    id: IdArg,
    /// Include the symmetric keys and certificate bodies.
    #[arg(long)]
    show_keys: bool,
}

#[derive(Args, Debug)]
pub(crate) struct UpdateArgs {
    #[command(flatten)]
    id: IdArg,
    #[command(flatten)]
    etag: EtagArg,
    #[command(flatten)]
    record: RecordArgs,
}

#[derive(Args, Debug)]
pub(crate) struct DeleteArgs {
    #[command(flatten)]
    id: IdArg,
    #[command(flatten)]
    etag: EtagArg,
}

pub(crate) async fn enrollment(
    command: RecordCommand,
    connection: &ConnectionArgs,
    out: Output,
) -> Result<ExitCode> {
    run(Collection::Enrollments, command, connection, out).await
}

pub(crate) async fn group(
    command: RecordCommand,
    connection: &ConnectionArgs,
    out: Output,
) -> Result<ExitCode> {
    run(Collection::Groups, command, connection, out).await
}

async fn run(
    collection: Collection,
    command: RecordCommand,
    connection: &ConnectionArgs,
    out: Output,
) -> Result<ExitCode> {
    let client = connection.tenant_client()?;
    let (kind, noun) = match collection {
        Collection::Enrollments => (Kind::Enrollment, "enrollment"),
        Collection::Groups => (Kind::Group, "enrollment group"),
    };
    match command {
        RecordCommand::Create(args) => {
            let mut record = args.record.file_record()?.unwrap_or_else(|| json!({}));
            let field = collection.id_field();
            match (&args.id, record[field].as_str()) {
                (Some(id), Some(file_id)) if !id.eq_ignore_ascii_case(file_id) => {
                    bail!("--enrollment-id {id} differs from the file's {field} {file_id}")
                }
                (Some(id), _) => record[field] = json!(id),
                (None, Some(_)) => {}
                (None, None) => bail!("give --enrollment-id, or a --file with {field}"),
            }
            if record["attestation"].is_null() && args.record.spec()?.attestation_type.is_none() {
                record["attestation"] = json!({"type": "symmetricKey"});
            }
            args.record.spec()?.apply(collection, &mut record)?;
            out.record(&client.put_record(collection, &record, None).await?)
        }
        RecordCommand::Show(args) => {
            let record = if args.show_keys {
                client
                    .get_record_with_secrets(collection, &args.id.id)
                    .await?
            } else {
                client.get_record(collection, &args.id.id).await?
            };
            out.record(&record)
        }
        RecordCommand::List(args) => {
            let listing = client.list(collection, &args.options()).await?;
            out.list(kind, &listing.items, listing.continuation.as_deref())
        }
        RecordCommand::Update(args) => {
            let spec = args.record.spec()?;
            let replacement = args.record.file_record()?;
            let id = args.id.id.clone();
            let updated = client
                .update_record(
                    collection,
                    &args.id.id,
                    args.etag.etag.as_deref(),
                    move |record| {
                        if let Some(mut replacement) = replacement {
                            replacement[collection.id_field()] = json!(id);
                            *record = replacement;
                        }
                        spec.apply(collection, record)
                    },
                )
                .await?;
            out.record(&updated)
        }
        RecordCommand::Delete(args) => {
            client
                .delete_record(collection, &args.id.id, args.etag.etag.as_deref())
                .await?;
            out.deleted(noun, &args.id.id)
        }
        RecordCommand::Import(args) => bulk::import(&client, collection, args, out).await,
        RecordCommand::Export(args) => bulk::export(&client, collection, args, out).await,
    }
}

/// Registration records.
#[derive(Subcommand, Debug)]
pub(crate) enum RegistrationCommand {
    /// The records made through an enrollment group, page by page.
    List(RegistrationListArgs),
    /// One record.
    Show(RegistrationIdArg),
    /// Delete a record (its enrollment stays; the device provisions anew).
    Delete(RegistrationDeleteArgs),
}

#[derive(Args, Debug)]
pub(crate) struct RegistrationListArgs {
    /// The enrollment group.
    #[arg(long, visible_aliases = ["gid", "enrollment-id"])]
    group_id: String,
    #[command(flatten)]
    list: ListArgs,
}

#[derive(Args, Debug)]
pub(crate) struct RegistrationIdArg {
    /// The device's registration id.
    #[arg(long, visible_alias = "rid")]
    registration_id: String,
}

#[derive(Args, Debug)]
pub(crate) struct RegistrationDeleteArgs {
    #[command(flatten)]
    id: RegistrationIdArg,
    #[command(flatten)]
    etag: EtagArg,
}

pub(crate) async fn registration(
    command: RegistrationCommand,
    connection: &ConnectionArgs,
    out: Output,
) -> Result<ExitCode> {
    let client = connection.tenant_client()?;
    match command {
        RegistrationCommand::List(args) => {
            let listing = client
                .list_registrations(&args.group_id, &args.list.options())
                .await?;
            out.list(
                Kind::Registration,
                &listing.items,
                listing.continuation.as_deref(),
            )
        }
        RegistrationCommand::Show(args) => {
            out.record(&client.get_registration(&args.registration_id).await?)
        }
        RegistrationCommand::Delete(args) => {
            client
                .delete_registration(&args.id.registration_id, args.etag.etag.as_deref())
                .await?;
            out.deleted("registration record", &args.id.registration_id)
        }
    }
}
