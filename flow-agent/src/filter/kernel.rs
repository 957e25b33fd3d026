//! Which global exclude rules the kernel programs decide, and the maps that encode them.
//!
//! A rule qualifies when it looks only at what the kernel knows when a flow opens: its remote
//! address (`remote_cidr`), remote port (`remote_port`) and transport. Each qualifying rule is
//! one bit (at most 64 rules); the kernel ANDs the bits of the rules the flow's transport,
//! remote port and remote address select, and skips the flow when a bit survives. Every rule
//! still applies in userspace as well, so the kernel only ever skips what userspace would drop.
use std::{collections::BTreeMap, net::IpAddr};

use flow_common::{KernelFilterMasks, FILTER_MAX_NETWORKS};

use super::{values::Transport, FilterConfig, Rule};

mod maps;

pub(crate) use maps::FilterSkipped;

/// Rules beyond this many stay in userspace (one bit each in a u64).
pub(crate) const MAX_KERNEL_RULES: usize = 64;

/// The contents of the kernel filter's maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KernelPlan {
    pub(crate) masks: KernelFilterMasks,
    /// (prefix length, network, rules whose networks contain this one), per family.
    pub(crate) v4: Vec<(u32, [u8; 4], u64)>,
    pub(crate) v6: Vec<(u32, [u8; 16], u64)>,
    /// Rules by remote port, for ports some rule names.
    pub(crate) ports: BTreeMap<u16, u64>,
    /// Global exclude rules the kernel decides, and those left to userspace alone.
    pub(crate) kernel_rules: usize,
    pub(crate) userspace_rules: usize,
}

fn qualifies(r: &Rule) -> bool {
    let only = Rule {
        remote_cidr: r.remote_cidr.clone(),
        remote_port: r.remote_port.clone(),
        transport: r.transport.clone(),
        ..Rule::default()
    };
    !r.is_empty() && *r == only
}

/// (family is v4, network bytes masked to the prefix, prefix length).
fn network(text: &str) -> Option<(bool, [u8; 16], u32)> {
    let (addr, prefix) = text.split_once('/')?;
    let prefix: u32 = prefix.parse().ok()?;
    let (v4, bytes) = match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (true, b)
        }
        IpAddr::V6(a) => (false, a.octets()),
    };
    Some((v4, network_bytes(&bytes, prefix), prefix))
}

/// Whether network `outer` contains network `inner` (same family).
fn contains(outer: &([u8; 16], u32), inner: &([u8; 16], u32)) -> bool {
    if outer.1 > inner.1 {
        return false;
    }
    network_bytes(&inner.0, outer.1) == outer.0
}

/// The address bytes with every bit past `prefix` cleared.
fn network_bytes(b: &[u8; 16], prefix: u32) -> [u8; 16] {
    let mut out = *b;
    for (i, byte) in out.iter_mut().enumerate() {
        let keep = prefix.saturating_sub(i as u32 * 8).min(8);
        *byte &= (0xffu16 << (8 - keep)) as u8;
    }
    out
}

impl KernelPlan {
    /// The plan for a global filter: its qualifying exclude rules, in order, up to the limits.
    pub(crate) fn compile(filter: &FilterConfig) -> Self {
        let mut plan = KernelPlan::default();
        let mut nets: Vec<(bool, [u8; 16], u32, u64)> = Vec::new();
        for rule in &filter.exclude {
            let fits = plan.kernel_rules < MAX_KERNEL_RULES
                && qualifies(rule)
                && nets.len() + rule.remote_cidr.len() <= FILTER_MAX_NETWORKS as usize;
            if !fits {
                plan.userspace_rules += 1;
                continue;
            }
            let bit = 1u64 << plan.kernel_rules;
            plan.kernel_rules += 1;
            plan.masks.active |= bit;
            let has = |t| rule.transport.is_empty() || rule.transport.contains(&t);
            if has(Transport::Tcp) {
                plan.masks.tcp |= bit;
            }
            if has(Transport::Udp) {
                plan.masks.udp |= bit;
            }
            if rule.remote_port.is_empty() {
                plan.masks.any_port |= bit;
            }
            for r in &rule.remote_port {
                for p in r.low..=r.high {
                    *plan.ports.entry(p).or_default() |= bit;
                }
            }
            if rule.remote_cidr.is_empty() {
                plan.masks.any_addr |= bit;
            }
            for n in &rule.remote_cidr {
                if let Some((v4, bytes, prefix)) = network(&n.to_string()) {
                    nets.push((v4, bytes, prefix, bit));
                }
            }
        }
        // Each network carries the rules of every network containing it: the trie answers
        // with the longest match only.
        let mut seen: Vec<(bool, [u8; 16], u32)> = Vec::new();
        for (v4, bytes, prefix, _) in &nets {
            if seen.contains(&(*v4, *bytes, *prefix)) {
                continue;
            }
            seen.push((*v4, *bytes, *prefix));
            let rules = nets
                .iter()
                .filter(|(v, b, p, _)| v == v4 && contains(&(*b, *p), &(*bytes, *prefix)))
                .fold(0, |acc, (_, _, _, bit)| acc | bit);
            if *v4 {
                let mut a = [0u8; 4];
                a.copy_from_slice(&bytes[..4]);
                plan.v4.push((*prefix, a, rules));
            } else {
                plan.v6.push((*prefix, *bytes, rules));
            }
        }
        plan
    }

