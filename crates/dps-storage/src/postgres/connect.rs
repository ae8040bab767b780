//! Connecting, and the plumbing every `Store` method of [`PostgresStore`]
//! shares (queries, paging, retries).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use dps_model::{IdScope, Precondition, RegistrationId};
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, Postgres, Row};

use super::sql::RecordTable;
use super::{decode_column, limit, redact_url, schema, writes, PostgresOptions, PostgresStore};
use crate::error::{Entity, StoreError, StoreResult};
use crate::token::{Page, PageRequest};

impl PostgresStore {
    /// Connect to the database a `postgres://` (or `postgresql://`) URL names,
    /// bring its schema up to date, and open the pool.
    pub async fn connect(url: &str, options: PostgresOptions) -> StoreResult<Self> {
        let target = redact_url(url);
        let connect_error = |source| StoreError::Connect {
            target: target.clone(),
            source: Arc::new(source),
        };
        let connect_options = PgConnectOptions::from_str(url)
            .map_err(connect_error)?
            .application_name("dps")
            .disable_statement_logging();
        let timeout = Duration::from_millis(options.connect_timeout_ms.max(1));
        let mut conn =
            match tokio::time::timeout(timeout, PgConnection::connect_with(&connect_options)).await
            {
                Ok(connected) => connected.map_err(connect_error)?,
                Err(_) => {
                    return Err(connect_error(sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {} ms", timeout.as_millis()),
                    ))))
                }
            };
        let migrated = schema::migrate(&mut conn, options.migration_lock).await;
        let _ = conn.close().await;
        migrated?;
        let max = options.max_connections.max(1);
        let pool = PgPoolOptions::new()
            .max_connections(max)
            .min_connections(options.min_connections.min(max))
            .acquire_timeout(Duration::from_millis(options.acquire_timeout_ms.max(1)))
            .connect_lazy_with(connect_options);
        tracing::info!(database = %target, max_connections = max, "opened PostgreSQL store");
        Ok(PostgresStore { pool, target })
    }

    /// The server and database this store uses, without credentials.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Close every connection; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Delete an individual enrollment (`NotFound` when missing) together with
    /// the registration record of the same id, if any, in one transaction
    /// billed once (`enrollmentDelete`).
    pub async fn delete_enrollment_and_registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        precondition: Precondition,
    ) -> StoreResult<()> {
        writes::delete_enrollment_and_registration(
            &self.pool,
            id_scope,
            registration_id,
            precondition,
        )
        .await
    }

    /// The JSON body in the first column of the row `query` finds, decoded.
    pub(super) async fn one<T: DeserializeOwned>(
        &self,
        entity: Entity,
        key: &str,
        query: sqlx::query::Query<'_, Postgres, PgArguments>,
    ) -> StoreResult<Option<T>> {
        let row = query
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::database("reading a record"))?;
        match row {
            Some(row) => decode_column(entity, key, &row, 0).map(Some),
            None => Ok(None),
        }
    }

    /// `(key, body)` rows, one more than the page holds, as a page.
    pub(super) async fn page<T: DeserializeOwned>(
        &self,
        entity: Entity,
        size: usize,
        query: sqlx::query::Query<'_, Postgres, PgArguments>,
    ) -> StoreResult<Page<T>> {
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::database("listing records"))?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let key: Vec<u8> = row
                .try_get(0)
                .map_err(StoreError::database("listing records"))?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let item = decode_column(entity, &key, row, 1)?;
            items.push((key, item));
        }
        Ok(Page::from_overfetch(items, size))
    }

    pub(super) async fn get_record<T: DeserializeOwned>(
        &self,
        table: &RecordTable,
        entity: Entity,
        id_scope: &IdScope,
        key: String,
    ) -> StoreResult<Option<T>> {
        let query = sqlx::query(table.get)
            .bind(id_scope.key().into_bytes())
            .bind(key.as_bytes().to_vec());
        self.one(entity, &key, query).await
    }

    pub(super) async fn page_records<T: DeserializeOwned>(
        &self,
        table: &RecordTable,
        entity: Entity,
        id_scope: &IdScope,
        page: &PageRequest,
    ) -> StoreResult<Page<T>> {
        let size = page.effective_size();
        let query = sqlx::query(table.page)
            .bind(id_scope.key().into_bytes())
            .bind(page.after_key().unwrap_or("").as_bytes().to_vec())
            .bind(limit(size + 1));
        self.page(entity, size, query).await
    }
}
