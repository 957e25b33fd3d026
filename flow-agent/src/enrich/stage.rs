//! The enrichment stage: turns the tracker's events into named ones (the process and its user,
//! group, cgroup and container; the remote's name from DNS; the application protocol from the
//! first payload bytes; locality and host), and makes `dns_query` events from DNS answers. It
//! owns what those names come from: the process table, the DNS name cache, first bytes.
//!
//! DNS answers teach only when they answer a query the same socket sent (see `dns_names`):
//! every query leaving a socket (UDP to port 53, the first payload of a TCP connection to port
//! 53) waits for its answer, and an answer that matches none names nothing and makes no event.
use std::{collections::HashMap, net::IpAddr, sync::Arc};

use flow_common::{DnsRecord, PayloadRecord, Task};

use super::{
    app_proto::{self, PayloadKey, Payloads},
    dns_event,
    dns_names::{Asker, DnsNames, Received},
    identity::Identities,
    image_hash::{self, ImageHasher},
    networks::{default_local_networks, is_local, Cidr},
    process_events::ProcessEvents,
};
use crate::{
    capture::{sock_diag::TcpSockInfo, Record},
    clock::{boot_ns_now, BootClock},
    event::{
        AppInfo, DnsEvent, FlowAction, FlowEvent, HostInfo, Locality, ProcessEvent, RemoteName,
        Transport,
    },
    flows::{table::endpoints, FlowTable, Tracked},
    proto::dns::Message,
};

const DNS_PORT: u16 = 53;
/// `dns_query` events held between two takes; more are dropped and counted.
const MAX_PENDING_DNS_EVENTS: usize = 4096;
/// Open flows whose remote name is remembered; beyond it new flows are named at each event.
const MAX_NAMED_FLOWS: usize = 262_144;

#[derive(Clone, Debug)]
pub struct EnrichmentConfig {
    pub host: Arc<HostInfo>,
    /// Remote endpoints in these networks make a flow internal.
    pub local_networks: Vec<Cidr>,
    /// Bytes of each direction's first payload shown in `orig_content`/`resp_content`.
    pub content_bytes: usize,
    /// Answered DNS queries become `dns_query` events.
    pub dns_events: bool,
    /// Execs and exits become `process_start` and `process_end` events.
    pub process_events: bool,
    /// Ancestors named in `ancestors`, the parent first (0: none).
    pub ancestry_depth: usize,
    /// Executables larger than this are not hashed (0: none is).
    pub hash_max_bytes: u64,
    /// TLS flows carry JA4S (FoxIO License 1.1: off unless asked for).
    pub ja4s: bool,
}

impl Default for EnrichmentConfig {
    fn default() -> Self {
        Self {
            host: Arc::default(),
            local_networks: default_local_networks(),
            content_bytes: 0,
            dns_events: false,
            process_events: false,
            ancestry_depth: 0,
            hash_max_bytes: image_hash::DEFAULT_MAX_BYTES,
            ja4s: false,
        }
    }
}

pub struct Enricher {
    cfg: EnrichmentConfig,
    /// Who acted: processes, users, groups, cgroups.
    pub(crate) identities: Identities,
    /// Names of remote addresses, from the answers to the DNS queries the host's sockets sent,
    /// by network namespace; its `counters` tell the answers refused (unsolicited, mismatched,
    /// malformed) and the queries forgotten.
    pub(crate) names: DnsNames,
    /// The first payload bytes of open flows.
    pub(crate) payloads: Payloads,
    /// Application facts of flows without first bytes, by (udp, server port).
    by_port: HashMap<(bool, u16), Option<Arc<AppInfo>>>,
    /// The remote name of each open flow, as it was when the flow opened.
    remote_names: HashMap<String, Option<Arc<RemoteName>>>,
    dns_events: Vec<DnsEvent>,
    /// `dns_query` events dropped because too many were waiting, since start.
    dns_events_dropped: u64,
    /// Of them, those already logged.
    dns_events_dropped_logged: u64,
    /// `process_start` and `process_end` events waiting to be taken.
    process_events: ProcessEvents,
    clock: BootClock,
}

