//! DNS resolution through the egress policy, for reqwest.
//!
//! The HTTP client is given this resolver instead of its own: every name it
//! connects to is looked up here, the answer is filtered address by address,
//! and the connector only ever sees addresses that passed. The check and the
//! connection use the same answer, so a DNS server that answers a public
//! address to a first query and a loopback one to the next cannot slip past
//! the check. Literal addresses in a URL never reach a resolver; the caller
//! checks them with [`EgressPolicy::check_target`].

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::{EgressPolicy, EgressRefusal};

/// Where host names are looked up (injectable, so tests can make a name
/// resolve anywhere without a DNS server).
#[async_trait]
pub trait HostLookup: Send + Sync + fmt::Debug {
    /// The addresses of `host`, in preference order.
    async fn lookup(&self, host: &str) -> io::Result<Vec<IpAddr>>;
}

/// The system resolver (`getaddrinfo`, on a blocking thread).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemLookup;

#[async_trait]
impl HostLookup for SystemLookup {
    async fn lookup(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, 0))
            .await?
            .map(|addr| addr.ip())
            .collect())
    }
}

/// A [`reqwest::dns::Resolve`] that keeps only the addresses the policy
/// allows. One resolver serves one scheme: with `plain_http`, addresses must
/// also be in the policy's http networks.
#[derive(Clone, Debug)]
pub struct EgressResolver {
    policy: Arc<EgressPolicy>,
    lookup: Arc<dyn HostLookup>,
    plain_http: bool,
}

impl EgressResolver {
    /// A resolver for `https` (or plain `http` when `plain_http`) calls.
    pub fn new(
        policy: Arc<EgressPolicy>,
        lookup: Arc<dyn HostLookup>,
        plain_http: bool,
    ) -> EgressResolver {
        EgressResolver {
            policy,
            lookup,
            plain_http,
        }
    }

    /// The allowed addresses of `name`, in the lookup's order. The error is
    /// an [`EgressRefusal`] when every address was refused, else the
    /// lookup's `io::Error`.
    async fn checked(&self, name: &str) -> Result<Vec<IpAddr>, BoxError> {
        let found = self.lookup.lookup(name).await?;
        if found.is_empty() {
            return Err(
                io::Error::new(io::ErrorKind::NotFound, format!("{name} has no address")).into(),
            );
        }
        let mut allowed = Vec::with_capacity(found.len());
        let mut refused = Vec::new();
        for addr in found {
            match self.policy.check_address(addr, self.plain_http) {
                Ok(()) => allowed.push(addr),
                Err(reason) => refused.push((addr, reason)),
            }
        }
        let refused_addrs: Vec<IpAddr> = refused.iter().map(|(a, _)| *a).collect();
        if allowed.is_empty() {
            tracing::warn!(
                host = name,
                refused = ?refused_addrs,
                plain_http = self.plain_http,
                "egress policy refused every address of a host"
            );
            // Only-http refusals get the actionable answer ("use https");
            // anything else stays vague (see `NoAllowedAddress`).
            let only_http = refused
                .iter()
                .all(|(_, r)| *r == EgressRefusal::PlainHttpNotAllowed);
            let refusal = if only_http {
                EgressRefusal::PlainHttpNotAllowed
            } else {
                EgressRefusal::NoAllowedAddress {
                    name: name.to_owned(),
                }
            };
            return Err(refusal.into());
        }
        if !refused.is_empty() {
            tracing::debug!(
                host = name,
                refused = ?refused_addrs,
                allowed = ?allowed,
                "egress policy dropped some addresses of a host"
            );
        }
        Ok(allowed)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Resolve for EgressResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let allowed = resolver.checked(name.as_str()).await?;
            // Port 0: reqwest puts the URL's port in.
            Ok(Box::new(allowed.into_iter().map(|addr| SocketAddr::new(addr, 0))) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[derive(Debug)]
    struct Fixed(Vec<IpAddr>);

    #[async_trait]
    impl HostLookup for Fixed {
        async fn lookup(&self, _host: &str) -> io::Result<Vec<IpAddr>> {
            Ok(self.0.clone())
        }
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    async fn resolve(
        policy: EgressPolicy,
        answer: &[&str],
        plain_http: bool,
    ) -> Result<Vec<SocketAddr>, BoxError> {
        let resolver =
            EgressResolver::new(Arc::new(policy), Arc::new(Fixed(ips(answer))), plain_http);
        let addrs = resolver
            .resolve(Name::from_str("hook.example").unwrap())
            .await?;
        Ok(addrs.collect())
    }

    fn refusal(err: &BoxError) -> Option<&EgressRefusal> {
        err.downcast_ref::<EgressRefusal>()
    }

    #[tokio::test]
    async fn refused_addresses_never_reach_the_connector() {
        let got = resolve(
            EgressPolicy::default(),
            &["127.0.0.1", "8.8.8.8", "::ffff:10.0.0.1", "2606:4700::1111"],
            false,
        )
        .await
        .unwrap();
        assert_eq!(
            got,
            vec![
                "8.8.8.8:0".parse::<SocketAddr>().unwrap(),
                "[2606:4700::1111]:0".parse().unwrap()
            ]
        );
    }

    #[tokio::test]
    async fn a_name_with_only_local_addresses_is_refused_without_naming_them() {
        let err = resolve(
            EgressPolicy::default(),
            &["127.0.0.1", "169.254.169.254"],
            false,
        )
        .await
        .unwrap_err();
        assert_eq!(
            refusal(&err),
            Some(&EgressRefusal::NoAllowedAddress {
                name: "hook.example".to_owned()
            })
        );
        assert!(!err.to_string().contains("127.0.0.1"), "{err}");
    }

    #[tokio::test]
    async fn plain_http_needs_an_http_network() {
        let err = resolve(EgressPolicy::default(), &["8.8.8.8"], true)
            .await
            .unwrap_err();
        assert_eq!(refusal(&err), Some(&EgressRefusal::PlainHttpNotAllowed));
        let policy = EgressPolicy::default().allow_http("8.8.8.0/24".parse().unwrap());
        let got = resolve(policy, &["8.8.4.4", "8.8.8.8"], true)
            .await
            .unwrap();
        assert_eq!(got, vec!["8.8.8.8:0".parse::<SocketAddr>().unwrap()]);
    }

    #[tokio::test]
    async fn an_empty_answer_is_a_lookup_failure() {
        let err = resolve(EgressPolicy::default(), &[], false)
            .await
            .unwrap_err();
        assert!(refusal(&err).is_none());
        assert!(err.downcast_ref::<io::Error>().is_some(), "{err}");
    }
}
