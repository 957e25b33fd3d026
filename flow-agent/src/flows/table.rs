//! The flow table: one entry per open flow (a TCP socket, or a UDP socket and remote endpoint).
//! Records from the kernel open, re-attribute and close entries; a periodic tick emits updates,
//! ends idle UDP flows and releases passive flows nobody accepted.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use flow_common::{
    OwnerKind, Role, Task, TcpDetail, TcpRecord, Tuple, UdpCounters, UdpFlowKey, AF_INET,
    IPPROTO_TCP,
};

use super::{
    app_proto::{self, PayloadKey, Payloads},
    community_id::community_id_v1,
    dns_event,
    state,
    tcp_detail::{self, TcpDetailSource},
};
use crate::{
    capture::Record,
    enrich::{
        clock::BootClock,
        dns_names::DnsNames,
        host::HostInfo,
        identity::Identities,
        networks::{default_local_networks, is_local, Cidr},
    },
    event::{
        AppInfo, Attribution, Counters, Direction, DnsEvent, FlowAction, FlowEvent, FlowIds,
        IntervalCounters, Locality, RemoteName, Transport,
    },
    proto::dns,
};

/// Reads and forgets the kernel's per-flow UDP counters.
pub trait UdpCounterSource {
    fn read(&self, key: &UdpFlowKey) -> Option<UdpCounters>;
    fn remove(&mut self, key: &UdpFlowKey);
}

#[derive(Clone, Debug)]
pub struct FlowTableConfig {
    /// Open flows report an update this often.
    pub update_interval: Duration,
    /// A UDP flow with no packet for this long ends (reason idle).
    pub udp_idle_timeout: Duration,
    /// A passive flow waits this long for accept() before it is reported with the listener.
    pub accept_wait: Duration,
    pub host: Arc<HostInfo>,
    /// Remote endpoints in these networks make a flow internal.
    pub local_networks: Vec<Cidr>,
    /// Seed of the Community ID hash (0 unless every sensor of a site agrees on another).
    pub community_id_seed: u16,
    /// Bytes of each direction's first payload shown in `orig_content`/`resp_content`.
    pub content_bytes: usize,
    /// Answered DNS queries become `dns_query` events ([`FlowTable::dns_events`]).
    pub dns_events: bool,
}

impl Default for FlowTableConfig {
    fn default() -> Self {
        Self {
            update_interval: Duration::from_secs(60),
            udp_idle_timeout: Duration::from_secs(60),
            accept_wait: Duration::from_secs(1),
            host: Arc::default(),
            local_networks: default_local_networks(),
            community_id_seed: 0,
            content_bytes: 0,
            dns_events: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum FlowKey {
    /// A TCP socket the kernel reported open (its kernel address).
    Tcp(u64),
    /// A TCP connection found open at start-up (numbered): its socket address is not known.
    TcpPartial(u64),
    Udp(UdpFlowKey),
}

/// A TCP connection's identity as both the kernel records and sock_diag see it.
pub(super) type TcpIdentity = (u32, SocketAddr, SocketAddr);

/// Totals seen from this host: received (in) and sent (out).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Totals {
    pub(super) in_bytes: u64,
    pub(super) out_bytes: u64,
    pub(super) in_pkts: u64,
    pub(super) out_pkts: u64,
    pub(super) in_ip_bytes: Option<u64>,
    pub(super) out_ip_bytes: Option<u64>,
}

pub(super) struct Flow {
    pub(super) ids: Arc<FlowIds>,
    pub(super) tuple: Tuple,
    pub(super) role: Role,
    pub(super) owner: Task,
    pub(super) owner_kind: OwnerKind,
    pub(super) open_ns: u64,
    pub(super) netns: u32,
    pub(super) start_observed: bool,
    pub(super) start_emitted: bool,
    pub(super) reported: Totals,
    pub(super) last_report_ns: u64,
    /// TCP: totals of the last sock_diag snapshot that found the socket.
    pub(super) live: Option<Totals>,
    /// The name the remote address was resolved from when the flow opened.
    pub(super) remote_name: Option<Arc<RemoteName>>,
    /// The socket's cookie, once a record or snapshot gave it (0 before).
    pub(super) cookie: u64,
    /// TCP: complete per-packet counters as of the last snapshot that found the socket.
    pub(super) detail: Option<TcpDetail>,
}

/// Kernel table entries pushed out while their flows were open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evicted {
    pub tcp: u64,
    pub udp: u64,
}

pub struct FlowTable {
    pub(super) cfg: FlowTableConfig,
    pub(super) flows: HashMap<FlowKey, Flow>,
    /// Flows found open at start-up, by identity, until the kernel reports their close.
    pub(super) partial: HashMap<TcpIdentity, FlowKey>,
    udp_by_cookie: HashMap<u64, Vec<UdpFlowKey>>,
    pub(super) next_id: u64,
    /// TCP flows whose close record never came (counted, reported as a loss).
    pub missed_closes: u64,
    /// Sockets the kernel's LRU tables pushed out while their flows were open, as noticed
    /// here: a TCP close or handshake the socket table no longer knew, a UDP flow whose
    /// counters were gone. Reported with the kernel's `tcp_table_full`/`udp_table_full`.
    pub evicted: Evicted,
    id_prefix: String,
    /// Who acted: processes, users, groups, cgroups.
    pub identities: Identities,
    /// Names of remote addresses, from the DNS answers the host received.
    pub names: DnsNames,
    /// The first payload bytes of open flows, for their application protocol.
    pub payloads: Payloads,
    /// `dns_query` events dropped because [`MAX_PENDING_DNS_EVENTS`] were waiting.
    pub dns_events_dropped: u64,
    /// `dns_query` events not yet written (`dns_events` on); the agent takes them.
    pub dns_events: Vec<DnsEvent>,
    /// Application facts of flows without first bytes, by (udp, server port).
    by_port: HashMap<(bool, u16), Option<Arc<AppInfo>>>,
    pub(super) clock: BootClock,
    /// The kernel's per-packet TCP counters; without it TCP events carry none of their fields.
    pub(super) tcp_detail: Option<Box<dyn TcpDetailSource>>,
}

impl FlowTable {
    pub fn new(cfg: FlowTableConfig, id_prefix: String) -> Self {
        Self {
            identities: Identities::new(cfg.host.machine_id.clone()),
            cfg,
            flows: HashMap::new(),
            partial: HashMap::new(),
            missed_closes: 0,
            evicted: Evicted::default(),
            udp_by_cookie: HashMap::new(),
            next_id: 0,
            id_prefix,
            names: DnsNames::default(),
            payloads: Payloads::default(),
            dns_events: Vec::new(),
            dns_events_dropped: 0,
            by_port: HashMap::new(),
            clock: BootClock::now(),
            tcp_detail: None,
        }
    }

