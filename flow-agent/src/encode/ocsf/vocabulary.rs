//! OCSF enumerations the events map onto: activity, direction, boundary, TCP flags.
use crate::event::{FlowAction, FlowEvent, Locality};

/// Network Activity `activity_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activity {
    Open,
    Close,
    Reset,
    Fail,
    Refuse,
    Traffic,
}

impl Activity {
    pub(crate) fn of(ev: &FlowEvent) -> Self {
        match ev.action {
            FlowAction::Start => Activity::Open,
            FlowAction::Update => Activity::Traffic,
            FlowAction::End => match (ev.conn_state, ev.end_reason) {
                (Some("REJ"), _) => Activity::Refuse,
                (Some("S0"), _) => Activity::Fail,
                (_, Some("rst")) => Activity::Reset,
                _ => Activity::Close,
            },
        }
    }

    pub(crate) fn id(self) -> u32 {
        match self {
            Activity::Open => 1,
            Activity::Close => 2,
            Activity::Reset => 3,
            Activity::Fail => 4,
            Activity::Refuse => 5,
            Activity::Traffic => 6,
        }
    }

    pub(crate) fn caption(self) -> &'static str {
        match self {
            Activity::Open => "Open",
            Activity::Close => "Close",
            Activity::Reset => "Reset",
            Activity::Fail => "Fail",
            Activity::Refuse => "Refuse",
            Activity::Traffic => "Traffic",
        }
    }

    /// `type_name`: the class's name and the activity's caption.
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            Activity::Open => "Network Activity: Open",
            Activity::Close => "Network Activity: Close",
            Activity::Reset => "Network Activity: Reset",
            Activity::Fail => "Network Activity: Fail",
            Activity::Refuse => "Network Activity: Refuse",
            Activity::Traffic => "Network Activity: Traffic",
        }
    }
}

/// `connection_info.direction_id`: OCSF's direction is relative to the network perimeter
/// (the local networks), not to the host; which side the host is goes to
/// `observation_point_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Inbound,
    Outbound,
    Lateral,
    Local,
}

impl Direction {
    pub(crate) fn of(ev: &FlowEvent) -> Self {
        Self::new(ev.is_loopback(), ev.locality, ev.local_orig())
    }

    /// `loopback`: both ends on this host's loopback; `local_orig`: this host originated.
    pub(crate) fn new(loopback: bool, locality: Locality, local_orig: bool) -> Self {
        if loopback {
            Direction::Local
        } else if locality == Locality::Internal {
            Direction::Lateral
        } else if local_orig {
            Direction::Outbound
        } else {
            Direction::Inbound
        }
    }

    pub(crate) fn id(self) -> u32 {
        match self {
            Direction::Inbound => 1,
            Direction::Outbound => 2,
            Direction::Lateral => 3,
            Direction::Local => 4,
        }
    }

    pub(crate) fn caption(self) -> &'static str {
        match self {
            Direction::Inbound => "Inbound",
            Direction::Outbound => "Outbound",
            Direction::Lateral => "Lateral",
            Direction::Local => "Local",
        }
    }
}

/// `connection_info.boundary_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Boundary {
    Localhost,
    Internal,
    External,
}

impl Boundary {
    pub(crate) fn of(ev: &FlowEvent) -> Self {
        if ev.is_loopback() {
            Boundary::Localhost
        } else if ev.locality == Locality::Internal {
            Boundary::Internal
        } else {
            Boundary::External
        }
    }

    pub(crate) fn id(self) -> u32 {
        match self {
            Boundary::Localhost => 1,
            Boundary::Internal => 2,
            Boundary::External => 3,
        }
    }

    pub(crate) fn caption(self) -> &'static str {
        match self {
            Boundary::Localhost => "Localhost",
            Boundary::Internal => "Internal",
            Boundary::External => "External",
        }
    }
}

const FIN: u32 = 0x01;
const SYN: u32 = 0x02;
const RST: u32 = 0x04;
const ACK: u32 = 0x10;

/// `connection_info.tcp_flags`: the union of the TCP header flags of the segments the Zeek
/// history letters stand for (SYN, SYN-ACK, ACK, data with ACK, FIN with ACK, RST).
pub(crate) fn tcp_flags(history: &str) -> u32 {
    history
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            's' => SYN,
            'h' => SYN | ACK,
            'a' | 'd' => ACK,
            'f' => FIN | ACK,
            'r' => RST,
            _ => 0,
        })
        .fold(0, |acc, f| acc | f)
}
