//! Service-API authorization (spec §4.2): `Authorization: SharedAccessSignature
//! sr={host}&sig=…&se=…&skn={policy}`.
//!
//! The tenant is chosen by the token's `sr` host (case-insensitive, any
//! `:port` ignored); when several tenants share a host, the one whose policy
//! named by `skn` verifies the signature is the caller. Primary then secondary
//! key; 5-minute clock skew; a token whose `se` lies further ahead than
//! `[service] max_token_lifetime_seconds` is refused. Operator tokens
//! (`skn=operator`) are checked the same way, their audience against the
//! names of this service (`[service] operator_audience`, by default the
//! server certificate's names). Every refusal is a 401 with the Azure body
//! (401002) and no `Retry-After`.
//!
//! Tenant keys are kept in a host table (decoded keys, rights) reloaded from
//! the store at most every [`HOST_TABLE_TTL`], and at once after a tenant write
//! through this server, so a request never waits on the database to be
//! authorised.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dps_attestation::sas::{ExpiryPolicy, SasToken, SymmetricKey};
use dps_model::{AccessRight, IdScope, Tenant};
use dps_storage::Store;

use super::routes::Access;
use crate::respond::ApiError;

/// How long the host table is trusted before it is reloaded.
pub(crate) const HOST_TABLE_TTL: Duration = Duration::from_secs(2);

/// The `skn` of operator tokens.
pub(crate) const OPERATOR_KEY_NAME: &str = "operator";

/// Who a request was authorised as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    /// No credential needed.
    Anonymous,
    /// The operator key.
    Operator,
    /// A policy of one tenant.
    Tenant {
        /// The tenant.
        id_scope: IdScope,
        /// The policy that signed the token.
        policy: String,
    },
}

struct PolicyKeys {
    name: String,
    keys: [SymmetricKey; 2],
    rights: Vec<AccessRight>,
}

struct TenantKeys {
    id_scope: IdScope,
    policies: Vec<PolicyKeys>,
}

#[derive(Default)]
struct HostTable {
    by_host: HashMap<String, Vec<Arc<TenantKeys>>>,
    loaded: Option<Instant>,
}

impl HostTable {
    fn fresh(&self) -> bool {
        self.loaded.is_some_and(|at| at.elapsed() < HOST_TABLE_TTL)
    }
}

/// What the service API accepts as credentials.
#[derive(Clone, Debug)]
pub struct ServiceAuth {
    /// The operator key, decoded and checked by
    /// [`crate::config::operator_key`] (at least 32 bytes).
    pub operator_key: SymmetricKey,
    /// Host names an operator token's `sr` may name: compared
    /// case-insensitively, any `:port` ignored, a leading `*.` matching one
    /// label.
    pub operator_audience: Vec<String>,
    /// Expiry and lifetime rules of every service token.
    pub expiry: ExpiryPolicy,
}

/// Verifies service-API tokens.
pub(crate) struct Authorizer {
    store: Arc<dyn Store>,
    operator_key: SymmetricKey,
    operator_audience: Vec<String>,
    expiry: ExpiryPolicy,
    table: RwLock<Arc<HostTable>>,
    reload: tokio::sync::Mutex<()>,
}

impl Authorizer {
    /// An authorizer over the tenants of `store`.
    pub(crate) fn new(store: Arc<dyn Store>, auth: ServiceAuth) -> Self {
        Authorizer {
            store,
            operator_key: auth.operator_key,
            operator_audience: auth
                .operator_audience
                .iter()
                .map(|host| host_key(host))
                .collect(),
            expiry: auth.expiry,
            table: RwLock::new(Arc::new(HostTable::default())),
            reload: tokio::sync::Mutex::new(()),
        }
    }

    /// Forget the host table: a tenant's host, policies or keys changed.
    pub(crate) fn invalidate(&self) {
        *self.write_table() = Arc::new(HostTable::default());
    }

