//! Local networks (CIDRs): an endpoint inside them is internal, anything else external.
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid CIDR {text:?}: {reason}")]
pub struct CidrError {
    pub(crate) text: String,
    pub(crate) reason: &'static str,
}

impl std::str::FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let err = |reason| CidrError {
            text: s.to_string(),
            reason,
        };
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| err("expected ADDRESS/PREFIX"))?;
        let addr: IpAddr = addr.parse().map_err(|_| err("bad address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| err("bad prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(err("prefix longer than the address"));
        }
        Ok(Self { addr, prefix })
    }
}

impl Cidr {
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Loopback, RFC 1918, link-local, unique local (ULA), and their IPv6 counterparts.
pub(crate) const DEFAULT_LOCAL_NETWORKS: &[&str] = &[
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

pub(crate) fn default_local_networks() -> Vec<Cidr> {
    DEFAULT_LOCAL_NETWORKS
        .iter()
        .map(|c| c.parse().expect("built-in CIDRs are valid"))
        .collect()
}

pub(crate) fn is_local(networks: &[Cidr], ip: IpAddr) -> bool {
    networks.iter().any(|c| c.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_v4_and_v6() {
        let nets = default_local_networks();
        for ip in [
            "10.1.2.3",
            "172.31.255.1",
            "192.168.1.1",
            "127.0.0.1",
            "fd00::1",
            "fe80::1",
            "::1",
        ] {
            assert!(is_local(&nets, ip.parse().unwrap()), "{ip}");
        }
        for ip in ["172.32.0.1", "8.8.8.8", "2001:db8::1", "11.0.0.1"] {
            assert!(!is_local(&nets, ip.parse().unwrap()), "{ip}");
        }
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn rejects_bad_cidrs() {
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>().unwrap_err().reason,
            "prefix longer than the address"
        );
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert!("x/8".parse::<Cidr>().is_err());
    }
}
