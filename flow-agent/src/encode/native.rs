//! `native`: the documented schema (docs/events.md), one JSON object per record.
use super::Encoder;
use crate::{
    flows::{dns_event::DnsEvent, FlowEvent},
    health::StatsEvent,
    ratelimit::SuppressedEvent,
};

pub struct NativeEncoder;

impl Encoder for NativeEncoder {
    fn encode_flow(&mut self, event: &FlowEvent, out: &mut Vec<u8>) -> bool {
        // Serializing plain structs of strings and numbers into a Vec cannot fail.
        serde_json::to_writer(&mut *out, event).is_ok()
    }

    fn encode_stats(&mut self, stats: &StatsEvent, out: &mut Vec<u8>) -> bool {
        serde_json::to_writer(&mut *out, stats).is_ok()
    }

    fn encode_suppressed(&mut self, summary: &SuppressedEvent, out: &mut Vec<u8>) -> bool {
        serde_json::to_writer(&mut *out, summary).is_ok()
    }

    fn encode_dns(&mut self, event: &DnsEvent, out: &mut Vec<u8>) -> bool {
        serde_json::to_writer(&mut *out, event).is_ok()
    }
}
