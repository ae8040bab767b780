//! Individual enrollments, enrollment groups and registration records: the
//! Azure service API routes, paging through `x-ms-continuation`, etags
//! through `If-Match`.

use reqwest::Method;
use serde_json::{json, Value};

use super::credentials::config;
use super::{path, AdminClient, Answer, Call};
use crate::http::encode;
use crate::ClientError;

/// The largest page the service answers.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The two enrollment collections (same operations on both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collection {
    /// `/enrollments`: individual enrollments, keyed by `registrationId`.
    Enrollments,
    /// `/enrollmentGroups`: enrollment groups, keyed by `enrollmentGroupId`.
    Groups,
}

impl Collection {
    /// The collection's path segment.
    pub fn path(self) -> &'static str {
        match self {
            Collection::Enrollments => "enrollments",
            Collection::Groups => "enrollmentGroups",
        }
    }

    /// The field holding a record's id.
    pub fn id_field(self) -> &'static str {
        match self {
            Collection::Enrollments => "registrationId",
            Collection::Groups => "enrollmentGroupId",
        }
    }

    /// The array of a bulk request.
    fn bulk_field(self) -> &'static str {
        match self {
            Collection::Enrollments => "enrollments",
            Collection::Groups => "enrollmentGroups",
        }
    }

    /// What the SDKs send as the query (the service reads every record).
    fn query(self) -> Value {
        match self {
            Collection::Enrollments => json!({"query": "SELECT * FROM enrollments"}),
            Collection::Groups => json!({"query": "SELECT * FROM enrollmentGroups"}),
        }
    }

    /// A record's id.
    pub fn id_of(self, record: &Value) -> Result<String, ClientError> {
        record[self.id_field()]
            .as_str()
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| config(format!("the record has no {}", self.id_field())))
    }
}

/// How much of a collection to list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Items per request (`x-ms-max-item-count`); the service's default
    /// (100) when `None`.
    pub page_size: Option<u32>,
    /// Stop after this many items; `None`: every page.
    pub top: Option<usize>,
    /// Start after the page this token ends (from an earlier listing).
    pub continuation: Option<String>,
}

/// Items listed, and where the listing stopped.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// The items, in the service's order.
    pub items: Vec<Value>,
    /// Set when `top` stopped the listing before the end: pass it as
    /// [`ListOptions::continuation`] to go on.
    pub continuation: Option<String>,
    /// Requests made.
    pub pages: usize,
}

/// The mode of a bulk request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkMode {
    /// Create; an existing id fails the item.
    Create,
    /// Create or replace.
    Update,
    /// Replace when the item's `etag` matches.
    UpdateIfMatchEtag,
    /// Delete.
    Delete,
}

impl BulkMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            BulkMode::Create => "create",
            BulkMode::Update => "update",
            BulkMode::UpdateIfMatchEtag => "updateIfMatchETag",
            BulkMode::Delete => "delete",
        }
    }
}

impl AdminClient {
    /// `GET /{collection}/{id}` (secrets left out by the service).
    pub async fn get_record(&self, collection: Collection, id: &str) -> Result<Value, ClientError> {
        Ok(self.get(path(collection.path(), id)).await?.body)
    }

    /// A record with its keys and certificates: the GET, with the
    /// attestation from `attestationmechanism`.
    pub async fn get_record_with_secrets(
        &self,
        collection: Collection,
        id: &str,
    ) -> Result<Value, ClientError> {
        let mut record = self.get_record(collection, id).await?;
        record["attestation"] = self.attestation_mechanism(collection, id).await?;
        Ok(record)
    }

    /// `POST /{collection}/{id}/attestationmechanism`: the attestation with
    /// keys and certificate bodies.
    pub async fn attestation_mechanism(
        &self,
        collection: Collection,
        id: &str,
    ) -> Result<Value, ClientError> {
        let call = Call::new(
            Method::POST,
            format!("{}/attestationmechanism", path(collection.path(), id)),
        );
        Ok(self.call(call).await?.body)
    }

    /// `PUT /{collection}/{id}`: create or replace (only when the stored
    /// etag is `if_match`, when given). The id comes from the record.
    pub async fn put_record(
        &self,
        collection: Collection,
        record: &Value,
        if_match: Option<&str>,
    ) -> Result<Value, ClientError> {
        let id = collection.id_of(record)?;
        Ok(self
            .put(path(collection.path(), &id), record, if_match)
            .await?
            .body)
    }

