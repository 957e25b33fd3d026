//! Encode stage: one encoder per output format. An encoder turns one event into one record
//! without framing (no trailing newline); the sink adds its own framing (newline, syslog
//! header, octet count, HTTP batch).
use serde::{Deserialize, Serialize};

use crate::event::Event;

pub(crate) mod brief;
mod common;
pub(crate) mod ecs;
mod fragments;
mod json;
pub(crate) mod native;
pub(crate) mod ocsf;
pub(crate) mod sysmon;
mod time;
pub(crate) mod zeek;

#[cfg(test)]
pub(crate) mod fixtures;

/// Output format of a sink, chosen per sink in the configuration (`format = "ecs"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The documented schema of docs/events.md (JSON).
    #[default]
    Native,
    /// Elastic Common Schema (JSON).
    Ecs,
    /// OCSF Network Activity (JSON).
    Ocsf,
    /// Zeek conn.log records (JSON), at flow end only.
    Zeek,
    /// Sysmon for Linux Event ID 3 (XML).
    Sysmon,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Native,
        Format::Ecs,
        Format::Ocsf,
        Format::Zeek,
        Format::Sysmon,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::Ecs => "ecs",
            Format::Ocsf => "ocsf",
            Format::Zeek => "zeek",
            Format::Sysmon => "sysmon",
        }
    }

    /// Whether every record is one JSON document (HTTP sinks accept only such formats).
    pub(crate) fn is_json(self) -> bool {
        !matches!(self, Format::Sysmon)
    }

    /// A fresh encoder of this format; each sink owns one (some formats number their records,
    /// the JSON ones keep what they rendered of recent processes, the host and flows' app facts).
    pub fn encoder(self) -> Box<dyn Encoder> {
        match self {
            Format::Native => Box::<native::NativeEncoder>::default(),
            Format::Ecs => Box::<ecs::EcsEncoder>::default(),
            Format::Ocsf => Box::<ocsf::OcsfEncoder>::default(),
            Format::Zeek => Box::new(zeek::ZeekEncoder::new()),
            Format::Sysmon => Box::new(sysmon::SysmonEncoder::new()),
        }
    }
}

/// Turns events into records of one format.
pub trait Encoder: Send {
    /// Appends the record of `event` to `out`; false when this format has no record for it
    /// (Zeek's conn.log has one record per flow, written at its end; docs/formats.md says
    /// which formats carry which kinds of events).
    fn encode(&mut self, event: &Event, out: &mut Vec<u8>) -> bool;
}
