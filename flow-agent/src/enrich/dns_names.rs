//! Names of remote addresses, from the DNS answers this host received to the queries its
//! sockets sent: a flow to an address the host resolved carries the name that was asked for and
//! the CNAME chain to it.
//!
//! Only answers to questions asked are learned. Each query a socket sends is remembered for
//! [`QUERY_TIMEOUT_NS`] (at most [`MAX_PENDING_QUERIES`] of them); an answer teaches only when
//! it comes to the socket that asked, from the resolver it asked (address and port), with the
//! query's transaction id and question (name, type, class), and it consumes that query: a
//! second answer to it teaches nothing. Any other answer, unsolicited or not matching, is
//! counted and ignored, and makes no `dns_query` event. Names are kept per network namespace
//! (the asking socket's), so the answers one namespace received never name another
//! namespace's flows. An entry lives as long as its answer's TTL, at least [`MIN_LIFETIME_NS`]
//! and at most [`MAX_LIFETIME_NS`]; the cache is bounded.
use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use crate::proto::dns::{self, Message, RecordData};

/// Most addresses remembered, all namespaces together; the oldest answers go first.
pub(crate) const DEFAULT_CAPACITY: usize = 65_536;

/// Least time an answer names its addresses, whatever its TTL. A TTL of 0 (dnsmasq's default
/// for its own records and /etc/hosts, some load balancers') tells the asker not to *cache*
/// the answer, yet the asker connects to the address right after: that connection must still
/// carry the name. Answers with a longer TTL keep their TTL, up to [`MAX_LIFETIME_NS`].
pub(crate) const MIN_LIFETIME_NS: u64 = 2_000_000_000;

/// Most time an answer names its addresses: one day. TTLs go up to 68 years on the wire; a name
/// learned once must not label an address for that long (addresses change hands, and a cache
/// poisoned by whatever got through would stay poisoned).
pub(crate) const MAX_LIFETIME_NS: u64 = 86_400 * 1_000_000_000;

/// Queries waiting for their answer, all sockets together; beyond it the oldest is forgotten
/// (counted in [`DnsCounters::queries_evicted`]) and its answer will teach nothing.
pub(crate) const MAX_PENDING_QUERIES: usize = 16_384;

/// How long a query waits for its answer (resolvers give up after about 5 s; a later answer is
/// rejected).
pub(crate) const QUERY_TIMEOUT_NS: u64 = 10_000_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResolvedName {
    /// The name the process asked for (the question).
    pub(crate) name: String,
    /// From the asked name through each CNAME to the name that holds the address.
    pub(crate) chain: Vec<String>,
}

/// The socket a DNS message left from or came to, and the resolver on the other end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Asker {
    /// The socket's cookie.
    pub(crate) cookie: u64,
    /// The resolver's address and port.
    pub(crate) resolver: (IpAddr, u16),
}

impl Asker {
    /// A UDP socket talking to `resolver`: each datagram names its own.
    pub fn udp(cookie: u64, resolver: (IpAddr, u16)) -> Self {
        Self { cookie, resolver }
    }

    /// A TCP connection to a resolver's `port`: its remote end is fixed, so the socket names it
    /// (the address is left unspecified).
    pub(crate) fn tcp(cookie: u64, port: u16) -> Self {
        Self {
            cookie,
            resolver: (IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        }
    }
}

/// What became of a DNS message a socket received.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// The answer to a query this socket sent (now consumed); its addresses were learned when
    /// its response code is NOERROR.
    Answer(Message),
    /// A response to a socket with no query waiting: taught nothing.
    Unsolicited,
    /// A response to a socket whose waiting queries it does not answer (another resolver,
    /// transaction id or question): taught nothing.
    Mismatched,
    /// Not a DNS message (or cut before its question): taught nothing.
    Malformed,
    /// A query, not a response: nothing to learn.
    NotAResponse,
}

