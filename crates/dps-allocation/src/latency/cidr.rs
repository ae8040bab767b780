//! A minimal CIDR range (`10.0.0.0/8`, `2001:db8::/32`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::AllocationError;

/// An address range: a network address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// A range; host bits of `network` are ignored. `None` when the prefix
    /// is longer than the address.
    pub fn new(network: IpAddr, prefix: u8) -> Option<Cidr> {
        let max = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        (prefix <= max).then_some(Cidr { network, prefix })
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Is the range one address (`/32` or `/128`)?
    pub fn is_single_host(&self) -> bool {
        match self.network {
            IpAddr::V4(_) => self.prefix == 32,
            IpAddr::V6(_) => self.prefix == 128,
        }
    }

    /// Does the range hold `addr`? IPv4-mapped IPv6 addresses
    /// (`::ffff:10.1.2.3`, how dual-stack sockets report IPv4 peers) match
    /// IPv4 ranges.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        match (self.network, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => prefix_match(
                u128::from(u32::from(net)),
                u128::from(u32::from(a)),
                self.prefix,
                32,
            ),
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                prefix_match(u128::from(net), u128::from(a), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_match(net: u128, addr: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix);
    (net >> shift) == (addr >> shift)
}

impl FromStr for Cidr {
    type Err = AllocationError;

    /// `addr/prefix`, or a bare address (a single-host range).
    fn from_str(s: &str) -> Result<Cidr, AllocationError> {
        let err = |reason| AllocationError::InvalidCidr {
            value: s.to_owned(),
            reason,
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let network: IpAddr = addr.trim().parse().map_err(|_| err("not an IP address"))?;
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .map_err(|_| err("prefix is not a number"))?,
            None => match network {
                IpAddr::V4(_) => 32,
                IpAddr::V6(_) => 128,
            },
        };
        Cidr::new(network, prefix).ok_or_else(|| err("prefix longer than the address"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_ranges() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.255.1.2")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("192.0.2.1")));
        assert!(!all.contains(ip("2001:db8::1")));
        let host: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(host.prefix(), 32);
        assert!(host.contains(ip("192.0.2.7")));
        assert!(!host.contains(ip("192.0.2.8")));
    }

    #[test]
    fn v6_ranges() {
        let net: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(net.contains(ip("2001:db8:1::1")));
        assert!(!net.contains(ip("2001:db9::1")));
        assert!(!net.contains(ip("10.0.0.1")));
    }

    #[test]
    fn bad_input_names_the_value() {
        let reason = |s: &str| match s.parse::<Cidr>().unwrap_err() {
            AllocationError::InvalidCidr { value, reason } => {
                assert_eq!(value, s);
                reason
            }
            other => panic!("unexpected error {other:?}"),
        };
        assert_eq!(reason("10.0.0.0/33"), "prefix longer than the address");
        assert_eq!(reason("ten/8"), "not an IP address");
        assert_eq!(reason("10.0.0.0/x"), "prefix is not a number");
    }
}