    /// Where TCP per-packet counters are read (TCP detail on).
    pub fn set_tcp_detail(&mut self, source: Box<dyn TcpDetailSource>) {
        self.tcp_detail = Some(source);
    }

    /// Complete per-packet counters of an open TCP socket.
    pub(super) fn read_tcp_detail(&self, cookie: u64) -> Option<TcpDetail> {
        let source = self.tcp_detail.as_ref().filter(|_| cookie != 0)?;
        source.read(cookie).filter(tcp_detail::complete)
    }

    pub fn open_flows(&self) -> usize {
        self.flows.len()
    }

    pub fn config(&self) -> &FlowTableConfig {
        &self.cfg
    }

    /// The `dns_query` events collected since the last take; a drop since then is logged.
    pub fn take_dns_events(&mut self) -> Vec<DnsEvent> {
        if self.dns_events_dropped > 0 {
            log::warn!(
                "{} dns_query events dropped: too many answers between two writes",
                self.dns_events_dropped
            );
            self.dns_events_dropped = 0;
        }
        std::mem::take(&mut self.dns_events)
    }

    /// New timings, local networks and Community ID seed (a configuration reload). The host's
    /// facts stay. Open flows keep their ids; their later events use the new settings.
    pub fn reconfigure(&mut self, cfg: FlowTableConfig) {
        let host = self.cfg.host.clone();
        self.cfg = FlowTableConfig { host, ..cfg };
        self.payloads.forget_decisions();
    }

    /// A flow opened at `open_ns` (CLOCK_BOOTTIME, 0 if unknown): its remote's name is the
    /// one valid when it opened, not when the agent got to the record.
    pub(super) fn new_flow(
        &mut self,
        tuple: Tuple,
        role: Role,
        owner: Task,
        kind: OwnerKind,
        open_ns: u64,
    ) -> Flow {
        self.next_id += 1;
        let (_, remote) = endpoints(&tuple);
        let at_ns = if open_ns > 0 {
            open_ns
        } else {
            crate::enrich::clock::boot_ns_now()
        };
        let remote_name = self.names.lookup(remote.0, at_ns).map(|r| {
            Arc::new(RemoteName {
                fqdn: r.name.clone(),
                chain: r.chain.clone(),
            })
        });
        Flow {
            ids: self.flow_ids(&tuple, role),
            remote_name,
            tuple,
            role,
            owner,
            owner_kind: kind,
            open_ns,
            netns: 0,
            start_observed: role != Role::Unknown,
            start_emitted: false,
            reported: Totals::default(),
            last_report_ns: 0,
            live: None,
            cookie: 0,
            detail: None,
        }
    }

