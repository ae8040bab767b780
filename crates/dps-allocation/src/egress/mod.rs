//! The egress policy: which addresses the service may call when a tenant
//! chooses the destination (today the custom allocation webhook).
//!
//! A tenant who may write enrollments chooses the webhook URL; without a
//! policy that is a request forgery primitive against the operator's own
//! network (loopback admin ports, the cloud metadata service, internal
//! APIs). So, by default:
//!
//! * only [`AddressClass::Public`] addresses are called — loopback, private,
//!   link-local, CGNAT, cloud metadata, documentation, multicast, reserved
//!   and their IPv4-in-IPv6 forms are refused;
//! * only `https` is used;
//! * the check is on the **resolved** address: [`EgressResolver`] filters
//!   every DNS answer before the connector sees it, so the connection goes
//!   to an address that was checked (no second lookup a rebinding DNS
//!   server could answer differently);
//! * redirects are the caller's to refuse (the webhook client follows none).
//!
//! The operator may allow networks for on-premises webhooks
//! ([`EgressPolicy::allow_network`]) and plain http to some networks
//! ([`EgressPolicy::allow_http`]). Two exceptions stay: unspecified,
//! multicast and broadcast addresses are never called, and a cloud
//! metadata address only when it is listed as a single host — allowing
//! `169.254.0.0/16` or `0.0.0.0/0` does not open the metadata service.
//!
//! [`EgressTarget::parse`] + [`EgressPolicy::check_target`] are the static
//! part (scheme, literal addresses, well-known local names), usable when a
//! URL is stored; the resolver is the dynamic part, at call time.

mod classify;
mod resolver;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use classify::{classify, AddressClass};
pub use resolver::{EgressResolver, HostLookup, SystemLookup};

use crate::latency::Cidr;

/// Which addresses and schemes outbound calls to tenant-chosen URLs may
/// use. The default is the safe one: public addresses over https only.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EgressPolicy {
    allowed_networks: Vec<Cidr>,
    allow_http_networks: Vec<Cidr>,
}

impl EgressPolicy {
    /// Also call addresses in `network` whatever their class (on-premises
    /// webhooks), except unspecified, multicast and broadcast addresses,
    /// and cloud metadata addresses unless `network` is that single host.
    pub fn allow_network(mut self, network: Cidr) -> EgressPolicy {
        self.allowed_networks.push(network);
        self
    }

    /// Allow plain `http` to addresses in `network`. This does not allow
    /// the addresses themselves: a non-public network must also be given
    /// to [`EgressPolicy::allow_network`].
    pub fn allow_http(mut self, network: Cidr) -> EgressPolicy {
        self.allow_http_networks.push(network);
        self
    }

    /// The networks allowed beyond public addresses.
    pub fn allowed_networks(&self) -> &[Cidr] {
        &self.allowed_networks
    }

    /// The networks plain http may go to.
    pub fn allow_http_networks(&self) -> &[Cidr] {
        &self.allow_http_networks
    }

    /// May a connection go to `addr` (over plain http when `plain_http`)?
    pub fn check_address(&self, addr: IpAddr, plain_http: bool) -> Result<(), EgressRefusal> {
        let class = classify(addr);
        let allowed = match class {
            AddressClass::Public => true,
            class if class.never_allowed() => false,
            AddressClass::CloudMetadata => self
                .allowed_networks
                .iter()
                .any(|n| n.is_single_host() && n.contains(addr)),
            _ => self.allowed_networks.iter().any(|n| n.contains(addr)),
        };
        if !allowed {
            return Err(EgressRefusal::AddressNotAllowed {
                address: addr,
                class,
            });
        }
        if plain_http && !self.allow_http_networks.iter().any(|n| n.contains(addr)) {
            return Err(EgressRefusal::PlainHttpNotAllowed);
        }
        Ok(())
    }

    /// The static check of a target: its scheme, a literal address, and
    /// host names that always mean a local or metadata address. A host
    /// name that passes is checked again, address by address, when it is
    /// resolved ([`EgressResolver`]).
    pub fn check_target(&self, target: &EgressTarget) -> Result<(), EgressRefusal> {
        match target.literal_address() {
            Some(addr) => self.check_address(addr, target.plain_http),
            None => {
                let name = target.url.host_str().unwrap_or_default();
                if let Some((class, stands_for)) = well_known_name(name) {
                    let allowed = stands_for
                        .iter()
                        .any(|a| self.check_address(*a, target.plain_http).is_ok());
                    if !allowed {
                        return Err(EgressRefusal::HostNameNotAllowed {
                            name: name.to_owned(),
                            class,
                        });
                    }
                }
                if target.plain_http && self.allow_http_networks.is_empty() {
                    return Err(EgressRefusal::PlainHttpNotAllowed);
                }
                Ok(())
            }
        }
    }
}