/// What the cache refused or lost, since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DnsCounters {
    /// Received messages that could not be parsed (hostile or cut before the question).
    pub(crate) malformed: u64,
    /// Responses to sockets with no query waiting (forged, duplicated or too late).
    pub(crate) unsolicited: u64,
    /// Responses to sockets with queries waiting that none of them matches: another resolver,
    /// transaction id or question (a spoofing attempt, or a resolver answering from elsewhere).
    pub(crate) mismatched: u64,
    /// Waiting queries forgotten because [`MAX_PENDING_QUERIES`] were waiting.
    pub(crate) queries_evicted: u64,
}

/// A query waiting for its answer: what the answer must repeat.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Query {
    asker: Asker,
    id: u16,
    name: String,
    qtype: u16,
    qclass: u16,
}

impl Query {
    /// The query a message asks or answers: it must carry exactly one question.
    fn of(asker: Asker, m: &Message, raw: &[u8]) -> Option<Self> {
        let [q] = m.questions.as_slice() else {
            return None;
        };
        Some(Self {
            asker,
            id: m.id,
            name: q.name.clone(),
            qtype: q.qtype,
            qclass: first_question_class(raw)?,
        })
    }
}

struct Entry {
    resolved: ResolvedName,
    expires_ns: u64,
}

/// A learned address: the asking socket's network namespace (0 when unknown) and the address.
type NameKey = (u32, IpAddr);

