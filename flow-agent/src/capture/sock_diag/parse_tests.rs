//! Parser tests on hand-built and damaged replies: errors, never panics.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{
    netlink::{self, parse_datagram, parse_diag_msg, tcpi, Progress, DIAG_MSG_LEN},
    proc_scan::socket_inode,
    tcp_state, DiagError, DEFAULT_STATES,
};

const V4: u8 = libc::AF_INET as u8;
const V6: u8 = libc::AF_INET6 as u8;
const SEQ: u32 = 77;

fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
    buf[off..off + bytes.len()].copy_from_slice(bytes);
}

/// struct tcp_info of `len` bytes with recognisable counters.
fn tcp_info(len: usize) -> Vec<u8> {
    let mut full = vec![0u8; 232];
    put(&mut full, tcpi::RTT, &1234u32.to_ne_bytes());
    put(&mut full, tcpi::TOTAL_RETRANS, &5u32.to_ne_bytes());
    put(&mut full, tcpi::BYTES_ACKED, &100_001u64.to_ne_bytes());
    put(&mut full, tcpi::BYTES_RECEIVED, &30_000u64.to_ne_bytes());
    put(&mut full, tcpi::SEGS_OUT, &40u32.to_ne_bytes());
    put(&mut full, tcpi::SEGS_IN, &30u32.to_ne_bytes());
    put(&mut full, tcpi::DATA_SEGS_IN, &3u32.to_ne_bytes());
    put(&mut full, tcpi::DATA_SEGS_OUT, &4u32.to_ne_bytes());
    put(&mut full, tcpi::BYTES_SENT, &100_000u64.to_ne_bytes());
    full.truncate(len);
    full
}

/// inet_diag_msg payload, optionally followed by an INET_DIAG_INFO attribute.
fn diag_msg(family: u8, src: [u8; 16], dst: [u8; 16], info: Option<&[u8]>) -> Vec<u8> {
    let mut p = vec![0u8; DIAG_MSG_LEN];
    p[0] = family;
    p[1] = tcp_state::ESTABLISHED;
    put(&mut p, 4, &40000u16.to_be_bytes());
    put(&mut p, 6, &443u16.to_be_bytes());
    put(&mut p, 8, &src);
    put(&mut p, 24, &dst);
    put(&mut p, 44, &0x0000_0002u32.to_ne_bytes());
    put(&mut p, 48, &0x0000_0001u32.to_ne_bytes());
    put(&mut p, 64, &1000u32.to_ne_bytes());
    put(&mut p, 68, &4242u32.to_ne_bytes());
    if let Some(info) = info {
        p.extend_from_slice(&((4 + info.len()) as u16).to_ne_bytes());
        p.extend_from_slice(&2u16.to_ne_bytes());
        p.extend_from_slice(info);
        p.resize(p.len().next_multiple_of(4), 0);
    }
    p
}

fn nlmsg(ty: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&2u16.to_ne_bytes()); // NLM_F_MULTI
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(payload);
    m.resize(m.len().next_multiple_of(4), 0);
    m
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&a);
    b
}

fn parse(buf: &[u8]) -> (Result<Progress, DiagError>, Vec<super::TcpSockInfo>) {
    let mut out = Vec::new();
    (parse_datagram(buf, V4, SEQ, &mut out), out)
}

#[test]
fn sock_diag_request_layout() {
    let r = netlink::request(V6, netlink::Protocol::Tcp, DEFAULT_STATES, 9);
    assert_eq!(r.len(), 72);
    assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 72);
    assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), 20);
    assert_eq!(u16::from_ne_bytes(r[6..8].try_into().unwrap()), 0x301);
    assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 9);
    assert_eq!(&r[16..19], &[V6, libc::IPPROTO_TCP as u8, 2]);
    // ESTABLISHED, SYN_SENT, FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING.
    assert_eq!(
        u32::from_ne_bytes(r[20..24].try_into().unwrap()),
        0b1011_0011_0110
    );
}