impl Enricher {
    pub fn new(cfg: EnrichmentConfig) -> Self {
        let mut identities = Identities::new(cfg.host.machine_id.clone(), cfg.hash_max_bytes);
        identities.ancestry_depth = cfg.ancestry_depth;
        Self {
            identities,
            cfg,
            names: DnsNames::default(),
            payloads: Payloads::default(),
            by_port: HashMap::new(),
            remote_names: HashMap::new(),
            dns_events: Vec::new(),
            dns_events_dropped: 0,
            dns_events_dropped_logged: 0,
            process_events: ProcessEvents::default(),
            clock: BootClock::now(),
        }
    }

    pub(crate) fn config(&self) -> &EnrichmentConfig {
        &self.cfg
    }

    /// New local networks, content and DNS event settings (a configuration reload). The
    /// host's facts stay.
    pub(crate) fn reconfigure(&mut self, cfg: EnrichmentConfig) {
        let host = self.cfg.host.clone();
        if cfg.hash_max_bytes != self.cfg.hash_max_bytes {
            self.identities.hasher = ImageHasher::new(cfg.hash_max_bytes);
        }
        self.identities.ancestry_depth = cfg.ancestry_depth;
        self.cfg = EnrichmentConfig { host, ..cfg };
        self.payloads.forget_decisions();
    }

    /// Records that name things: processes (exec, fork, exit), DNS answers and first payload
    /// bytes. `flows` finds the flow of the socket an answer came to.
    pub(crate) fn observe(&mut self, record: &Record, flows: &FlowTable) {
        let (ids, clock, host) = (&mut self.identities, &self.clock, &self.cfg.host);
        let events = &mut self.process_events;
        match record {
            Record::Exec(r) => {
                ids.processes.on_exec(r);
                if self.cfg.process_events {
                    events.exec(r, ids, clock, host);
                }
            }
            Record::Fork(r) => ids.processes.on_fork(r),
            Record::Exit(r) => {
                if self.cfg.process_events {
                    events.exit(r, ids, clock, host);
                }
                ids.processes.on_exit(r);
            }
            Record::Creds(r) => {
                ids.processes.on_creds(r);
                // The exec's start waited for these.
                events.flush(ids, clock, host);
            }
            Record::Dns(r) => self.on_dns(r, flows),
            Record::Payload(r) => self.on_payload(r, flows),
            _ => {}
        }
    }

    /// The `process_start` and `process_end` events made since the last take, in record order.
    pub(crate) fn take_process_events(&mut self) -> Vec<ProcessEvent> {
        let (ids, clock, host) = (&mut self.identities, &self.clock, &self.cfg.host);
        self.process_events.flush(ids, clock, host);
        self.process_events.take()
    }

    /// DNS over UDP (remote port 53): a query sent waits for its answer; an answer received
    /// teaches, and makes an event, only when it answers one.
    fn on_dns(&mut self, r: &DnsRecord, flows: &FlowTable) {
        let msg = &r.data[..(r.len as usize).min(r.data.len())];
        let (_, remote) = endpoints(&r.tuple);
        let asker = Asker::udp(r.cookie, remote);
        if r.egress != 0 {
            self.names.sent(asker, msg, r.header.ts_ns);
        } else {
            // The asking socket's flow tells its namespace and process.
            let flow = flows.udp_flow(r.cookie, (r.tuple.remote_port, r.tuple.remote_addr));
            let netns = flow.as_ref().map_or(0, |f| f.netns);
            if let Received::Answer(m) = self.names.received(asker, netns, msg, r.header.ts_ns) {
                if self.cfg.dns_events {
                    let flow = flow.map(|f| (f.ids.clone(), *f.owner));
                    self.push_dns_event(&m, flow, &r.tuple, Transport::Udp, r.header.ts_ns);
                }
            }
        }
        self.payloads
            .observe(PayloadKey::udp(r.cookie, remote), r.egress != 0, msg);
    }

