//! A TCP socket's per-packet counters (the kernel's `TcpDetail`) turned into event fields:
//! IP-level bytes, packets, the OR of the TCP flags, first payload times and Zeek's history
//! letters in the order they happened.
use flow_common::{
    hist, TcpDetail, TcpDirDetail, TcpHistEntry, TCP_DETAIL_HANDSHAKE, TCP_DETAIL_LOST,
    TCP_DETAIL_PARTIAL, TCP_DETAIL_PRESENT, TCP_HIST_SLOTS,
};

use crate::{
    clock::BootClock,
    event::{FlowEvent, TcpFlags},
};

/// Reads the kernel's per-packet TCP counters (`TCP_PKTS`, `TCP_LATE`) by socket cookie.
pub(crate) trait TcpDetailSource {
    /// When the per-packet programs were attached (CLOCK_BOOTTIME ns).
    fn attached_ns(&self) -> u64;
    /// The counters of an open socket.
    fn read(&self, cookie: u64) -> Option<TcpDetail>;
    /// Reads and deletes the counters of packets the socket sent or received after its close
    /// record (the RST of an abort).
    fn take_late(&mut self, cookie: u64) -> Option<TcpDetail>;
}

/// The counters cover the whole connection: the kernel saw its first packet, lost nothing, and
/// saw this host's SYN or SYN-ACK. (On 5.10 and 6.1 an IPv6 SYN-ACK skips the cgroup egress
/// hook: `add_missed_synack` adds it back when the kernel could tell it exactly; otherwise such
/// counters are short of it and not used.)
pub(crate) fn complete(d: &TcpDetail) -> bool {
    d.flags & TCP_DETAIL_PARTIAL == 0 && d.tx.flags & SYN != 0
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
/// IPv6 header without extensions.
const IPV6_HEADER_LEN: u64 = 40;

/// Adds the SYN-ACK(s) of an accepted IPv6 connection that the kernel's egress hook did not
/// see (5.10, 6.1: synack.rs in the eBPF programs) to its counters, as the kernel described
/// them: one packet of an IPv6 header and `synack_hdr` TCP bytes per SYN-ACK sent, flags
/// SYN|ACK, and Zeek's letter H just after the initiator's S. Counters that saw this host's
/// SYN-ACK, or that the kernel did not describe, are left as they are.
pub(crate) fn add_missed_synack(d: &mut TcpDetail) {
    let missed = d.flags & TCP_DETAIL_HANDSHAKE != 0
        && d.synack_hdr != 0
        && d.synack_sent != 0
        && d.rx.flags & SYN != 0
        && d.tx.flags & SYN == 0;
    if !missed {
        return;
    }
    let Some(syn_order) = letters(&d.rx)
        .iter()
        .find(|e| e.letter == b'S')
        .map(|e| e.order)
    else {
        return;
    };
    let sent = u64::from(d.synack_sent);
    d.tx.ip_bytes += sent * (IPV6_HEADER_LEN + u64::from(d.synack_hdr));
    d.tx.pkts += sent;
    d.tx.flags |= SYN | ACK;
    d.tx.hist_seen |= hist::SYN;
    // Every letter after the SYN moves one later, to make room for the SYN-ACK's.
    for dir in [&mut d.rx, &mut d.tx] {
        let n = (dir.hist_len as usize).min(TCP_HIST_SLOTS);
        for e in &mut dir.hist[..n] {
            if e.order > syn_order {
                e.order = e.order.saturating_add(1);
            }
        }
    }
    d.hist_next = d.hist_next.saturating_add(1);
    let h = TcpHistEntry {
        order: syn_order.saturating_add(1),
        letter: b'H',
    };
    let n = (d.tx.hist_len as usize).min(TCP_HIST_SLOTS);
    let at = d.tx.hist[..n]
        .iter()
        .take_while(|e| e.order < h.order)
        .count();
    if at < TCP_HIST_SLOTS {
        d.tx.hist.copy_within(at..TCP_HIST_SLOTS - 1, at + 1);
        d.tx.hist[at] = h;
    }
    d.tx.hist_len = d.tx.hist_len.saturating_add(1);
}

fn letters(d: &TcpDirDetail) -> &[TcpHistEntry] {
    &d.hist[..(d.hist_len as usize).min(TCP_HIST_SLOTS)]
}

/// Zeek-style history: the originator's letters upper case, the responder's lower case, in the
/// order the kernel recorded them (letters of the two directions with the same order number,
/// which only concurrent packets produce, put the originator's first).
pub(crate) fn history(d: &TcpDetail, local_orig: bool) -> String {
    let (orig, resp) = if local_orig {
        (&d.tx, &d.rx)
    } else {
        (&d.rx, &d.tx)
    };
    let mut all: Vec<(u8, bool, u8)> = letters(orig)
        .iter()
        .map(|e| (e.order, false, e.letter.to_ascii_uppercase()))
        .chain(
            letters(resp)
                .iter()
                .map(|e| (e.order, true, e.letter.to_ascii_lowercase())),
        )
        .collect();
    all.sort_by_key(|(order, is_resp, _)| (*order, *is_resp));
    all.into_iter().map(|(_, _, l)| l as char).collect()
}

/// Adds the counters of packets seen after the close (`late`) to the connection's: their
/// letters come after all others.
pub(crate) fn merge_late(d: &mut TcpDetail, late: &TcpDetail) {
    let base = d.hist_next;
    for (dir, extra) in [(&mut d.rx, &late.rx), (&mut d.tx, &late.tx)] {
        dir.ip_bytes += extra.ip_bytes;
        dir.pkts += extra.pkts;
        dir.flags |= extra.flags;
        dir.rxmit += extra.rxmit;
        dir.zero_win += extra.zero_win;
        if dir.first_payload_ns == 0 {
            dir.first_payload_ns = extra.first_payload_ns;
        }
        for e in letters(extra) {
            let i = dir.hist_len as usize;
            if i < TCP_HIST_SLOTS {
                dir.hist[i] = TcpHistEntry {
                    order: base.saturating_add(e.order),
                    letter: e.letter,
                };
            }
            dir.hist_len = dir.hist_len.saturating_add(1);
        }
    }
    d.hist_next = base.saturating_add(late.hist_next);
}

/// Sets the fields that per-packet counters give: the flags each way and the first payload
/// times. IP bytes and packets travel in the totals; `history` is set by the caller (end
/// events only).
pub(crate) fn fill_event(ev: &mut FlowEvent, d: &TcpDetail, clock: &BootClock) {
    let (orig, resp) = ev.by_role(&d.tx, &d.rx);
    ev.tcp_flags = Some(TcpFlags {
        orig: orig.flags,
        resp: resp.flags,
    });
    let time = |ns: u64| (ns != 0).then(|| clock.wall(ns));
    ev.orig_first_byte = time(orig.first_payload_ns);
    ev.resp_first_byte = time(resp.first_payload_ns);
}

/// Whether the kernel flagged a close record's counters as lost by a socket that opened after
/// the per-packet programs were attached (one opened while they were being attached missed
/// its first packets without any loss).
pub(crate) fn lost(r: &flow_common::TcpRecord, attached_ns: u64) -> bool {
    r.detail.flags & TCP_DETAIL_LOST != 0 && r.open_ns >= attached_ns
}

/// Whether a close record's counters are usable: present and complete.
pub(crate) fn usable(d: &TcpDetail) -> bool {
    d.flags & TCP_DETAIL_PRESENT != 0 && complete(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(letters: &[(u8, u8)]) -> TcpDirDetail {
        let mut d = TcpDirDetail::default();
        for (i, (order, letter)) in letters.iter().enumerate() {
            d.hist[i] = TcpHistEntry {
                order: *order,
                letter: *letter,
            };
        }
        d.hist_len = letters.len() as u8;
        d
    }

    #[test]
    fn complete_needs_this_hosts_syn() {
        let mut d = client_side();
        d.tx.flags = SYN;
        assert!(complete(&d));
        d.tx.flags = 0x10;
        assert!(
            !complete(&d),
            "no SYN or SYN-ACK sent: the start was missed"
        );
        d.tx.flags = SYN;
        d.flags = TCP_DETAIL_PARTIAL;
        assert!(!complete(&d));
    }

    /// An HTTP-like exchange seen from the client: S h A D a d F f in time order.
    fn client_side() -> TcpDetail {
        TcpDetail {
            tx: dir(&[(0, b'S'), (2, b'A'), (3, b'D'), (6, b'F')]),
            rx: dir(&[(1, b'H'), (4, b'A'), (5, b'D'), (7, b'F')]),
            hist_next: 8,
            ..TcpDetail::default()
        }
    }

    #[test]
    fn history_interleaves_by_order_and_cases_by_role() {
        let d = client_side();
        assert_eq!(history(&d, true), "ShADadFf");
        // The same letters seen by the server: its tx is the responder.
        let server = TcpDetail {
            tx: d.rx,
            rx: d.tx,
            ..d
        };
        assert_eq!(history(&server, false), "ShADadFf");
    }

    #[test]
    fn a_synack_the_hook_saw_is_not_added_again() {
        // 6.12 and later: the egress hook saw the SYN-ACK (the same counters as the client's,
        // seen from the server).
        let c = client_side();
        let mut d = TcpDetail {
            tx: TcpDirDetail {
                flags: 0x12,
                ..c.rx
            },
            rx: TcpDirDetail {
                flags: 0x02,
                ..c.tx
            },
            flags: TCP_DETAIL_HANDSHAKE,
            synack_hdr: 40,
            synack_sent: 1,
            ..c
        };
        let before = d;
        add_missed_synack(&mut d);
        assert_eq!(d, before);
        // A SYN-ACK beyond the last history slot still counts its letter.
        d.tx = TcpDirDetail {
            hist_len: TCP_HIST_SLOTS as u8,
            ..TcpDirDetail::default()
        };
        for (i, e) in d.tx.hist.iter_mut().enumerate() {
            e.order = 2 + i as u8;
            e.letter = b'A';
        }
        add_missed_synack(&mut d);
        assert_eq!(d.tx.hist_len as usize, TCP_HIST_SLOTS + 1);
        assert_eq!((d.tx.hist[0].order, d.tx.hist[0].letter), (1, b'H'));
        assert_eq!(d.tx.hist[1].order, 3, "later letters move one on");
        assert_eq!((d.tx.pkts, d.tx.ip_bytes), (1, 80));
    }

    #[test]
    fn late_letters_follow_the_rest() {
        let mut d = client_side();
        d.tx.ip_bytes = 100;
        d.tx.pkts = 2;
        let late = TcpDetail {
            tx: TcpDirDetail {
                ip_bytes: 40,
                pkts: 1,
                flags: 0x04,
                ..dir(&[(0, b'R')])
            },
            hist_next: 1,
            ..TcpDetail::default()
        };
        merge_late(&mut d, &late);
        assert_eq!(history(&d, true), "ShADadFfR");
        assert_eq!((d.tx.ip_bytes, d.tx.pkts), (140, 3));
        assert_eq!(d.tx.flags, 0x04);
    }
}