    /// Check the `Authorization` header against what `access` requires.
    pub(crate) async fn authorize(
        &self,
        header: Option<&str>,
        access: Access,
    ) -> Result<Caller, ApiError> {
        let right = match access {
            Access::Public => return Ok(Caller::Anonymous),
            Access::Operator => None,
            Access::Right(right) => Some(right),
        };
        let header = header.ok_or_else(|| {
            ApiError::unauthorized("Unauthorized: the Authorization header is missing.")
        })?;
        let token = SasToken::parse(header)
            .map_err(|e| ApiError::unauthorized(format!("Unauthorized: {e}.")))?;
        token
            .check_expiry(&self.expiry)
            .map_err(|e| ApiError::unauthorized(format!("Unauthorized: {e}.")))?;
        let key_name = token.key_name.as_deref().ok_or_else(|| {
            ApiError::unauthorized("Unauthorized: the token names no policy (skn).")
        })?;
        let Some(right) = right else {
            return self.operator(&token, key_name);
        };

        let host = token_host(&token.resource);
        let tenants = self.tenants_of(&host).await?;
        let mut lacking = None;
        for tenant in &tenants {
            let Some(policy) = tenant
                .policies
                .iter()
                .find(|p| p.name.eq_ignore_ascii_case(key_name))
            else {
                continue;
            };
            let [primary, secondary] = &policy.keys;
            if token.check_signature(&[primary, secondary]).is_err() {
                continue;
            }
            if policy.rights.contains(&right) {
                return Ok(Caller::Tenant {
                    id_scope: tenant.id_scope.clone(),
                    policy: policy.name.clone(),
                });
            }
            lacking = Some(policy.name.clone());
        }
        Err(match lacking {
            Some(policy) => ApiError::unauthorized(format!(
                "Unauthorized: the policy {policy:?} does not grant {right:?}."
            )),
            None => ApiError::unauthorized(
                "Unauthorized: the token does not verify with any policy of this service.",
            ),
        })
    }

    fn operator(&self, token: &SasToken, key_name: &str) -> Result<Caller, ApiError> {
        if !key_name.eq_ignore_ascii_case(OPERATOR_KEY_NAME) {
            return Err(ApiError::unauthorized(
                "Unauthorized: tenant management needs an operator token (skn=operator).",
            ));
        }
        // Like a tenant token names its tenant's host, an operator token
        // names this service: one signed for another deployment sharing the
        // key (or for any other resource) is not accepted here.
        let host = token_host(&token.resource);
        if !self
            .operator_audience
            .iter()
            .any(|name| host_matches(&host, name))
        {
            tracing::debug!(audience = %host, "operator token for another audience refused");
            return Err(ApiError::unauthorized(format!(
                "Unauthorized: the operator token's audience {host:?} is not a name of this service."
            )));
        }
        token
            .check_signature(&[&self.operator_key])
            .map_err(|_| ApiError::unauthorized("Unauthorized: bad operator token signature."))?;
        Ok(Caller::Operator)
    }

    async fn tenants_of(&self, host: &str) -> Result<Vec<Arc<TenantKeys>>, ApiError> {
        let table = self.read_table();
        if table.fresh() {
            return Ok(table.by_host.get(host).cloned().unwrap_or_default());
        }
        drop(table);
        // One reload at a time; whoever waited finds the table fresh.
        let _reloading = self.reload.lock().await;
        let table = self.read_table();
        if table.fresh() {
            return Ok(table.by_host.get(host).cloned().unwrap_or_default());
        }
        let tenants = self
            .store
            .list_tenants()
            .await
            .map_err(ApiError::internal)?;
        let table = Arc::new(build_table(&tenants));
        *self.write_table() = table.clone();
        Ok(table.by_host.get(host).cloned().unwrap_or_default())
    }

