//! The packet oracle: a dumpcap capture of a veth, read back with tshark, and what Zeek would
//! make of its packets (conn.log's packet and IP byte counts, and its history letters).

use anyhow::{ensure, Context, Result};
use flow_agent_tests::{Spawned, TempDir, TestHost};
use std::path::PathBuf;

/// One captured TCP packet.
#[derive(Clone, Debug)]
pub struct Packet {
    /// Capture time, microseconds since the epoch (dumpcap's resolution).
    pub time_us: u64,
    /// IP total length: IPv4 total length, or IPv6 payload length + 40.
    pub ip_len: u64,
    /// Bytes of the IP header(s) before TCP.
    pub ip_hdr: u64,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub len: u64,
    pub flags: u8,
    pub window: u16,
    pub tcp_hdr: u64,
    /// MSS option (SYN and SYN-ACK only).
    pub mss: Option<u64>,
}

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

/// A capture on one namespace's veth, written to a pcapng file.
pub struct Capture {
    proc: Spawned,
    file: PathBuf,
    _dir: TempDir,
}

impl Capture {
    pub fn start(host: &TestHost, filter: &str) -> Result<Capture> {
        let dir = TempDir::new("ftdet")?;
        let file = dir.path().join("capture.pcapng");
        // Headers only (the oracle reads lengths from them) and a large buffer: the bulk
        // test's super-packets come fast.
        let proc = crate::common::start_capture(host, &["-s", "128", "-B", "64"], filter, &file)?;
        Ok(Capture {
            proc,
            file,
            _dir: dir,
        })
    }

    /// Stops the capture of `host`'s veth once it holds every packet sent so far (the final
    /// ACK included) and returns its TCP packets.
    pub fn stop(self, host: &TestHost) -> Result<Vec<Packet>> {
        let out = crate::common::stop_capture(self.proc, &self.file, host)?;
        ensure!(
            self.file.exists(),
            "dumpcap wrote no capture: {}",
            out.stderr_str()
        );
        let fields = [
            "frame.time_epoch",
            "ip.len",
            "ip.hdr_len",
            "ipv6.plen",
            "tcp.srcport",
            "tcp.dstport",
            "tcp.seq_raw",
            "tcp.len",
            "tcp.flags",
            "tcp.window_size_value",
            "tcp.hdr_len",
            "tcp.options.mss_val",
        ];
        let mut cmd = flow_agent_tests::Cmd::host("tshark")
            .args(["-n", "-r"])
            .arg(&self.file)
            // Not the end marker.
            .args(["-Y", "tcp", "-T", "fields", "-E", "separator=|"]);
        for f in fields {
            cmd = cmd.args(["-e", f]);
        }
        let text = cmd.run()?.stdout_str();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(parse_line)
            .collect()
    }
}

fn parse_line(line: &str) -> Result<Packet> {
    let v: Vec<&str> = line.split('|').collect();
    ensure!(v.len() == 12, "bad tshark line {line:?}");
    let num = |i: usize| -> Result<u64> {
        let s = v[i].trim();
        let parsed = match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        };
        parsed.with_context(|| format!("field {i} of tshark line {line:?}"))
    };
    let (secs, frac) = v[0]
        .split_once('.')
        .with_context(|| format!("time in {line:?}"))?;
    let frac = format!("{frac:0<6}");
    let time_us = secs.parse::<u64>()? * 1_000_000 + frac[..6].parse::<u64>()?;
    let (ip_len, ip_hdr) = if v[1].is_empty() {
        (num(3)? + 40, 40)
    } else {
        (num(1)?, num(2)?)
    };
    Ok(Packet {
        time_us,
        ip_len,
        ip_hdr,
        sport: num(4)? as u16,
        dport: num(5)? as u16,
        seq: num(6)? as u32,
        len: num(7)?,
        flags: num(8)? as u8,
        window: num(9)? as u16,
        tcp_hdr: num(10)?,
        mss: if v[11].is_empty() {
            None
        } else {
            Some(num(11)?)
        },
    })
}

