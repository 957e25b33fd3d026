//! Names of remote addresses, from the DNS answers this host received: a flow to an address
//! the host resolved carries the name that was asked for and the CNAME chain to it. Entries
//! live as long as the answer's TTL; the cache is bounded.
use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

use crate::proto::dns::{self, RecordData};

/// Most addresses remembered; the oldest answers go first.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// Least time an answer names its addresses, whatever its TTL. A TTL of 0 (dnsmasq's default
/// for its own records and /etc/hosts, some load balancers') tells the asker not to *cache*
/// the answer, yet the asker connects to the address right after: that connection must still
/// carry the name. Answers with a longer TTL keep their TTL.
pub const MIN_LIFETIME_NS: u64 = 2_000_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedName {
    /// The name the process asked for (the question).
    pub name: String,
    /// From the asked name through each CNAME to the name that holds the address.
    pub chain: Vec<String>,
}

struct Entry {
    resolved: ResolvedName,
    expires_ns: u64,
}

pub struct DnsNames {
    by_addr: HashMap<IpAddr, Entry>,
    /// Insertion order, for eviction; stale pairs (re-inserted addresses) are skipped.
    order: VecDeque<(IpAddr, u64)>,
    capacity: usize,
    /// Answers that could not be parsed (hostile or cut before the question).
    pub malformed: u64,
}