    /// DNS over TCP (remote port 53): the first payload each way is seen, the query sent and
    /// its answer, each after its two-byte length.
    fn on_payload(&mut self, r: &PayloadRecord, flows: &FlowTable) {
        let bytes = app_proto::record_bytes(r);
        if r.remote_port == DNS_PORT {
            if let Some(msg) = bytes.get(2..) {
                let asker = Asker::tcp(r.cookie, r.remote_port);
                if r.egress != 0 {
                    self.names.sent(asker, msg, r.header.ts_ns);
                } else {
                    let flow = flows.tcp_flow(r.cookie);
                    let netns = flow.as_ref().map_or(0, |f| f.netns);
                    let ts = r.header.ts_ns;
                    if let Received::Answer(m) = self.names.received(asker, netns, msg, ts) {
                        // An event only when the connection's flow is known: its endpoints
                        // come from it.
                        if let (true, Some(f)) = (self.cfg.dns_events, flow) {
                            let flow = Some((f.ids.clone(), *f.owner));
                            let tuple = *f.tuple;
                            self.push_dns_event(&m, flow, &tuple, Transport::Tcp, ts);
                        }
                    }
                }
            }
        }
        self.payloads
            .observe(PayloadKey::tcp(r.cookie), r.egress != 0, bytes);
    }

    /// A `dns_query` event of an answer, with the flow and process of the socket that asked
    /// (none when the agent does not track that flow).
    fn push_dns_event(
        &mut self,
        m: &Message,
        flow: Option<(Arc<crate::event::FlowIds>, Task)>,
        tuple: &flow_common::Tuple,
        transport: Transport,
        ts_ns: u64,
    ) {
        let Some(mut ev) = dns_event::from_message(m) else {
            return;
        };
        // Bounded: the agent takes them after every batch of records.
        if self.dns_events.len() >= MAX_PENDING_DNS_EVENTS {
            self.dns_events_dropped += 1;
            return;
        }
        let (local, remote) = endpoints(tuple);
        ev.time = self.clock.wall(ts_ns);
        ev.transport = transport;
        ev.client = local;
        ev.resolver = remote;
        ev.locality = self.locality(remote.0);
        ev.host = self.cfg.host.clone();
        if let Some((ids, owner)) = flow {
            ev.flow = Some(ids);
            ev.process = self.identities.of(&owner, &self.clock);
        }
        self.dns_events.push(ev);
    }

    /// The `dns_query` events made since the last take; a drop since then is logged.
    pub(crate) fn take_dns_events(&mut self) -> Vec<DnsEvent> {
        let new = self.dns_events_dropped - self.dns_events_dropped_logged;
        if new > 0 {
            log::warn!(
                "{new} dns_query events dropped: too many answers between two writes ({} since start)",
                self.dns_events_dropped
            );
            self.dns_events_dropped_logged = self.dns_events_dropped;
        }
        std::mem::take(&mut self.dns_events)
    }

    /// `dns_query` events dropped since start because too many were waiting.
    pub(crate) fn dns_events_dropped(&self) -> u64 {
        self.dns_events_dropped
    }

    /// First payload records not kept since start because the table of first bytes was full.
    pub(crate) fn payloads_dropped(&self) -> u64 {
        self.payloads.dropped
    }

    /// DNS answers refused (malformed, unsolicited, mismatched) and queries forgotten, since
    /// start.
    pub(crate) fn dns_counters(&self) -> super::dns_names::DnsCounters {
        self.names.counters
    }

    /// Names the tracker's event: process, remote name, application, locality, host.
    pub fn enrich(&mut self, t: Tracked) -> FlowEvent {
        let Tracked {
            mut event,
            owner,
            cookie,
            open_ns,
        } = t;
        // A start waiting for its credentials is built first: it precedes this flow.
        let (ids, clock, host) = (&mut self.identities, &self.clock, &self.cfg.host);
        self.process_events.flush(ids, clock, host);
        event.host = self.cfg.host.clone();
        event.locality = self.locality(event.remote.0);
        event.local_locality = self.locality(event.local.0);
        if owner.pid != 0 {
            event.process = self.identities.of(&owner, &self.clock);
        }
        event.remote_name = self.remote_name(&event, open_ns);
        let key = match event.transport {
            Transport::Tcp => PayloadKey::tcp(cookie),
            Transport::Udp => PayloadKey::udp(cookie, event.remote),
        };
        event.app = self.app_info(&key, &event);
        if event.action == FlowAction::End {
            self.payloads.remove(&key);
            self.remote_names.remove(&event.ids.flow_id);
        }
        event
    }

