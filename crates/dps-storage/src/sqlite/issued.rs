//! Issued certificates in SQLite: stored by the writer inside the
//! registration commit's transaction (never on the multi-row fast path),
//! revoked by the writer, listed by the readers.

use chrono::{DateTime, Utc};
use dps_model::{IdScope, IssuedCertificate, IssuedCertificateStatus, RegistrationId};
use sqlx::error::ErrorKind;
use sqlx::{Row, SqliteConnection};

use super::readers::{connection, decode_column, Readers};
use super::writes::{require_tenant, tenant_fault, violation};
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
const SUPERSEDE: &str = "UPDATE issued_certificates SET status = 'superseded', \
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
pub(crate) async fn supersede(
    conn: &mut SqliteConnection,
    scope_key: &str,
    registration_key: &str,
    at: &str,
) -> StoreResult<()> {
    sqlx::query(SUPERSEDE)
        .bind(scope_key)
        .bind(registration_key)
        .bind(at)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::database("superseding issued certificates"))?;
    Ok(())
}

/// Insert a new certificate (inside the registration commit's transaction,
/// after [`supersede`]).
pub(crate) async fn insert(
    conn: &mut SqliteConnection,
    id_scope: &IdScope,
    scope_key: &str,
    registration_key: &str,
    row: &IssuedRow,
) -> StoreResult<()> {
    sqlx::query(INSERT)
        .bind(scope_key)
        .bind(&row.authority_name)
        .bind(&row.serial)
        .bind(registration_key)
        .bind(row.certificate.status.as_str())
        .bind(row.issued_us)
        .bind(&row.body)
        .execute(&mut *conn)
        .await
        .map_err(|err| match violation(&err) {
            Some(ErrorKind::UniqueViolation) => issued::duplicate(&row.certificate),
            _ => tenant_fault("storing an issued certificate", id_scope)(err),
        })?;
    Ok(())
}

async fn update(
    conn: &mut SqliteConnection,
    scope_key: &str,
    cert: &IssuedCertificate,
) -> StoreResult<()> {
    let body = rules::encode(Entity::IssuedCertificate, &cert.serial_number, cert)?;
    sqlx::query(UPDATE)
        .bind(scope_key)
        .bind(&cert.certificate_authority_name)
        .bind(&cert.serial_number)
        .bind(cert.status.as_str())
        .bind(body)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::database("updating an issued certificate"))?;
    Ok(())
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

/// The writer's revocation.
pub(crate) async fn revoke(
    conn: &mut SqliteConnection,
    id_scope: &IdScope,
    registration_id: &RegistrationId,
    serial_number: &str,
    at: DateTime<Utc>,
) -> StoreResult<IssuedCertificate> {
    require_tenant(conn, id_scope).await?;
    let scope_key = id_scope.key();
    let mut cert = rows(conn, OF_REGISTRATION, &scope_key, &registration_id.key())
        .await?
        .into_iter()
        .find(|c| c.serial_number == serial_number)
        .ok_or_else(|| issued::not_found(serial_number))?;
    if cert.revoke(time::truncate(at)) {
        update(conn, &scope_key, &cert).await?;
    }
    Ok(cert)
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