/// Names that resolve to local or metadata addresses on any sane host
/// (RFC 6761 `localhost`, the usual `/etc/hosts` aliases, the metadata
/// names of the big clouds), and the addresses they stand for.
fn well_known_name(name: &str) -> Option<(AddressClass, &'static [IpAddr])> {
    const LOOPBACK: &[IpAddr] = &[
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    const METADATA: &[IpAddr] = &[IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))];
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost"
        || name.ends_with(".localhost")
        || matches!(
            name.as_str(),
            "localhost.localdomain" | "ip6-localhost" | "ip6-loopback"
        )
    {
        return Some((AddressClass::Loopback, LOOPBACK));
    }
    matches!(
        name.as_str(),
        "metadata"
            | "metadata.google.internal"
            | "metadata.goog"
            | "instance-data"
            | "instance-data.ec2.internal"
    )
    .then_some((AddressClass::CloudMetadata, METADATA))
}

/// A parsed outbound URL: http or https with a host.
#[derive(Clone, Debug, PartialEq)]
pub struct EgressTarget {
    url: reqwest::Url,
    plain_http: bool,
    host: String,
}

impl EgressTarget {
    /// Parse `url`; errors never repeat it (its query may carry a key).
    pub fn parse(url: &str) -> Result<EgressTarget, EgressRefusal> {
        let parsed = reqwest::Url::parse(url).map_err(|err| EgressRefusal::InvalidUrl {
            reason: err.to_string(),
        })?;
        let plain_http = match parsed.scheme() {
            "https" => false,
            "http" => true,
            other => {
                return Err(EgressRefusal::InvalidUrl {
                    reason: format!("scheme {other:?} is not http or https"),
                })
            }
        };
        let host = parsed.host_str().ok_or_else(|| EgressRefusal::InvalidUrl {
            reason: "it has no host".to_owned(),
        })?;
        let host = match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Ok(EgressTarget {
            url: parsed,
            plain_http,
            host,
        })
    }