    pub fn handle(
        &mut self,
        rec: Record,
        udp: &mut impl UdpCounterSource,
        out: &mut Vec<FlowEvent>,
    ) {
        match rec {
            Record::Exec(r) => self.identities.processes.on_exec(&r),
            Record::Fork(r) => self.identities.processes.on_fork(&r),
            Record::Exit(r) => self.identities.processes.on_exit(&r),
            Record::TcpOpen(r) => self.on_tcp_open(&r, out),
            Record::TcpAccept(r) => {
                if let Some(f) = self.flows.get_mut(&FlowKey::Tcp(r.sock)) {
                    f.owner = r.owner;
                    f.owner_kind = OwnerKind::Acceptor;
                    if !f.start_emitted {
                        self.emit_start(FlowKey::Tcp(r.sock), out);
                    }
                }
            }
            Record::TcpClose(r) => self.on_tcp_close(&r, out),
            Record::UdpOpen(r) => {
                let key = FlowKey::Udp(r.key);
                let role = if r.outbound_first != 0 {
                    Role::Active
                } else {
                    Role::Passive
                };
                let mut f =
                    self.new_flow(r.tuple, role, r.owner, OwnerKind::Connector, r.header.ts_ns);
                f.last_report_ns = r.header.ts_ns;
                f.netns = r.netns;
                f.cookie = r.key.cookie;
                self.flows.insert(key, f);
                self.udp_by_cookie
                    .entry(r.key.cookie)
                    .or_default()
                    .push(r.key);
                self.emit_start(key, out);
            }
            Record::UdpRelease(r) => {
                for key in self.udp_by_cookie.remove(&r.cookie).unwrap_or_default() {
                    self.end_udp(key, "socket_closed", udp, out);
                }
            }
            Record::Dns(r) => {
                let len = (r.len as usize).min(r.data.len());
                if r.egress == 0 {
                    self.names.observe(&r.data[..len], r.header.ts_ns);
                    if self.cfg.dns_events {
                        self.on_udp_dns_answer(&r, &r.data[..len]);
                    }
                }
                let key = PayloadKey {
                    cookie: r.cookie,
                    remote_port: r.tuple.remote_port,
                    remote_addr: r.tuple.remote_addr,
                };
                self.payloads.observe(key, r.egress != 0, &r.data[..len]);
            }
            Record::Payload(r) => {
                let bytes = app_proto::record_bytes(&r);
                if r.egress == 0 && r.remote_port == DNS_PORT {
                    // DNS over TCP: the answer follows its two-byte length.
                    if let Some(msg) = bytes.get(2..) {
                        self.names.observe(msg, r.header.ts_ns);
                        if self.cfg.dns_events {
                            self.on_tcp_dns_answer(r.cookie, msg, r.header.ts_ns);
                        }
                    }
                }
                self.payloads
                    .observe(PayloadKey::tcp(r.cookie), r.egress != 0, bytes);
            }
        }
    }

    /// A DNS answer received on a UDP socket: a `dns_query` event with the process of the
    /// socket's flow to the resolver (none when the agent does not track that flow).
    fn on_udp_dns_answer(&mut self, r: &flow_common::DnsRecord, msg: &[u8]) {
        let Some(ev) = dns::parse(msg)
            .ok()
            .and_then(|m| dns_event::from_message(&m))
        else {
            return;
        };
        let key = self.udp_by_cookie.get(&r.cookie).and_then(|keys| {
            keys.iter().find(|k| {
                k.remote_port == r.tuple.remote_port && k.remote_addr == r.tuple.remote_addr
            })
        });
        let key = key.map(|k| FlowKey::Udp(*k));
        self.push_dns_event(ev, key, &r.tuple, Transport::Udp, r.header.ts_ns);
    }

    /// A DNS answer, the first payload received on a TCP connection to port 53: an event
    /// only when the connection's flow is known (its endpoints come from it).
    fn on_tcp_dns_answer(&mut self, cookie: u64, msg: &[u8], ts_ns: u64) {
        if cookie == 0 {
            return;
        }
        let Some(ev) = dns::parse(msg)
            .ok()
            .and_then(|m| dns_event::from_message(&m))
        else {
            return;
        };
        let found = self
            .flows
            .iter()
            .find(|(k, f)| matches!(k, FlowKey::Tcp(_)) && f.cookie == cookie)
            .map(|(k, f)| (*k, f.tuple));
        if let Some((key, tuple)) = found {
            self.push_dns_event(ev, Some(key), &tuple, Transport::Tcp, ts_ns);
        }
    }