pub struct DnsNames {
    by_addr: HashMap<NameKey, Entry>,
    /// Insertion order, for eviction; stale pairs (re-inserted addresses) are skipped.
    order: VecDeque<(NameKey, u64)>,
    capacity: usize,
    /// Queries waiting for their answer, with when they were sent.
    pending: HashMap<Arc<Query>, u64>,
    /// Their order, for expiry and eviction; stale pairs (re-sent queries) are skipped.
    pending_order: VecDeque<(Arc<Query>, u64)>,
    /// Waiting queries by socket cookie: a response to one of these sockets that matches none
    /// is `mismatched`, to another `unsolicited`.
    asking: HashMap<u64, u32>,
    pub(crate) counters: DnsCounters,
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
            pending: HashMap::new(),
            pending_order: VecDeque::new(),
            asking: HashMap::new(),
            counters: DnsCounters::default(),
        }
    }

    /// A DNS message `asker` sent at `now_ns` (CLOCK_BOOTTIME): a query (one question) waits
    /// for its answer; anything else is ignored.
    pub fn sent(&mut self, asker: Asker, message: &[u8], now_ns: u64) {
        let Ok(m) = dns::parse(message) else {
            return;
        };
        if m.is_response {
            return;
        }
        let Some(query) = Query::of(asker, &m, message) else {
            return;
        };
        let query = Arc::new(query);
        // The same query again (a retry): it waits from now.
        if self.pending.insert(query.clone(), now_ns).is_none() {
            *self.asking.entry(asker.cookie).or_default() += 1;
        }
        self.pending_order.push_back((query, now_ns));
        while self.pending.len() > MAX_PENDING_QUERIES {
            let Some((old, sent)) = self.pending_order.pop_front() else {
                break;
            };
            if self.pending.get(&old) == Some(&sent) {
                self.forget_query(&old);
                self.counters.queries_evicted += 1;
            }
        }
        if self.pending_order.len() > 2 * MAX_PENDING_QUERIES {
            let live = &self.pending;
            self.pending_order
                .retain(|(q, sent)| live.get(q) == Some(sent));
        }
    }

    /// A DNS message `asker` received at `now_ns` (CLOCK_BOOTTIME). The answer to one of its
    /// waiting queries consumes that query and, with NOERROR, names the addresses it holds in
    /// `netns` (the asking socket's network namespace; 0 when unknown). Anything else teaches
    /// nothing; what was refused is counted.
    pub fn received(&mut self, asker: Asker, netns: u32, message: &[u8], now_ns: u64) -> Received {
        let m = match dns::parse(message) {
            Ok(m) => m,
            Err(_) => {
                self.counters.malformed += 1;
                return Received::Malformed;
            }
        };
        if !m.is_response {
            return Received::NotAResponse;
        }
        let sent = Query::of(asker, &m, message).and_then(|q| {
            let sent = *self.pending.get(&q)?;
            self.forget_query(&q);
            Some(sent)
        });
        // A query past its timeout was given up on: its late answer is not believed either.
        let answered = sent.is_some_and(|sent| now_ns < sent.saturating_add(QUERY_TIMEOUT_NS));
        if !answered {
            if self.asking.contains_key(&asker.cookie) {
                self.counters.mismatched += 1;
                return Received::Mismatched;
            }
            self.counters.unsolicited += 1;
            return Received::Unsolicited;
        }
        if m.rcode == 0 {
            self.learn(netns, &m, now_ns);
        }
        Received::Answer(m)
    }

    fn forget_query(&mut self, q: &Query) {
        if self.pending.remove(q).is_none() {
            return;
        }
        if let Some(n) = self.asking.get_mut(&q.asker.cookie) {
            *n -= 1;
            if *n == 0 {
                self.asking.remove(&q.asker.cookie);
            }
        }
    }

    /// The addresses of a NOERROR answer, named by its question through its CNAME chain.
    fn learn(&mut self, netns: u32, m: &Message, now_ns: u64) {
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
            let lifetime_ns =
                (u64::from(a.ttl) * 1_000_000_000).clamp(MIN_LIFETIME_NS, MAX_LIFETIME_NS);
            let expires_ns = now_ns.saturating_add(lifetime_ns);
            let resolved = ResolvedName {
                name: question.name.clone(),
                chain: chain[..=chain.iter().position(|n| *n == a.name).unwrap_or(0)].to_vec(),
            };
            self.insert((netns, addr), resolved, expires_ns);
        }
    }

    fn insert(&mut self, key: NameKey, resolved: ResolvedName, expires_ns: u64) {
        self.by_addr.insert(
            key,
            Entry {
                resolved,
                expires_ns,
            },
        );
        self.order.push_back((key, expires_ns));
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
                .retain(|(k, exp)| live.get(k).is_some_and(|e| e.expires_ns == *exp));
        }
    }

    /// The name an address was resolved from in network namespace `netns` (0: unknown), if its
    /// answer has not expired at `now_ns`.
    pub(crate) fn lookup(&self, netns: u32, addr: IpAddr, now_ns: u64) -> Option<&ResolvedName> {
        self.by_addr
            .get(&(netns, addr))
            .filter(|e| e.expires_ns > now_ns)
            .map(|e| &e.resolved)
    }

    /// Drops expired entries and queries that waited too long (called on the agent's tick).
    pub fn expire(&mut self, now_ns: u64) {
        self.by_addr.retain(|_, e| e.expires_ns > now_ns);
        let live = &self.by_addr;
        self.order
            .retain(|(k, exp)| live.get(k).is_some_and(|e| e.expires_ns == *exp));
        while self
            .pending_order
            .front()
            .is_some_and(|(_, sent)| now_ns >= sent.saturating_add(QUERY_TIMEOUT_NS))
        {
            let Some((q, sent)) = self.pending_order.pop_front() else {
                break;
            };
            if self.pending.get(&q) == Some(&sent) {
                self.forget_query(&q);
            }
        }
    }

    /// Addresses named, all namespaces together.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_addr.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// Queries waiting for their answer.
    #[cfg(test)]
    pub(crate) fn pending_queries(&self) -> usize {
        self.pending.len()
    }
}

