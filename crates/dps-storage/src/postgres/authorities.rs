//! Certificate authorities and credential policies in PostgreSQL.
//!
//! These writes are rare (administration), so each runs as one short
//! transaction that locks the rows it checks (`FOR UPDATE`): a policy write
//! locks the CA it names, a CA delete locks the CA before looking for
//! policies naming it, so the two cannot interleave. Serialization failures
//! are retried like every other write.

use dps_model::{CredentialPolicy, ETag, IdScope, Precondition};
use serde::de::DeserializeOwned;
use sqlx::error::ErrorKind;
use sqlx::{PgConnection, PgPool, Row};

use super::retry::{Attempt, Retry};
use super::writes::{scope_bytes, violation};
use crate::authorities::{self, StoredCertificateAuthority};
use crate::error::{Entity, StoreError, StoreResult};
use crate::rules;
use crate::store::Written;
use crate::time;

pub(crate) const AUTHORITY: &str =
    "SELECT body FROM certificate_authorities WHERE scope_key = $1 AND name = $2";
pub(crate) const AUTHORITIES: &str =
    "SELECT name, body FROM certificate_authorities WHERE scope_key = $1 ORDER BY name";
pub(crate) const POLICY: &str =
    "SELECT body FROM credential_policies WHERE scope_key = $1 AND name = $2";
pub(crate) const POLICIES: &str =
    "SELECT name, body FROM credential_policies WHERE scope_key = $1 ORDER BY name";
const TENANT_LOCK: &str = "SELECT 1 FROM tenants WHERE scope_key = $1";
const AUTHORITY_LOCK: &str =
    "SELECT etag FROM certificate_authorities WHERE scope_key = $1 AND name = $2 FOR UPDATE";
const INSERT_AUTHORITY: &str =
    "INSERT INTO certificate_authorities (scope_key, name, etag, body) VALUES ($1, $2, $3, $4)";
const DELETE_AUTHORITY: &str =
    "DELETE FROM certificate_authorities WHERE scope_key = $1 AND name = $2";
const POLICY_NAMING_AUTHORITY: &str =
    "SELECT name FROM credential_policies WHERE scope_key = $1 AND authority_name = $2 \
     ORDER BY name LIMIT 1";
const POLICY_LOCK: &str =
    "SELECT etag, body FROM credential_policies WHERE scope_key = $1 AND name = $2 FOR UPDATE";
const UPSERT_POLICY: &str = "INSERT INTO credential_policies \
     (scope_key, name, authority_name, etag, body) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (scope_key, name) DO UPDATE SET authority_name = excluded.authority_name, \
     etag = excluded.etag, body = excluded.body";
const DELETE_POLICY: &str = "DELETE FROM credential_policies WHERE scope_key = $1 AND name = $2";
/// An enrollment, else a group, naming a policy (a scan: policy deletes are rare).
const POLICY_USER: &str = "(SELECT 0, CAST(body AS JSONB) ->> 'registrationId' FROM enrollments \
     WHERE scope_key = $1 AND CAST(body AS JSONB) ->> 'credentialPolicyName' = $2 LIMIT 1) \
     UNION ALL (SELECT 1, CAST(body AS JSONB) ->> 'enrollmentGroupId' FROM enrollment_groups \
     WHERE scope_key = $1 AND CAST(body AS JSONB) ->> 'credentialPolicyName' = $2 LIMIT 1) \
     LIMIT 1";

/// Every `(name, body)` row `statement` lists for a tenant, decoded, in
/// byte order of the name.
pub(crate) async fn named_rows<T: DeserializeOwned>(
    pool: &PgPool,
    entity: Entity,
    statement: &'static str,
    id_scope: &IdScope,
) -> StoreResult<Vec<T>> {
    let rows = sqlx::query(statement)
        .bind(scope_bytes(id_scope))
        .fetch_all(pool)
        .await
        .map_err(StoreError::database("listing records"))?;
    let mut records = Vec::with_capacity(rows.len());
    for row in &rows {
        let name: Vec<u8> = row
            .try_get(0)
            .map_err(StoreError::database("listing records"))?;
        let name = String::from_utf8_lossy(&name).into_owned();
        let body: &str = row
            .try_get(1)
            .map_err(StoreError::database("listing records"))?;
        records.push(rules::decode(entity, &name, body)?);
    }
    Ok(records)
}