impl Default for DnsNames {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl DnsNames {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            by_addr: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            malformed: 0,
        }
    }

    /// Learns from one DNS message received at `now_ns` (CLOCK_BOOTTIME).
    pub fn observe(&mut self, message: &[u8], now_ns: u64) {
        let m = match dns::parse(message) {
            Ok(m) => m,
            Err(_) => {
                self.malformed += 1;
                return;
            }
        };
        if !m.is_response || m.rcode != 0 {
            return;
        }
        let Some(question) = m.questions.first() else {
            return;
        };
        // Follow the chain from the question: answers need not be in order.
        let mut chain = vec![question.name.clone()];
        while chain.len() <= m.answers.len() {
            let last = chain.last().expect("chain starts with the question");
            let next = m.answers.iter().find_map(|a| match &a.data {
                RecordData::Cname(target) if a.name == *last => Some(target.clone()),
                _ => None,
            });
            match next {
                Some(t) if !chain.contains(&t) => chain.push(t),
                _ => break,
            }
        }
        for a in &m.answers {
            let RecordData::Address(addr) = a.data else {
                continue;
            };
            if !chain.contains(&a.name) {
                continue;
            }
            let lifetime_ns = (u64::from(a.ttl) * 1_000_000_000).max(MIN_LIFETIME_NS);
            let expires_ns = now_ns.saturating_add(lifetime_ns);
            let resolved = ResolvedName {
                name: question.name.clone(),
                chain: chain[..=chain.iter().position(|n| *n == a.name).unwrap_or(0)].to_vec(),
            };
            self.insert(addr, resolved, expires_ns);
        }
    }

    fn insert(&mut self, addr: IpAddr, resolved: ResolvedName, expires_ns: u64) {
        self.by_addr.insert(
            addr,
            Entry {
                resolved,
                expires_ns,
            },
        );
        self.order.push_back((addr, expires_ns));
        while self.by_addr.len() > self.capacity {
            let Some((old, exp)) = self.order.pop_front() else {
                break;
            };
            if self.by_addr.get(&old).is_some_and(|e| e.expires_ns == exp) {
                self.by_addr.remove(&old);
            }
        }
        // The order queue holds stale pairs of re-inserted addresses: keep it bounded too.
        if self.order.len() > 2 * self.capacity {
            let live = &self.by_addr;
            self.order
                .retain(|(a, exp)| live.get(a).is_some_and(|e| e.expires_ns == *exp));
        }
    }

    /// The name an address was resolved from, if its answer has not expired at `now_ns`.
    pub fn lookup(&self, addr: IpAddr, now_ns: u64) -> Option<&ResolvedName> {
        self.by_addr
            .get(&addr)
            .filter(|e| e.expires_ns > now_ns)
            .map(|e| &e.resolved)
    }

    /// Drops expired entries (called on the agent's tick).
    pub fn expire(&mut self, now_ns: u64) {
        self.by_addr.retain(|_, e| e.expires_ns > now_ns);
        let live = &self.by_addr;
        self.order
            .retain(|(a, exp)| live.get(a).is_some_and(|e| e.expires_ns == *exp));
    }

    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer for `name`: a CNAME chain then an A record with `ttl`.
    fn answer(name: &str, cnames: &[&str], addr: [u8; 4], ttl: u32) -> Vec<u8> {
        let mut m = vec![
            0,
            1,
            0x81,
            0x80,
            0,
            1,
            0,
            (cnames.len() + 1) as u8,
            0,
            0,
            0,
            0,
        ];
        let wire = |n: &str| {
            let mut w = Vec::new();
            for l in n.split('.') {
                w.push(l.len() as u8);
                w.extend_from_slice(l.as_bytes());
            }
            w.push(0);
            w
        };
        m.extend(wire(name));
        m.extend_from_slice(&[0, 1, 0, 1]);
        let mut owner = name.to_string();
        for c in cnames {
            m.extend(wire(&owner));
            m.extend_from_slice(&[0, 5, 0, 1]);
            m.extend_from_slice(&ttl.to_be_bytes());
            let t = wire(c);
            m.extend_from_slice(&(t.len() as u16).to_be_bytes());
            m.extend(t);
            owner = c.to_string();
        }
        m.extend(wire(&owner));
        m.extend_from_slice(&[0, 1, 0, 1]);
        m.extend_from_slice(&ttl.to_be_bytes());
        m.extend_from_slice(&[0, 4]);
        m.extend_from_slice(&addr);
        m
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn names_follow_the_cname_chain_and_expire_with_the_ttl() {
        let mut names = DnsNames::default();
        names.observe(
            &answer("www.a.test", &["cdn.b.test"], [10, 0, 0, 1], 30),
            100 * S,
        );
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let r = names.lookup(ip, 129 * S).unwrap();
        assert_eq!(r.name, "www.a.test");
        assert_eq!(r.chain, vec!["www.a.test", "cdn.b.test"]);
        assert!(
            names.lookup(ip, 130 * S).is_none(),
            "expired at 100 s + 30 s"
        );
        names.expire(131 * S);
        assert!(names.is_empty());
    }

    #[test]
    fn the_newest_answer_for_an_address_wins_and_capacity_is_kept() {
        let mut names = DnsNames::with_capacity(2);
        names.observe(&answer("one.test", &[], [10, 0, 0, 1], 60), S);
        names.observe(&answer("two.test", &[], [10, 0, 0, 1], 60), 2 * S);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(names.lookup(ip, 3 * S).unwrap().name, "two.test");
        names.observe(&answer("b.test", &[], [10, 0, 0, 2], 60), 3 * S);
        names.observe(&answer("c.test", &[], [10, 0, 0, 3], 60), 4 * S);
        assert_eq!(names.len(), 2);
        assert!(names.lookup(ip, 5 * S).is_none(), "oldest evicted");
    }

    #[test]
    fn a_zero_ttl_answer_still_names_the_connection_made_right_after_it() {
        let mut names = DnsNames::default();
        names.observe(&answer("local.test", &[], [10, 0, 0, 7], 0), 100 * S);
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(
            names.lookup(ip, 100 * S + 5_000_000).unwrap().name,
            "local.test"
        );
        assert!(names.lookup(ip, 100 * S + MIN_LIFETIME_NS).is_none());
    }

    #[test]
    fn queries_errors_and_garbage_teach_nothing() {
        let mut names = DnsNames::default();
        let mut q = answer("x.test", &[], [10, 0, 0, 9], 60);
        q[2] = 0x01; // not a response
        names.observe(&q, S);
        let mut nx = answer("x.test", &[], [10, 0, 0, 9], 60);
        nx[3] = 0x83; // NXDOMAIN
        names.observe(&nx, S);
        names.observe(b"\x00\x01garbage", S);
        assert!(names.is_empty());
        assert_eq!(names.malformed, 1);
    }
}