    fn push_dns_event(
        &mut self,
        mut ev: DnsEvent,
        key: Option<FlowKey>,
        tuple: &Tuple,
        transport: Transport,
        ts_ns: u64,
    ) {
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
        if let Some(key) = key {
            if let Some(f) = self.flows.remove(&key) {
                ev.flow = Some(f.ids.clone());
                ev.process = self.identities.of(&f.owner, &self.clock);
                self.flows.insert(key, f);
            }
        }
        self.dns_events.push(ev);
    }

    fn on_tcp_open(&mut self, r: &TcpRecord, out: &mut Vec<FlowEvent>) {
        let key = FlowKey::Tcp(r.sock);
        let role = role_of(r.role);
        if role == Role::Unknown && r.old_state == flow_common::tcp_state::SYN_SENT {
            // A handshake the socket table no longer knew: its connect() entry was pushed
            // out (or, rarely, the connect began before the agent started).
            self.evicted.tcp += 1;
        }
        let mut f = self.new_flow(
            r.tuple,
            role,
            r.owner,
            owner_kind_of(r.owner_kind),
            r.open_ns,
        );
        // Opened while the start-up scan ran: the scan's flow is this one.
        if let Some(pkey) = self.partial.remove(&identity(r.netns, &r.tuple)) {
            if let Some(p) = self.flows.remove(&pkey) {
                f.ids = p.ids;
                f.start_emitted = p.start_emitted;
            }
        }
        f.last_report_ns = r.header.ts_ns;
        f.netns = r.netns;
        f.cookie = r.cookie;
        if let Some(stale) = self.flows.remove(&key) {
            // The socket's address was reused: its close record was lost (the kernel skipped
            // the program). End the old flow honestly rather than overwrite it.
            self.missed_closes += 1;
            self.end_without_close(stale, "close_missed", r.header.ts_ns, out);
        }
        self.flows.insert(key, f);
        // A passive flow waits for accept() to name its process (or for the tick to give up).
        if role != Role::Passive {
            self.emit_start(key, out);
        }
    }

    fn on_tcp_close(&mut self, r: &TcpRecord, out: &mut Vec<FlowEvent>) {
        log::debug!(
            "tcp close sock={:x} old={} err={} info={} states={:b} counters={:?}",
            r.sock,
            r.old_state,
            r.sk_err,
            r.info,
            r.states_seen,
            r.counters
        );
        let mut key = FlowKey::Tcp(r.sock);
        if !self.flows.contains_key(&key) {
            if let Some(pkey) = self.partial.remove(&identity(r.netns, &r.tuple)) {
                key = pkey;
            }
        }
        if !self.flows.contains_key(&key) {
            // Opened before the agent watched, or failed before ESTABLISHED (refused, timeout).
            let mut f = self.new_flow(
                r.tuple,
                role_of(r.role),
                r.owner,
                owner_kind_of(r.owner_kind),
                r.open_ns,
            );
            f.netns = r.netns;
            self.flows.insert(key, f);
        }
        if !self.flows[&key].start_emitted {
            self.emit_start(key, out);
        }
        let Some(mut f) = self.flows.remove(&key) else {
            return;
        };
        // A passive socket's cookie is assigned after its open record (at its first packet).
        if r.cookie != 0 {
            f.cookie = r.cookie;
        }
        if r.role == Role::Unknown as u8 && f.start_observed {
            // Opened under the agent's eyes, yet the kernel's socket table forgot it.
            self.evicted.tcp += 1;
        }
        // A flow found at start-up knows its (guessed) direction; the kernel record does not.
        let mut directed = *r;
        if directed.role == Role::Unknown as u8 {
            directed.role = f.role as u8;
        }
        let (in_bytes, out_bytes) = state::payload(&directed);
        let (in_pkts, out_pkts) = state::packets(&directed);
        let mut totals = Totals {
            in_bytes,
            out_bytes,
            in_pkts,
            out_pkts,
            in_ip_bytes: None,
            out_ip_bytes: None,
        };
        let detail = self.close_detail(r, &f);
        if let Some(d) = &detail {
            totals = with_detail(totals, d);
        }
        let mut ev = self.event(&f, FlowAction::End, Some(totals), r.header.ts_ns);
        ev.end_time = Some(self.clock.wall(r.header.ts_ns));
        ev.end_reason = Some(state::end_cause(r));
        ev.conn_state = Some(state::conn_state(r));
        ev.history = Some(match &detail {
            Some(d) => tcp_detail::history(d, f.role != Role::Passive),
            None => state::history(&directed, in_bytes, out_bytes),
        });
        if let Some(d) = &detail {
            tcp_detail::fill_event(&mut ev, d, &self.clock);
        }
        if r.counters.srtt_us > 0 {
            ev.rtt_us = Some(r.counters.srtt_us);
        }
        ev.retransmits = Some(r.counters.total_retrans);
        out.push(ev);
        self.payloads.remove(&PayloadKey::tcp(r.cookie));
    }