/// Run `$body` (an async block using `$conn: &mut PgConnection`) in a
/// transaction, retrying serialization failures.
macro_rules! transact {
    ($pool:expr, $entity:expr, $id:expr, |$conn:ident| $body:expr) => {{
        let mut retry = Retry::new($entity, $id);
        loop {
            let attempt = async {
                let mut tx = $pool
                    .begin()
                    .await
                    .map_err(StoreError::database("starting a transaction"))?;
                let value = {
                    let $conn: &mut PgConnection = &mut tx;
                    $body.await?
                };
                tx.commit()
                    .await
                    .map_err(StoreError::database("committing"))?;
                Ok(Attempt::Done(value))
            }
            .await;
            if let Some(answer) = retry.settle(attempt).await {
                break answer;
            }
        }
    }};
}
pub(super) use transact;

/// Check that the tenant exists (its foreign keys guard the rest of the
/// transaction against a concurrent tenant delete).
async fn lock_tenant(conn: &mut PgConnection, id_scope: &IdScope) -> StoreResult<()> {
    let found: Option<(i32,)> = sqlx::query_as(TENANT_LOCK)
        .bind(scope_bytes(id_scope))
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::database("looking up the tenant"))?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::UnknownTenant {
            id_scope: id_scope.clone(),
        }),
    }
}

async fn lock_authority(
    conn: &mut PgConnection,
    id_scope: &IdScope,
    name: &str,
) -> StoreResult<Option<ETag>> {
    let found: Option<(String,)> = sqlx::query_as(AUTHORITY_LOCK)
        .bind(scope_bytes(id_scope))
        .bind(name.as_bytes())
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::database("reading a certificate authority"))?;
    Ok(found.map(|(etag,)| ETag::new(etag)))
}

pub(crate) async fn create(
    pool: &PgPool,
    id_scope: &IdScope,
    ca: StoredCertificateAuthority,
) -> StoreResult<StoredCertificateAuthority> {
    transact!(pool, Entity::CertificateAuthority, ca.name(), |conn| {
        let mut ca = ca.clone();
        async move {
            lock_tenant(conn, id_scope).await?;
            authorities::stamp_authority(&mut ca);
            let body = rules::encode(Entity::CertificateAuthority, ca.name(), &ca)?;
            let inserted = sqlx::query(INSERT_AUTHORITY)
                .bind(scope_bytes(id_scope))
                .bind(ca.name().as_bytes())
                .bind(ca.authority.etag.as_str())
                .bind(body)
                .execute(&mut *conn)
                .await;
            match inserted {
                Ok(_) => Ok(ca),
                Err(err) if violation(&err) == Some(ErrorKind::UniqueViolation) => {
                    Err(StoreError::AlreadyExists {
                        entity: Entity::CertificateAuthority,
                        id: ca.name().to_owned(),
                    })
                }
                Err(err) => Err(StoreError::database("creating a certificate authority")(
                    err,
                )),
            }
        }
    })
}

pub(crate) async fn delete(
    pool: &PgPool,
    id_scope: &IdScope,
    name: &str,
    precondition: Precondition,
) -> StoreResult<()> {
    transact!(pool, Entity::CertificateAuthority, name, |conn| {
        let precondition = precondition.clone();
        async move {
            lock_tenant(conn, id_scope).await?;
            let current = lock_authority(conn, id_scope, name).await?;
            rules::check_delete(
                Entity::CertificateAuthority,
                name,
                current.as_ref(),
                &precondition,
            )?;
            let user: Option<(Vec<u8>,)> = sqlx::query_as(POLICY_NAMING_AUTHORITY)
                .bind(scope_bytes(id_scope))
                .bind(name.as_bytes())
                .fetch_optional(&mut *conn)
                .await
                .map_err(StoreError::database("looking for policies naming a CA"))?;
            if let Some((user,)) = user {
                return Err(StoreError::InUse {
                    entity: Entity::CertificateAuthority,
                    id: name.to_owned(),
                    user_entity: Entity::CredentialPolicy,
                    user_id: String::from_utf8_lossy(&user).into_owned(),
                });
            }
            sqlx::query(DELETE_AUTHORITY)
                .bind(scope_bytes(id_scope))
                .bind(name.as_bytes())
                .execute(&mut *conn)
                .await
                .map_err(StoreError::database("deleting a certificate authority"))?;
            Ok(())
        }
    })
}