#[test]
fn sock_diag_parses_full_message() {
    let p = diag_msg(
        V4,
        v4([10, 0, 0, 1]),
        v4([192, 0, 2, 9]),
        Some(&tcp_info(232)),
    );
    let s = parse_diag_msg(&p).unwrap();
    assert_eq!(s.family, libc::AF_INET as u16);
    assert_eq!(s.local, "10.0.0.1:40000".parse::<SocketAddr>().unwrap());
    assert_eq!(s.remote, "192.0.2.9:443".parse::<SocketAddr>().unwrap());
    assert_eq!(
        (s.state, s.uid, s.inode),
        (tcp_state::ESTABLISHED, 1000, 4242)
    );
    assert_eq!(s.cookie, 0x1_0000_0002);
    assert_eq!((s.rtt_us, s.total_retrans), (1234, 5));
    assert_eq!(
        (s.bytes_acked, s.bytes_received, s.bytes_sent),
        (100_001, 30_000, 100_000)
    );
    assert_eq!((s.segs_out, s.segs_in), (40, 30));
    assert_eq!((s.data_segs_in, s.data_segs_out), (3, 4));
}

#[test]
fn sock_diag_old_kernel_tcp_info_reads_only_what_fits() {
    // 104 bytes: tcp_info up to tcpi_total_retrans (before 3.15).
    let s = parse_diag_msg(&diag_msg(V4, v4([1; 4]), v4([2; 4]), Some(&tcp_info(104)))).unwrap();
    assert_eq!((s.rtt_us, s.total_retrans, s.bytes_acked), (1234, 5, 0));
    // 136 bytes: up to tcpi_bytes_received (4.1).
    let s = parse_diag_msg(&diag_msg(V4, v4([1; 4]), v4([2; 4]), Some(&tcp_info(136)))).unwrap();
    assert_eq!(
        (s.bytes_acked, s.bytes_received, s.segs_out),
        (100_001, 30_000, 0)
    );
    // A field cut in half is not read.
    let s = parse_diag_msg(&diag_msg(V4, v4([1; 4]), v4([2; 4]), Some(&tcp_info(124)))).unwrap();
    assert_eq!(s.bytes_acked, 0);
    // No attribute at all (TIME_WAIT and request sockets).
    let s = parse_diag_msg(&diag_msg(V4, v4([1; 4]), v4([2; 4]), None)).unwrap();
    assert_eq!((s.rtt_us, s.bytes_acked), (0, 0));
}