/// The class of a message's first question: the two bytes after its name and type. The name is
/// the message's first, so a well-formed one is not compressed; a pointer ends it anyway.
fn first_question_class(msg: &[u8]) -> Option<u16> {
    let mut pos = 12;
    loop {
        let len = *msg.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                pos += 1;
                break;
            }
            0x00 => pos += 1 + usize::from(len),
            0xc0 => {
                pos += 2;
                break;
            }
            _ => return None,
        }
    }
    let class = msg.get(pos + 2..pos + 4)?;
    Some(u16::from_be_bytes([class[0], class[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(n: &str) -> Vec<u8> {
        let mut w = Vec::new();
        for l in n.split('.') {
            w.push(l.len() as u8);
            w.extend_from_slice(l.as_bytes());
        }
        w.push(0);
        w
    }

    /// A query with transaction `id` for `name`, type `qtype`, class `qclass`.
    fn query_for(id: u16, name: &str, qtype: u16, qclass: u16) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        m.extend(wire(name));
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&qclass.to_be_bytes());
        m
    }

    /// A query for the A record of `name`, class IN.
    fn query(id: u16, name: &str) -> Vec<u8> {
        query_for(id, name, 1, 1)
    }

    /// An answer with transaction `id` for `name`: a CNAME chain then an A record with `ttl`.
    fn answer_id(id: u16, name: &str, cnames: &[&str], addr: [u8; 4], ttl: u32) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[0x81, 0x80, 0, 1, 0, (cnames.len() + 1) as u8, 0, 0, 0, 0]);
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

    fn answer(name: &str, cnames: &[&str], addr: [u8; 4], ttl: u32) -> Vec<u8> {
        answer_id(1, name, cnames, addr, ttl)
    }

    const S: u64 = 1_000_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A UDP socket (`cookie`) asking the resolver 10.0.0.53:53.
    fn socket(cookie: u64) -> Asker {
        Asker::udp(cookie, (ip("10.0.0.53"), 53))
    }

    /// `asker` asks (id 1, the A record of `name`) and receives `answer` at `now_ns`, in the
    /// host's namespace (0).
    fn ask(names: &mut DnsNames, name: &str, answer: &[u8], now_ns: u64) -> Received {
        names.sent(socket(7), &query(1, name), now_ns);
        names.received(socket(7), 0, answer, now_ns)
    }

    fn learned(r: Received) -> bool {
        matches!(r, Received::Answer(_))
    }

    #[test]
    fn names_follow_the_cname_chain_and_expire_with_the_ttl() {
        let mut names = DnsNames::default();
        let a = answer("www.a.test", &["cdn.b.test"], [10, 0, 0, 1], 30);
        assert!(learned(ask(&mut names, "www.a.test", &a, 100 * S)));
        let ip = ip("10.0.0.1");
        let r = names.lookup(0, ip, 129 * S).unwrap();
        assert_eq!(r.name, "www.a.test");
        assert_eq!(r.chain, vec!["www.a.test", "cdn.b.test"]);
        assert!(
            names.lookup(0, ip, 130 * S).is_none(),
            "expired at 100 s + 30 s"
        );
        names.expire(131 * S);
        assert!(names.is_empty());
    }

    #[test]
    fn the_newest_answer_for_an_address_wins_and_capacity_is_kept() {
        let mut names = DnsNames::with_capacity(2);
        let ask_for = |names: &mut DnsNames, name: &str, addr, at| {
            assert!(learned(ask(names, name, &answer(name, &[], addr, 60), at)));
        };
        ask_for(&mut names, "one.test", [10, 0, 0, 1], S);
        ask_for(&mut names, "two.test", [10, 0, 0, 1], 2 * S);
        let ip = ip("10.0.0.1");
        assert_eq!(names.lookup(0, ip, 3 * S).unwrap().name, "two.test");
        ask_for(&mut names, "b.test", [10, 0, 0, 2], 3 * S);
        ask_for(&mut names, "c.test", [10, 0, 0, 3], 4 * S);
        assert_eq!(names.len(), 2);
        assert!(names.lookup(0, ip, 5 * S).is_none(), "oldest evicted");
    }

    #[test]
    fn a_zero_ttl_answer_still_names_the_connection_made_right_after_it() {
        let mut names = DnsNames::default();
        let a = answer("local.test", &[], [10, 0, 0, 7], 0);
        assert!(learned(ask(&mut names, "local.test", &a, 100 * S)));
        let ip = ip("10.0.0.7");
        assert_eq!(
            names.lookup(0, ip, 100 * S + 5_000_000).unwrap().name,
            "local.test"
        );
        assert!(names.lookup(0, ip, 100 * S + MIN_LIFETIME_NS).is_none());
    }

    #[test]
    fn the_ttl_is_capped_at_a_day() {
        let mut names = DnsNames::default();
        let a = answer("long.test", &[], [10, 0, 0, 8], u32::MAX);
        assert!(learned(ask(&mut names, "long.test", &a, 100 * S)));
        let ip = ip("10.0.0.8");
        assert!(names.lookup(0, ip, 100 * S + MAX_LIFETIME_NS - 1).is_some());
        assert!(
            names.lookup(0, ip, 100 * S + MAX_LIFETIME_NS).is_none(),
            "a TTL of 136 years names the address for a day"
        );
        assert_eq!(MAX_LIFETIME_NS, 86_400 * S);
    }

    #[test]
    fn queries_errors_and_garbage_teach_nothing() {
        let mut names = DnsNames::default();
        // A query received (not a response).
        let mut q = answer("x.test", &[], [10, 0, 0, 9], 60);
        q[2] = 0x01;
        assert_eq!(ask(&mut names, "x.test", &q, S), Received::NotAResponse);
        // NXDOMAIN: the answer to the query (consumed), yet no address to learn.
        let mut nx = answer("x.test", &[], [10, 0, 0, 9], 60);
        nx[3] = 0x83;
        assert!(learned(ask(&mut names, "x.test", &nx, S)));
        assert_eq!(
            names.pending_queries(),
            0,
            "the query (sent twice) is answered"
        );
        assert_eq!(
            names.received(socket(8), 0, b"\x00\x01garbage", S),
            Received::Malformed
        );
        assert!(names.is_empty());
        assert_eq!(names.counters.malformed, 1);
    }

    #[test]
    fn an_answer_no_socket_asked_for_teaches_nothing_and_is_counted() {
        let mut names = DnsNames::default();
        let forged = answer("bank.test", &[], [10, 0, 0, 66], 86_400);
        assert_eq!(
            names.received(socket(7), 0, &forged, S),
            Received::Unsolicited
        );
        assert!(names.lookup(0, ip("10.0.0.66"), 2 * S).is_none());
        assert!(names.is_empty());
        // Another socket asked that very question: still not this one's answer.
        names.sent(socket(8), &query(1, "bank.test"), S);
        assert_eq!(
            names.received(socket(7), 0, &forged, S),
            Received::Unsolicited
        );
        assert!(names.is_empty());
        assert_eq!(
            names.counters,
            DnsCounters {
                unsolicited: 2,
                ..DnsCounters::default()
            }
        );
    }

    #[test]
    fn a_matching_answer_teaches_once_and_consumes_its_query() {
        let mut names = DnsNames::default();
        // The question's case may differ (0x20 randomisation): names compare in lower case.
        names.sent(socket(7), &query(0x4242, "WwW.a.test"), S);
        assert_eq!(names.pending_queries(), 1);
        let a = answer_id(0x4242, "www.A.test", &[], [10, 0, 0, 1], 60);
        let Received::Answer(m) = names.received(socket(7), 5, &a, 2 * S) else {
            panic!("the answer to the query");
        };
        assert_eq!((m.id, m.questions[0].name.as_str()), (0x4242, "www.a.test"));
        assert_eq!(
            names.lookup(5, ip("10.0.0.1"), 3 * S).unwrap().name,
            "www.a.test"
        );
        assert_eq!(names.pending_queries(), 0, "consumed");
        // The same answer again, then one claiming another address: nothing is learned.
        assert_eq!(
            names.received(socket(7), 5, &a, 3 * S),
            Received::Unsolicited
        );
        let other = answer_id(0x4242, "www.a.test", &[], [10, 0, 0, 66], 60);
        assert_eq!(
            names.received(socket(7), 5, &other, 3 * S),
            Received::Unsolicited
        );
        assert_eq!(names.len(), 1);
        assert!(names.lookup(5, ip("10.0.0.66"), 4 * S).is_none());
        assert_eq!(names.counters.unsolicited, 2);
    }

    #[test]
    fn answers_from_another_resolver_or_with_another_id_or_question_teach_nothing() {
        let mut names = DnsNames::default();
        names.sent(socket(7), &query(0x1111, "www.a.test"), S);
        let claim = |id, name| answer_id(id, name, &[], [10, 0, 0, 66], 60);
        let forged = [
            // Another transaction id.
            (socket(7), claim(0x1112, "www.a.test")),
            // Another name.
            (socket(7), claim(0x1111, "www.b.test")),
            // Another resolver address, then port.
            (
                Asker::udp(7, (ip("10.0.0.54"), 53)),
                claim(0x1111, "www.a.test"),
            ),
            (
                Asker::udp(7, (ip("10.0.0.53"), 5353)),
                claim(0x1111, "www.a.test"),
            ),
        ];
        for (asker, a) in &forged {
            assert_eq!(names.received(*asker, 0, a, S), Received::Mismatched);
        }
        // Another type (AAAA) and class (CH) of the same name.
        for (qtype, qclass) in [(28, 1), (1, 3)] {
            let mut a = claim(0x1111, "www.a.test");
            let at = 12 + wire("www.a.test").len();
            a[at..at + 4].copy_from_slice(&[0, qtype, 0, qclass]);
            assert_eq!(names.received(socket(7), 0, &a, S), Received::Mismatched);
        }
        assert!(names.is_empty());
        assert_eq!(names.counters.mismatched, 6);
        // The query still waits for its real answer.
        let real = answer_id(0x1111, "www.a.test", &[], [10, 0, 0, 1], 60);
        assert!(learned(names.received(socket(7), 0, &real, 2 * S)));
        assert!(names.lookup(0, ip("10.0.0.1"), 3 * S).is_some());
        assert!(names.lookup(0, ip("10.0.0.66"), 3 * S).is_none());
    }

    #[test]
    fn names_belong_to_the_namespace_of_the_socket_that_asked() {
        let mut names = DnsNames::default();
        names.sent(socket(7), &query(1, "web.test"), S);
        let a = answer("web.test", &[], [10, 0, 0, 1], 60);
        assert!(learned(names.received(socket(7), 4026531840, &a, S)));
        names.sent(socket(8), &query(1, "other.test"), S);
        let b = answer("other.test", &[], [10, 0, 0, 1], 60);
        assert!(learned(names.received(socket(8), 4026532000, &b, S)));
        let ip = ip("10.0.0.1");
        assert_eq!(
            names.lookup(4026531840, ip, 2 * S).unwrap().name,
            "web.test"
        );
        assert_eq!(
            names.lookup(4026532000, ip, 2 * S).unwrap().name,
            "other.test"
        );
        assert!(names.lookup(0, ip, 2 * S).is_none());
        assert!(names.lookup(4026532001, ip, 2 * S).is_none());
    }

    #[test]
    fn queries_wait_a_bounded_time_and_number() {
        let mut names = DnsNames::default();
        let a = answer("slow.test", &[], [10, 0, 0, 1], 60);
        // Too late: given up on at the timeout, even before the tick drops it.
        names.sent(socket(7), &query(1, "slow.test"), S);
        let late = S + QUERY_TIMEOUT_NS;
        assert_eq!(
            names.received(socket(7), 0, &a, late),
            Received::Unsolicited
        );
        names.sent(socket(7), &query(1, "slow.test"), S);
        names.expire(late - 1);
        assert_eq!(names.pending_queries(), 1);
        names.expire(late);
        assert_eq!(names.pending_queries(), 0);
        assert_eq!(
            names.received(socket(7), 0, &a, late),
            Received::Unsolicited
        );
        assert!(names.is_empty());

        // Bounded: the oldest query is forgotten and counted.
        for i in 0..=MAX_PENDING_QUERIES as u64 {
            names.sent(socket(100 + i), &query(1, "slow.test"), 2 * S);
        }
        assert_eq!(names.pending_queries(), MAX_PENDING_QUERIES);
        assert_eq!(names.counters.queries_evicted, 1);
        assert_eq!(
            names.received(socket(100), 0, &a, 2 * S),
            Received::Unsolicited
        );
        let newest = socket(100 + MAX_PENDING_QUERIES as u64);
        assert!(learned(names.received(newest, 0, &a, 2 * S)));
        // A retry of a waiting query is one query, waiting from the retry.
        names.sent(socket(7), &query(9, "retry.test"), 3 * S);
        names.sent(
            socket(7),
            &query(9, "retry.test"),
            3 * S + QUERY_TIMEOUT_NS / 2,
        );
        names.expire(3 * S + QUERY_TIMEOUT_NS);
        let r = answer_id(9, "retry.test", &[], [10, 0, 0, 2], 60);
        assert!(learned(names.received(
            socket(7),
            0,
            &r,
            3 * S + QUERY_TIMEOUT_NS
        )));
    }
}
