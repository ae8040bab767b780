//! What kind of network an address belongs to, for the egress policy.
//!
//! The table follows the IANA special-purpose registries (RFC 6890 and
//! successors) plus the cloud metadata endpoints. IPv6 forms that carry an
//! IPv4 address (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, SIIT
//! `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`)
//! are classified by the IPv4 address they carry: a socket may well reach
//! it through them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The kind of network an address belongs to. Only [`AddressClass::Public`]
/// is called by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AddressClass {
    /// Globally routable unicast.
    Public,
    /// `0.0.0.0/8`, `::` (Linux connects `0.0.0.0` to the local host).
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918, IPv6 unique local `fc00::/7`, deprecated site-local
    /// `fec0::/10`, local-use NAT64 `64:ff9b:1::/48`.
    Private,
    /// Carrier-grade NAT `100.64.0.0/10` (RFC 6598).
    SharedAddressSpace,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// Instance metadata services, whose answers carry cloud credentials:
    /// `169.254.169.254` (AWS, Azure, GCP, OCI), `169.254.170.2` and
    /// `169.254.170.23` (AWS ECS/EKS), `fd00:ec2::254` and `fd00:ec2::23`
    /// (AWS IPv6), `100.100.100.200` (Alibaba), `168.63.129.16` (Azure
    /// WireServer, a public address reachable only from inside Azure),
    /// `192.0.0.192` (Oracle Cloud Classic).
    CloudMetadata,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`,
    /// `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`, `2001:2::/48`.
    Benchmarking,
    /// Everything else that is not globally routable unicast: `240.0.0.0/4`,
    /// `192.0.0.0/24`, `192.88.99.0/24`, `100::/64`, `2001::/23`, and IPv6
    /// outside `2000::/3`.
    Reserved,
}

impl AddressClass {
    /// The operator can never allow these: they are not a single
    /// destination (multicast, broadcast) or mean "this host" (unspecified).
    pub(crate) fn never_allowed(self) -> bool {
        matches!(
            self,
            AddressClass::Unspecified | AddressClass::Multicast | AddressClass::Broadcast
        )
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressClass::Public => "public",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::SharedAddressSpace => "shared (carrier-grade NAT)",
            AddressClass::LinkLocal => "link-local",
            AddressClass::CloudMetadata => "cloud metadata",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Documentation => "documentation",
            AddressClass::Benchmarking => "benchmarking",
            AddressClass::Reserved => "reserved",
        })
    }
}

/// The class of `addr`.
pub fn classify(addr: IpAddr) -> AddressClass {
    match addr {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

const METADATA_V4: [Ipv4Addr; 6] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(169, 254, 170, 23),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
    Ipv4Addr::new(192, 0, 0, 192),
];

const METADATA_V6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23),
];

/// `(network, prefix, class)`, first match wins (more specific first).
const V4_TABLE: [([u8; 4], u8, AddressClass); 16] = [
    ([0, 0, 0, 0], 8, AddressClass::Unspecified),
    ([127, 0, 0, 0], 8, AddressClass::Loopback),
    ([10, 0, 0, 0], 8, AddressClass::Private),
    ([172, 16, 0, 0], 12, AddressClass::Private),
    ([192, 168, 0, 0], 16, AddressClass::Private),
    ([100, 64, 0, 0], 10, AddressClass::SharedAddressSpace),
    ([169, 254, 0, 0], 16, AddressClass::LinkLocal),
    ([192, 0, 2, 0], 24, AddressClass::Documentation),
    ([198, 51, 100, 0], 24, AddressClass::Documentation),
    ([203, 0, 113, 0], 24, AddressClass::Documentation),
    ([198, 18, 0, 0], 15, AddressClass::Benchmarking),
    ([224, 0, 0, 0], 4, AddressClass::Multicast),
    ([255, 255, 255, 255], 32, AddressClass::Broadcast),
    ([240, 0, 0, 0], 4, AddressClass::Reserved),
    ([192, 0, 0, 0], 24, AddressClass::Reserved),
    ([192, 88, 99, 0], 24, AddressClass::Reserved),
];

fn classify_v4(addr: Ipv4Addr) -> AddressClass {
    if METADATA_V4.contains(&addr) {
        return AddressClass::CloudMetadata;
    }
    let bits = u32::from(addr);
    V4_TABLE
        .iter()
        .find(|(net, prefix, _)| {
            let mask = u32::MAX << (32 - u32::from(*prefix));
            bits & mask == u32::from_be_bytes(*net)
        })
        .map_or(AddressClass::Public, |(_, _, class)| *class)
}

/// `(network, prefix, class)` for IPv6 ranges that carry no IPv4 address.
const V6_TABLE: [(u128, u8, AddressClass); 10] = [
    (0xff00 << 112, 8, AddressClass::Multicast),
    (0xfe80 << 112, 10, AddressClass::LinkLocal),
    (0xfec0 << 112, 10, AddressClass::Private),
    (0xfc00 << 112, 7, AddressClass::Private),
    (0x0064_ff9b_0001 << 80, 48, AddressClass::Private),
    (0x2001_0db8 << 96, 32, AddressClass::Documentation),
    (0x3fff << 112, 20, AddressClass::Documentation),
    (0x2001_0002 << 96, 48, AddressClass::Benchmarking),
    (0x2001 << 112, 23, AddressClass::Reserved),
    (0x0100 << 112, 64, AddressClass::Reserved),
];

fn classify_v6(addr: Ipv6Addr) -> AddressClass {
    if addr.is_unspecified() {
        return AddressClass::Unspecified;
    }
    if addr.is_loopback() {
        return AddressClass::Loopback;
    }
    if let Some(v4) = embedded_v4(addr) {
        return classify_v4(v4);
    }
    if METADATA_V6.contains(&addr) {
        return AddressClass::CloudMetadata;
    }
    let bits = u128::from(addr);
    let matched = V6_TABLE.iter().find(|(net, prefix, _)| {
        let mask = u128::MAX << (128 - u32::from(*prefix));
        bits & mask == *net
    });
    match matched {
        Some((_, _, class)) => *class,
        // Only 2000::/3 is allocated as global unicast.
        None if bits >> 125 == 0b001 => AddressClass::Public,
        None => AddressClass::Reserved,
    }
}

/// The IPv4 address an IPv6 address carries, for the forms a connection
/// may be translated through.
fn embedded_v4(addr: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(addr);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    match bits >> 32 {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
        0xffff | 0 => Some(low32),
        // ::ffff:0:a.b.c.d (SIIT).
        0xffff_0000 => Some(low32),
        // 64:ff9b::a.b.c.d (NAT64 well-known prefix).
        0x0064_ff9b_0000_0000_0000_0000 => Some(low32),
        // 2002:aabb:ccdd::/48 (6to4).
        _ if bits >> 112 == 0x2002 => Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn class(s: &str) -> AddressClass {
        classify(s.parse().unwrap())
    }

    #[test]
    fn known_addresses() {
        use AddressClass::*;
        for (addr, expected) in [
            ("8.8.8.8", Public),
            ("20.38.1.1", Public),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("127.0.0.1", Loopback),
            ("127.255.0.9", Loopback),
            ("10.1.2.3", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("172.32.0.1", Public),
            ("192.168.1.1", Private),
            ("100.64.0.1", SharedAddressSpace),
            ("100.127.255.255", SharedAddressSpace),
            ("100.128.0.1", Public),
            ("169.254.1.1", LinkLocal),
            ("169.254.169.254", CloudMetadata),
            ("169.254.170.2", CloudMetadata),
            ("100.100.100.200", CloudMetadata),
            ("168.63.129.16", CloudMetadata),
            ("192.0.0.192", CloudMetadata),
            ("192.0.0.8", Reserved),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("198.19.0.1", Benchmarking),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("192.88.99.1", Reserved),
            ("::", Unspecified),
            ("::1", Loopback),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", CloudMetadata),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:8.8.8.8", Public),
            ("::127.0.0.1", Loopback),
            ("::ffff:0:10.0.0.1", Private),
            ("64:ff9b::127.0.0.1", Loopback),
            ("64:ff9b::8.8.8.8", Public),
            ("64:ff9b:1::1", Private),
            ("2002:7f00:1::1", Loopback),
            ("2002:a9fe:a9fe::", CloudMetadata),
            ("2002:0808:0808::1", Public),
            ("fc00::1", Private),
            ("fd12:3456::1", Private),
            ("fd00:ec2::254", CloudMetadata),
            ("fd00:ec2::23", CloudMetadata),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Private),
            ("ff02::1", Multicast),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("2001:2::1", Benchmarking),
            ("2001::1", Reserved),
            ("100::1", Reserved),
            ("4000::1", Reserved),
            ("2606:4700::1111", Public),
            ("2a00:1450:4001::200e", Public),
        ] {
            assert_eq!(class(addr), expected, "{addr}");
        }
    }

    /// What std says is not public, independently of our tables.
    fn std_says_special(v4: Ipv4Addr) -> bool {
        v4.is_private()
            || v4.is_loopback()
            || v4.is_link_local()
            || v4.is_multicast()
            || v4.is_broadcast()
            || v4.is_documentation()
            || v4.is_unspecified()
    }

    proptest! {
        #[test]
        fn std_special_v4_is_never_public(bits in any::<u32>()) {
            let v4 = Ipv4Addr::from(bits);
            if std_says_special(v4) {
                prop_assert_ne!(classify_v4(v4), AddressClass::Public, "{}", v4);
            }
        }

        #[test]
        fn embedded_forms_classify_like_their_ipv4(bits in any::<u32>()) {
            let v4 = Ipv4Addr::from(bits);
            let expected = classify_v4(v4);
            let nat64 = Ipv6Addr::from((0x64_ff9b_u128 << 96) | u128::from(bits));
            let siit = Ipv6Addr::from((0xffff_0000_u128 << 32) | u128::from(bits));
            let six_to_four = Ipv6Addr::from((0x2002_u128 << 112) | (u128::from(bits) << 80) | 1);
            for v6 in [v4.to_ipv6_mapped(), nat64, siit, six_to_four] {
                prop_assert_eq!(classify_v6(v6), expected, "{} carrying {}", v6, v4);
            }
            // The compatible form collides with :: and ::1, both refused too.
            let compat = v4.to_ipv6_compatible();
            prop_assert_eq!(
                classify_v6(compat) == AddressClass::Public,
                expected == AddressClass::Public,
                "{}", compat
            );
        }

        #[test]
        fn refused_v4_ranges_hold_every_host(host in any::<u32>(), index in 0..V4_TABLE.len()) {
            let (net, prefix, expected) = V4_TABLE[index];
            let mask = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
            let v4 = Ipv4Addr::from(u32::from_be_bytes(net) | (host & mask));
            let got = classify_v4(v4);
            // A more specific row (or a metadata address) may win.
            prop_assert!(got == expected || got == AddressClass::CloudMetadata
                || V4_TABLE[..index].iter().any(|(_, _, c)| *c == got), "{} {:?}", v4, got);
            prop_assert_ne!(got, AddressClass::Public);
        }

        #[test]
        fn std_special_v6_is_never_public(bits in any::<u128>()) {
            let v6 = Ipv6Addr::from(bits);
            if v6.is_loopback() || v6.is_unspecified() || v6.is_multicast()
                || v6.is_unique_local() || v6.is_unicast_link_local()
            {
                prop_assert_ne!(classify_v6(v6), AddressClass::Public, "{}", v6);
            }
        }

        #[test]
        fn ula_link_local_and_multicast_v6(host in any::<u128>()) {
            let in_range = |net: u128, prefix: u32| net | (host >> prefix);
            let ula = Ipv6Addr::from(in_range(0xfc00 << 112, 7));
            prop_assert!(matches!(classify_v6(ula),
                AddressClass::Private | AddressClass::CloudMetadata), "{}", ula);
            let link = Ipv6Addr::from(in_range(0xfe80 << 112, 10));
            prop_assert_eq!(classify_v6(link), AddressClass::LinkLocal, "{}", link);
            let multicast = Ipv6Addr::from(in_range(0xff00 << 112, 8));
            prop_assert_eq!(classify_v6(multicast), AddressClass::Multicast, "{}", multicast);
            let doc = Ipv6Addr::from(in_range(0x2001_0db8 << 96, 32));
            prop_assert_eq!(classify_v6(doc), AddressClass::Documentation, "{}", doc);
        }
    }
}
