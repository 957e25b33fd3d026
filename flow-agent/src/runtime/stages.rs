//! The flow tracker and the enrichment stage, fed in record order: each socket record's events
//! are named right away, with the process table as it stands at that record.
use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    time::{Duration, Instant},
};

use super::watchdog::Received;
use crate::{
    capture::{sock_diag::TcpSockInfo, Record},
    enrich::{process::ProcessTableStats, Enricher},
    event::{FlowEvent, StateBounds},
    flows::{
        table::{Refused, UdpCounterSource},
        FlowTable, Tracked,
    },
};

pub(super) struct Stages {
    pub(crate) table: FlowTable,
    pub(crate) enricher: Enricher,
    /// The tracker's events not yet named (reused).
    tracked: Vec<Tracked>,
    /// Network namespaces (nsfs inode to a path) for the TCP reconciliation.
    namespaces: HashMap<u64, PathBuf>,
    /// What the bounds on state had counted at the last report, and when it was made.
    reported: Bounds,
    reported_at: Option<Instant>,
    /// Records received by family, for the watchdog.
    pub(super) received: Received,
}

/// Least time between two reports of what the bounds on state took out (a pass of the process
/// reconciliation takes as long): a storm that keeps them busy must not fill the log.
const BOUNDS_LOG_EVERY: Duration = Duration::from_secs(30);

/// Entries the caps and reconciliations took out before their time.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Bounds {
    processes: ProcessTableStats,
    cgroups_dropped: u64,
    refused: Refused,
}

impl Stages {
    pub(super) fn new(table: FlowTable, enricher: Enricher) -> Self {
        Self {
            table,
            enricher,
            tracked: Vec::new(),
            namespaces: HashMap::new(),
            reported: Bounds::default(),
            reported_at: None,
            received: Received::default(),
        }
    }

    /// One kernel record: process, DNS and payload records teach enrichment; socket records
    /// move flows along and their events come out named.
    pub(super) fn handle(
        &mut self,
        record: Record,
        udp: &mut impl UdpCounterSource,
        out: &mut Vec<FlowEvent>,
    ) {
        self.count(&record);
        match record {
            Record::Exec(_)
            | Record::Fork(_)
            | Record::Exit(_)
            | Record::Creds(_)
            | Record::Dns(_)
            | Record::Payload(_) => self.enricher.observe(&record, &self.table),
            _ => {
                self.table.handle(record, udp, &mut self.tracked);
                self.name(out);
            }
        }
    }

    fn count(&mut self, record: &Record) {
        let r = &mut self.received;
        match record {
            Record::Exec(_) => (r.process, r.exec) = (r.process + 1, r.exec + 1),
            Record::Fork(_) | Record::Exit(_) => r.process += 1,
            Record::TcpOpen(_) | Record::TcpAccept(_) | Record::TcpClose(_) => r.tcp += 1,
            Record::UdpOpen(_) | Record::UdpRelease(_) => r.udp += 1,
            Record::Creds(_) | Record::Dns(_) | Record::Payload(_) => {}
        }
    }

    /// Periodic work of both stages, and the reconciliations that keep their state bounded
    /// when kernel records were lost: TCP and UDP flows with sock_diag (every 30 s), processes with
    /// /proc (a slice per tick), removed cgroups forgotten.
    pub(super) fn tick(
        &mut self,
        now_ns: u64,
        udp: &mut impl UdpCounterSource,
        out: &mut Vec<FlowEvent>,
    ) {
        self.table.tick(now_ns, udp, &mut self.tracked);
        if self.table.tcp_reconciliation_due(now_ns) {
            super::kernel::reconcile_tcp(
                &mut self.table,
                &mut self.namespaces,
                now_ns,
                &mut self.tracked,
            );
            super::kernel::reconcile_udp(
                &mut self.table,
                &mut self.namespaces,
                now_ns,
                udp,
                &mut self.tracked,
            );
        }
        self.name(out);
        self.enricher.tick(now_ns, &self.table);
        let identities = &mut self.enricher.identities;
        identities.processes.reconcile();
        identities.cgroups.prune();
        self.report_bounds();
    }

    /// What the caps and reconciliations took out since start, for stats and metrics.
    pub(super) fn state_bounds(&self) -> StateBounds {
        let identities = &self.enricher.identities;
        StateBounds {
            processes_reconciled: identities.processes.stats.reconciled,
            processes_evicted: identities.processes.stats.evicted,
            cgroup_paths_dropped: identities.cgroups.dropped,
            tcp_flows_reconciled: self.table.reconciled_closes,
            udp_flows_reconciled: self.table.missed_releases,
            tcp_flows_refused: self.table.refused.tcp,
            udp_flows_refused: self.table.refused.udp,
        }
    }

    /// Logs what the reconciliations and caps took out, when it changed.
    fn report_bounds(&mut self) {
        let identities = &self.enricher.identities;
        let now = Bounds {
            processes: identities.processes.stats,
            cgroups_dropped: identities.cgroups.dropped,
            refused: self.table.refused,
        };
        if now == self.reported
            || self
                .reported_at
                .is_some_and(|t| t.elapsed() < BOUNDS_LOG_EVERY)
        {
            return;
        }
        self.reported_at = Some(Instant::now());
        let was = std::mem::replace(&mut self.reported, now);
        if now.processes.reconciled != was.processes.reconciled {
            log::info!(
                "process table: {} processes whose exit record was lost found gone in /proc ({} in all)",
                now.processes.reconciled - was.processes.reconciled,
                now.processes.reconciled
            );
        }
        if (now.processes.evicted, now.cgroups_dropped, now.refused)
            != (was.processes.evicted, was.cgroups_dropped, was.refused)
        {
            log::warn!(
                "state caps reached: process entries dropped {}, cgroup paths dropped {}, new flows not tracked (tcp, reported at close: {}; udp, lost: {})",
                now.processes.evicted,
                now.cgroups_dropped,
                now.refused.tcp,
                now.refused.udp
            );
        }
    }

    /// Update events from a sock_diag snapshot of one network namespace.
    pub(super) fn snapshot(
        &mut self,
        netns: u32,
        sockets: &[TcpSockInfo],
        now_ns: u64,
        out: &mut Vec<FlowEvent>,
    ) {
        self.table
            .apply_tcp_snapshot(netns, sockets, now_ns, &mut self.tracked);
        self.name(out);
    }

    /// Connections open before the agent started, in one network namespace.
    pub(super) fn add_existing(
        &mut self,
        netns: u32,
        sockets: &[TcpSockInfo],
        listening: &HashSet<u16>,
        owners: &std::collections::HashMap<u64, u32>,
        out: &mut Vec<FlowEvent>,
    ) {
        let enricher = &mut self.enricher;
        self.table.add_existing_tcp(
            netns,
            sockets,
            listening,
            |s| enricher.owner_of_socket(owners, s, netns),
            &mut self.tracked,
        );
        self.name(out);
    }

    /// Every open flow ends (`agent_shutdown`).
    pub(super) fn shutdown(&mut self, udp: &mut impl UdpCounterSource, out: &mut Vec<FlowEvent>) {
        self.table.shutdown(udp, &mut self.tracked);
        self.name(out);
    }

    fn name(&mut self, out: &mut Vec<FlowEvent>) {
        out.extend(self.tracked.drain(..).map(|t| self.enricher.enrich(t)));
    }
}