#[test]
fn sock_diag_mapped_ipv6_reported_as_ipv4() {
    let mapped = Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped().octets();
    let s = parse_diag_msg(&diag_msg(V6, mapped, Ipv6Addr::LOCALHOST.octets(), None)).unwrap();
    assert_eq!(s.family, libc::AF_INET6 as u16);
    assert_eq!(s.local.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(s.remote.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
}

#[test]
fn sock_diag_multipart_until_done() {
    let msg = diag_msg(V4, v4([1; 4]), v4([2; 4]), Some(&tcp_info(232)));
    let mut part = nlmsg(20, SEQ, &msg);
    part.extend(nlmsg(20, SEQ, &msg));
    let (r, out) = parse(&part);
    assert_eq!((r.unwrap(), out.len()), (Progress::More, 2));
    let mut last = nlmsg(20, SEQ, &msg);
    last.extend(nlmsg(3, SEQ, &0i32.to_ne_bytes()));
    let (r, out) = parse(&last);
    assert_eq!((r.unwrap(), out.len()), (Progress::Done, 1));
}

#[test]
fn sock_diag_other_sequence_numbers_skipped() {
    let msg = diag_msg(V4, v4([1; 4]), v4([2; 4]), None);
    let mut buf = nlmsg(20, SEQ + 1, &msg);
    buf.extend(nlmsg(3, SEQ + 1, &0i32.to_ne_bytes()));
    buf.extend(nlmsg(1, SEQ, &[]));
    let (r, out) = parse(&buf);
    assert_eq!((r.unwrap(), out.len()), (Progress::More, 0));
}

#[test]
fn sock_diag_kernel_errors() {
    let (r, _) = parse(&nlmsg(2, SEQ, &(-libc::EPERM).to_ne_bytes()));
    match r {
        Err(DiagError::Kernel { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::EPERM))
        }
        other => panic!("{other:?}"),
    }
    let (r, _) = parse(&nlmsg(3, SEQ, &(-libc::EINTR).to_ne_bytes()));
    assert!(matches!(r, Err(DiagError::Kernel { .. })), "{r:?}");
    let (r, _) = parse(&nlmsg(2, SEQ, &[]));
    assert!(matches!(r, Err(DiagError::Malformed { .. })), "{r:?}");
    // An acknowledgement is not an error.
    let (r, _) = parse(&nlmsg(2, SEQ, &0i32.to_ne_bytes()));
    assert_eq!(r.unwrap(), Progress::More);
}

#[test]
fn sock_diag_malformed_headers() {
    let malformed = |buf: &[u8]| {
        matches!(
            parse(buf).0,
            Err(DiagError::Malformed { .. } | DiagError::MalformedMsg { .. })
        )
    };
    // Too short for a header.
    assert!(malformed(&[16, 0, 0]));
    // nlmsg_len below the header size (0 would otherwise loop forever) and beyond the datagram.
    for len in [0u32, 15, 200] {
        let mut m = nlmsg(3, SEQ, &[0; 4]);
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        assert!(malformed(&m), "nlmsg_len {len}");
    }
    // inet_diag_msg too short, unknown family, bad attribute lengths.
    assert!(malformed(&nlmsg(20, SEQ, &[V4; 40])));
    assert!(malformed(&nlmsg(
        20,
        SEQ,
        &diag_msg(99, [0; 16], [0; 16], None)
    )));
    for attr_len in [0u16, 3, 200] {
        let mut p = diag_msg(V4, v4([1; 4]), v4([2; 4]), Some(&tcp_info(16)));
        p[DIAG_MSG_LEN..DIAG_MSG_LEN + 2].copy_from_slice(&attr_len.to_ne_bytes());
        assert!(malformed(&nlmsg(20, SEQ, &p)), "rta_len {attr_len}");
    }
}

#[test]
fn sock_diag_every_truncation_is_an_error_not_a_panic() {
    let msg = diag_msg(V6, [7; 16], [9; 16], Some(&tcp_info(232)));
    let mut buf = nlmsg(20, SEQ, &msg);
    let first = buf.len();
    buf.extend(nlmsg(3, SEQ, &0i32.to_ne_bytes()));
    for cut in 1..buf.len() {
        let (r, _) = parse(&buf[..cut]);
        // Cutting exactly after the first message leaves a valid, unfinished datagram.
        if cut == first {
            assert_eq!(r.unwrap(), Progress::More);
        } else {
            assert!(
                matches!(
                    r,
                    Err(DiagError::Malformed { .. } | DiagError::MalformedMsg { .. })
                ),
                "cut {cut}: {r:?}"
            );
        }
    }
}

#[test]
fn sock_diag_random_garbage_never_panics() {
    // xorshift: deterministic, no dependency.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let valid = nlmsg(
        20,
        SEQ,
        &diag_msg(V4, v4([1; 4]), v4([2; 4]), Some(&tcp_info(232))),
    );
    for _ in 0..20_000 {
        let mut buf = valid.clone();
        for _ in 0..(next() % 6) {
            let i = (next() as usize) % buf.len();
            buf[i] = next() as u8;
        }
        buf.truncate((next() as usize) % (valid.len() + 1));
        let _ = parse(&buf);
    }
}

#[test]
fn sock_diag_socket_link_parsing() {
    assert_eq!(socket_inode(b"socket:[12345]"), Some(12345));
    assert_eq!(socket_inode(b"socket:[]"), None);
    assert_eq!(socket_inode(b"socket:[12a]"), None);
    assert_eq!(socket_inode(b"pipe:[12345]"), None);
    assert_eq!(socket_inode(b"/dev/null"), None);
}
