//! Short TCP connections: connect, send 100 bytes, receive 100 bytes, close. The server answers
//! and closes first, as an HTTP/1.0 server would (its side keeps the TIME_WAIT, so the
//! clients' ephemeral ports come free at once). Used as fast as possible (connection storm,
//! burst) or paced (event latency at moderate load).
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};

use anyhow::Result;
use serde::Serialize;

use super::{lane_addr, Listener};

pub const MESSAGE: usize = 100;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Default, Serialize)]
pub struct ConnectionRun {
    /// Connections that completed the whole exchange.
    pub connections: u64,
    /// Connections that failed (connect, send or receive).
    pub failures: u64,
    pub elapsed_s: f64,
    pub first_error: Option<String>,
}

impl ConnectionRun {
    pub fn rate(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.connections as f64 / self.elapsed_s
        } else {
            0.0
        }
    }
}

/// Runs `lanes` client/server pairs on `port` for `duration`; `rate` paces all lanes together
/// (connections per second), `None` goes as fast as the machine allows.
pub fn run(
    port: u16,
    lanes: usize,
    duration: Duration,
    rate: Option<f64>,
) -> Result<ConnectionRun> {
    let interval = rate.map(|r| Duration::from_secs_f64(lanes as f64 / r));
    run_lanes(port, lanes, move |addr| {
        client_lane(addr, duration, interval)
    })
}

/// Serves `lanes` listeners on `port` (one per destination address) and runs `client` once
/// per lane, all lanes starting together; sums what the lanes did.
pub fn run_lanes<F>(port: u16, lanes: usize, client: F) -> Result<ConnectionRun>
where
    F: Fn(SocketAddr) -> ConnectionRun + Clone + Send + 'static,
{
    let mut listeners = Vec::new();
    for lane in 0..lanes {
        listeners.push(Listener::bind(
            SocketAddr::from((lane_addr(lane), port)),
            4096,
        )?);
    }
    let closers: Vec<_> = listeners.iter().map(Listener::closer).collect();
    let servers: Vec<_> = listeners
        .into_iter()
        .map(|l| std::thread::spawn(move || serve(&l)))
        .collect();
    let start_line = Arc::new(Barrier::new(lanes + 1));
    let clients: Vec<_> = (0..lanes)
        .map(|lane| {
            let addr = SocketAddr::from((lane_addr(lane), port));
            let (barrier, client) = (start_line.clone(), client.clone());
            std::thread::spawn(move || {
                barrier.wait();
                client(addr)
            })
        })
        .collect();
    start_line.wait();
    let started = Instant::now();
    let mut total = ConnectionRun::default();
    for c in clients {
        let lane = c.join().expect("client lane panicked");
        total.connections += lane.connections;
        total.failures += lane.failures;
        total.first_error = total.first_error.or(lane.first_error);
    }
    total.elapsed_s = started.elapsed().as_secs_f64();
    for c in &closers {
        c.close();
    }
    for s in servers {
        let _ = s.join();
    }
    Ok(total)
}

/// Answers each connection's request with its echo, until the listener is shut down.
pub fn serve(listener: &Listener) {
    let mut buf = [0u8; MESSAGE];
    while let Some(mut s) = listener.accept() {
        let _ = s.set_read_timeout(Some(IO_TIMEOUT));
        if s.read_exact(&mut buf).is_ok() {
            let _ = s.write_all(&buf);
        }
    }
}

fn client_lane(addr: SocketAddr, duration: Duration, interval: Option<Duration>) -> ConnectionRun {
    let mut run = ConnectionRun::default();
    let started = Instant::now();
    let request = [b'q'; MESSAGE];
    let mut answer = [0u8; MESSAGE];
    let mut next = started;
    while started.elapsed() < duration {
        if let Some(every) = interval {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            next += every;
        }
        let outcome = TcpStream::connect_timeout(&addr, IO_TIMEOUT).and_then(|mut s| {
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.write_all(&request)?;
            s.read_exact(&mut answer)
        });
        match outcome {
            Ok(()) => run.connections += 1,
            Err(e) => {
                run.failures += 1;
                run.first_error
                    .get_or_insert_with(|| format!("{addr}: {e}"));
                // Out of ports or backlog: give the kernel a moment instead of spinning.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_connections_complete() {
        let run = run(21099, 2, Duration::from_millis(300), Some(100.0)).unwrap();
        assert_eq!(run.failures, 0, "{:?}", run.first_error);
        // Pacing caps each lane at one connection per 20 ms: at most 16 in 0.3 s.
        assert!((2..=32).contains(&run.connections), "{}", run.connections);
    }
}
