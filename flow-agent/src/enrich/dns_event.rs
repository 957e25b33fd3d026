//! The `dns_query` event: one answered DNS query this host asked, with the question, the
//! response code, the answers and the process whose socket asked (docs/events.md, "DNS
//! queries"). Written only with `[enrich] dns_events = true`.
#[cfg(test)]
use crate::proto::dns::{rcode_name, type_name};
use crate::{
    event::{DnsAnswer, DnsEvent},
    proto::dns::{Message, RecordData},
};

/// Answers one event lists at most; `answers_truncated` says when there were more.
pub(crate) const MAX_ANSWERS: usize = 16;

/// The question, code and answers of a response; none for queries and messages without a
/// question. The other fields are left for the caller.
pub(crate) fn from_message(m: &Message) -> Option<DnsEvent> {
    if !m.is_response {
        return None;
    }
    let q = m.questions.first()?;
    let mut answers = Vec::new();
    let mut resolved_ips = Vec::new();
    for a in m.answers.iter().take(MAX_ANSWERS) {
        let data = match &a.data {
            RecordData::Address(ip) => {
                resolved_ips.push(*ip);
                Some(ip.to_string())
            }
            RecordData::Cname(target) => Some(target.clone()),
            RecordData::Other => None,
        };
        answers.push(DnsAnswer {
            name: a.name.clone(),
            rtype: a.rtype,
            ttl: a.ttl,
            data,
        });
    }
    Some(DnsEvent {
        transaction_id: m.id,
        query_name: q.name.clone(),
        query_type: q.qtype,
        response_code: m.rcode,
        answers_truncated: m.truncated || m.answers.len() > MAX_ANSWERS,
        answers,
        resolved_ips,
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
        assert_eq!(ev.query_name, "www.a.test");
        assert_eq!(type_name(ev.query_type), "A");
        assert_eq!(rcode_name(ev.response_code), "NOERROR");
        assert_eq!(ev.transaction_id, 7);
        assert_eq!(ev.resolved_ips, vec![std::net::IpAddr::from([10, 0, 0, 1])]);
        assert_eq!(ev.answers.len(), 3);
        assert_eq!(type_name(ev.answers[0].rtype), "CNAME");
        assert_eq!(ev.answers[0].data.as_deref(), Some("cdn.b.test"));
        assert_eq!(type_name(ev.answers[2].rtype), "TXT");
        assert_eq!(ev.answers[2].data, None);
        assert!(!ev.answers_truncated);
    }

    #[test]
    fn errors_are_named_and_queries_are_not_events() {
        let ev = from_message(&message(3, vec![])).unwrap();
        assert_eq!(rcode_name(ev.response_code), "NXDOMAIN");
        assert_eq!(ev.response_code, 3);
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
