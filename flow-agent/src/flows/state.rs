//! What a TCP close record says about how the flow went: payload totals, end reason, and Zeek's
//! conn_state and history as far as a host can observe them (docs/events.md lists deviations).
use flow_common::{
    tcp_state::*, Role, TcpRecord, TCP_INFO_ALL_ACKED, TCP_INFO_CLOSED_ON_EXIT,
    TCP_INFO_FIN_RECEIVED,
};

const ECONNRESET: i32 = 104;
const EPIPE: i32 = 32;
const ETIMEDOUT: i32 = 110;
const ECONNREFUSED: i32 = 111;
const EHOSTUNREACH: i32 = 113;
const ENETUNREACH: i32 = 101;

fn seen(rec: &TcpRecord, state: u8) -> bool {
    rec.states_seen & (1 << state) != 0
}

/// This host sent a FIN (tcp_send_fin moves the socket to FIN_WAIT1 or LAST_ACK).
pub(crate) fn fin_sent(rec: &TcpRecord) -> bool {
    seen(rec, FIN_WAIT1)
        || seen(rec, LAST_ACK)
        || matches!(rec.old_state, FIN_WAIT1 | FIN_WAIT2 | CLOSING | LAST_ACK)
}

pub(crate) fn fin_received(rec: &TcpRecord) -> bool {
    rec.info & TCP_INFO_FIN_RECEIVED != 0 || seen(rec, CLOSE_WAIT) || seen(rec, CLOSING)
}

/// Payload bytes (received, sent). The kernel's counters follow sequence numbers: a received
/// FIN counts one byte in bytes_received; in bytes_acked so does an acknowledged FIN, and on the
/// connecting side the acknowledged SYN (the accepting side's SYN-ACK is not counted).
pub(crate) fn payload(rec: &TcpRecord) -> (u64, u64) {
    let c = &rec.counters;
    let fin_in = u64::from(fin_received(rec));
    let fin_out = u64::from(fin_sent(rec) && rec.info & TCP_INFO_ALL_ACKED != 0);
    let syn_out = u64::from(rec.role == Role::Active as u8 && established(rec));
    (
        c.bytes_received.saturating_sub(fin_in),
        c.bytes_acked.saturating_sub(fin_out + syn_out),
    )
}

/// Segments (received, sent). The accepting side's SYN-ACK is sent before its socket exists,
/// so that socket's segs_out misses it: it is added back (a retransmitted SYN-ACK is not).
pub(crate) fn packets(rec: &TcpRecord) -> (u64, u64) {
    let syn_ack = u64::from(rec.role == Role::Passive as u8 && established(rec));
    (
        u64::from(rec.counters.segs_in),
        u64::from(rec.counters.segs_out) + syn_ack,
    )
}

/// Whether the socket may send a packet after its close record: the kernel enters CLOSE before
/// it sends the RST of an abort (`close()` with unread data, `SO_LINGER` 0, `connect(AF_UNSPEC)`).
/// Normal ends (the FIN exchange, a peer's RST, a timeout) send nothing after.
pub(crate) fn may_send_after_close(rec: &TcpRecord) -> bool {
    if rec.sk_err != 0 {
        return false;
    }
    match rec.old_state {
        ESTABLISHED | CLOSE_WAIT | SYN_RECV => true,
        // Unless the peer's FIN came: then this is the way into TIME_WAIT.
        FIN_WAIT1 | FIN_WAIT2 | CLOSING => !fin_received(rec),
        _ => false,
    }
}

fn established(rec: &TcpRecord) -> bool {
    seen(rec, ESTABLISHED) || rec.old_state != SYN_SENT
}

/// Why the flow ended, from the state it left and the socket's error.
pub(crate) fn end_reason(rec: &TcpRecord) -> &'static str {
    match (rec.old_state, rec.sk_err) {
        (SYN_SENT, ECONNREFUSED) => "refused",
        (SYN_SENT, ETIMEDOUT) => "timeout",
        (SYN_SENT, EHOSTUNREACH | ENETUNREACH) => "unreachable",
        (SYN_SENT, _) => "aborted",
        (_, ECONNRESET | EPIPE | ECONNREFUSED) => "rst",
        (_, ETIMEDOUT) => "timeout",
        _ if fin_sent(rec) || fin_received(rec) => "fin",
        // Closed from ESTABLISHED with no FIN either way: the socket was aborted (RST sent).
        _ => "rst",
    }
}

/// The `end_reason` of an event: [`end_reason`], except that a close or reset by the owning
/// process's exit says so.
pub(crate) fn end_cause(rec: &TcpRecord) -> &'static str {
    match end_reason(rec) {
        "fin" | "rst" if rec.info & TCP_INFO_CLOSED_ON_EXIT != 0 => "process_exit",
        other => other,
    }
}

