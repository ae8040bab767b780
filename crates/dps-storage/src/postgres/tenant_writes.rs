//! Tenant rows: create, replace under an etag, delete with everything the
//! tenant owns.

use dps_model::{ETag, IdScope, Precondition, Tenant};
use sqlx::error::ErrorKind;
use sqlx::PgPool;

use super::retry::{Attempt, Retry};
use super::sql;
use super::writes::{constraint, scope_bytes, violation};
use crate::error::{Entity, StoreError, StoreResult};
use crate::rules;

pub(crate) async fn create_tenant(pool: &PgPool, mut tenant: Tenant) -> StoreResult<Tenant> {
    let key = tenant.id_scope.key();
    let taken = |id: String| StoreError::AlreadyExists {
        entity: Entity::Tenant,
        id,
    };
    let by_scope: Option<(String,)> = sqlx::query_as(sql::TENANT_ETAG)
        .bind(key.as_bytes())
        .fetch_optional(pool)
        .await
        .map_err(StoreError::database("looking up the tenant"))?;
    if by_scope.is_some() {
        return Err(taken(tenant.id_scope.to_string()));
    }
    let by_name: Option<(Vec<u8>,)> = sqlx::query_as(sql::TENANT_SCOPE_OF_NAME)
        .bind(&tenant.name)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::database("looking up the tenant name"))?;
    if by_name.is_some() {
        return Err(taken(tenant.name.clone()));
    }
    tenant.etag = ETag::generate();
    let body = rules::encode(Entity::Tenant, &key, &tenant)?;
    let inserted = sqlx::query(sql::INSERT_TENANT)
        .bind(key.as_bytes())
        .bind(&tenant.name)
        .bind(tenant.etag.as_str())
        .bind(body)
        .execute(pool)
        .await;
    match inserted {
        Ok(_) => Ok(tenant),
        // A replica created it between our look-ups and our insert.
        Err(err) if violation(&err) == Some(ErrorKind::UniqueViolation) => {
            Err(if constraint(&err) == Some("tenants_name_unique") {
                taken(tenant.name)
            } else {
                taken(tenant.id_scope.to_string())
            })
        }
        Err(err) => Err(StoreError::database("creating a tenant")(err)),
    }
}

pub(crate) async fn replace_tenant(
    pool: &PgPool,
    tenant: Tenant,
    precondition: Precondition,
) -> StoreResult<Tenant> {
    let mut retry = Retry::new(Entity::Tenant, tenant.id_scope.as_str());
    loop {
        let attempt = try_replace_tenant(pool, tenant.clone(), &precondition).await;
        if let Some(answer) = retry.settle(attempt).await {
            return answer;
        }
    }
}

async fn try_replace_tenant(
    pool: &PgPool,
    mut tenant: Tenant,
    precondition: &Precondition,
) -> StoreResult<Attempt<Tenant>> {
    let key = tenant.id_scope.key();
    let current: Option<(String, String)> = sqlx::query_as(sql::TENANT_FOR_WRITE)
        .bind(key.as_bytes())
        .fetch_optional(pool)
        .await
        .map_err(StoreError::database("reading the tenant"))?;
    let Some((etag, body)) = current else {
        return Err(StoreError::NotFound {
            entity: Entity::Tenant,
            id: tenant.id_scope.to_string(),
        });
    };
    let current_tag = ETag::new(etag.as_str());
    rules::check_put(
        Entity::Tenant,
        tenant.id_scope.as_str(),
        Some(&current_tag),
        precondition,
    )?;
    let stored: Tenant = rules::decode(Entity::Tenant, &key, &body)?;
    if stored.name != tenant.name {
        let owner: Option<(Vec<u8>,)> = sqlx::query_as(sql::TENANT_SCOPE_OF_NAME)
            .bind(&tenant.name)
            .fetch_optional(pool)
            .await
            .map_err(StoreError::database("looking up the tenant name"))?;
        if owner.is_some() {
            return Err(StoreError::AlreadyExists {
                entity: Entity::Tenant,
                id: tenant.name,
            });
        }
    }
    tenant.etag = ETag::generate();
    tenant.created = stored.created;
    let body = rules::encode(Entity::Tenant, &key, &tenant)?;
    let updated = sqlx::query(sql::UPDATE_TENANT)
        .bind(key.as_bytes())
        .bind(&tenant.name)
        .bind(tenant.etag.as_str())
        .bind(body)
        .bind(etag)
        .execute(pool)
        .await;
    match updated {
        Ok(done) if done.rows_affected() == 1 => Ok(Attempt::Done(tenant)),
        Ok(_) => Ok(Attempt::Lost),
        Err(err) if violation(&err) == Some(ErrorKind::UniqueViolation) => {
            Err(StoreError::AlreadyExists {
                entity: Entity::Tenant,
                id: tenant.name,
            })
        }
        Err(err) => Err(StoreError::database("replacing a tenant")(err)),
    }
}

pub(crate) async fn delete_tenant(
    pool: &PgPool,
    id_scope: &IdScope,
    precondition: Precondition,
) -> StoreResult<()> {
    let key = scope_bytes(id_scope);
    let mut retry = Retry::new(Entity::Tenant, id_scope.as_str());
    loop {
        let attempt = async {
            let current: Option<(String,)> = sqlx::query_as(sql::TENANT_ETAG)
                .bind(&key)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::database("reading the tenant"))?;
            let current = current.map(|(etag,)| etag);
            rules::check_delete(
                Entity::Tenant,
                id_scope.as_str(),
                current.as_deref().map(ETag::new).as_ref(),
                &precondition,
            )?;
            // Everything else goes with it: ON DELETE CASCADE.
            let done = sqlx::query(sql::DELETE_TENANT)
                .bind(&key)
                .bind(current)
                .execute(pool)
                .await
                .map_err(StoreError::database("deleting a tenant"))?;
            Ok(if done.rows_affected() == 1 {
                Attempt::Done(())
            } else {
                Attempt::Lost
            })
        }
        .await;
        if let Some(answer) = retry.settle(attempt).await {
            return answer;
        }
    }
}
