//! Integration-test harness for flow-agent.
//!
//! - [`TestHost`]: disposable network namespaces joined by veth pairs, with private
//!   IPv4 (10.200.0.0/16) and IPv6 ULA (fd00:f10e::/32) addresses.
//! - [`Cmd`] / [`Spawned`]: run programs inside a namespace, in the foreground or background.
//! - [`Agent`]: run the `flow-agent` binary and collect its JSON events.
//! - [`Tmux`]: a program in a detached terminal of a private tmux server.
//! - [`scaled`] / [`slowed`]: load and time bounds for slow machines (`FLOW_TEST_SCALE`,
//!   `FLOW_TEST_SLOW`); every bound the harness waits for is already [`slowed`].
//!
//! Tests that need privileges must call [`require_root`] or [`require_root_and_bpf`] and
//! propagate the error: on CI a missing privilege is a failure, never a skip.

mod agent;
mod claim;
mod netns;
mod ports;
mod process;
mod speed;
mod tempdir;
mod tmux;
mod tools;

pub use agent::{
    names_config, Agent, LineSink, ABSENT_DEFAULT_CONFIG, DEFAULT_CONFIG_ENV, NO_CONFIG,
    READY_MARKER, READY_TIMEOUT, STOP_TIMEOUT,
};
pub use netns::{ResolvConf, TestHost};
pub use ports::unused_port;
pub use process::{wait_for_tcp_listen, wait_for_tcp_listen_timeout, Cmd, Output, Spawned};
pub use speed::{describe_bound, scale, scaled, slow, slowed, speed_summary, SCALE_ENV, SLOW_ENV};
pub use tempdir::TempDir;
pub use tmux::Tmux;
pub use tools::{find_tool, require_tools};

use anyhow::{bail, Result};
use std::path::Path;

/// Kernel BTF; the agent's CO-RE probes cannot load without it.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Errors unless running as root (needed to create namespaces and veths).
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        bail!("integration tests must run as root (euid is {euid}): they create network namespaces and load eBPF");
    }
    Ok(())
}

/// Errors unless running as root on a kernel that exposes BTF, i.e. where the agent can load.
pub fn require_root_and_bpf() -> Result<()> {
    require_root()?;
    if !Path::new(VMLINUX_BTF).exists() {
        bail!("{VMLINUX_BTF} is missing: the kernel lacks BTF (CONFIG_DEBUG_INFO_BTF), so flow-agent's probes cannot load");
    }
    Ok(())
}
