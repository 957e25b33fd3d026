//! The flow tracker and the enrichment stage, fed in record order: each socket record's events
//! are named right away, with the process table as it stands at that record.
use std::collections::HashSet;

use crate::{
    capture::{sock_diag::TcpSockInfo, Record},
    enrich::Enricher,
    event::FlowEvent,
    flows::{table::UdpCounterSource, FlowTable, Tracked},
};

pub(super) struct Stages {
    pub(crate) table: FlowTable,
    pub(crate) enricher: Enricher,
    /// The tracker's events not yet named (reused).
    tracked: Vec<Tracked>,
}

impl Stages {
    pub(super) fn new(table: FlowTable, enricher: Enricher) -> Self {
        Self {
            table,
            enricher,
            tracked: Vec::new(),
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
        match record {
            Record::Exec(_)
            | Record::Fork(_)
            | Record::Exit(_)
            | Record::Dns(_)
            | Record::Payload(_) => self.enricher.observe(&record, &self.table),
            _ => {
                self.table.handle(record, udp, &mut self.tracked);
                self.name(out);
            }
        }
    }

    /// Periodic work of both stages.
    pub(super) fn tick(
        &mut self,
        now_ns: u64,
        udp: &mut impl UdpCounterSource,
        out: &mut Vec<FlowEvent>,
    ) {
        self.table.tick(now_ns, udp, &mut self.tracked);
        self.name(out);
        self.enricher.tick(now_ns, &self.table);
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