/// Who sent the RST, if the flow was reset: Some(true) when this host did.
fn reset_by_local(rec: &TcpRecord) -> Option<bool> {
    match end_reason(rec) {
        "rst" if matches!(rec.sk_err, ECONNRESET | EPIPE | ECONNREFUSED) => Some(false),
        "rst" => Some(true),
        _ => None,
    }
}

pub(crate) fn conn_state(rec: &TcpRecord) -> &'static str {
    let local_orig = rec.role == Role::Active as u8;
    if rec.role == Role::Unknown as u8 {
        return "OTH";
    }
    if !established(rec) {
        return if rec.sk_err == ECONNREFUSED {
            "REJ"
        } else {
            "S0"
        };
    }
    if let Some(local_reset) = reset_by_local(rec) {
        return if local_reset == local_orig {
            "RSTO"
        } else {
            "RSTR"
        };
    }
    let (orig_fin, resp_fin) = if local_orig {
        (fin_sent(rec), fin_received(rec))
    } else {
        (fin_received(rec), fin_sent(rec))
    };
    match (orig_fin, resp_fin) {
        (true, true) => "SF",
        (true, false) => "S2",
        (false, true) => "S3",
        (false, false) => "S1",
    }
}

/// Zeek-style history: originator's events upper case, responder's lower case.
pub(crate) fn history(rec: &TcpRecord, in_bytes: u64, out_bytes: u64) -> String {
    let local_orig = rec.role == Role::Active as u8;
    let mut h = String::new();
    let mut push = |by_local: bool, c: char| {
        h.push(if by_local == local_orig {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        })
    };
    if rec.role != Role::Unknown as u8 {
        push(local_orig, 'S');
        if established(rec) {
            push(!local_orig, 'H');
            push(local_orig, 'A');
        } else if rec.sk_err == ECONNREFUSED {
            push(false, 'R');
            return h;
        }
    }
    if out_bytes > 0 {
        push(true, 'D');
    }
    if in_bytes > 0 {
        push(false, 'D');
    }
    if fin_sent(rec) {
        push(true, 'F');
    }
    if fin_received(rec) {
        push(false, 'F');
    }
    if let Some(local) = reset_by_local(rec) {
        push(local, 'R');
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(role: Role, old: u8, states: &[u8], err: i32, info: u32) -> TcpRecord {
        // SAFETY: TcpRecord is plain old data.
        let mut r: TcpRecord = unsafe { std::mem::zeroed() };
        r.role = role as u8;
        r.old_state = old;
        r.new_state = CLOSE;
        r.sk_err = err;
        r.info = info;
        r.states_seen = states.iter().fold(1 << CLOSE, |a, s| a | 1 << s);
        r
    }

    #[test]
    fn refused_and_timed_out_connects() {
        let r = rec(Role::Active, SYN_SENT, &[SYN_SENT], ECONNREFUSED, 0);
        assert_eq!((end_reason(&r), conn_state(&r)), ("refused", "REJ"));
        assert_eq!(history(&r, 0, 0), "Sr");
        let t = rec(Role::Active, SYN_SENT, &[SYN_SENT], ETIMEDOUT, 0);
        assert_eq!((end_reason(&t), conn_state(&t)), ("timeout", "S0"));
    }

    #[test]
    fn active_close_with_fins_both_ways() {
        let mut r = rec(
            Role::Active,
            FIN_WAIT2,
            &[SYN_SENT, ESTABLISHED, FIN_WAIT1, FIN_WAIT2],
            0,
            TCP_INFO_FIN_RECEIVED | TCP_INFO_ALL_ACKED,
        );
        r.counters.bytes_received = 101;
        r.counters.bytes_acked = 12;
        assert_eq!(payload(&r), (100, 10));
        assert_eq!((end_reason(&r), conn_state(&r)), ("fin", "SF"));
        assert_eq!(history(&r, 100, 10), "ShADdFf");
    }

    #[test]
    fn passive_side_reset_by_peer() {
        let r = rec(
            Role::Passive,
            ESTABLISHED,
            &[SYN_RECV, ESTABLISHED],
            ECONNRESET,
            0,
        );
        assert_eq!((end_reason(&r), conn_state(&r)), ("rst", "RSTO"));
        assert_eq!(history(&r, 5, 0), "ShADR");
    }

    #[test]
    fn close_by_the_owners_exit_is_its_own_cause() {
        let info = TCP_INFO_FIN_RECEIVED | TCP_INFO_ALL_ACKED | TCP_INFO_CLOSED_ON_EXIT;
        let states = [SYN_SENT, ESTABLISHED, FIN_WAIT1, FIN_WAIT2];
        let r = rec(Role::Active, FIN_WAIT2, &states, 0, info);
        assert_eq!((end_cause(&r), conn_state(&r)), ("process_exit", "SF"));
        // A connect the exit abandoned stays `aborted`: it never was a connection.
        let a = rec(
            Role::Active,
            SYN_SENT,
            &[SYN_SENT],
            0,
            TCP_INFO_CLOSED_ON_EXIT,
        );
        assert_eq!(end_cause(&a), "aborted");
    }
}
