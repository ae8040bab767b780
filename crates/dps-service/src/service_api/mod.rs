//! The service operations endpoint (spec §4): enrollments, groups,
//! registration records, a tenant's settings (linked hubs, allocation
//! defaults, access policies, CA certificates), the operations meter, and
//! operator-level tenant management. Every route is listed in
//! `docs/service-api.md` and served as OpenAPI at `GET /openapi.json`.
//!
//! A request goes: `routes` (method + path → endpoint, case-insensitive,
//! ids percent-decoded) → `auth` (SAS token → tenant and policy, right
//! checked) → the endpoint's handler → a JSON answer, or an [`ApiError`]
//! rendered by [`crate::respond`].

mod auth;
mod authorities;
mod bulk;
mod certificates;
mod enrollments;
mod issued;
mod records;
mod registrations;
mod routes;
mod settings;
mod settings_bodies;
mod tenants;
mod throttle;
mod webhook_url;
mod wire;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use dps_allocation::egress::EgressPolicy;
use dps_model::{IdScope, OperationKind, OperationRecord};
use dps_storage::Store;
use http::{header, HeaderValue, StatusCode};

pub use self::auth::ServiceAuth;
use self::auth::{Authorizer, Caller};
use self::enrollments::Record;
use self::routes::Endpoint;
use self::throttle::ServiceThrottle;
use self::wire::Call;
use crate::certificate_authority::KeyEncryptionKey;
use crate::pipeline::TenantCache;
use crate::respond::{read_limited_body, ApiError, JSON_CONTENT_TYPE};

/// The OpenAPI 3 description of this endpoint.
const OPENAPI: &str = include_str!("openapi.json");

/// Shared state of the service API.
#[derive(Clone)]
pub struct ServiceApi {
    store: Arc<dyn Store>,
    tenants: Arc<TenantCache>,
    auth: Arc<Authorizer>,
    host_suffix: Arc<str>,
    throttle: Arc<ServiceThrottle>,
    egress: Arc<EgressPolicy>,
    /// Allocation policies registered with this server (`dps-policy://NAME`).
    policy_names: Arc<std::collections::BTreeSet<String>>,
    certificate_key: Option<Arc<KeyEncryptionKey>>,
}

impl ServiceApi {
    /// The API over this store; `auth` says which tokens it accepts (the
    /// operator key guards tenant management), `host_suffix` makes default
    /// tenant host names (`{name}.{host_suffix}`).
    pub fn new(
        store: Arc<dyn Store>,
        tenants: Arc<TenantCache>,
        auth: ServiceAuth,
        host_suffix: String,
    ) -> Self {
        ServiceApi {
            auth: Arc::new(Authorizer::new(store.clone(), auth)),
            store,
            tenants,
            host_suffix: host_suffix.into(),
            throttle: Arc::new(ServiceThrottle::new(
                &crate::config::ThrottlingConfig::default(),
            )),
            egress: Arc::new(EgressPolicy::default()),
            policy_names: Arc::default(),
            certificate_key: None,
        }
    }

    /// Where webhook URLs written into enrollments and groups may point
    /// (`[egress]`; [`new`](Self::new) applies the safe default: public
    /// addresses over https).
    pub fn with_egress(mut self, egress: EgressPolicy) -> Self {
        self.egress = Arc::new(egress);
        self
    }

    /// The names of the allocation policies registered with this server
    /// (lowercase): an enrollment or group naming another
    /// `dps-policy://` URL is refused (400) instead of failing its devices.
    pub fn with_policy_names(mut self, names: std::collections::BTreeSet<String>) -> Self {
        self.policy_names = Arc::new(names);
        self
    }

    /// The key that seals tenant CA private keys; without one, creating a
    /// certificate authority is refused (500).
    pub fn with_certificate_key(mut self, key: Arc<KeyEncryptionKey>) -> Self {
        self.certificate_key = Some(key);
        self
    }

    fn certificate_key(&self) -> Result<Arc<KeyEncryptionKey>, ApiError> {
        self.certificate_key
            .clone()
            .ok_or_else(|| ApiError::internal("no certificate key-encryption key is configured"))
    }

