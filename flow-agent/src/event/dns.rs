//! A `dns_query` event: one answered DNS query this host asked, with the question, the
//! response code, the answers and the process whose socket asked.
use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use super::{FlowIds, HostInfo, Locality, ProcessIdentity, Transport, WallTime};

#[derive(Clone, Debug, PartialEq)]
pub struct DnsEvent {
    /// When the answer reached the host.
    pub(crate) time: WallTime,
    pub(crate) transport: Transport,
    /// The asking socket (this host) and the resolver it asked.
    pub(crate) client: (IpAddr, u16),
    pub(crate) resolver: (IpAddr, u16),
    /// Internal when the resolver is in the local networks.
    pub(crate) locality: Locality,
    pub(crate) transaction_id: u16,
    /// Lower case, no trailing dot, other bytes as `\DDD`.
    pub(crate) query_name: String,
    pub(crate) query_type: u16,
    pub(crate) response_code: u8,
    /// The answer section, in order, bounded.
    pub(crate) answers: Vec<DnsAnswer>,
    /// The answer section had more records than listed, or was cut by the capture length.
    pub(crate) answers_truncated: bool,
    /// The addresses of the A and AAAA answers, in order.
    pub(crate) resolved_ips: Vec<IpAddr>,
    /// The DNS flow this answer belongs to, when the agent tracks it.
    pub(crate) flow: Option<Arc<FlowIds>>,
    pub(crate) process: Option<Arc<ProcessIdentity>>,
    pub(crate) host: Arc<HostInfo>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DnsAnswer {
    /// The record's owner name.
    pub(crate) name: String,
    pub(crate) rtype: u16,
    pub(crate) ttl: u32,
    /// The address (A, AAAA) or target name (CNAME); absent for other types.
    pub(crate) data: Option<String>,
}

impl Default for DnsEvent {
    fn default() -> Self {
        let none = (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        Self {
            time: WallTime::default(),
            transport: Transport::Udp,
            client: none,
            resolver: none,
            locality: Locality::External,
            transaction_id: 0,
            query_name: String::new(),
            query_type: 0,
            response_code: 0,
            answers: Vec::new(),
            answers_truncated: false,
            resolved_ips: Vec::new(),
            flow: None,
            process: None,
            host: Arc::default(),
        }
    }
}
