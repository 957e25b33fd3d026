//! The bench's Debian packages, installed when missing, so a fresh machine runs it as is.
use anyhow::{Context, Result};

use crate::setup::apt_install;

/// Required: the throughput workloads.
const REQUIRED: &[&str] = &["iperf3"];

/// The peers compared against. Debian 12 ships libbpf-tools 0.26 (tcplife on the
/// sock:inet_sock_set_state tracepoint) and bpftrace 0.17 (tcplife.bt, a kprobe on
/// tcp_set_state). A peer that cannot be installed is reported as not run, with the reason.
const PEERS: &[&str] = &["libbpf-tools", "bpftrace"];

pub fn ensure_bench_tools() -> Result<()> {
    apt_install(REQUIRED).context("installing the bench's load generators")?;
    for pkg in PEERS {
        if let Err(e) = apt_install(&[pkg]) {
            eprintln!(
                "bench: {pkg} could not be installed ({e:#}); its configuration will not run"
            );
        }
    }
    Ok(())
}
