//! `brief`: the few fields of a flow event that `flow-agent top` shows, under their native
//! names and with their native values, so that a live view costs the agent a short record
//! rather than a second full one. Only flow events have a brief record. A brief record is its
//! native record with every field not in [`BRIEF_FIELDS`] left out (unit-tested below).
use super::{
    json::Json,
    native::{end_names, INTERVAL_FIELDS},
    Encoder,
};
use crate::event::{Event, FlowEvent};

/// The fields of a brief record, in the order they are written (that of the native record).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const BRIEF_FIELDS: &[&str] = &[
    "event_action",
    "flow_id",
    "transport_protocol",
    "src_ip",
    "src_port",
    "dest_ip",
    "dest_port",
    "network_direction",
    "in_bytes",
    "out_bytes",
    "interval",
    "pid",
    "process_name",
    "user",
    "container_id",
    "src_hostname",
    "dest_hostname",
    "application_protocol",
];

#[derive(Default)]
pub(crate) struct BriefEncoder;

impl Encoder for BriefEncoder {
    fn encode(&mut self, event: &Event, out: &mut Vec<u8>) -> bool {
        let Event::Flow(ev) = event else {
            return false;
        };
        flow(ev, out);
        true
    }
}

fn flow(ev: &FlowEvent, out: &mut Vec<u8>) {
    let (src, dest) = (ev.src(), ev.dest());
    let mut w = Json::new(out);
    w.begin();
    w.name("event_action", ev.action.as_str());
    w.field("flow_id", &ev.ids.flow_id);
    w.name("transport_protocol", ev.transport.as_str());
    w.ip("src_ip", src.0);
    w.field("src_port", &src.1);
    w.ip("dest_ip", dest.0);
    w.field("dest_port", &dest.1);
    w.name("network_direction", ev.direction.as_str());
    if let Some(c) = &ev.counters {
        w.field("in_bytes", &c.in_bytes);
        w.field("out_bytes", &c.out_bytes);
        let i = &c.interval;
        w.object("interval");
        for (key, value) in
            INTERVAL_FIELDS
                .iter()
                .zip([i.in_bytes, i.out_bytes, i.in_pkts, i.out_pkts])
        {
            w.field(key, &value);
        }
        w.end();
    }
    if let Some(p) = &ev.process {
        w.field("pid", &p.pid);
        w.field("process_name", &p.comm);
        w.opt("user", p.user.as_deref());
        w.opt("container_id", p.container_id.as_deref());
    }
    let ((src_hostname, _), (dest_hostname, _)) = end_names(ev);
    w.opt("src_hostname", src_hostname);
    w.opt("dest_hostname", dest_hostname);
    w.opt(
        "application_protocol",
        ev.app_protocol().map(|(name, _)| name),
    );
    w.end();
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::encode::{fixtures, native::NativeEncoder};

    fn record(encoder: &mut dyn Encoder, ev: &Event) -> Option<(String, Value)> {
        let mut out = Vec::new();
        encoder.encode(ev, &mut out).then(|| {
            let text = String::from_utf8(out).expect("UTF-8");
            let value = serde_json::from_str(&text).expect("a JSON record");
            (text, value)
        })
    }

    #[test]
    fn a_brief_record_is_its_native_record_cut_to_the_brief_fields() {
        let others = [
            Event::Stats(Box::new(fixtures::stats())),
            Event::RateLimited(Box::new(fixtures::rate_limited())),
            Event::Dns(Box::new(fixtures::dns_query())),
            Event::Process(Box::new(fixtures::process_start())),
        ];
        let flows = fixtures::all_flows().into_iter().map(Event::Flow);
        let mut seen = 0;
        for ev in flows.chain(others) {
            let (_, native) = record(&mut NativeEncoder::default(), &ev).expect("native record");
            let Some((text, brief)) = record(&mut BriefEncoder, &ev) else {
                assert!(!matches!(ev, Event::Flow(_)), "a flow event without one");
                continue;
            };
            let mut cut = native.as_object().unwrap().clone();
            cut.retain(|k, _| BRIEF_FIELDS.contains(&k.as_str()));
            assert_eq!(brief, Value::Object(cut));
            // The first occurrence of each key is the top-level one (`interval` follows the
            // flow's own byte counts).
            let at: Vec<usize> = BRIEF_FIELDS
                .iter()
                .filter_map(|f| text.find(&format!("\"{f}\":")))
                .collect();
            assert!(at.is_sorted(), "not in the order of BRIEF_FIELDS: {text}");
            seen += 1;
        }
        assert_eq!(seen, fixtures::all_flows().len());
    }
}