    /// Read, change with `edit`, and replace on condition that nobody wrote
    /// in between: `If-Match` is `etag` when given (the caller's view),
    /// else the etag just read.
    pub async fn update_record(
        &self,
        collection: Collection,
        id: &str,
        etag: Option<&str>,
        edit: impl FnOnce(&mut Value) -> Result<(), ClientError>,
    ) -> Result<Value, ClientError> {
        let answer = self.get(path(collection.path(), id)).await?;
        let mut record = answer.body;
        let read_tag = answer
            .etag
            .or_else(|| record["etag"].as_str().map(str::to_owned));
        edit(&mut record)?;
        let if_match = etag.map(str::to_owned).or(read_tag);
        self.put_record(collection, &record, if_match.as_deref())
            .await
    }

    /// `DELETE /{collection}/{id}` (an enrollment takes its registration
    /// record along).
    pub async fn delete_record(
        &self,
        collection: Collection,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), ClientError> {
        self.delete(path(collection.path(), id), if_match).await
    }

    /// `POST /{collection}`: up to 10 items; the answer says which failed
    /// (`{"isSuccessful":…,"errors":[…]}`).
    pub async fn bulk(
        &self,
        collection: Collection,
        mode: BulkMode,
        items: &[Value],
    ) -> Result<Value, ClientError> {
        let body = json!({"mode": mode.as_str(), collection.bulk_field(): items});
        let call = Call::new(Method::POST, collection.path()).body(&body);
        Ok(self.call(call).await?.body)
    }

    /// Records of a collection, page by page.
    pub async fn list(
        &self,
        collection: Collection,
        options: &ListOptions,
    ) -> Result<Listing, ClientError> {
        let query = collection.query();
        self.list_pages(
            format!("{}/query", collection.path()),
            Some(&query),
            options,
        )
        .await
    }

    /// `GET /registrations/{id}`.
    pub async fn get_registration(&self, registration_id: &str) -> Result<Value, ClientError> {
        Ok(self.get(path("registrations", registration_id)).await?.body)
    }

    /// `DELETE /registrations/{id}` (the record only; its enrollment stays).
    pub async fn delete_registration(
        &self,
        registration_id: &str,
        if_match: Option<&str>,
    ) -> Result<(), ClientError> {
        self.delete(path("registrations", registration_id), if_match)
            .await
    }

    /// The registration records made through a group, page by page.
    pub async fn list_registrations(
        &self,
        group_id: &str,
        options: &ListOptions,
    ) -> Result<Listing, ClientError> {
        self.list_pages(
            format!("registrations/{}/query", encode(group_id)),
            None,
            options,
        )
        .await
    }

    /// Follow continuation tokens until the end or `top` items. The last
    /// request asks for no more than `top` still needs, so the token handed
    /// back resumes exactly after the last item listed.
    async fn list_pages(
        &self,
        path: String,
        body: Option<&Value>,
        options: &ListOptions,
    ) -> Result<Listing, ClientError> {
        if options.page_size == Some(0) {
            return Err(config("the page size must be at least 1".to_owned()));
        }
        let mut listing = Listing::default();
        let mut continuation = options.continuation.clone();
        loop {
            let wanted = options.top.map(|top| top - listing.items.len());
            if wanted == Some(0) {
                listing.continuation = continuation;
                return Ok(listing);
            }
            let page_size = match (options.page_size, wanted) {
                (size, None) => size,
                (size, Some(wanted)) => {
                    let wanted = u32::try_from(wanted).unwrap_or(MAX_PAGE_SIZE);
                    Some(size.unwrap_or(100).min(wanted).min(MAX_PAGE_SIZE))
                }
            };
            let (items, next) = self
                .page(&path, body, page_size, continuation.as_deref())
                .await?;
            listing.pages += 1;
            listing.items.extend(items);
            match next {
                Some(token) => continuation = Some(token),
                None => return Ok(listing),
            }
        }
    }
}

impl AdminClient {
    /// One page of a collection: its items and the token of the next page.
    pub async fn query_page(
        &self,
        collection: Collection,
        page_size: Option<u32>,
        continuation: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), ClientError> {
        let query = collection.query();
        self.page(
            &format!("{}/query", collection.path()),
            Some(&query),
            page_size,
            continuation,
        )
        .await
    }

    async fn page(
        &self,
        path: &str,
        body: Option<&Value>,
        page_size: Option<u32>,
        continuation: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), ClientError> {
        let mut call = Call::new(Method::POST, path);
        call.body = body;
        call.page_size = page_size;
        call.continuation = continuation;
        let Answer {
            body: page,
            continuation: next,
            ..
        } = self.call(call).await?;
        match page {
            Value::Array(items) => Ok((items, next)),
            other => Err(ClientError::protocol(format!(
                "a query answered {} instead of an array",
                kind_of(&other)
            ))),
        }
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
