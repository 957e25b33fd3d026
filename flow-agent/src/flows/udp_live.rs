//! The reconciliation that ends UDP flows whose release record was lost: on the TCP flows'
//! schedule (`tcp_live::RECONCILE_INTERVAL`), each network namespace holding UDP flows has its
//! UDP sockets listed by sock_diag. A flow whose socket (its cookie) is not among them, or whose
//! namespace no longer exists, is marked; still missing at a reconciliation at least
//! `RECONCILE_GRACE` later, it ends `release_missed` (counted in `missed_releases`). The kernel
//! writes the release record before the socket leaves the table sock_diag reads, so the grace
//! lets the agent read a release record that was not lost.
use std::collections::HashSet;

use super::{
    table::{FlowKey, UdpCounterSource},
    tcp_live::RECONCILE_GRACE,
    FlowTable, Tracked,
};

impl FlowTable {
    /// The network namespaces of the open UDP flows whose socket is known by its cookie.
    pub(crate) fn udp_namespaces(&self) -> HashSet<u32> {
        self.flows
            .iter()
            .filter(|(k, f)| matches!(k, FlowKey::Udp(_)) && f.cookie != 0)
            .map(|(_, f)| f.netns)
            .collect()
    }

    /// Reconciles the UDP flows of `netns` with the cookies of the UDP sockets sock_diag lists
    /// there (`None`: the namespace is gone, and its sockets with it). Returns how many ended.
    pub(crate) fn reconcile_udp(
        &mut self,
        netns: u32,
        cookies: Option<&HashSet<u64>>,
        now_ns: u64,
        udp: &mut impl UdpCounterSource,
        out: &mut Vec<Tracked>,
    ) -> usize {
        let grace = RECONCILE_GRACE.as_nanos() as u64;
        let mut due = Vec::new();
        for (key, f) in self.flows.iter_mut() {
            let FlowKey::Udp(k) = key else { continue };
            if f.netns != netns || f.cookie == 0 {
                continue;
            }
            let found = cookies.is_some_and(|c| c.contains(&f.cookie));
            match f.missing_since {
                _ if found => f.missing_since = None,
                None => f.missing_since = Some(now_ns),
                Some(since) if now_ns.saturating_sub(since) >= grace => due.push(*k),
                Some(_) => {}
            }
        }
        for key in &due {
            self.missed_releases += 1;
            self.end_udp(*key, "release_missed", udp, out);
        }
        due.len()
    }
}