pub(crate) async fn put_policy(
    pool: &PgPool,
    id_scope: &IdScope,
    policy: CredentialPolicy,
    precondition: Precondition,
) -> StoreResult<Written<CredentialPolicy>> {
    let name = policy.name.clone();
    transact!(pool, Entity::CredentialPolicy, &name, |conn| {
        let (mut policy, precondition) = (policy.clone(), precondition.clone());
        async move {
            lock_tenant(conn, id_scope).await?;
            let current: Option<(String, String)> = sqlx::query_as(POLICY_LOCK)
                .bind(scope_bytes(id_scope))
                .bind(policy.name.as_bytes())
                .fetch_optional(&mut *conn)
                .await
                .map_err(StoreError::database("reading a credential policy"))?;
            let current_tag = current.as_ref().map(|(etag, _)| ETag::new(etag.as_str()));
            let outcome = rules::check_put(
                Entity::CredentialPolicy,
                &policy.name,
                current_tag.as_ref(),
                &precondition,
            )?;
            let authority = &policy.certificate_authority_name;
            if lock_authority(conn, id_scope, authority).await?.is_none() {
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
            let written = sqlx::query(UPSERT_POLICY)
                .bind(scope_bytes(id_scope))
                .bind(policy.name.as_bytes())
                .bind(policy.certificate_authority_name.as_bytes())
                .bind(policy.etag.as_ref().map(ETag::as_str).unwrap_or_default())
                .bind(body)
                .execute(&mut *conn)
                .await;
            match written {
                Ok(_) => Ok(Written {
                    record: policy,
                    outcome,
                }),
                // Created by another writer since our read: a create-only
                // write must hear that; the retry re-reads and decides.
                Err(err) if violation(&err) == Some(ErrorKind::UniqueViolation) => {
                    Err(StoreError::AlreadyExists {
                        entity: Entity::CredentialPolicy,
                        id: policy.name.clone(),
                    })
                }
                Err(err) => Err(StoreError::database("writing a credential policy")(err)),
            }
        }
    })
}

pub(crate) async fn delete_policy(
    pool: &PgPool,
    id_scope: &IdScope,
    name: &str,
    precondition: Precondition,
) -> StoreResult<()> {
    transact!(pool, Entity::CredentialPolicy, name, |conn| {
        let precondition = precondition.clone();
        async move {
            lock_tenant(conn, id_scope).await?;
            let current: Option<(String, String)> = sqlx::query_as(POLICY_LOCK)
                .bind(scope_bytes(id_scope))
                .bind(name.as_bytes())
                .fetch_optional(&mut *conn)
                .await
                .map_err(StoreError::database("reading a credential policy"))?;
            let current_tag = current.map(|(etag, _)| ETag::new(etag));
            rules::check_delete(
                Entity::CredentialPolicy,
                name,
                current_tag.as_ref(),
                &precondition,
            )?;
            let user: Option<(i32, String)> = sqlx::query_as(POLICY_USER)
                .bind(scope_bytes(id_scope))
                .bind(name)
                .fetch_optional(&mut *conn)
                .await
                .map_err(StoreError::database(
                    "looking for enrollments naming a policy",
                ))?;
            if let Some((kind, user_id)) = user {
                return Err(authorities::policy_in_use(name, i64::from(kind), user_id));
            }
            sqlx::query(DELETE_POLICY)
                .bind(scope_bytes(id_scope))
                .bind(name.as_bytes())
                .execute(&mut *conn)
                .await
                .map_err(StoreError::database("deleting a credential policy"))?;
            Ok(())
        }
    })
}
