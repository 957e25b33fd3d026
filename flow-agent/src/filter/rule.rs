//! One include or exclude rule: a flow matches when every condition the rule sets matches; a
//! condition given a list matches when any of its values does.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::values::{
    one_or_many, CgroupPrefix, ContainerId, Direction, Network, Pattern, PortRange, Transport,
    UserRef,
};
use crate::event::{self, DnsEvent, FlowEvent, ProcessIdentity};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rule {
    /// The other end of the flow is in one of these networks.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) remote_cidr: Vec<Network>,
    /// This host's address of the flow is in one of these networks.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) local_cidr: Vec<Network>,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) remote_port: Vec<PortRange>,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) local_port: Vec<PortRange>,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) transport: Vec<Transport>,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) direction: Vec<Direction>,
    /// The executable: a pattern with a `/` is compared with its full path, one without with
    /// its file name.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) exe: Vec<Pattern>,
    /// The process name (the kernel's comm: at most 15 characters).
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) process_name: Vec<Pattern>,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) user: Vec<UserRef>,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) container_id: Vec<ContainerId>,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) cgroup: Vec<CgroupPrefix>,
}

/// The fields of an event that rules look at, with both endpoints seen from this host.
pub(crate) struct FlowView<'a> {
    pub(crate) local: (IpAddr, u16),
    pub(crate) remote: (IpAddr, u16),
    pub(crate) transport: event::Transport,
    pub(crate) direction: event::Direction,
    pub(crate) process: Option<&'a ProcessIdentity>,
}

impl<'a> FlowView<'a> {
    pub(crate) fn of_flow(ev: &'a FlowEvent) -> Self {
        Self {
            local: ev.local,
            remote: ev.remote,
            transport: ev.transport,
            direction: ev.direction,
            process: ev.process.as_deref(),
        }
    }

    /// A process event: only its process is looked at (by process-only rules, whose other
    /// conditions are all unset).
    pub(crate) fn of_process(p: &'a ProcessIdentity) -> Self {
        let unspecified = (IpAddr::from([0u8; 4]), 0);
        Self {
            local: unspecified,
            remote: unspecified,
            transport: event::Transport::Tcp,
            direction: event::Direction::Outbound,
            process: Some(p),
        }
    }

    /// A DNS answer seen as its flow: from the asking socket to the resolver.
    pub(crate) fn of_dns(ev: &'a DnsEvent) -> Self {
        Self {
            local: ev.client,
            remote: ev.resolver,
            transport: ev.transport,
            direction: event::Direction::Outbound,
            process: ev.process.as_deref(),
        }
    }
}

/// An unset condition (empty list) matches everything; a set one needs one of its values to.
fn any<T>(values: &[T], pred: impl Fn(&T) -> bool) -> bool {
    values.is_empty() || values.iter().any(pred)
}

impl Rule {
    /// Whether the rule sets no condition (it would match every flow).
    pub(crate) fn is_empty(&self) -> bool {
        self.condition_names().is_empty()
    }

    /// Whether the rule sets only conditions on the process (none on endpoints, transport or
    /// direction): the rules that judge process events.
    pub(crate) fn is_process_only(&self) -> bool {
        self.remote_cidr.is_empty()
            && self.local_cidr.is_empty()
            && self.remote_port.is_empty()
            && self.local_port.is_empty()
            && self.transport.is_empty()
            && self.direction.is_empty()
    }

    /// The conditions this rule sets, by key.
    pub(crate) fn condition_names(&self) -> Vec<&'static str> {
        [
            ("remote_cidr", self.remote_cidr.is_empty()),
            ("local_cidr", self.local_cidr.is_empty()),
            ("remote_port", self.remote_port.is_empty()),
            ("local_port", self.local_port.is_empty()),
            ("transport", self.transport.is_empty()),
            ("direction", self.direction.is_empty()),
            ("exe", self.exe.is_empty()),
            ("process_name", self.process_name.is_empty()),
            ("user", self.user.is_empty()),
            ("container_id", self.container_id.is_empty()),
            ("cgroup", self.cgroup.is_empty()),
        ]
        .into_iter()
        .filter_map(|(k, empty)| (!empty).then_some(k))
        .collect()
    }

    pub(crate) fn matches(&self, f: &FlowView) -> bool {
        let ip_in = |nets: &[Network], ip: Option<IpAddr>| {
            any(nets, |n| ip.is_some_and(|ip| n.contains(ip)))
        };
        let proc = f.process;
        let text = |s: Option<&str>, p: &Pattern| s.is_some_and(|s| p.matches(s));
        ip_in(&self.remote_cidr, Some(f.remote.0))
            && ip_in(&self.local_cidr, Some(f.local.0))
            && any(&self.remote_port, |r| r.contains(f.remote.1))
            && any(&self.local_port, |r| r.contains(f.local.1))
            && any(&self.transport, |t| t.as_str() == f.transport.as_str())
            && any(&self.direction, |d| d.as_str() == f.direction.as_str())
            && any(&self.exe, |p| {
                if p.is_path() {
                    text(proc.and_then(|p| p.image_path.as_deref()), p)
                } else {
                    text(proc.and_then(|p| p.exe.as_deref()), p)
                }
            })
            && any(&self.process_name, |p| {
                text(proc.map(|p| p.comm.as_str()), p)
            })
            && any(&self.user, |u| {
                proc.is_some_and(|p| u.matches(p.user.as_deref(), Some(p.uid)))
            })
            && any(&self.container_id, |c| {
                proc.and_then(|p| p.container_id.as_deref())
                    .is_some_and(|id| c.matches(id))
            })
            && any(&self.cgroup, |c| {
                proc.and_then(|p| p.cgroup_path.as_deref())
                    .is_some_and(|path| c.matches(path))
            })
    }
}
