//! Short-lived processes, one connection each: every client is a new process (this bench
//! binary started with `--connect-once ADDR`), which connects, sends 100 bytes, reads the
//! answer and exits. Each flow then belongs to a process the sensor has not seen before, so
//! the sensor pays for an exec, an exit, a process identity (and the executable's hash) per
//! connection: the workload of a build server or a shell loop of `curl`.
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::connections::{run_lanes, ConnectionRun, MESSAGE};

const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `lanes` listeners on `port`, and per lane one client process after the other for
/// `duration`.
pub fn run(exe: &Path, port: u16, lanes: usize, duration: Duration) -> Result<ConnectionRun> {
    let exe = exe.to_path_buf();
    run_lanes(port, lanes, move |addr| client_lane(&exe, addr, duration))
}

fn client_lane(exe: &PathBuf, addr: SocketAddr, duration: Duration) -> ConnectionRun {
    let mut run = ConnectionRun::default();
    let started = Instant::now();
    while started.elapsed() < duration {
        let outcome = Command::new(exe)
            .args(["bench", "--connect-once", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match outcome {
            Ok(o) if o.status.success() => run.connections += 1,
            Ok(o) => {
                run.failures += 1;
                run.first_error.get_or_insert_with(|| {
                    format!("{addr}: {}", String::from_utf8_lossy(&o.stderr).trim())
                });
            }
            Err(e) => {
                run.failures += 1;
                run.first_error
                    .get_or_insert_with(|| format!("starting {}: {e}", exe.display()));
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    run
}

/// The client process: one exchange with `addr`, then exit (status 1 on failure).
pub fn connect_once_main(addr: &str) -> Result<()> {
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("--connect-once {addr:?}: expected IP:PORT"))?;
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.write_all(&[b'q'; MESSAGE])?;
    let mut answer = [0u8; MESSAGE];
    s.read_exact(&mut answer)?;
    if answer != [b'q'; MESSAGE] {
        bail!("{addr}: the server's answer is not the request echoed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::workloads::{connections::serve, lane_addr, Listener};

    #[test]
    fn every_client_process_completes_one_exchange() {
        // The test binary is not the bench: exercise the client in-process instead.
        let l = Listener::bind(SocketAddr::from((lane_addr(0), 21098)), 16).unwrap();
        let closer = l.closer();
        let server = std::thread::spawn(move || serve(&l));
        connect_once_main("127.0.0.1:21098").unwrap();
        closer.close();
        server.join().unwrap();
        assert!(connect_once_main("127.0.0.1").is_err());
    }
}
