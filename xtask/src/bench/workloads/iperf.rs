//! Bulk throughput with iperf3 on 127.0.0.1: one TCP stream, or UDP datagrams of 64 bytes sent
//! as fast as iperf3 can. The figure is what the receiver got.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::bench::procfs::tcp_listening;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Tcp,
    /// UDP with 64-byte payloads, unlimited rate.
    UdpSmall,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct IperfRun {
    /// Received bits per second.
    pub bits_per_second: f64,
    /// Received datagrams per second (UDP).
    pub packets_per_second: Option<f64>,
    /// Datagrams the receiver missed (UDP: sent faster than received).
    pub lost_percent: Option<f64>,
}

pub fn run(port: u16, mode: Mode, duration: Duration) -> Result<IperfRun> {
    let port_s = port.to_string();
    let mut server = Command::new("iperf3")
        .args(["-s", "-1", "-B", "127.0.0.1", "-p", &port_s])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the iperf3 server (Debian package iperf3)")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !tcp_listening(port) {
        if Instant::now() > deadline || server.try_wait()?.is_some() {
            let _ = server.kill();
            let _ = server.wait();
            bail!("iperf3 server did not listen on 127.0.0.1:{port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = duration.as_secs().max(1).to_string();
    let mut client = Command::new("iperf3");
    client.args(["-c", "127.0.0.1", "-p", &port_s, "-t", &secs, "-J"]);
    if mode == Mode::UdpSmall {
        client.args(["-u", "-l", "64", "-b", "0"]);
    }
    let out = client.output().context("running the iperf3 client")?;
    // The one-off server exits after its test; make sure it does.
    let server_deadline = Instant::now() + Duration::from_secs(10);
    while server.try_wait()?.is_none() && Instant::now() < server_deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = server.kill();
    let _ = server.wait();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "iperf3 printed no JSON ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if let Some(err) = json.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {err}");
    }
    parse(&json, mode)
}

fn parse(json: &serde_json::Value, mode: Mode) -> Result<IperfRun> {
    let received = &json["end"]["sum_received"];
    let bits_per_second = received["bits_per_second"]
        .as_f64()
        .context("iperf3 JSON without end.sum_received.bits_per_second")?;
    Ok(match mode {
        Mode::Tcp => IperfRun {
            bits_per_second,
            ..IperfRun::default()
        },
        Mode::UdpSmall => {
            let seconds = received["seconds"].as_f64().unwrap_or(0.0);
            let packets = received["packets"].as_f64().unwrap_or(0.0)
                - received["lost_packets"].as_f64().unwrap_or(0.0);
            IperfRun {
                bits_per_second,
                packets_per_second: (seconds > 0.0).then(|| packets / seconds),
                lost_percent: received["lost_percent"].as_f64(),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_summary_of_the_receiver() {
        let json: serde_json::Value = serde_json::from_str(
            r#"{"end":{"sum_received":{"seconds":2.0,"bytes":7655360,"bits_per_second":30549800.7,"lost_packets":92462,"packets":212077,"lost_percent":43.4}}}"#,
        )
        .unwrap();
        let r = parse(&json, Mode::UdpSmall).unwrap();
        assert_eq!(r.bits_per_second, 30549800.7);
        assert_eq!(r.packets_per_second, Some((212077.0 - 92462.0) / 2.0));
        assert_eq!(r.lost_percent, Some(43.4));
    }
}
