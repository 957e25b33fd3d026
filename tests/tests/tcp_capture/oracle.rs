//! The packet oracle of the TCP capture tests: a dumpcap capture of a veth read back with
//! tshark, and what each side's socket counts of it.

use anyhow::{ensure, Result};
use flow_agent_tests::{Spawned, TempDir, TestHost};
use std::path::PathBuf;

use crate::common::{start_capture, stop_capture};

const FIN: u64 = 0x01;
const SYN: u64 = 0x02;
const ACK: u64 = 0x10;

/// A capture on one interface inside a namespace, written to a pcap file.
pub struct Capture {
    proc: Spawned,
    file: PathBuf,
    _dir: TempDir,
}

/// One captured TCP segment of the connection (sequence and acknowledgement numbers relative,
/// as tshark prints them: each side's SYN is 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    /// Sent from the port the capture was read for (the client's, in an exchange).
    pub from_port: bool,
    pub seq: u64,
    pub ack: u64,
    pub len: u64,
    pub flags: u64,
    pub ip_bytes: u64,
}

impl Capture {
    pub fn start(host: &TestHost, filter: &str) -> Result<Capture> {
        let dir = TempDir::new("ftcap")?;
        let file = dir.path().join("capture.pcap");
        let proc = start_capture(host, &[], filter, &file)?;
        Ok(Capture {
            proc,
            file,
            _dir: dir,
        })
    }

    /// Stops the capture of `host`'s veth once it holds every packet sent so far (the final
    /// ACK included) and returns, in capture order, the TCP segments sent from `src_port` and
    /// to it.
    pub fn stop(self, host: &TestHost, src_port: u16) -> Result<Vec<Segment>> {
        let out = stop_capture(self.proc, &self.file, host)?;
        ensure!(
            self.file.exists(),
            "tshark wrote no capture: {}",
            out.stderr_str()
        );
        let mut cmd = flow_agent_tests::Cmd::host("tshark")
            .args(["-n", "-r"])
            .arg(&self.file)
            // Not the end marker.
            .args(["-Y", "tcp", "-T", "fields", "-E", "separator=,"]);
        for field in [
            "tcp.srcport",
            "tcp.dstport",
            "tcp.len",
            "ip.len",
            "ipv6.plen",
            "tcp.seq",
            "tcp.ack",
            "tcp.flags",
        ] {
            cmd = cmd.args(["-e", field]);
        }
        let mut segments = Vec::new();
        for line in cmd.run()?.stdout_str().lines() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Vec<u64> = line.split(',').map(tshark_number).collect();
            ensure!(v.len() == 8, "bad tshark line {line:?}");
            let port = u64::from(src_port);
            if v[0] != port && v[1] != port {
                continue;
            }
            segments.push(Segment {
                from_port: v[0] == port,
                seq: v[5],
                ack: v[6],
                len: v[2],
                flags: v[7],
                // IPv4 total length, or IPv6 payload length plus its 40-byte header.
                ip_bytes: if v[3] > 0 { v[3] } else { v[4] + 40 },
            });
        }
        Ok(segments)
    }
}

/// A tshark field as a number: decimal, or hex (`0x0012`, TCP flags); absent is 0.
fn tshark_number(field: &str) -> u64 {
    let field = field.trim();
    match field.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap_or(0),
        None => field.parse().unwrap_or(0),
    }
}

/// One direction of a connection in a capture: every packet as sent (retransmissions
/// included, as the kernel's counters include them) and the payload once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Direction {
    pub pkts: u64,
    /// Payload bytes, each counted once however often it was sent.
    pub payload: u64,
    pub ip_bytes: u64,
    /// Segments that carried sequence space sent before (SYN, data, FIN): under emulation a
    /// tail loss probe or a timeout resends one now and then.
    pub retransmits: u64,
    /// Of those, SYNs and SYN-ACKs, and those with payload.
    pub handshake_retransmits: u64,
    pub payload_retransmits: u64,
    /// Sequence space seen so far, and payload bytes.
    next_seq: u64,
    payload_end: u64,
}

