//! The typed event model every stage after capture shares: integers for times and counters,
//! `IpAddr` for addresses, enums for vocabularies, and per-process and per-host facts shared
//! through `Arc` rather than copied into each event. No formatting happens here: each encoder
//! turns these values into its own text once (encode/).
mod app;
mod dns;
mod flow;
mod host;
mod process;
mod rate_limited;
mod self_check;
mod stats;

pub use app::{AppInfo, AppProtocolSource, TlsInfo};
pub(crate) use dns::{DnsAnswer, DnsEvent};
pub use flow::{
    Attribution, Counters, Direction, FlowAction, FlowEvent, FlowIds, IntervalCounters, Locality,
    RemoteName, TcpFlags, Transport,
};
pub use host::HostInfo;
pub use process::{
    Ancestor, ExitStatus, HashSkip, ProcessAction, ProcessEvent, ProcessIdentity, Sha256,
};
pub(crate) use rate_limited::{Limiter, SuppressedEvent};
pub use self_check::{SelfCheck, SelfCheckReport};
pub(crate) use stats::{
    EnrichLosses, KernelLosses, RateLimitStats, SinkReport, StateBounds, StatsEvent, WatchdogStats,
};

/// Wall-clock time: nanoseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WallTime(pub u64);

impl WallTime {
    pub(crate) fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self(d.as_nanos() as u64)
    }

    pub(crate) fn millis(self) -> i64 {
        (self.0 / 1_000_000) as i64
    }
}

/// Every kind of event the agent writes: one path from the producers to the outputs.
// Flow events are nearly all events: boxing them would cost an allocation each; the rare
// kinds are boxed instead.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Event {
    Flow(FlowEvent),
    Dns(Box<DnsEvent>),
    Process(Box<ProcessEvent>),
    Stats(Box<StatsEvent>),
    RateLimited(Box<SuppressedEvent>),
}

impl From<std::time::SystemTime> for WallTime {
    fn from(t: std::time::SystemTime) -> Self {
        let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self(d.as_nanos() as u64)
    }
}