/// Zeek's view of one direction of a connection.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Direction {
    /// Capture records (a GSO super-packet is one).
    pub records: u64,
    /// Packets on the wire (a GSO super-packet in the capture counts as its segments).
    pub pkts: u64,
    /// IP-level bytes on the wire (each segment with its own headers).
    pub ip_bytes: u64,
    /// Payload bytes, each once however often it was sent (under emulation a tail loss probe
    /// or a timeout resends one now and then).
    pub payload: u64,
    /// Raw sequence number one past the highest payload byte seen.
    payload_end: Option<u32>,
    /// OR of the TCP flags.
    pub flags: u8,
    /// Capture time of the first packet with payload (not a RST).
    pub first_payload_us: Option<u64>,
}

impl Direction {
    /// Counts the payload of `p` not seen before (sequence numbers wrap).
    fn add_payload(&mut self, p: &Packet) {
        if p.len == 0 || p.flags & RST != 0 {
            return;
        }
        let start = p.seq.wrapping_add(u32::from(p.flags & SYN != 0));
        let end = start.wrapping_add(p.len as u32);
        let seen = match self.payload_end {
            // How much of this segment lies below what was seen already.
            Some(seen_end) => (seen_end.wrapping_sub(start) as i32).clamp(0, p.len as i32) as u64,
            None => 0,
        };
        self.payload += p.len - seen;
        if self
            .payload_end
            .is_none_or(|e| end.wrapping_sub(e) as i32 > 0)
        {
            self.payload_end = Some(end);
        }
    }
}

/// Both directions and Zeek's history of the connection between `orig_port` (the initiator's
/// port) and its peer.
#[derive(Debug, Default)]
pub struct Connection {
    pub orig: Direction,
    pub resp: Direction,
    pub history: String,
}

/// Segments a captured packet stands for on the wire: the sender cut a GSO super-packet into
/// segments of the peer's MSS less this packet's TCP options.
fn wire_segments(p: &Packet, peer_mss: Option<u64>) -> u64 {
    match peer_mss {
        Some(mss) if p.len > 0 => {
            let per_segment = mss - (p.tcp_hdr - 20);
            p.len.div_ceil(per_segment).max(1)
        }
        _ => 1,
    }
}

pub fn connection(packets: &[Packet], orig_port: u16) -> Connection {
    let mut c = Connection::default();
    let (mut orig_mss, mut resp_mss) = (None, None);
    let mut zeek = ZeekHistory::default();
    for p in packets {
        let from_orig = if p.sport == orig_port {
            true
        } else if p.dport == orig_port {
            false
        } else {
            continue;
        };
        if p.flags & SYN != 0 {
            let mss = if from_orig {
                &mut orig_mss
            } else {
                &mut resp_mss
            };
            *mss = mss.or(p.mss);
        }
        let (d, peer_mss) = if from_orig {
            (&mut c.orig, resp_mss)
        } else {
            (&mut c.resp, orig_mss)
        };
        let segs = wire_segments(p, peer_mss);
        d.records += 1;
        d.pkts += segs;
        d.ip_bytes += p.ip_len + (segs - 1) * (p.ip_hdr + p.tcp_hdr);
        d.add_payload(p);
        d.flags |= p.flags;
        if p.len > 0 && p.flags & RST == 0 && d.first_payload_us.is_none() {
            d.first_payload_us = Some(p.time_us);
        }
        zeek.packet(from_orig, p, segs);
    }
    c.history = zeek.history;
    c
}

/// Zeek's per-endpoint history state (TCPSessionAdapter::Process and TCP_Endpoint).
#[derive(Default)]
struct Endpoint {
    init: bool,
    start_seq: u32,
    last_seq: u32,
    last_syn: u32,
    last_fin: u32,
    last_rst: u32,
    rxmit: u32,
    zero_win: u32,
    flags: u8,
    seen: u8,
}

#[derive(Default)]
struct ZeekHistory {
    orig: Endpoint,
    resp: Endpoint,
    history: String,
}

const H_SYN: u8 = 1;
const H_FIN: u8 = 2;
const H_RST: u8 = 4;
const H_DATA: u8 = 8;
const H_ACK: u8 = 16;
const H_FIN_RST: u8 = 32;
const H_MULTI: u8 = 64;

