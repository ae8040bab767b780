//! Certificate authorities and credential policies in SQLite: the writes
//! (run by the writer thread, each in its savepoint) and their statements.

use chrono::{DateTime, Utc};
use dps_model::{CredentialPolicy, ETag, IdScope, IssuedCertificate, Precondition, RegistrationId};
use rusqlite::Connection;
use serde::de::DeserializeOwned;
use sqlx::Row;

use super::readers::{connection, decode_column, Readers};
use super::statements::{execute, failed, optional};
use super::writer::{settle, Reply, Settle};
use super::writes::{etag_and_body, require_tenant};
use crate::authorities::{self, StoredCertificateAuthority};
use crate::error::{Entity, StoreError, StoreResult};
use crate::rules;
use crate::store::Written;
use crate::time;

pub(crate) const AUTHORITY: &str =
    "SELECT body FROM certificate_authorities WHERE scope_key = $1 AND name = $2";
pub(crate) const AUTHORITIES: &str =
    "SELECT name, body FROM certificate_authorities WHERE scope_key = $1 ORDER BY name";
const AUTHORITY_ETAG: &str =
    "SELECT etag FROM certificate_authorities WHERE scope_key = $1 AND name = $2";
const INSERT_AUTHORITY: &str =
    "INSERT INTO certificate_authorities (scope_key, name, etag, body) VALUES ($1, $2, $3, $4)";
const DELETE_AUTHORITY: &str =
    "DELETE FROM certificate_authorities WHERE scope_key = $1 AND name = $2";
const POLICY_NAMING_AUTHORITY: &str =
    "SELECT name FROM credential_policies WHERE scope_key = $1 AND authority_name = $2 \
     ORDER BY name LIMIT 1";
pub(crate) const POLICY: &str =
    "SELECT body FROM credential_policies WHERE scope_key = $1 AND name = $2";
pub(crate) const POLICIES: &str =
    "SELECT name, body FROM credential_policies WHERE scope_key = $1 ORDER BY name";
const POLICY_FOR_WRITE: &str =
    "SELECT etag, body FROM credential_policies WHERE scope_key = $1 AND name = $2";
const UPSERT_POLICY: &str = "INSERT INTO credential_policies \
     (scope_key, name, authority_name, etag, body) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (scope_key, name) DO UPDATE SET authority_name = excluded.authority_name, \
     etag = excluded.etag, body = excluded.body";
const DELETE_POLICY: &str = "DELETE FROM credential_policies WHERE scope_key = $1 AND name = $2";
/// An enrollment, else a group, naming a policy (a scan: policy deletes are rare).
const POLICY_USER: &str = "SELECT 0, json_extract(body, '$.registrationId') FROM enrollments \
     WHERE scope_key = $1 AND json_extract(body, '$.credentialPolicyName') = $2 \
     UNION ALL SELECT 1, json_extract(body, '$.enrollmentGroupId') FROM enrollment_groups \
     WHERE scope_key = $1 AND json_extract(body, '$.credentialPolicyName') = $2 \
     LIMIT 1";

/// Every `(name, body)` row `statement` lists for a tenant, decoded.
pub(crate) async fn named_rows<T: DeserializeOwned>(
    readers: &Readers,
    entity: Entity,
    statement: &'static str,
    id_scope: &IdScope,
) -> StoreResult<Vec<T>> {
    let mut lent = readers.get().await;
    let rows = sqlx::query(statement)
        .bind(id_scope.key())
        .fetch_all(connection(&mut lent)?)
        .await
        .map_err(StoreError::database("listing records"))?;
    let mut records = Vec::with_capacity(rows.len());
    for row in &rows {
        let name: String = row
            .try_get(0)
            .map_err(StoreError::database("listing records"))?;
        records.push(decode_column(entity, &name, row, 1)?);
    }
    Ok(records)
}

/// One CA or policy write for the writer thread.
#[derive(Debug)]
pub(crate) enum AuthorityJob {
    Create(
        IdScope,
        Box<StoredCertificateAuthority>,
        Reply<StoredCertificateAuthority>,
    ),
    Delete(IdScope, String, Precondition, Reply<()>),
    PutPolicy(
        IdScope,
        Box<CredentialPolicy>,
        Precondition,
        Reply<Written<CredentialPolicy>>,
    ),
    DeletePolicy(IdScope, String, Precondition, Reply<()>),
    /// Revoke an issued certificate (registration, serial number, time).
    Revoke(
        IdScope,
        RegistrationId,
        String,
        DateTime<Utc>,
        Reply<IssuedCertificate>,
    ),
}

impl AuthorityJob {
    /// Answer `err` without running.
    pub(crate) fn fail(self, err: StoreError) {
        match self {
            AuthorityJob::Create(_, _, r) => drop(r.send(Err(err))),
            AuthorityJob::Delete(_, _, _, r) | AuthorityJob::DeletePolicy(_, _, _, r) => {
                drop(r.send(Err(err)))
            }
            AuthorityJob::PutPolicy(_, _, _, r) => drop(r.send(Err(err))),
            AuthorityJob::Revoke(_, _, _, _, r) => drop(r.send(Err(err))),
        }
    }

