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
    pub time: WallTime,
    pub transport: Transport,
    /// The asking socket (this host) and the resolver it asked.
    pub client: (IpAddr, u16),
    pub resolver: (IpAddr, u16),
    /// Internal when the resolver is in the local networks.
    pub locality: Locality,
    pub transaction_id: u16,
    /// Lower case, no trailing dot, other bytes as `\DDD`.
    pub query_name: String,
    pub query_type: u16,
    pub response_code: u8,
    /// The answer section, in order, bounded.
    pub answers: Vec<DnsAnswer>,
    /// The answer section had more records than listed, or was cut by the capture length.
    pub answers_truncated: bool,
    /// The addresses of the A and AAAA answers, in order.
    pub resolved_ips: Vec<IpAddr>,
    /// The DNS flow this answer belongs to, when the agent tracks it.
    pub flow: Option<Arc<FlowIds>>,
    pub process: Option<Arc<ProcessIdentity>>,
    pub host: Arc<HostInfo>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsAnswer {
    /// The record's owner name.
    pub name: String,
    pub rtype: u16,
    pub ttl: u32,
    /// The address (A, AAAA) or target name (CNAME); absent for other types.
    pub data: Option<String>,
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