impl ZeekHistory {
    fn packet(&mut self, is_orig: bool, p: &Packet, segs: u64) {
        let peer_flags = if is_orig {
            self.resp.flags
        } else {
            self.orig.flags
        };
        let (e, hist) = if is_orig {
            (&mut self.orig, &mut self.history)
        } else {
            (&mut self.resp, &mut self.history)
        };
        let mut add = |c: char| hist.push(if is_orig { c } else { c.to_ascii_lowercase() });
        let (syn, fin, rst, ack) = (
            p.flags & SYN != 0,
            p.flags & FIN != 0,
            p.flags & RST != 0,
            p.flags & ACK != 0,
        );
        let len = p.len as u32;
        let before = e.flags;
        e.flags |= p.flags;
        let seg_len = if rst { 0 } else { len } + u32::from(syn) + u32::from(fin);
        let one_past = p.seq.wrapping_add(seg_len);
        if !e.init {
            e.init = true;
            if syn {
                e.start_seq = p.seq;
                e.last_seq = one_past;
            } else {
                e.start_seq = p.seq.wrapping_sub(1);
                e.last_seq = p.seq;
            }
        } else if syn && p.seq != e.start_seq {
            e.start_seq = p.seq;
            e.last_seq = one_past;
        }
        let mut check = |e: &mut Endpoint, kind: u8, c: char| -> bool {
            if e.seen & kind != 0 {
                return true;
            }
            e.seen |= kind;
            add(c);
            false
        };
        if segs > 1 && len > 0 {
            check(e, H_DATA, 'D');
        }
        let bits = u32::from(syn) + u32::from(fin) + u32::from(rst);
        let mut again = None;
        if bits > 1 {
            if fin && rst {
                check(e, H_FIN_RST, 'I');
            } else {
                check(e, H_MULTI, 'Q');
            }
        } else if bits == 1 {
            if syn {
                let code = if ack { 'H' } else { 'S' };
                if check(e, H_SYN, code) && p.seq != e.last_syn {
                    again = Some(code);
                }
                e.last_syn = p.seq;
            }
            if fin {
                let end = p.seq.wrapping_add(len);
                if check(e, H_FIN, 'F') && end != e.last_fin {
                    again = Some('F');
                }
                e.last_fin = end;
            }
            if rst {
                if check(e, H_RST, 'R') && p.seq != e.last_rst {
                    again = Some('R');
                }
                e.last_rst = p.seq;
            }
        } else if len > 0 {
            check(e, H_DATA, 'D');
        } else if ack {
            check(e, H_ACK, 'A');
        }
        let mut letters: Vec<char> = again.into_iter().collect();
        if p.window == 0 && !rst && peer_flags & FIN == 0 && before & RST == 0 {
            e.zero_win += 1;
            if is_power_of_ten(e.zero_win) {
                letters.push('W');
            }
        }
        let delta = one_past.wrapping_sub(e.last_seq) as i32;
        if (syn || rst) && !(-1_048_576..=1_048_576).contains(&delta) {
        } else if fin && e.last_seq == e.start_seq.wrapping_add(1) {
            e.last_seq = one_past;
        } else if before & RST != 0 {
        } else if delta > 0 {
            e.last_seq = one_past;
        } else if len > 0 {
            e.rxmit += 1;
            if is_power_of_ten(e.rxmit) {
                letters.push('T');
            }
        }
        for c in letters {
            self.history
                .push(if is_orig { c } else { c.to_ascii_lowercase() });
        }
    }
}

fn is_power_of_ten(mut n: u32) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

/// `FSRPAUEC` letters of the flags set, as the agent writes `tcp_flags`.
pub fn flag_letters(bits: u8) -> String {
    "FSRPAUEC"
        .chars()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, c)| c)
        .collect()
}

#[test]
fn resent_payload_counts_once_across_the_sequence_wrap() {
    let packet = |seq: u32, len: u64| Packet {
        time_us: 0,
        ip_len: 52 + len,
        ip_hdr: 20,
        sport: 1,
        dport: 2,
        seq,
        len,
        flags: ACK,
        window: 100,
        tcp_hdr: 32,
        mss: None,
    };
    let mut d = Direction::default();
    let start = u32::MAX - 999;
    d.add_payload(&packet(start, 1000));
    d.add_payload(&packet(start.wrapping_add(1000), 1448));
    // Resent whole, then resent with 500 new bytes.
    d.add_payload(&packet(start.wrapping_add(1000), 1448));
    d.add_payload(&packet(start.wrapping_add(1948), 1000));
    assert_eq!(d.payload, 2948);
}
