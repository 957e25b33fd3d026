//! Load generators, all on loopback: every listener binds a 127.0.0.x address, every client
//! connects to one. Each workload has its own server port, so the flows a sensor reports can be
//! told apart per workload. Every generator stops by itself after its duration or count.
use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream},
    sync::Arc,
};

use anyhow::{Context, Result};
use socket2::{Domain, Socket, Type};

pub mod concurrency;
pub mod connections;
pub mod exec_storm;
pub mod iperf;

/// Destination address of lane `i`: 127.0.0.1, 127.0.0.2, ... Spreading the connections over
/// destinations multiplies the four-tuples the ephemeral port range allows.
pub fn lane_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 1 + (i % 250) as u8)
}

/// A listening socket that another thread can shut down to wake a blocked `accept()`.
pub struct Listener(Arc<Socket>);

impl Listener {
    pub fn bind(addr: SocketAddr, backlog: i32) -> Result<Listener> {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        s.bind(&addr.into())
            .with_context(|| format!("binding {addr}"))?;
        s.listen(backlog)?;
        Ok(Listener(Arc::new(s)))
    }

    /// The next connection; `None` once the listener was shut down.
    pub fn accept(&self) -> Option<TcpStream> {
        loop {
            match self.0.accept() {
                Ok((s, _)) => return Some(s.into()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
                Err(_) => return None,
            }
        }
    }

    pub fn closer(&self) -> ListenerCloser {
        ListenerCloser(self.0.clone())
    }
}

/// Wakes the listener's `accept()` (Linux returns EINVAL from a shut-down listener).
pub struct ListenerCloser(Arc<Socket>);

impl ListenerCloser {
    pub fn close(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

/// Bench ports, one per workload; below the ephemeral range (32768–60999 by default).
pub mod ports {
    pub const STORM: u16 = 21001;
    pub const BURST: u16 = 21002;
    pub const LATENCY: u16 = 21003;
    pub const CONCURRENCY: u16 = 21004;
    pub const IPERF_TCP: u16 = 21005;
    pub const IPERF_UDP: u16 = 21006;
    pub const EXEC_STORM: u16 = 21007;
    /// The ports whose end events are counted.
    pub const COUNTED: [u16; 5] = [STORM, BURST, LATENCY, CONCURRENCY, EXEC_STORM];
    /// Every port the bench uses: end events on none of them come from other activity.
    pub const ALL: [u16; 7] = [
        STORM,
        BURST,
        LATENCY,
        CONCURRENCY,
        IPERF_TCP,
        IPERF_UDP,
        EXEC_STORM,
    ];
}