    /// The name the remote address was resolved from when the flow opened, not when the
    /// agent got to the record, in the flow's network namespace; remembered for the flow's
    /// later events.
    fn remote_name(&mut self, ev: &FlowEvent, open_ns: u64) -> Option<Arc<RemoteName>> {
        if let Some(name) = self.remote_names.get(&ev.ids.flow_id) {
            return name.clone();
        }
        let at_ns = if open_ns > 0 { open_ns } else { boot_ns_now() };
        let name = self
            .names
            .lookup(ev.netns.unwrap_or(0), ev.remote.0, at_ns)
            .map(|r| {
                Arc::new(RemoteName {
                    fqdn: r.name.clone(),
                    chain: r.chain.clone(),
                })
            });
        if ev.action != FlowAction::End && self.remote_names.len() < MAX_NAMED_FLOWS {
            self.remote_names
                .insert(ev.ids.flow_id.clone(), name.clone());
        }
        name
    }

    /// The flow's application facts: from its first bytes when it has some (decided once),
    /// else from its server port.
    fn app_info(&mut self, key: &PayloadKey, ev: &FlowEvent) -> Option<Arc<AppInfo>> {
        let udp = ev.transport == Transport::Udp;
        let (local_orig, dest_port) = (ev.local_orig(), ev.dest().1);
        let content = self.cfg.content_bytes;
        let ja4s = self.cfg.ja4s;
        let by_port = &mut self.by_port;
        self.payloads.app(key, |first| match first {
            Some(first) => app_proto::app_info(udp, local_orig, dest_port, Some(first), content)
                .map(|app| Arc::new(app_proto::with_ja4s(app, ja4s))),
            None => by_port
                .entry((udp, dest_port))
                .or_insert_with(|| {
                    app_proto::app_info(udp, local_orig, dest_port, None, 0).map(Arc::new)
                })
                .clone(),
        })
    }

    fn locality(&self, remote: IpAddr) -> Locality {
        if is_local(&self.cfg.local_networks, remote) {
            Locality::Internal
        } else {
            Locality::External
        }
    }

    /// Periodic work: expired names, unanswered queries and exited processes go; first bytes
    /// of flows whose end never came (or that were never opened here) go when they outnumber
    /// the open flows.
    pub(crate) fn tick(&mut self, now_ns: u64, flows: &FlowTable) {
        self.names.expire(now_ns);
        self.identities.processes.expire();
        if self.payloads.len() > flows.open_flows() * 2 + 1024 {
            let open: std::collections::HashSet<PayloadKey> = flows
                .open_sockets()
                .map(|(transport, cookie, remote)| match transport {
                    Transport::Tcp => PayloadKey::tcp(cookie),
                    Transport::Udp => PayloadKey::udp(cookie, remote),
                })
                .collect();
            self.payloads.retain(|k| open.contains(k));
        }
        if self.remote_names.len() > flows.open_flows() * 2 + 1024 {
            self.remote_names.clear();
        }
    }

    /// The process owning a connection that was open before the agent started, from the
    /// socket's inode (`owners`: inode to pid, from /proc/*/fd).
    pub(crate) fn owner_of_socket(
        &mut self,
        owners: &HashMap<u64, u32>,
        s: &TcpSockInfo,
        netns: u32,
    ) -> Task {
        let mut owner = Task {
            uid: s.uid,
            netns,
            ..Task::default()
        };
        let Some(p) = owners
            .get(&s.inode)
            .and_then(|pid| self.identities.processes.lookup(*pid, 0))
        else {
            return owner;
        };
        owner.pid = p.pid;
        owner.tid = p.pid;
        owner.ppid = p.ppid;
        owner.start_ns = p.start_ns;
        let comm = std::fs::read(format!("/proc/{}/comm", p.pid)).unwrap_or_default();
        let n = comm.len().min(owner.comm.len());
        owner.comm[..n].copy_from_slice(&comm[..n]);
        if owner.comm[..n].last() == Some(&b'\n') {
            owner.comm[n - 1] = 0;
        }
        owner.gid = proc_real_gid(p.pid).unwrap_or(0);
        owner.cgroup_id = self.identities.cgroups.id_of_process(p.pid).unwrap_or(0);
        owner
    }
}

/// The real group id from /proc/PID/status ("Gid:\treal\teffective\tsaved\tfs").
fn proc_real_gid(pid: u32) -> Option<u32> {
    let status = std::fs::read(format!("/proc/{pid}/status")).ok()?;
    super::procfs::status_real_gid(&status)
}

#[cfg(test)]
#[path = "stage_tests.rs"]
mod tests;
