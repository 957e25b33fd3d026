//! The `dns_query` event: one answered DNS query this host asked, with the question, the
//! response code, the answers and the process whose socket asked (docs/events.md, "DNS
//! queries"). Written only with `[enrich] dns_events = true`.
use serde::Serialize;

use crate::{
    flows::FlowEvent,
    proto::dns::{Message, RecordData},
    ratelimit::ProcessIdentity,
};

/// Answers one event lists at most; `answers_truncated` says when there were more.
pub const MAX_ANSWERS: usize = 16;

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct DnsEvent {
    /// When the answer reached the host.
    pub timestamp: String,
    /// Always `dns_query`.
    pub event_action: &'static str,
    /// `udp` or `tcp`.
    pub transport_protocol: &'static str,
    /// The asking socket (this host) and the resolver it asked.
    pub client_ip: String,
    pub client_port: u16,
    pub resolver_ip: String,
    pub resolver_port: u16,
    /// `internal` when the resolver is in `[enrich] local_networks`, else `external`.
    pub network_locality: &'static str,
    /// The DNS message id.
    pub transaction_id: u16,
    /// The question's name: lower case, no trailing dot, other bytes as `\DDD`.
    pub query_name: String,
    /// The question's type: `A`, `AAAA`, `CNAME`, ... or `TYPE<n>` (RFC 3597).
    pub query_type: String,
    pub query_type_id: u16,
    /// `NOERROR`, `NXDOMAIN`, ... or `RCODE<n>`.
    pub response_code: String,
    pub response_code_id: u8,
    /// The answer section, in order, at most [`MAX_ANSWERS`].
    pub answers: Vec<DnsAnswer>,
    /// The answer section had more records than listed, or was cut by the capture length.
    pub answers_truncated: bool,
    /// The addresses of the A and AAAA answers, in order.
    pub resolved_ips: Vec<String>,
    /// The DNS flow this answer belongs to, when the agent tracks it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community_id: Option<String>,
    #[serde(flatten)]
    pub process: ProcessIdentity,
    pub hostname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    pub agent_version: &'static str,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct DnsAnswer {
    /// The record's owner name.
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, ... or `TYPE<n>`.
    pub r#type: String,
    pub ttl: u32,
    /// The address (A, AAAA) or target name (CNAME); absent for other types.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl DnsEvent {
    /// The event as a flow event from the client to the resolver, with the process and host,
    /// for encoders that map those fields from flow events (counters stay empty).
    pub fn as_flow_event(&self) -> FlowEvent {
        let p = &self.process;
        FlowEvent {
            timestamp: self.timestamp.clone(),
            event_action: self.event_action,
            flow_id: self.flow_id.clone().unwrap_or_default(),
            community_id: self.community_id.clone(),
            transport_protocol: self.transport_protocol,
            src_ip: self.client_ip.clone(),
            src_port: self.client_port,
            dest_ip: self.resolver_ip.clone(),
            dest_port: self.resolver_port,
            network_direction: "outbound",
            network_locality: self.network_locality,
            local_orig: true,
            application_protocol: Some("dns"),
            hostname: self.hostname.clone(),
            host_id: self.host_id.clone(),
            boot_id: self.boot_id.clone(),
            agent_version: self.agent_version,
            ..p.flow_event_fields()
        }
    }
}

/// A record type's mnemonic (RFC 1035, 3596, ...), `TYPE<n>` for others (RFC 3597).
pub fn type_name(t: u16) -> String {
    let known = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        39 => "DNAME",
        43 => "DS",
        46 => "RRSIG",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        257 => "CAA",
        _ => return format!("TYPE{t}"),
    };
    known.to_string()
}

/// A response code's mnemonic (RFC 1035, 2136), `RCODE<n>` for others.
pub fn rcode_name(r: u8) -> String {
    let known = match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => return format!("RCODE{r}"),
    };
    known.to_string()
}

