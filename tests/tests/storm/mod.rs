//! Connection storms made by the test process itself, as fast as this machine allows: threads
//! enter a test network namespace (`setns` applies to the calling thread only) and open and
//! abort connections on its loopback. Nothing leaves the namespace.
//!
//! TCP: each connection is a connect, an accept and two abortive closes (SO_LINGER 0: a RST,
//! no TIME_WAIT), so the storm never runs out of ports: two flows of this host per
//! connection (the connector's and the acceptor's). UDP: one datagram from one socket to each
//! of many ports: one flow per port.
#![allow(dead_code)]

use anyhow::{bail, Context, Result};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Moves the calling thread into the named network namespace (`ip netns` name).
pub fn enter_netns(name: &str) -> Result<()> {
    let path = format!("/run/netns/{name}");
    let f = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    // SAFETY: setns on a valid namespace fd; affects only this thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns({path}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// SO_LINGER {on, 0}: close() sends a RST and frees the socket at once.
fn abort_on_close(fd: RawFd) -> Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a valid pointer and length.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!("SO_LINGER: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// What a storm did.
#[derive(Clone, Copy, Debug)]
pub struct StormReport {
    /// Connections (TCP) or datagrams to distinct ports (UDP) completed.
    pub made: u64,
    pub elapsed: Duration,
}

impl StormReport {
    pub fn per_second(&self) -> f64 {
        self.made as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A running storm; stopped (and joined) by [`Storm::stop`] or on drop.
pub struct Storm {
    stop: Arc<AtomicBool>,
    made: Arc<AtomicU64>,
    started: Instant,
    threads: Vec<JoinHandle<Result<()>>>,
}

impl Storm {
    /// `threads` threads in namespace `netns`, each making TCP connections on 127.0.0.1 to a
    /// listener of its own, until stopped.
    pub fn tcp(netns: &str, threads: usize) -> Result<Storm> {
        Storm::spawn(netns, threads, tcp_loop)
    }

    /// `threads` threads in `netns`, each sending one datagram from one socket to each port
    /// of 127.0.0.1 from `first_port` on (cycling through `ports` ports), until stopped.
    pub fn udp(netns: &str, threads: usize, first_port: u16, ports: u16) -> Result<Storm> {
        Storm::spawn(netns, threads, move |stop, made| {
            udp_loop(stop, made, first_port, ports)
        })
    }

    fn spawn(
        netns: &str,
        threads: usize,
        body: impl Fn(&AtomicBool, &AtomicU64) -> Result<()> + Send + Sync + Clone + 'static,
    ) -> Result<Storm> {
        let stop = Arc::new(AtomicBool::new(false));
        let made = Arc::new(AtomicU64::new(0));
        let mut handles = Vec::new();
        for i in 0..threads {
            let (stop, made, body, ns) =
                (stop.clone(), made.clone(), body.clone(), netns.to_string());
            let h = std::thread::Builder::new()
                .name(format!("storm-{i}"))
                .spawn(move || {
                    enter_netns(&ns)?;
                    body(&stop, &made)
                })?;
            handles.push(h);
        }
        Ok(Storm {
            stop,
            made,
            started: Instant::now(),
            threads: handles,
        })
    }

    /// Connections made so far.
    pub fn made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    /// Whether a thread already stopped (with an error: see [`Storm::stop`]).
    pub fn failed(&self) -> bool {
        self.threads.iter().any(JoinHandle::is_finished)
    }

    /// Stops every thread; an error if one of them failed.
    pub fn stop(mut self) -> Result<StormReport> {
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = self.started.elapsed();
        for h in std::mem::take(&mut self.threads) {
            match h.join() {
                Ok(r) => r.context("storm thread")?,
                Err(_) => bail!("storm thread panicked"),
            }
        }
        Ok(StormReport {
            made: self.made(),
            elapsed,
        })
    }
}

impl Drop for Storm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in std::mem::take(&mut self.threads) {
            let _ = h.join();
        }
    }
}

fn tcp_loop(stop: &AtomicBool, made: &AtomicU64) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").context("storm listener")?;
    let addr = listener.local_addr()?;
    while !stop.load(Ordering::Relaxed) {
        let c = TcpStream::connect(addr).with_context(|| format!("storm connect to {addr}"))?;
        let (s, _) = listener.accept().context("storm accept")?;
        abort_on_close(c.as_raw_fd())?;
        abort_on_close(s.as_raw_fd())?;
        drop(c);
        drop(s);
        made.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn udp_loop(stop: &AtomicBool, made: &AtomicU64, first_port: u16, ports: u16) -> Result<()> {
    let sock = UdpSocket::bind("127.0.0.1:0").context("storm UDP socket")?;
    let mut i = 0u16;
    while !stop.load(Ordering::Relaxed) {
        let to = SocketAddr::from(([127, 0, 0, 1], first_port.wrapping_add(i % ports.max(1))));
        // Nobody listens: the datagram still leaves the socket (an ICMP error comes back).
        let _ = sock.send_to(b"x", to);
        i = i.wrapping_add(1);
        made.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