    /// What the kernel would decide for a flow (the same computation as the kernel program's,
    /// for tests and for the record).
    #[cfg(test)]
    pub(crate) fn excludes(&self, tcp: bool, remote: IpAddr, port: u16) -> bool {
        let m = &self.masks;
        let mut rules = m.active & if tcp { m.tcp } else { m.udp };
        rules &= m.any_port | self.ports.get(&port).copied().unwrap_or(0);
        let (v4, bytes) = match remote {
            IpAddr::V4(a) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a.octets());
                (true, b)
            }
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(a4) => {
                    let mut b = [0u8; 16];
                    b[..4].copy_from_slice(&a4.octets());
                    (true, b)
                }
                None => (false, a.octets()),
            },
        };
        let longest = |entries: Vec<(u32, [u8; 16], u64)>| {
            entries
                .into_iter()
                .filter(|(p, b, _)| contains(&(*b, *p), &(bytes, if v4 { 32 } else { 128 })))
                .max_by_key(|(p, _, _)| *p)
                .map_or(0, |(_, _, r)| r)
        };
        let nets = if v4 {
            longest(
                self.v4
                    .iter()
                    .map(|(p, a, r)| {
                        let mut b = [0u8; 16];
                        b[..4].copy_from_slice(a);
                        (*p, b, *r)
                    })
                    .collect(),
            )
        } else {
            longest(self.v6.clone())
        };
        rules & (m.any_addr | nets) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(exclude: &str) -> KernelPlan {
        let f: FilterConfig = toml::from_str(&format!("exclude = {exclude}")).unwrap();
        KernelPlan::compile(&f)
    }

    #[test]
    fn only_remote_address_port_and_transport_rules_go_to_the_kernel() {
        let p = plan(
            r#"[{ remote_cidr = "10.0.0.0/8" }, { remote_port = 53, transport = "udp" },
                { process_name = "x" }, { remote_port = 22, direction = "inbound" }]"#,
        );
        assert_eq!((p.kernel_rules, p.userspace_rules), (2, 2));
        assert_eq!(p.masks.active, 0b11);
        assert_eq!(p.masks.udp, 0b11);
        assert_eq!(p.masks.tcp, 0b01);
        assert_eq!(p.ports.get(&53), Some(&0b10));
    }

    #[test]
    fn decisions_match_the_userspace_rules() {
        let text = r#"[{ remote_cidr = ["10.0.0.0/8", "10.1.0.0/16"], remote_port = "8000-8010" },
                       { remote_cidr = "10.1.2.0/24" },
                       { remote_cidr = "2001:db8::/32", transport = "tcp" },
                       { remote_port = 9999 }]"#;
        let p = plan(text);
        let f: FilterConfig = toml::from_str(&format!("exclude = {text}")).unwrap();
        let cases = [
            (true, "10.1.2.3", 80),
            (true, "10.1.9.9", 8005),
            (false, "10.9.9.9", 8010),
            (true, "10.9.9.9", 8011),
            (true, "11.0.0.1", 9999),
            (true, "::ffff:10.1.2.3", 1),
            (true, "2001:db8::1", 443),
            (false, "2001:db8::1", 443),
            (true, "2001:db9::1", 443),
        ];
        for (tcp, ip, port) in cases {
            let ip: IpAddr = ip.parse().unwrap();
            use crate::event::{Direction, FlowAction, FlowEvent, Transport, WallTime};
            let remote = match ip {
                IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                _ => ip,
            };
            let ev = FlowEvent::new(
                FlowAction::Start,
                WallTime(1),
                if tcp { Transport::Tcp } else { Transport::Udp },
                ("192.0.2.1".parse().unwrap(), 40000),
                (remote, port),
                Direction::Outbound,
                Default::default(),
            );
            assert_eq!(
                p.excludes(tcp, ip, port),
                !f.decide(&ev),
                "{tcp} {ip} {port}"
            );
        }
        // Nested networks: the /24 carries the rules of the /8 and /16 containing it.
        let (_, _, r) = p.v4.iter().find(|(pl, _, _)| *pl == 24).unwrap();
        assert_eq!(*r, 0b11);
    }

    #[test]
    fn networks_are_masked_to_their_prefix() {
        let p = plan(r#"[{ remote_cidr = "10.1.2.3/8" }]"#);
        assert_eq!(p.v4, vec![(8, [10, 0, 0, 0], 1)]);
    }
}