/// The question, code and answers of a response; none for queries and messages without a
/// question. The other fields are left for the caller.
pub fn from_message(m: &Message) -> Option<DnsEvent> {
    if !m.is_response {
        return None;
    }
    let q = m.questions.first()?;
    let mut answers = Vec::new();
    let mut resolved_ips = Vec::new();
    for a in m.answers.iter().take(MAX_ANSWERS) {
        let data = match &a.data {
            RecordData::Address(ip) => {
                resolved_ips.push(ip.to_string());
                Some(ip.to_string())
            }
            RecordData::Cname(target) => Some(target.clone()),
            RecordData::Other => None,
        };
        answers.push(DnsAnswer {
            name: a.name.clone(),
            r#type: type_name(a.rtype),
            ttl: a.ttl,
            data,
        });
    }
    Some(DnsEvent {
        event_action: "dns_query",
        transaction_id: m.id,
        query_name: q.name.clone(),
        query_type: type_name(q.qtype),
        query_type_id: q.qtype,
        response_code: rcode_name(m.rcode),
        response_code_id: m.rcode,
        answers_truncated: m.truncated || m.answers.len() > MAX_ANSWERS,
        answers,
        resolved_ips,
        agent_version: env!("CARGO_PKG_VERSION"),
        ..DnsEvent::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::dns::{Answer, Question};

    fn message(rcode: u8, answers: Vec<Answer>) -> Message {
        Message {
            id: 7,
            is_response: true,
            rcode,
            questions: vec![Question {
                name: "www.a.test".into(),
                qtype: 1,
            }],
            answers,
            truncated: false,
        }
    }

    #[test]
    fn answers_are_listed_in_order_with_their_types_and_addresses() {
        let m = message(
            0,
            vec![
                Answer {
                    name: "www.a.test".into(),
                    rtype: 5,
                    ttl: 30,
                    data: RecordData::Cname("cdn.b.test".into()),
                },
                Answer {
                    name: "cdn.b.test".into(),
                    rtype: 1,
                    ttl: 20,
                    data: RecordData::Address("10.0.0.1".parse().unwrap()),
                },
                Answer {
                    name: "cdn.b.test".into(),
                    rtype: 16,
                    ttl: 5,
                    data: RecordData::Other,
                },
            ],
        );
        let ev = from_message(&m).unwrap();
        assert_eq!(ev.event_action, "dns_query");
        assert_eq!(ev.query_name, "www.a.test");
        assert_eq!(ev.query_type, "A");
        assert_eq!(ev.response_code, "NOERROR");
        assert_eq!(ev.transaction_id, 7);
        assert_eq!(ev.resolved_ips, vec!["10.0.0.1"]);
        assert_eq!(ev.answers.len(), 3);
        assert_eq!(ev.answers[0].r#type, "CNAME");
        assert_eq!(ev.answers[0].data.as_deref(), Some("cdn.b.test"));
        assert_eq!(ev.answers[2].r#type, "TXT");
        assert_eq!(ev.answers[2].data, None);
        assert!(!ev.answers_truncated);
    }

    #[test]
    fn errors_are_named_and_queries_are_not_events() {
        let ev = from_message(&message(3, vec![])).unwrap();
        assert_eq!(ev.response_code, "NXDOMAIN");
        assert_eq!(ev.response_code_id, 3);
        assert!(ev.answers.is_empty());
        let mut q = message(0, vec![]);
        q.is_response = false;
        assert!(from_message(&q).is_none());
        q.is_response = true;
        q.questions.clear();
        assert!(from_message(&q).is_none());
        assert_eq!(rcode_name(12), "RCODE12");
        assert_eq!(type_name(99), "TYPE99");
    }

    #[test]
    fn answer_lists_are_bounded() {
        let many = (0..40)
            .map(|i| Answer {
                name: "www.a.test".into(),
                rtype: 1,
                ttl: 1,
                data: RecordData::Address(std::net::IpAddr::from([10, 0, 0, i as u8])),
            })
            .collect();
        let ev = from_message(&message(0, many)).unwrap();
        assert_eq!(ev.answers.len(), MAX_ANSWERS);
        assert_eq!(ev.resolved_ips.len(), MAX_ANSWERS);
        assert!(ev.answers_truncated);
    }
}
