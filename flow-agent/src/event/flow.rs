//! A flow event: what the flow tracker knows of one flow at one moment, with the shared
//! process, host, remote-name and application facts attached by enrichment.
use std::{net::IpAddr, sync::Arc};

use super::{AppInfo, HostInfo, ProcessIdentity, WallTime};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowAction {
    Start,
    Update,
    End,
}

impl FlowAction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Update => "update",
            Self::End => "end",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }

    /// The IANA protocol number.
    pub(crate) fn iana(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }
}

/// Relative to this host: outbound when this host originated the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Outbound,
    Inbound,
}

impl Direction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Outbound => "outbound",
            Self::Inbound => "inbound",
        }
    }
}

/// Internal when the remote end is in the configured local networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Locality {
    Internal,
    External,
}

impl Locality {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Internal => "internal",
            Self::External => "external",
        }
    }
}

/// Which process an event names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Attribution {
    Connector,
    Acceptor,
    Listener,
    /// UDP: the last process that used the socket in its own syscall.
    SocketUser,
    Unknown,
}

impl Attribution {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Connector => "connector",
            Self::Acceptor => "acceptor",
            Self::Listener => "listener",
            Self::SocketUser => "socket_user",
            Self::Unknown => "unknown",
        }
    }
}

/// A flow's identifiers, made once when the flow is first seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowIds {
    /// Unique on this host for the agent's lifetime.
    pub flow_id: String,
    /// Community ID v1 of the flow's 5-tuple.
    pub community_id: Option<String>,
}

/// The name a remote address was resolved from when the flow opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteName {
    /// The name the process asked for.
    pub fqdn: String,
    /// From the asked name through each CNAME to the name that holds the address.
    pub chain: Vec<String>,
}

/// TCP flag bits ("FSRPAUEC" from bit 0) seen each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    pub orig: u8,
    pub resp: u8,
}

/// Counters since the previous event of the flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntervalCounters {
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
}

/// Totals from this host's side: received (in) and sent (out).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_ip_bytes: Option<u64>,
    pub out_ip_bytes: Option<u64>,
    pub interval: IntervalCounters,
}

#[derive(Clone, Debug)]
pub struct FlowEvent {
    /// When the event happened (the flow's open for start events).
    pub time: WallTime,
    pub action: FlowAction,
    pub ids: Arc<FlowIds>,
    pub(crate) transport: Transport,
    /// This host's end and the remote end.
    pub(crate) local: (IpAddr, u16),
    pub(crate) remote: (IpAddr, u16),
    pub(crate) direction: Direction,
    /// Of the remote address.
    pub locality: Locality,
    /// Of this host's own address (Zeek's `local_orig`/`local_resp` on its side).
    pub(crate) local_locality: Locality,
    /// False when the flow was already open when the agent started watching.
    pub(crate) start_observed: bool,
    pub start_time: Option<WallTime>,
    pub end_time: Option<WallTime>,
    pub duration_ns: Option<u64>,
    pub end_reason: Option<&'static str>,
    /// Zeek's conn_state.
    pub conn_state: Option<&'static str>,
    /// Zeek's history letters.
    pub history: Option<String>,
    pub tcp_flags: Option<TcpFlags>,
    pub counters: Option<Counters>,
    pub rtt_us: Option<u32>,
    pub retransmits: Option<u32>,
    /// TCP: when the first payload each way passed this host's stack.
    pub orig_first_byte: Option<WallTime>,
    pub resp_first_byte: Option<WallTime>,
    pub attribution: Option<Attribution>,
    /// The acting thread.
    pub tid: Option<u32>,
    pub process: Option<Arc<ProcessIdentity>>,
    pub netns: Option<u32>,
    pub(crate) host: Arc<HostInfo>,
    pub remote_name: Option<Arc<RemoteName>>,
    pub app: Option<Arc<AppInfo>>,
}

impl FlowEvent {
    /// A bare event of a flow: no times beyond `time`, no counters, no enrichment.
    pub fn new(
        action: FlowAction,
        time: WallTime,
        transport: Transport,
        local: (IpAddr, u16),
        remote: (IpAddr, u16),
        direction: Direction,
        host: Arc<HostInfo>,
    ) -> Self {
        Self {
            time,
            action,
            ids: Arc::default(),
            transport,
            local,
            remote,
            direction,
            locality: Locality::External,
            local_locality: Locality::External,
            start_observed: true,
            start_time: None,
            end_time: None,
            duration_ns: None,
            end_reason: None,
            conn_state: None,
            history: None,
            tcp_flags: None,
            counters: None,
            rtt_us: None,
            retransmits: None,
            orig_first_byte: None,
            resp_first_byte: None,
            attribution: None,
            tid: None,
            process: None,
            netns: None,
            host,
            remote_name: None,
            app: None,
        }
    }

    /// This host originated the flow (Zeek's local_orig); otherwise it answered it.
    pub(crate) fn local_orig(&self) -> bool {
        self.direction == Direction::Outbound
    }

    /// The originator's end.
    pub(crate) fn src(&self) -> (IpAddr, u16) {
        if self.local_orig() {
            self.local
        } else {
            self.remote
        }
    }

    /// The responder's end.
    pub(crate) fn dest(&self) -> (IpAddr, u16) {
        if self.local_orig() {
            self.remote
        } else {
            self.local
        }
    }

    /// (originator, responder) of a pair given as (sent by this host, received by it).
    pub(crate) fn by_role<T>(&self, sent: T, received: T) -> (T, T) {
        if self.local_orig() {
            (sent, received)
        } else {
            (received, sent)
        }
    }

    /// Payload bytes and packets each way: (orig_bytes, resp_bytes, orig_pkts, resp_pkts).
    pub(crate) fn orig_resp(&self) -> Option<(u64, u64, u64, u64)> {
        let c = self.counters?;
        let (ob, rb) = self.by_role(c.out_bytes, c.in_bytes);
        let (op, rp) = self.by_role(c.out_pkts, c.in_pkts);
        Some((ob, rb, op, rp))
    }

    /// IP-level bytes each way (originator, responder), where per-packet counters gave them.
    pub(crate) fn orig_resp_ip_bytes(&self) -> (Option<u64>, Option<u64>) {
        self.counters.map_or((None, None), |c| {
            self.by_role(c.out_ip_bytes, c.in_ip_bytes)
        })
    }

    /// Both ends on loopback.
    pub(crate) fn is_loopback(&self) -> bool {
        self.local.0.is_loopback() && self.remote.0.is_loopback()
    }

    /// The flow ended without ever being established (Zeek `REJ`, `S0`).
    pub(crate) fn connect_failed(&self) -> bool {
        matches!(self.conn_state, Some("REJ" | "S0"))
    }

    /// Nanoseconds from the originator's first payload to the responder's, when the
    /// originator spoke first.
    pub(crate) fn time_to_first_byte_ns(&self) -> Option<u64> {
        let (o, r) = (self.orig_first_byte?, self.resp_first_byte?);
        (r > o).then(|| r.0 - o.0)
    }

    /// The remote end's name: (fqdn, first label).
    pub(crate) fn remote_fqdn(&self) -> Option<(&str, &str)> {
        let n = self.remote_name.as_deref()?;
        Some((&n.fqdn, n.fqdn.split('.').next().unwrap_or(&n.fqdn)))
    }

    /// Application protocol and how it was decided.
    pub(crate) fn app_protocol(&self) -> Option<(&'static str, super::AppProtocolSource)> {
        self.app.as_deref()?.protocol
    }
}