impl Direction {
    fn add(&mut self, s: &Segment) {
        self.pkts += 1;
        self.ip_bytes += s.ip_bytes;
        let (syn, fin) = (u64::from(s.flags & SYN != 0), u64::from(s.flags & FIN != 0));
        let space = syn + s.len + fin;
        if space == 0 {
            return;
        }
        if s.seq < self.next_seq {
            self.retransmits += 1;
            self.handshake_retransmits += syn;
            self.payload_retransmits += u64::from(s.len > 0);
        }
        let data = s.seq + syn;
        self.payload += (data + s.len).saturating_sub(data.max(self.payload_end));
        self.payload_end = self.payload_end.max(data + s.len);
        self.next_seq = self.next_seq.max(s.seq + space);
    }
}

/// What was sent from the port and what was sent to it, over `segments`.
pub fn directions(segments: &[Segment]) -> (Direction, Direction) {
    let (mut from, mut to) = (Direction::default(), Direction::default());
    for s in segments {
        if s.from_port {
            from.add(s)
        } else {
            to.add(s)
        }
    }
    (from, to)
}

/// How many of `segments` the server's socket saw. When the server closed first and the
/// client acknowledged its FIN before sending its own, the kernel handed the closed socket to
/// a TIME_WAIT mini-socket at that ACK: the client's FIN and the server's ACK of it reach only
/// the mini-socket (docs/events.md, "Packets counted"). Otherwise all of them.
pub fn acceptor_end(segments: &[Segment]) -> usize {
    let Some(fin) = segments.iter().find(|s| !s.from_port && s.flags & FIN != 0) else {
        return segments.len();
    };
    let fin_acked = fin.seq + fin.len + 1;
    match segments
        .iter()
        .position(|s| s.from_port && s.flags & ACK != 0 && s.ack >= fin_acked)
    {
        Some(i) if segments[i].flags & FIN == 0 => i + 1,
        _ => segments.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(from_port: bool, seq: u64, ack: u64, len: u64, flags: u64) -> Segment {
        Segment {
            from_port,
            seq,
            ack,
            len,
            flags,
            ip_bytes: 52 + len,
        }
    }

    #[test]
    fn a_resent_segment_is_a_packet_and_a_retransmit_but_its_payload_counts_once() {
        let mut d = Direction::default();
        for s in [
            seg(true, 0, 0, 0, SYN),
            seg(true, 0, 0, 0, SYN),
            seg(true, 1, 1, 1448, ACK),
            seg(true, 1449, 1, 1000, ACK),
            // A tail loss probe resends the last segment.
            seg(true, 1449, 1, 1000, ACK),
            seg(true, 2449, 1, 0, ACK),
            seg(true, 2449, 1, 0, FIN | ACK),
        ] {
            d.add(&s);
        }
        assert_eq!(
            (
                d.pkts,
                d.payload,
                d.ip_bytes,
                d.retransmits,
                d.handshake_retransmits,
                d.payload_retransmits
            ),
            (7, 2448, 3812, 2, 1, 1)
        );
        assert_eq!(tshark_number("0x0012"), SYN | ACK);
    }

    #[test]
    fn the_server_socket_ends_at_the_ack_of_its_fin_when_the_clients_fin_comes_apart() {
        // ... data, the server's FIN (seq 7001), then the client's ACK of it alone, its FIN
        // later, and the server's ACK of that.
        let head = [
            seg(false, 1, 5001, 1000, ACK),
            seg(false, 7001, 5001, 0, FIN | ACK),
        ];
        let apart = [
            seg(true, 5001, 7002, 0, ACK),
            seg(true, 5001, 7002, 0, FIN | ACK),
            seg(false, 7002, 5002, 0, ACK),
        ];
        let together = [
            seg(true, 5001, 7002, 0, FIN | ACK),
            seg(false, 7002, 5002, 0, ACK),
        ];
        let apart: Vec<Segment> = head.iter().chain(&apart).copied().collect();
        assert_eq!(acceptor_end(&apart), 3);
        let together: Vec<Segment> = head.iter().chain(&together).copied().collect();
        assert_eq!(acceptor_end(&together), 4);
        // An ACK of the data only, before the FIN: not the FIN's.
        let early = [
            seg(false, 1, 5001, 1000, ACK),
            seg(true, 5001, 1001, 0, ACK),
            seg(false, 1001, 5001, 0, FIN | ACK),
            seg(true, 5001, 1002, 0, FIN | ACK),
        ];
        assert_eq!(acceptor_end(&early), 4);
    }
}