    /// The per-packet counters a close record carries, with those of packets sent after the
    /// close (an abort's RST), when they cover the whole connection.
    fn close_detail(&mut self, r: &TcpRecord, f: &Flow) -> Option<TcpDetail> {
        let source = self.tcp_detail.as_mut()?;
        let mut d = r.detail;
        if !f.start_observed || !tcp_detail::usable(&d) {
            return None;
        }
        if state::may_send_after_close(r) {
            if let Some(late) = source.take_late(r.cookie) {
                tcp_detail::merge_late(&mut d, &late);
            }
        }
        Some(d)
    }

    pub(super) fn emit_start(&mut self, key: FlowKey, out: &mut Vec<FlowEvent>) {
        let Some(mut f) = self.flows.remove(&key) else {
            return;
        };
        let ts = if f.open_ns > 0 {
            f.open_ns
        } else {
            crate::enrich::clock::boot_ns_now()
        };
        out.push(self.event(&f, FlowAction::Start, None, ts));
        f.start_emitted = true;
        self.flows.insert(key, f);
    }

    fn end_udp(
        &mut self,
        key: UdpFlowKey,
        reason: &'static str,
        udp: &mut impl UdpCounterSource,
        out: &mut Vec<FlowEvent>,
    ) {
        let Some(f) = self.flows.remove(&FlowKey::Udp(key)) else {
            return;
        };
        let counters = udp.read(&key);
        udp.remove(&key);
        let now = crate::enrich::clock::boot_ns_now();
        let totals = counters.map(|c| udp_totals(&c));
        let mut ev = self.event(&f, FlowAction::End, totals, now);
        let end_ns = counters
            .map(|c| c.last_ns)
            .filter(|n| *n > 0)
            .unwrap_or(now);
        ev.end_time = Some(self.clock.wall(end_ns));
        ev.duration_ns = Some(end_ns.saturating_sub(f.open_ns));
        ev.end_reason = Some(reason);
        out.push(ev);
        self.payloads.remove(&payload_key(&f));
    }