    fn read_table(&self) -> Arc<HostTable> {
        self.table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn write_table(&self) -> std::sync::RwLockWriteGuard<'_, Arc<HostTable>> {
        self.table
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn build_table(tenants: &[Tenant]) -> HostTable {
    let mut by_host: HashMap<String, Vec<Arc<TenantKeys>>> = HashMap::new();
    for tenant in tenants {
        let policies = tenant
            .access_policies
            .iter()
            .filter_map(|policy| {
                let decode = |key: &str| SymmetricKey::from_base64(key).ok();
                match (decode(&policy.primary_key), decode(&policy.secondary_key)) {
                    (Some(primary), Some(secondary)) => Some(PolicyKeys {
                        name: policy.key_name.clone(),
                        keys: [primary, secondary],
                        rights: policy.rights.clone(),
                    }),
                    _ => {
                        tracing::warn!(tenant = %tenant.name, policy = %policy.key_name, "policy keys are not base64; policy unusable");
                        None
                    }
                }
            })
            .collect();
        by_host
            .entry(host_key(&tenant.service_host_name))
            .or_default()
            .push(Arc::new(TenantKeys {
                id_scope: tenant.id_scope.clone(),
                policies,
            }));
    }
    HostTable {
        by_host,
        loaded: Some(Instant::now()),
    }
}

/// The host part of a decoded `sr` (`host[:port][/path]`), lower-case, without port.
fn token_host(resource: &str) -> String {
    let resource = resource
        .strip_prefix("https://")
        .or_else(|| resource.strip_prefix("http://"))
        .unwrap_or(resource);
    let host = resource.split('/').next().unwrap_or("");
    host_key(host)
}

/// `host` (already a [`host_key`]) against one audience entry (also one);
/// `*.suffix` matches exactly one label before `suffix`.
fn host_matches(host: &str, name: &str) -> bool {
    match name.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => host == name,
    }
}

/// A host name as the table keys it: lower-case, without `:port`.
pub(crate) fn host_key(host: &str) -> String {
    let host = host.trim();
    // `[v6]:port`, `name:port`, or a bare name.
    let bare = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if host.matches(':').count() == 1 {
        host.split(':').next().unwrap_or(host)
    } else {
        host
    };
    bare.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_attestation::sas::{create_token, unix_now};
    use dps_storage::MemoryStore;

    const SERVICE: &str = "dps.example.test";
    const TENANT: &str = "acme.example.test";

    async fn fixture(now: u64) -> (Authorizer, SymmetricKey, SymmetricKey) {
        let store = Arc::new(MemoryStore::new());
        let tenant = Tenant::new("acme", TENANT).unwrap();
        let owner = SymmetricKey::from_base64(&tenant.access_policies[0].primary_key).unwrap();
        store.create_tenant(tenant).await.unwrap();
        let operator = SymmetricKey::from_bytes(vec![5; 32]);
        let auth = Authorizer::new(
            store,
            ServiceAuth {
                operator_key: operator.clone(),
                operator_audience: vec!["DPS.example.test".to_owned(), "*.ops.test".to_owned()],
                expiry: ExpiryPolicy::at(now)
                    .with_max_lifetime(Some(Duration::from_secs(24 * 3600))),
            },
        );
        (auth, operator, owner)
    }

    async fn check(auth: &Authorizer, token: &str, access: Access) -> Result<Caller, String> {
        auth.authorize(Some(token), access)
            .await
            .map_err(|e| e.message)
    }

    #[tokio::test]
    async fn operator_tokens_must_name_this_service() {
        let now = unix_now();
        let (auth, operator, _) = fixture(now).await;
        let signed = |sr: &str| create_token(sr, &operator, now + 3600, Some("operator"));
        for accepted in [
            SERVICE,
            "dps.example.test:9443",
            "https://DPS.example.test/",
            "a.ops.test",
        ] {
            assert_eq!(
                check(&auth, &signed(accepted), Access::Operator).await,
                Ok(Caller::Operator),
                "{accepted}"
            );
        }
        for refused in [
            "anything",
            TENANT,
            "evil.example",
            "a.b.ops.test",
            "ops.test",
        ] {
            let message = check(&auth, &signed(refused), Access::Operator)
                .await
                .unwrap_err();
            assert!(message.contains("audience"), "{refused}: {message}");
        }
    }

    #[tokio::test]
    async fn service_tokens_beyond_the_lifetime_cap_are_refused() {
        let now = unix_now();
        let (auth, operator, owner) = fixture(now).await;
        let right = Access::Right(AccessRight::EnrollmentRead);
        let tenant = |se: u64| create_token(TENANT, &owner, se, Some("provisioningserviceowner"));
        assert!(check(&auth, &tenant(now + 3600), right).await.is_ok());
        // The cap plus the 5-minute skew is the last second accepted.
        let last = now + 24 * 3600 + 300;
        assert!(check(&auth, &tenant(last), right).await.is_ok());
        for se in [last + 1, now + 365 * 24 * 3600, u64::MAX] {
            let message = check(&auth, &tenant(se), right).await.unwrap_err();
            assert!(
                message.contains("lies more than 86400 s ahead"),
                "{se}: {message}"
            );
            let operator_token = create_token(SERVICE, &operator, se, Some("operator"));
            let message = check(&auth, &operator_token, Access::Operator)
                .await
                .unwrap_err();
            assert!(
                message.contains("lies more than 86400 s ahead"),
                "{se}: {message}"
            );
        }
    }

    #[test]
    fn host_keys() {
        assert_eq!(host_key("Contoso.Example"), "contoso.example");
        assert_eq!(host_key("127.0.0.2:443"), "127.0.0.2");
        assert_eq!(host_key("[::1]:8443"), "::1");
        assert_eq!(token_host("LOCALHOST:9443"), "localhost");
        assert_eq!(token_host("https://h.example/x"), "h.example");
    }
}
