//! Many concurrent TCP connections, opened, held while the sensor is measured, then closed
//! (server side first, so the TIME_WAITs do not hold client ports).
//!
//! Both ends of a connection are file descriptors of this host, and one process may hold only
//! RLIMIT_NOFILE of them (raising the hard limit needs CAP_SYS_RESOURCE, which a container may
//! lack). So holder processes share the connections: each is this bench binary started with
//! `--hold-connections`, owns one destination address (127.0.0.x) and holds both ends of its
//! share. It prints `open N FAILURES [ERROR]` once its share is open, closes everything when
//! its stdin gets a line, prints `closed` and exits.
use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::{lane_addr, Listener};
use crate::bench::procfs;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Descriptors a holder keeps for itself (listener, pipes, libraries).
const SPARE_FDS: u64 = 256;

#[derive(Clone, Debug, Default, Serialize)]
pub struct ConcurrencyRun {
    pub requested: u64,
    /// Connections established and accepted, all open at once.
    pub connections: u64,
    pub failures: u64,
    pub first_error: Option<String>,
    /// Holder processes the connections were spread over.
    pub holders: usize,
    /// Time to open them all.
    pub establish_s: f64,
    /// Time to close them all.
    pub close_s: f64,
}

/// Connections one holder can keep (two descriptors each) under its open-file limit.
pub fn per_holder() -> Result<u64> {
    let limit = procfs::raise_nofile(u64::MAX)?;
    Ok(limit.saturating_sub(SPARE_FDS) / 2)
}

struct HolderProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// Opens `n` connections on `port` spread over holder processes (`exe`), calls `hold` while
/// all are open, then closes them.
pub fn run(exe: &Path, port: u16, n: u64, hold: impl FnOnce(u64)) -> Result<ConcurrencyRun> {
    let share = per_holder()?.max(1);
    let holders = n.div_ceil(share) as usize;
    let started = Instant::now();
    let mut procs = Vec::new();
    for h in 0..holders {
        let count = share.min(n - share * h as u64);
        let mut child = Command::new(exe)
            .arg("bench")
            .arg(format!("--hold-connections={port},{h},{count}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting holder {h} ({})", exe.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        procs.push(HolderProcess {
            child,
            stdin,
            stdout,
        });
    }
    let mut run = ConcurrencyRun {
        requested: n,
        holders,
        ..ConcurrencyRun::default()
    };
    for (h, p) in procs.iter_mut().enumerate() {
        let line = read_line(&mut p.stdout).with_context(|| format!("holder {h}"))?;
        let mut words = line.splitn(4, ' ');
        if words.next() != Some("open") {
            bail!("holder {h} said {line:?}");
        }
        let num = |w: Option<&str>| w.and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        run.connections += num(words.next());
        run.failures += num(words.next());
        if run.first_error.is_none() {
            run.first_error = words.next().map(String::from);
        }
    }
    run.establish_s = started.elapsed().as_secs_f64();

    hold(run.connections);

    let closing = Instant::now();
    for p in &mut procs {
        let _ = writeln!(p.stdin, "close");
    }
    for (h, mut p) in procs.into_iter().enumerate() {
        let line = read_line(&mut p.stdout).unwrap_or_default();
        let status = p.child.wait()?;
        if line != "closed" || !status.success() {
            bail!("holder {h} did not close cleanly ({status}): {line:?}");
        }
    }
    run.close_s = closing.elapsed().as_secs_f64();
    Ok(run)
}

fn read_line(r: &mut impl BufRead) -> Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        bail!("exited without a word");
    }
    Ok(line.trim_end().to_string())
}

/// Both ends of `count` connections to 127.0.0.(lane+1):`port`, all open.
pub struct Held {
    pub clients: Vec<TcpStream>,
    pub servers: Vec<TcpStream>,
    pub failures: u64,
    pub first_error: Option<String>,
}

impl Held {
    pub fn open(port: u16, lane: usize, count: u64) -> Result<Held> {
        let addr = SocketAddr::from((lane_addr(lane), port));
        let listener = Listener::bind(addr, 4096)?;
        let closer = listener.closer();
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        let acceptor = std::thread::spawn(move || {
            let mut held = Vec::new();
            while let Some(s) = listener.accept() {
                held.push(s);
                counter.fetch_add(1, Ordering::Relaxed);
            }
            held
        });
        let mut clients = Vec::with_capacity(count as usize);
        let mut failures = 0;
        let mut first_error = None;
        for _ in 0..count {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => clients.push(s),
                Err(e) => {
                    failures += 1;
                    first_error.get_or_insert_with(|| format!("{addr}: {e}"));
                }
            }
        }
        // Established on the client side may still wait in the backlog: wait for every accept.
        let deadline = Instant::now() + Duration::from_secs(60);
        while accepted.load(Ordering::Relaxed) < clients.len() as u64 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        closer.close();
        let servers = acceptor.join().expect("acceptor panicked");
        Ok(Held {
            clients,
            servers,
            failures,
            first_error,
        })
    }

    /// Connections with both ends open.
    pub fn connections(&self) -> u64 {
        self.clients.len().min(self.servers.len()) as u64
    }

    /// Closes the server ends first, then the clients.
    pub fn close(self) {
        drop(self.servers);
        drop(self.clients);
    }
}

/// A holder process's life (`--hold-connections PORT,LANE,COUNT`).
pub fn holder_main(spec: &str) -> Result<()> {
    let parts: Vec<u64> = spec
        .split(',')
        .map(|x| x.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--hold-connections {spec:?}: expected PORT,LANE,COUNT"))?;
    let [port, lane, count] = parts[..] else {
        bail!("--hold-connections {spec:?}: expected PORT,LANE,COUNT");
    };
    let port = u16::try_from(port).context("port out of range")?;
    procfs::raise_nofile(u64::MAX)?;
    let held = Held::open(port, lane as usize, count)?;
    let error = held
        .first_error
        .as_deref()
        .map(|e| format!(" {}", e.replace('\n', " ")))
        .unwrap_or_default();
    println!("open {} {}{error}", held.connections(), held.failures);
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    held.close();
    println!("closed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_both_ends_of_every_connection() {
        let held = Held::open(21098, 0, 200).unwrap();
        assert_eq!(held.failures, 0, "{:?}", held.first_error);
        assert_eq!(held.clients.len(), 200);
        assert_eq!(held.servers.len(), 200);
        assert_eq!(held.connections(), 200);
        held.close();
    }
}