    /// Run the job's statements; whether it succeeded and how to answer it.
    pub(crate) fn run(self, conn: &Connection) -> (bool, Settle) {
        match self {
            AuthorityJob::Create(scope, ca, r) => settle(r, create(conn, &scope, *ca)),
            AuthorityJob::Delete(scope, name, pre, r) => {
                settle(r, delete(conn, &scope, &name, pre))
            }
            AuthorityJob::PutPolicy(scope, policy, pre, r) => {
                settle(r, put_policy(conn, &scope, *policy, pre))
            }
            AuthorityJob::DeletePolicy(scope, name, pre, r) => {
                settle(r, delete_policy(conn, &scope, &name, pre))
            }
            AuthorityJob::Revoke(scope, id, serial, at, r) => {
                settle(r, super::issued::revoke(conn, &scope, &id, &serial, at))
            }
        }
    }
}

fn authority_etag(conn: &Connection, scope_key: &str, name: &str) -> StoreResult<Option<ETag>> {
    let found = optional(conn, AUTHORITY_ETAG, &[&scope_key, &name], |row| {
        row.get::<_, String>(0)
    })
    .map_err(failed("reading a certificate authority"))?;
    Ok(found.map(ETag::new))
}

fn create(
    conn: &Connection,
    id_scope: &IdScope,
    mut ca: StoredCertificateAuthority,
) -> StoreResult<StoredCertificateAuthority> {
    require_tenant(conn, id_scope)?;
    let scope_key = id_scope.key();
    if authority_etag(conn, &scope_key, ca.name())?.is_some() {
        return Err(StoreError::AlreadyExists {
            entity: Entity::CertificateAuthority,
            id: ca.name().to_owned(),
        });
    }
    authorities::stamp_authority(&mut ca);
    let body = rules::encode(Entity::CertificateAuthority, ca.name(), &ca)?;
    execute(
        conn,
        INSERT_AUTHORITY,
        &[&scope_key, &ca.name(), &ca.authority.etag.as_str(), &body],
    )
    .map_err(failed("creating a certificate authority"))?;
    Ok(ca)
}

fn delete(
    conn: &Connection,
    id_scope: &IdScope,
    name: &str,
    precondition: Precondition,
) -> StoreResult<()> {
    require_tenant(conn, id_scope)?;
    let scope_key = id_scope.key();
    let current = authority_etag(conn, &scope_key, name)?;
    rules::check_delete(
        Entity::CertificateAuthority,
        name,
        current.as_ref(),
        &precondition,
    )?;
    let user = optional(conn, POLICY_NAMING_AUTHORITY, &[&scope_key, &name], |row| {
        row.get::<_, String>(0)
    })
    .map_err(failed("looking for policies naming a CA"))?;
    if let Some(user_id) = user {
        return Err(StoreError::InUse {
            entity: Entity::CertificateAuthority,
            id: name.to_owned(),
            user_entity: Entity::CredentialPolicy,
            user_id,
        });
    }
    execute(conn, DELETE_AUTHORITY, &[&scope_key, &name])
        .map_err(failed("deleting a certificate authority"))?;
    Ok(())
}

fn put_policy(
    conn: &Connection,
    id_scope: &IdScope,
    mut policy: CredentialPolicy,
    precondition: Precondition,
) -> StoreResult<Written<CredentialPolicy>> {
    require_tenant(conn, id_scope)?;
    let scope_key = id_scope.key();
    let current: Option<(String, String)> = optional(
        conn,
        POLICY_FOR_WRITE,
        &[&scope_key, &policy.name],
        etag_and_body,
    )
    .map_err(failed("reading a credential policy"))?;
    let current_tag = current.as_ref().map(|(etag, _)| ETag::new(etag.as_str()));
    let outcome = rules::check_put(
        Entity::CredentialPolicy,
        &policy.name,
        current_tag.as_ref(),
        &precondition,
    )?;
    let authority = &policy.certificate_authority_name;
    if authority_etag(conn, &scope_key, authority)?.is_none() {
        return Err(StoreError::MissingReference {
            entity: Entity::CredentialPolicy,
            id: policy.name.clone(),
            missing_entity: Entity::CertificateAuthority,
            missing_id: authority.clone(),
        });
    }
    let replaced: Option<CredentialPolicy> = current
        .map(|(_, body)| rules::decode(Entity::CredentialPolicy, &policy.name, &body))
        .transpose()?;
    authorities::stamp_policy(&mut policy, replaced.as_ref(), time::now());
    let body = rules::encode(Entity::CredentialPolicy, &policy.name, &policy)?;
    execute(
        conn,
        UPSERT_POLICY,
        &[
            &scope_key,
            &policy.name,
            &policy.certificate_authority_name,
            &policy.etag.as_ref().map(ETag::as_str).unwrap_or_default(),
            &body,
        ],
    )
    .map_err(failed("writing a credential policy"))?;
    Ok(Written {
        record: policy,
        outcome,
    })
}

fn delete_policy(
    conn: &Connection,
    id_scope: &IdScope,
    name: &str,
    precondition: Precondition,
) -> StoreResult<()> {
    require_tenant(conn, id_scope)?;
    let scope_key = id_scope.key();
    let current: Option<(String, String)> =
        optional(conn, POLICY_FOR_WRITE, &[&scope_key, &name], etag_and_body)
            .map_err(failed("reading a credential policy"))?;
    let current_tag = current.map(|(etag, _)| ETag::new(etag));
    rules::check_delete(
        Entity::CredentialPolicy,
        name,
        current_tag.as_ref(),
        &precondition,
    )?;
    let user = optional(conn, POLICY_USER, &[&scope_key, &name], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
    })
    .map_err(failed("looking for enrollments naming a policy"))?;
    if let Some((kind, user_id)) = user {
        return Err(authorities::policy_in_use(name, kind, user_id));
    }
    execute(conn, DELETE_POLICY, &[&scope_key, &name])
        .map_err(failed("deleting a credential policy"))?;
    Ok(())
}
