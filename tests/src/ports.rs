//! Loopback ports for servers a test starts later (a forwarder, the agent's metrics
//! endpoint): chosen below the kernel's ephemeral range, so that no outgoing connection on
//! the host (a test's thousand flows, an agent reconnecting) can take one as its source
//! port between the choice and the bind, or while its server is stopped for an outage.
use anyhow::{bail, Context, Result};
use std::{
    net::{TcpListener, UdpSocket},
    sync::atomic::{AtomicU32, Ordering},
};

/// Lowest port handed out: above the well-known and most registered service ports.
const LOWEST: u32 = 10_000;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Start of the ephemeral range (`net.ipv4.ip_local_port_range`).
fn ephemeral_start() -> Result<u32> {
    let path = "/proc/sys/net/ipv4/ip_local_port_range";
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{path}: {text:?}"))
}

/// A loopback port that is free for both TCP and UDP now, outside the ephemeral range, and
/// never handed out before by this process. Processes start at different offsets (their
/// pid), so tests running side by side rarely try the same port.
pub fn unused_port() -> Result<u16> {
    let top = ephemeral_start()?.min(65_536);
    if top <= LOWEST + 100 {
        bail!("the ephemeral port range starts at {top}: no room below it for test servers");
    }
    let span = top - LOWEST;
    let offset = std::process::id().wrapping_mul(7919);
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOWEST + offset.wrapping_add(n) % span) as u16;
        let addr = ("127.0.0.1", port);
        if TcpListener::bind(addr).is_ok() && UdpSocket::bind(addr).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port between {LOWEST} and {top}")
}
