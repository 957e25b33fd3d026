//! Many concurrent TCP connections, opened, held while the sensor is measured, then closed
//! (server side first, so the TIME_WAITs do not hold client ports).
use std::{
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Result;
use serde::Serialize;

use super::{lane_addr, Listener};

/// Destination addresses: 16 × the ~28,000 ephemeral ports of one destination.
const LANES: usize = 16;
const CLIENT_THREADS: usize = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Default, Serialize)]
pub struct ConcurrencyRun {
    pub requested: u64,
    /// Connections established and accepted, all open at once.
    pub connections: u64,
    pub failures: u64,
    pub first_error: Option<String>,
    /// Time to open them all.
    pub establish_s: f64,
    /// Time to close them all.
    pub close_s: f64,
}

/// Opens `n` connections on `port`, calls `hold` while all are open, then closes them.
pub fn run(port: u16, n: u64, hold: impl FnOnce(u64)) -> Result<ConcurrencyRun> {
    let mut listeners = Vec::new();
    for lane in 0..LANES {
        listeners.push(Listener::bind(
            SocketAddr::from((lane_addr(lane), port)),
            4096,
        )?);
    }
    let accepted = Arc::new(AtomicU64::new(0));
    let closers: Vec<_> = listeners.iter().map(Listener::closer).collect();
    let acceptors: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            let accepted = accepted.clone();
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while let Some(s) = l.accept() {
                    held.push(s);
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                held
            })
        })
        .collect();

    let started = Instant::now();
    let per_thread = n.div_ceil(CLIENT_THREADS as u64);
    let clients: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            let count = per_thread.min(n.saturating_sub(per_thread * t as u64));
            std::thread::spawn(move || open(port, t, count))
        })
        .collect();
    let mut run = ConcurrencyRun {
        requested: n,
        ..ConcurrencyRun::default()
    };
    let mut client_sockets = Vec::new();
    for c in clients {
        let (sockets, failures, error) = c.join().expect("client thread panicked");
        run.failures += failures;
        run.first_error = run.first_error.or(error);
        client_sockets.push(sockets);
    }
    let opened: u64 = client_sockets.iter().map(|v| v.len() as u64).sum();
    // Established on the client side may still wait in a backlog: wait for every accept.
    let deadline = Instant::now() + Duration::from_secs(60);
    while accepted.load(Ordering::Relaxed) < opened && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    run.establish_s = started.elapsed().as_secs_f64();
    run.connections = accepted.load(Ordering::Relaxed).min(opened);

    hold(run.connections);

    let closing = Instant::now();
    for c in &closers {
        c.close();
    }
    for a in acceptors {
        drop(a.join().expect("acceptor panicked"));
    }
    drop(client_sockets);
    run.close_s = closing.elapsed().as_secs_f64();
    Ok(run)
}

fn open(port: u16, thread: usize, count: u64) -> (Vec<TcpStream>, u64, Option<String>) {
    let mut sockets = Vec::with_capacity(count as usize);
    let mut failures = 0;
    let mut first_error = None;
    for i in 0..count {
        let lane = (i as usize * CLIENT_THREADS + thread) % LANES;
        let addr = SocketAddr::from((lane_addr(lane), port));
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => sockets.push(s),
            Err(e) => {
                failures += 1;
                first_error.get_or_insert_with(|| format!("{addr}: {e}"));
            }
        }
    }
    (sockets, failures, first_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_every_connection_open_at_once() {
        let mut seen_open = 0;
        let run = run(21098, 200, |n| {
            seen_open = n;
        })
        .unwrap();
        assert_eq!(run.failures, 0, "{:?}", run.first_error);
        assert_eq!(run.connections, 200);
        assert_eq!(seen_open, 200);
    }
}