    /// Periodic work: passive flows nobody accepted, idle UDP flows, interval updates.
    pub fn tick(&mut self, now_ns: u64, udp: &mut impl UdpCounterSource, out: &mut Vec<FlowEvent>) {
        self.names.expire(now_ns);
        let wait = self.cfg.accept_wait.as_nanos() as u64;
        let pending: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, f)| !f.start_emitted && now_ns.saturating_sub(f.open_ns) >= wait)
            .map(|(k, _)| *k)
            .collect();
        for key in pending {
            self.emit_start(key, out);
        }
        let idle = self.cfg.udp_idle_timeout.as_nanos() as u64;
        let interval = self.cfg.update_interval.as_nanos() as u64;
        let keys: Vec<FlowKey> = self.flows.keys().copied().collect();
        for key in keys {
            let FlowKey::Udp(ukey) = key else {
                continue;
            };
            let Some(c) = udp.read(&ukey) else {
                // Pushed out of the kernel's LRU table: its counters are gone.
                self.evicted.udp += 1;
                self.end_udp(ukey, "evicted", udp, out);
                continue;
            };
            if now_ns.saturating_sub(c.last_ns) >= idle {
                if let Some(list) = self.udp_by_cookie.get_mut(&ukey.cookie) {
                    list.retain(|k| *k != ukey);
                }
                self.end_udp(ukey, "idle", udp, out);
                continue;
            }
            if now_ns.saturating_sub(self.flows[&key].last_report_ns) >= interval {
                let Some(mut f) = self.flows.remove(&key) else {
                    continue;
                };
                out.push(self.event(&f, FlowAction::Update, Some(udp_totals(&c)), now_ns));
                f.reported = udp_totals(&c);
                f.last_report_ns = now_ns;
                self.flows.insert(key, f);
            }
        }
        self.identities.processes.expire();
        if self.payloads.len() > self.flows.len() * 2 + 1024 {
            // Bytes of flows whose end never came (or that were never opened here).
            let open: std::collections::HashSet<PayloadKey> =
                self.flows.values().map(payload_key).collect();
            self.payloads.retain(|k| open.contains(k));
        }
    }

    /// Every open flow ends with reason agent_shutdown: nothing seen is lost.
    pub fn shutdown(&mut self, udp: &mut impl UdpCounterSource, out: &mut Vec<FlowEvent>) {
        let now = crate::enrich::clock::boot_ns_now();
        let keys: Vec<FlowKey> = self.flows.keys().copied().collect();
        for key in keys {
            if !self.flows[&key].start_emitted {
                self.emit_start(key, out);
            }
            match key {
                FlowKey::Udp(k) => self.end_udp(k, "agent_shutdown", udp, out),
                FlowKey::Tcp(_) | FlowKey::TcpPartial(_) => {
                    if let Some(f) = self.flows.remove(&key) {
                        self.end_without_close(f, "agent_shutdown", now, out);
                    }
                }
            }
        }
    }

    /// Ends a TCP flow whose close the kernel did not report: totals come from the last
    /// sock_diag snapshot, when there was one.
    fn end_without_close(
        &mut self,
        f: Flow,
        reason: &'static str,
        now: u64,
        out: &mut Vec<FlowEvent>,
    ) {
        if !f.start_emitted {
            out.push(self.event(
                &f,
                FlowAction::Start,
                None,
                if f.open_ns > 0 { f.open_ns } else { now },
            ));
        }
        let totals = match (f.live, &f.detail) {
            (Some(t), Some(d)) => Some(with_detail(t, d)),
            (t, _) => t,
        };
        let mut ev = self.event(&f, FlowAction::End, totals, now);
        if let Some(d) = &f.detail {
            tcp_detail::fill_event(&mut ev, d, &self.clock);
        }
        ev.end_reason = Some(reason);
        ev.end_time = Some(self.clock.wall(now));
        out.push(ev);
        self.payloads.remove(&payload_key(&f));
    }

    pub(super) fn event(
        &mut self,
        f: &Flow,
        action: FlowAction,
        totals: Option<Totals>,
        ts_ns: u64,
    ) -> FlowEvent {
        let (local, remote) = endpoints(&f.tuple);
        let direction = if f.role != Role::Passive {
            Direction::Outbound
        } else {
            Direction::Inbound
        };
        let mut ev = FlowEvent::new(
            action,
            self.clock.wall(ts_ns),
            transport_of(&f.tuple),
            local,
            remote,
            direction,
            self.cfg.host.clone(),
        );
        ev.ids = f.ids.clone();
        ev.locality = self.locality(remote.0);
        ev.start_observed = f.start_observed;
        ev.remote_name = f.remote_name.clone();
        if f.open_ns > 0 {
            ev.start_time = Some(self.clock.wall(f.open_ns));
            ev.duration_ns = Some(ts_ns.saturating_sub(f.open_ns));
        }
        ev.netns = (f.netns != 0).then_some(f.netns);
        ev.counters = totals.map(|t| counters(t, f.reported));
        self.attribute(f, &mut ev);
        ev.app = self.app_info(f, direction == Direction::Outbound, ev.dest().1);
        ev
    }

    fn attribute(&mut self, f: &Flow, ev: &mut FlowEvent) {
        let t = &f.owner;
        if t.pid == 0 {
            return;
        }
        ev.attribution = Some(match f.owner_kind {
            // UDP flows name the last process that used the socket in its own syscall.
            _ if f.tuple.protocol != IPPROTO_TCP => Attribution::SocketUser,
            OwnerKind::Connector => Attribution::Connector,
            OwnerKind::Listener => Attribution::Listener,
            OwnerKind::Acceptor => Attribution::Acceptor,
            OwnerKind::None => Attribution::Unknown,
        });
        ev.tid = Some(t.tid);
        ev.process = self.identities.of(t, &self.clock);
    }

    /// The flow's application facts: from its first bytes when it has some (decided once),
    /// else from its server port.
    fn app_info(&mut self, f: &Flow, local_orig: bool, dest_port: u16) -> Option<Arc<AppInfo>> {
        let udp = f.tuple.protocol != IPPROTO_TCP;
        let content = self.cfg.content_bytes;
        let by_port = &mut self.by_port;
        self.payloads.app(&payload_key(f), |first| match first {
            Some(first) => {
                app_proto::app_info(udp, local_orig, dest_port, Some(first), content).map(Arc::new)
            }
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

    /// A new flow's id and Community ID (computed once: the hash is of the 5-tuple).
    fn flow_ids(&self, tuple: &Tuple, role: Role) -> Arc<FlowIds> {
        let (local, remote) = endpoints(tuple);
        let (src, dest) = if role != Role::Passive {
            (local, remote)
        } else {
            (remote, local)
        };
        Arc::new(FlowIds {
            flow_id: format!("{}-{:x}", self.id_prefix, self.next_id),
            community_id: Some(community_id_v1(
                self.cfg.community_id_seed,
                tuple.protocol,
                src.0,
                src.1,
                dest.0,
                dest.1,
            )),
        })
    }
}

fn transport_of(t: &Tuple) -> Transport {
    if t.protocol == IPPROTO_TCP {
        Transport::Tcp
    } else {
        Transport::Udp
    }
}

/// An event's counters: the totals and what they added since the last report.
fn counters(t: Totals, r: Totals) -> Counters {
    Counters {
        in_bytes: t.in_bytes,
        out_bytes: t.out_bytes,
        in_pkts: t.in_pkts,
        out_pkts: t.out_pkts,
        in_ip_bytes: t.in_ip_bytes,
        out_ip_bytes: t.out_ip_bytes,
        interval: IntervalCounters {
            in_bytes: t.in_bytes.saturating_sub(r.in_bytes),
            out_bytes: t.out_bytes.saturating_sub(r.out_bytes),
            in_pkts: t.in_pkts.saturating_sub(r.in_pkts),
            out_pkts: t.out_pkts.saturating_sub(r.out_pkts),
        },
    }
}

const DNS_PORT: u16 = 53;
/// `dns_query` events held between two takes; more are dropped and counted.
const MAX_PENDING_DNS_EVENTS: usize = 4096;

/// Where a flow's first payload bytes are kept.
fn payload_key(f: &Flow) -> PayloadKey {
    if f.tuple.protocol == IPPROTO_TCP {
        PayloadKey::tcp(f.cookie)
    } else {
        PayloadKey {
            cookie: f.cookie,
            remote_port: f.tuple.remote_port,
            remote_addr: f.tuple.remote_addr,
        }
    }
}

fn role_of(v: u8) -> Role {
    match v {
        1 => Role::Active,
        2 => Role::Passive,
        _ => Role::Unknown,
    }
}

fn owner_kind_of(v: u8) -> OwnerKind {
    match v {
        1 => OwnerKind::Connector,
        2 => OwnerKind::Listener,
        3 => OwnerKind::Acceptor,
        _ => OwnerKind::None,
    }
}

/// TCP totals with the per-packet counters' packets and IP bytes (the payload bytes stay
/// sequence-based: retransmissions count once).
pub(super) fn with_detail(t: Totals, d: &TcpDetail) -> Totals {
    Totals {
        in_pkts: d.rx.pkts,
        out_pkts: d.tx.pkts,
        in_ip_bytes: Some(d.rx.ip_bytes),
        out_ip_bytes: Some(d.tx.ip_bytes),
        ..t
    }
}

fn udp_totals(c: &UdpCounters) -> Totals {
    Totals {
        in_bytes: c.bytes_in,
        out_bytes: c.bytes_out,
        in_pkts: c.pkts_in,
        out_pkts: c.pkts_out,
        in_ip_bytes: Some(c.ip_bytes_in),
        out_ip_bytes: Some(c.ip_bytes_out),
    }
}

pub(super) fn identity(netns: u32, t: &Tuple) -> TcpIdentity {
    let ((la, lp), (ra, rp)) = endpoints(t);
    (netns, SocketAddr::new(la, lp), SocketAddr::new(ra, rp))
}

/// (local, remote) endpoints; IPv4-mapped IPv6 addresses are reported as the IPv4 they carry.
pub(super) fn endpoints(t: &Tuple) -> ((IpAddr, u16), (IpAddr, u16)) {
    let addr = |a: &[u8; 16]| -> IpAddr {
        if t.family == AF_INET {
            IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        } else {
            let v6 = Ipv6Addr::from(*a);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
    };
    (
        (addr(&t.local_addr), t.local_port),
        (addr(&t.remote_addr), t.remote_port),
    )
}

/// Merge per-CPU UDP counter slots.
pub fn sum_udp_counters<'a>(slots: impl IntoIterator<Item = &'a UdpCounters>) -> UdpCounters {
    let mut s = UdpCounters::default();
    for c in slots {
        if c.first_ns != 0 && (s.first_ns == 0 || c.first_ns < s.first_ns) {
            s.first_ns = c.first_ns;
        }
        s.last_ns = s.last_ns.max(c.last_ns);
        s.bytes_in += c.bytes_in;
        s.bytes_out += c.bytes_out;
        s.ip_bytes_in += c.ip_bytes_in;
        s.ip_bytes_out += c.ip_bytes_out;
        s.pkts_in += c.pkts_in;
        s.pkts_out += c.pkts_out;
    }
    s
}

#[cfg(test)]
mod dns_event_tests {
    use flow_common::{
        DnsRecord, RecordHeader, RecordKind, UdpOpenRecord, DNS_CAPTURE_LEN, IPPROTO_UDP,
    };

    use super::*;

    struct NoCounters;
    impl UdpCounterSource for NoCounters {
        fn read(&self, _: &UdpFlowKey) -> Option<UdpCounters> {
            None
        }
        fn remove(&mut self, _: &UdpFlowKey) {}
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut x = [0; 16];
        x[..4].copy_from_slice(&a);
        x
    }

    /// An answer to 10.0.0.5:40000 from 10.0.0.53:53: www.a.test is 10.0.0.1.
    fn answer(tuple: Tuple, cookie: u64) -> DnsRecord {
        let mut msg = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        msg.extend_from_slice(b"\x03www\x01a\x04test\x00\x00\x01\x00\x01");
        msg.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x0a\x00\x00\x01");
        let mut data = [0u8; DNS_CAPTURE_LEN];
        data[..msg.len()].copy_from_slice(&msg);
        DnsRecord {
            header: RecordHeader {
                kind: RecordKind::Dns as u32,
                _pad: 0,
                ts_ns: 2_000_000_000,
            },
            cookie,
            tuple,
            egress: 0,
            len: msg.len() as u32,
            data,
        }
    }

    fn table(dns_events: bool) -> (FlowTable, Tuple, u64) {
        let mut t = FlowTable::new(
            FlowTableConfig {
                dns_events,
                ..FlowTableConfig::default()
            },
            "ab".into(),
        );
        let tuple = Tuple {
            family: AF_INET,
            local_port: 40000,
            remote_port: 53,
            protocol: IPPROTO_UDP,
            _pad: 0,
            local_addr: v4([10, 0, 0, 5]),
            remote_addr: v4([10, 0, 0, 53]),
        };
        let cookie = 77;
        let owner = Task {
            pid: 4242,
            tid: 4242,
            uid: 1000,
            comm: *b"resolver\0\0\0\0\0\0\0\0",
            ..Task::default()
        };
        let open = UdpOpenRecord {
            header: RecordHeader {
                kind: RecordKind::UdpOpen as u32,
                _pad: 0,
                ts_ns: 1_000_000_000,
            },
            key: UdpFlowKey {
                cookie,
                remote_addr: tuple.remote_addr,
                remote_port: 53,
                family: AF_INET,
                _pad: 0,
            },
            owner,
            tuple,
            netns: 0,
            outbound_first: 1,
        };
        let mut out = Vec::new();
        t.handle(Record::UdpOpen(open), &mut NoCounters, &mut out);
        assert_eq!(out.len(), 1, "the DNS flow's start");
        (t, tuple, cookie)
    }

    #[test]
    fn an_answer_is_an_event_of_the_asking_socket_only_when_enabled() {
        let (mut t, tuple, cookie) = table(true);
        let mut out = Vec::new();
        t.handle(
            Record::Dns(Box::new(answer(tuple, cookie))),
            &mut NoCounters,
            &mut out,
        );
        assert!(out.is_empty(), "no flow event");
        let ev = t.dns_events.pop().expect("a dns_query event");
        assert_eq!(ev.query_name, "www.a.test");
        assert_eq!(ev.transaction_id, 0x1234);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(ev.resolved_ips, vec![ip("10.0.0.1")]);
        assert_eq!(ev.client, (ip("10.0.0.5"), 40000));
        assert_eq!(ev.resolver, (ip("10.0.0.53"), 53));
        assert_eq!(ev.transport, Transport::Udp);
        let p = ev.process.as_deref().expect("the asking process");
        assert_eq!((p.pid, p.uid), (4242, 1000));
        let flow = ev.flow.as_deref().expect("the DNS flow");
        assert_eq!(flow.flow_id, "ab-1");
        assert!(flow.community_id.is_some());
        // The flow still names the address.
        assert!(t
            .names
            .lookup("10.0.0.1".parse().unwrap(), 2_000_000_001)
            .is_some());

        // An answer on a socket the agent does not track: no process, no flow.
        t.handle(
            Record::Dns(Box::new(answer(tuple, 99))),
            &mut NoCounters,
            &mut out,
        );
        let ev = t.dns_events.pop().expect("a dns_query event");
        assert_eq!((ev.process, ev.flow), (None, None));

        let (mut off, tuple, cookie) = table(false);
        off.handle(
            Record::Dns(Box::new(answer(tuple, cookie))),
            &mut NoCounters,
            &mut out,
        );
        assert!(off.dns_events.is_empty(), "dns_events off");

        // A reload (SIGHUP) turns them off and on.
        t.reconfigure(FlowTableConfig::default());
        t.handle(
            Record::Dns(Box::new(answer(tuple, cookie))),
            &mut NoCounters,
            &mut out,
        );
        assert!(t.dns_events.is_empty(), "off after the reload");
        t.reconfigure(FlowTableConfig {
            dns_events: true,
            ..FlowTableConfig::default()
        });
        t.handle(
            Record::Dns(Box::new(answer(tuple, cookie))),
            &mut NoCounters,
            &mut out,
        );
        assert_eq!(t.dns_events.len(), 1, "on after the next");
    }
}