    /// The URL.
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// The host when it is an address. The URL parser has already turned
    /// every IPv4 spelling (`2130706433`, `0x7f.1`, `0177.0.0.1`) into
    /// dotted decimal, and IPv6 comes in brackets.
    pub fn literal_address(&self) -> Option<IpAddr> {
        let host = self.url.host_str()?;
        match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
            None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        }
    }

    /// `http` rather than `https`.
    pub fn plain_http(&self) -> bool {
        self.plain_http
    }

    /// `host[:port]`, for messages: never the path or query.
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// Why the egress policy refuses a call. The text is shown to the tenant,
/// so it names a resolved address only when the tenant wrote it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EgressRefusal {
    /// The URL cannot be used at all.
    #[error("the URL is invalid: {reason}")]
    InvalidUrl {
        /// Why (the URL itself is not repeated: it may carry a key).
        reason: String,
    },
    /// A literal address in the URL is of a class the operator does not allow.
    #[error("{address} is a {class} address, which this service does not call")]
    AddressNotAllowed {
        /// The address.
        address: IpAddr,
        /// Its class.
        class: AddressClass,
    },
    /// The host name always means a local or metadata address.
    #[error("{name} names a {class} address, which this service does not call")]
    HostNameNotAllowed {
        /// The host name.
        name: String,
        /// The class of what it stands for.
        class: AddressClass,
    },
    /// Plain http where the operator allows only https.
    #[error("plain http is not allowed to this destination; use https")]
    PlainHttpNotAllowed,
    /// None of the addresses the host name resolved to may be called. The
    /// addresses are logged for the operator, never shown to the tenant:
    /// they would map the operator's internal DNS.
    #[error("{name} resolves to no address this service may call")]
    NoAllowedAddress {
        /// The host name.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn check(policy: &EgressPolicy, url: &str) -> Result<(), EgressRefusal> {
        policy.check_target(&EgressTarget::parse(url)?)
    }

    #[test]
    fn default_policy_refuses_local_targets_and_plain_http() {
        let policy = EgressPolicy::default();
        assert_eq!(check(&policy, "https://fn.example.net/api?code=K"), Ok(()));
        assert_eq!(check(&policy, "https://8.8.8.8/x"), Ok(()));
        for url in [
            "https://127.0.0.1:8080/x",
            "https://[::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://[::ffff:7f00:1]/x",
            "https://2130706433/x",
            "https://0x7f.1/x",
            "https://0177.0.0.1/x",
            "https://0.0.0.0/x",
            "https://10.0.0.5/x",
            "https://169.254.169.254/latest/meta-data",
            "https://[fd00:ec2::254]/x",
            "https://100.100.100.200/x",
            "https://[fe80::1]/x",
        ] {
            let err = check(&policy, url).unwrap_err();
            assert!(
                matches!(err, EgressRefusal::AddressNotAllowed { .. }),
                "{url}: {err:?}"
            );
        }
        for url in [
            "https://localhost/x",
            "https://LOCALHOST./x",
            "https://admin.localhost/x",
            "http://metadata.google.internal/computeMetadata/v1/",
        ] {
            let err = check(&policy, url).unwrap_err();
            assert!(
                matches!(err, EgressRefusal::HostNameNotAllowed { .. }),
                "{url}: {err:?}"
            );
        }
        assert_eq!(
            check(&policy, "http://fn.example.net/x"),
            Err(EgressRefusal::PlainHttpNotAllowed)
        );
        assert_eq!(
            check(&policy, "http://8.8.8.8/x"),
            Err(EgressRefusal::PlainHttpNotAllowed)
        );
        let err = check(&policy, "ftp://fn.example.net/x?code=SECRET").unwrap_err();
        assert!(matches!(err, EgressRefusal::InvalidUrl { .. }), "{err:?}");
        assert!(!err.to_string().contains("SECRET"));
    }

    #[test]
    fn messages_name_the_literal_address_and_its_class() {
        let err = check(&EgressPolicy::default(), "https://127.0.0.1:9/x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "127.0.0.1 is a loopback address, which this service does not call"
        );
    }

    #[test]
    fn operator_networks_open_on_premises_targets() {
        let policy = EgressPolicy::default()
            .allow_network(cidr("10.20.0.0/16"))
            .allow_http(cidr("10.20.30.0/24"));
        assert_eq!(check(&policy, "https://10.20.1.1/x"), Ok(()));
        assert_eq!(check(&policy, "http://10.20.30.4/x"), Ok(()));
        assert_eq!(
            check(&policy, "http://10.20.1.1/x"),
            Err(EgressRefusal::PlainHttpNotAllowed)
        );
        assert!(check(&policy, "https://10.21.0.1/x").is_err());
        // A name may resolve into the http networks: checked at call time.
        assert_eq!(check(&policy, "http://hook.corp.example/x"), Ok(()));
        // http networks alone do not allow a private address.
        let http_only = EgressPolicy::default().allow_http(cidr("10.0.0.0/8"));
        assert!(matches!(
            check(&http_only, "http://10.0.0.1/x"),
            Err(EgressRefusal::AddressNotAllowed { .. })
        ));
        let loopback = EgressPolicy::default()
            .allow_network(cidr("127.0.0.0/8"))
            .allow_http(cidr("127.0.0.0/8"));
        assert_eq!(check(&loopback, "http://localhost:8080/x"), Ok(()));
        assert_eq!(check(&loopback, "http://[::ffff:127.0.0.1]:8080/x"), Ok(()));
    }

    #[test]
    fn broad_networks_never_open_metadata_or_non_unicast() {
        let everything = EgressPolicy::default()
            .allow_network(cidr("0.0.0.0/0"))
            .allow_network(cidr("::/0"));
        for addr in [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "fd00:ec2::254",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(
                everything
                    .check_address(addr.parse().unwrap(), false)
                    .is_err(),
                "{addr}"
            );
        }
        assert_eq!(
            everything.check_address("169.254.1.1".parse().unwrap(), false),
            Ok(())
        );
        let listed = EgressPolicy::default().allow_network(cidr("169.254.169.254/32"));
        assert_eq!(
            listed.check_address("169.254.169.254".parse().unwrap(), false),
            Ok(())
        );
    }

    proptest! {
        #[test]
        fn default_policy_calls_exactly_public_addresses(bits in any::<u128>(), v4 in any::<bool>()) {
            let addr = if v4 {
                IpAddr::V4(Ipv4Addr::from(bits as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(bits))
            };
            let policy = EgressPolicy::default();
            prop_assert_eq!(
                policy.check_address(addr, false).is_ok(),
                classify(addr) == AddressClass::Public
            );
            prop_assert!(policy.check_address(addr, true).is_err());
        }

        #[test]
        fn mapped_forms_get_the_same_answer(bits in any::<u32>()) {
            let v4 = Ipv4Addr::from(bits);
            let policy = EgressPolicy::default()
                .allow_network(cidr("10.0.0.0/8"))
                .allow_http(cidr("10.0.0.0/8"));
            for http in [false, true] {
                prop_assert_eq!(
                    policy.check_address(IpAddr::V4(v4), http).is_ok(),
                    policy.check_address(IpAddr::V6(v4.to_ipv6_mapped()), http).is_ok(),
                    "{}", v4
                );
            }
        }
    }
}
