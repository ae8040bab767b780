//! Issued certificates in SQLite: stored by the writer inside the
//! registration commit's transaction (never on the multi-row fast path),
//! revoked by the writer, listed by the readers.

use chrono::{DateTime, Utc};
use dps_model::{IdScope, IssuedCertificate, IssuedCertificateStatus, RegistrationId};
use rusqlite::Connection;
use sqlx::{Row, SqliteConnection};

use super::readers::{connection, decode_column, Readers};
use super::statements::{self, execute, failed, violation, Violation};
use super::writes::{require_tenant, tenant_fault};
use crate::error::{Entity, StoreError, StoreResult};
use crate::{issued, rules, time};

const INSERT: &str = "INSERT INTO issued_certificates \
     (scope_key, authority_name, serial, registration_key, status, issued_us, body) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
const OF_REGISTRATION: &str = "SELECT serial, body FROM issued_certificates \
     WHERE scope_key = $1 AND registration_key = $2";
/// Supersede a registration's active certificates at $3 (Azure form): the
/// status column and the JSON body alike, in one statement, so that the
/// commit needs no read first (most registrations have no certificate).
pub(crate) const SUPERSEDE: &str = "UPDATE issued_certificates SET status = 'superseded', \
     body = json_set(body, '$.status', 'superseded', '$.supersededDateTimeUtc', $3) \
     WHERE scope_key = $1 AND registration_key = $2 AND status = 'active'";
const REVOKED_BY: &str = "SELECT serial, body FROM issued_certificates \
     WHERE scope_key = $1 AND authority_name = $2 AND status = 'revoked'";
const UPDATE: &str = "UPDATE issued_certificates SET status = $4, body = $5 \
     WHERE scope_key = $1 AND authority_name = $2 AND serial = $3";

/// A certificate ready to insert (encoded by the caller's task).
#[derive(Debug)]
pub(crate) struct IssuedRow {
    authority_name: String,
    serial: String,
    issued_us: i64,
    certificate: IssuedCertificate,
    body: String,
}

impl IssuedRow {
    pub(crate) fn encode(certificate: IssuedCertificate) -> StoreResult<Self> {
        let body = rules::encode(
            Entity::IssuedCertificate,
            &certificate.serial_number,
            &certificate,
        )?;
        Ok(IssuedRow {
            authority_name: certificate.certificate_authority_name.clone(),
            serial: certificate.serial_number.clone(),
            issued_us: time::to_micros(certificate.issued_date_time_utc),
            certificate,
            body,
        })
    }
}

/// Mark the registration's active certificates superseded at `at` (inside
/// the registration commit's transaction).
pub(crate) fn supersede(
    conn: &Connection,
    scope_key: &str,
    registration_key: &str,
    at: &str,
) -> StoreResult<()> {
    execute(conn, SUPERSEDE, &[&scope_key, &registration_key, &at])
        .map_err(failed("superseding issued certificates"))?;
    Ok(())
}

/// Insert a new certificate (inside the registration commit's transaction,
/// after [`supersede`]).
pub(crate) fn insert(
    conn: &Connection,
    id_scope: &IdScope,
    scope_key: &str,
    registration_key: &str,
    row: &IssuedRow,
) -> StoreResult<()> {
    execute(
        conn,
        INSERT,
        &[
            &scope_key,
            &row.authority_name,
            &row.serial,
            &registration_key,
            &row.certificate.status.as_str(),
            &row.issued_us,
            &row.body,
        ],
    )
    .map_err(|err| match violation(&err) {
        Some(Violation::Unique) => issued::duplicate(&row.certificate),
        _ => tenant_fault("storing an issued certificate", id_scope)(err),
    })?;
    Ok(())
}

fn update(conn: &Connection, scope_key: &str, cert: &IssuedCertificate) -> StoreResult<()> {
    let body = rules::encode(Entity::IssuedCertificate, &cert.serial_number, cert)?;
    execute(
        conn,
        UPDATE,
        &[
            &scope_key,
            &cert.certificate_authority_name,
            &cert.serial_number,
            &cert.status.as_str(),
            &body,
        ],
    )
    .map_err(failed("updating an issued certificate"))?;
    Ok(())
}

/// The writer's revocation.
pub(crate) fn revoke(
    conn: &Connection,
    id_scope: &IdScope,
    registration_id: &RegistrationId,
    serial_number: &str,
    at: DateTime<Utc>,
) -> StoreResult<IssuedCertificate> {
    require_tenant(conn, id_scope)?;
    let scope_key = id_scope.key();
    let found = statements::all(
        conn,
        OF_REGISTRATION,
        &[&scope_key, &registration_id.key()],
        |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
    )
    .map_err(failed("reading issued certificates"))?;
    let mut cert = found
        .iter()
        .map(|(serial, body)| rules::decode(Entity::IssuedCertificate, serial, body))
        .collect::<StoreResult<Vec<IssuedCertificate>>>()?
        .into_iter()
        .find(|c| c.serial_number == serial_number)
        .ok_or_else(|| issued::not_found(serial_number))?;
    if cert.revoke(time::truncate(at)) {
        update(conn, &scope_key, &cert)?;
    }
    Ok(cert)
}

async fn rows(
    conn: &mut SqliteConnection,
    statement: &'static str,
    scope_key: &str,
    second: &str,
) -> StoreResult<Vec<IssuedCertificate>> {
    let found = sqlx::query(statement)
        .bind(scope_key)
        .bind(second)
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::database("reading issued certificates"))?;
    let mut certs = Vec::with_capacity(found.len());
    for row in &found {
        let serial: String = row
            .try_get(0)
            .map_err(StoreError::database("reading issued certificates"))?;
        certs.push(decode_column(Entity::IssuedCertificate, &serial, row, 1)?);
    }
    Ok(certs)
}

/// A reader's listing: the registration's certificates, or a CA's revoked ones.
pub(crate) async fn list(
    readers: &Readers,
    id_scope: &IdScope,
    of: Listing<'_>,
) -> StoreResult<Vec<IssuedCertificate>> {
    let mut lent = readers.get().await;
    let conn = connection(&mut lent)?;
    let scope_key = id_scope.key();
    let mut certs = match of {
        Listing::Registration(id) => rows(conn, OF_REGISTRATION, &scope_key, &id.key()).await?,
        Listing::Revoked(authority) => rows(conn, REVOKED_BY, &scope_key, authority).await?,
    };
    match of {
        Listing::Registration(_) => issued::sort_newest_first(&mut certs),
        Listing::Revoked(_) => {
            certs.retain(|c| c.status == IssuedCertificateStatus::Revoked);
            issued::sort_by_revocation(&mut certs);
        }
    }
    Ok(certs)
}

/// What [`list`] lists.
#[derive(Clone, Copy)]
pub(crate) enum Listing<'a> {
    /// Every certificate issued to a registration.
    Registration(&'a RegistrationId),
    /// Every revoked certificate of a CA.
    Revoked(&'a str),
}