    /// Limit requests per tenant and failed authentications per address
    /// (`[throttling]`; [`new`](Self::new) applies the defaults).
    pub fn with_throttling(mut self, config: &crate::config::ThrottlingConfig) -> Self {
        self.throttle = Arc::new(ServiceThrottle::new(config));
        self
    }

    /// Count one billable read (the store bills writes itself). The answer
    /// waits for the row: an instruction whose billing row could not be
    /// stored fails, so answers and the meter never disagree.
    async fn bill(
        &self,
        scope: &IdScope,
        kind: OperationKind,
        subject: Option<String>,
    ) -> Result<(), ApiError> {
        self.store
            .record_operation(OperationRecord::now(scope, kind, subject))
            .await
            .map_err(ApiError::internal)
    }

    /// After an enrollment or group write: groups are part of the cached
    /// tenant view the registration path reads.
    fn record_written<R: Record>(&self, scope: &IdScope) {
        if !R::INDIVIDUAL {
            self.tenants.invalidate(scope);
        }
    }

    /// After a tenant write: the registration path's view and the
    /// authorizer's keys are stale.
    fn tenant_written(&self, scope: &IdScope) {
        self.tenants.invalidate(scope);
        self.auth.invalidate();
    }
}

/// The service endpoint's router.
pub fn router(api: ServiceApi) -> Router {
    Router::new().fallback(dispatch).with_state(api)
}

async fn dispatch(State(api): State<ServiceApi>, request: Request) -> Response {
    match handle(&api, request).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn handle(api: &ServiceApi, request: Request) -> Result<Response, ApiError> {
    let endpoint = Endpoint::resolve(request.method(), request.uri().path())?;
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // Throttling sits around the token check, not in it: a failing address
    // is stopped before its token is read, a refusal costs it, and only an
    // authenticated caller spends its tenant's budget.
    let peer = request
        .extensions()
        .get::<crate::listener::ConnectionInfo>()
        .map(|connection| connection.peer.ip());
    api.throttle.check_address(peer)?;
    let caller = match api.auth.authorize(authorization, endpoint.access()).await {
        Ok(caller) => caller,
        Err(refusal) => {
            if refusal.code.http_status() == 401 {
                api.throttle.failed(peer);
            }
            return Err(refusal);
        }
    };
    api.throttle.admit(&caller)?;
    let query = request.uri().query().map(str::to_owned);
    let (parts, body) = request.into_parts();
    let body = read_limited_body(&parts.headers, body).await?;
    let call = Call {
        headers: parts.headers,
        query,
        body,
    };
    let tenant_scope = || match &caller {
        Caller::Tenant { id_scope, .. } => Ok(id_scope.clone()),
        _ => Err(ApiError::unauthorized(
            "Unauthorized: a tenant policy token is required.",
        )),
    };
    match endpoint {
        Endpoint::OpenApi => Ok((
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(JSON_CONTENT_TYPE),
            )],
            OPENAPI,
        )
            .into_response()),
        Endpoint::Enrollment(op) => {
            enrollments::handle::<dps_model::IndividualEnrollment>(api, &tenant_scope()?, op, &call)
                .await
        }
        Endpoint::Group(op) => {
            enrollments::handle::<dps_model::EnrollmentGroup>(api, &tenant_scope()?, op, &call)
                .await
        }
        Endpoint::Registration(op) => registrations::handle(api, &tenant_scope()?, op, &call).await,
        Endpoint::Settings(op) => settings::handle(api, &tenant_scope()?, op, &call).await,
        Endpoint::Authority(op) => authorities::handle(api, &tenant_scope()?, op, &call).await,
        Endpoint::Issued(op) => issued::handle(api, &tenant_scope()?, op, &call).await,
        Endpoint::Tenant(op) => match caller {
            Caller::Operator => tenants::handle(api, op, &call).await,
            _ => Err(ApiError::unauthorized(
                "Unauthorized: tenant management needs an operator token.",
            )),
        },
    }
}
