//! Issued certificates in PostgreSQL: a registration commit that carries a
//! certificate runs as one transaction (the commit statement, which also
//! marks the registration's active certificates superseded, then the new
//! one), retried on serialization failures like every write.

use chrono::{DateTime, Utc};
use dps_model::{
    IdScope, IssuedCertificate, OperationRecord, RegistrationId, RegistrationOperation,
    RegistrationRecord,
};
use sqlx::error::ErrorKind;
use sqlx::{PgConnection, PgPool, Row};

use super::authorities::transact;
use super::retry::{Attempt, Retry};
use super::writes::{scope_bytes, tenant_fault, violation, EncodedCommit};
use crate::error::{Entity, StoreError, StoreResult};
use crate::{issued, rules, time};

const INSERT: &str = "INSERT INTO issued_certificates \
     (scope_key, authority_name, serial, registration_key, status, issued_us, body) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub(crate) const OF_REGISTRATION: &str = "SELECT serial, body FROM issued_certificates \
     WHERE scope_key = $1 AND registration_key = $2";
const OF_REGISTRATION_LOCKED: &str = "SELECT serial, body FROM issued_certificates \
     WHERE scope_key = $1 AND registration_key = $2 FOR UPDATE";
pub(crate) const REVOKED_BY: &str = "SELECT serial, body FROM issued_certificates \
     WHERE scope_key = $1 AND authority_name = $2 AND status = 'revoked'";
const UPDATE: &str = "UPDATE issued_certificates SET status = $4, body = $5 \
     WHERE scope_key = $1 AND authority_name = $2 AND serial = $3";

/// [`Store::commit_registration_with_certificate`](crate::Store::commit_registration_with_certificate).
pub(crate) async fn commit(
    pool: &PgPool,
    id_scope: &IdScope,
    record: &RegistrationRecord,
    operation: &RegistrationOperation,
    billing: Option<&OperationRecord>,
    certificate: &IssuedCertificate,
) -> StoreResult<()> {
    let superseded_at = issued::superseded_at(record, Some(certificate));
    let commit = EncodedCommit::new(record, operation, superseded_at)?;
    let body = rules::encode(
        Entity::IssuedCertificate,
        &certificate.serial_number,
        certificate,
    )?;
    transact!(
        pool,
        Entity::Registration,
        record.registration_id.as_str(),
        |conn| commit_steps(
            conn,
            id_scope,
            &commit,
            (record, operation, billing),
            certificate,
            &body,
        )
    )
}

async fn commit_steps(
    conn: &mut PgConnection,
    id_scope: &IdScope,
    commit: &EncodedCommit,
    (record, operation, billing): (
        &RegistrationRecord,
        &RegistrationOperation,
        Option<&OperationRecord>,
    ),
    certificate: &IssuedCertificate,
    body: &str,
) -> StoreResult<()> {
    // The commit statement supersedes the older certificates, at the new
    // one's issue time, before the new one is inserted.
    commit
        .execute(&mut *conn, id_scope, record, operation, billing)
        .await?;
    let scope = scope_bytes(id_scope);
    let registration_key = record.registration_id.key();
    sqlx::query(INSERT)
        .bind(&scope)
        .bind(certificate.certificate_authority_name.as_bytes())
        .bind(certificate.serial_number.as_bytes())
        .bind(registration_key.as_bytes())
        .bind(certificate.status.as_str())
        .bind(time::to_micros(certificate.issued_date_time_utc))
        .bind(body)
        .execute(&mut *conn)
        .await
        .map_err(|err| match violation(&err) {
            Some(ErrorKind::UniqueViolation) => issued::duplicate(certificate),
            _ => tenant_fault("storing an issued certificate", id_scope)(err),
        })?;
    Ok(())
}

/// [`Store::revoke_issued_certificate`](crate::Store::revoke_issued_certificate).
pub(crate) async fn revoke(
    pool: &PgPool,
    id_scope: &IdScope,
    registration_id: &RegistrationId,
    serial_number: &str,
    at: DateTime<Utc>,
) -> StoreResult<IssuedCertificate> {
    let at = time::truncate(at);
    transact!(pool, Entity::IssuedCertificate, serial_number, |conn| {
        revoke_steps(conn, id_scope, registration_id, serial_number, at)
    })
}

async fn revoke_steps(
    conn: &mut PgConnection,
    id_scope: &IdScope,
    registration_id: &RegistrationId,
    serial_number: &str,
    at: DateTime<Utc>,
) -> StoreResult<IssuedCertificate> {
    let scope = scope_bytes(id_scope);
    let key = registration_id.key();
    let found: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM tenants WHERE scope_key = $1")
        .bind(&scope)
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::database("looking up the tenant"))?;
    if found.is_none() {
        return Err(StoreError::UnknownTenant {
            id_scope: id_scope.clone(),
        });
    }
    let mut cert = rows(&mut *conn, OF_REGISTRATION_LOCKED, &scope, key.as_bytes())
        .await?
        .into_iter()
        .find(|c| c.serial_number == serial_number)
        .ok_or_else(|| issued::not_found(serial_number))?;
    if cert.revoke(at) {
        update(conn, &scope, &cert).await?;
    }
    Ok(cert)
}

async fn update(
    conn: &mut PgConnection,
    scope: &[u8],
    cert: &IssuedCertificate,
) -> StoreResult<()> {
    let body = rules::encode(Entity::IssuedCertificate, &cert.serial_number, cert)?;
    sqlx::query(UPDATE)
        .bind(scope)
        .bind(cert.certificate_authority_name.as_bytes())
        .bind(cert.serial_number.as_bytes())
        .bind(cert.status.as_str())
        .bind(body)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::database("updating an issued certificate"))?;
    Ok(())
}

/// Every `(serial, body)` row of `statement` for (scope, second key), decoded.
pub(crate) async fn rows<'c, E: sqlx::PgExecutor<'c>>(
    executor: E,
    statement: &'static str,
    scope: &[u8],
    second: &[u8],
) -> StoreResult<Vec<IssuedCertificate>> {
    let found = sqlx::query(statement)
        .bind(scope)
        .bind(second)
        .fetch_all(executor)
        .await
        .map_err(StoreError::database("reading issued certificates"))?;
    let mut certs = Vec::with_capacity(found.len());
    for row in &found {
        let serial: Vec<u8> = row
            .try_get(0)
            .map_err(StoreError::database("reading issued certificates"))?;
        let body: &str = row
            .try_get(1)
            .map_err(StoreError::database("reading issued certificates"))?;
        certs.push(rules::decode(
            Entity::IssuedCertificate,
            &String::from_utf8_lossy(&serial),
            body,
        )?);
    }
    Ok(certs)
}
