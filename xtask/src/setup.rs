//! Installs what a fresh Debian 12 machine lacks; fast and silent when everything is there.
use std::{path::PathBuf, process::Command};

use anyhow::{bail, Result};

use crate::run;

#[path = "setup_syslog_ng.rs"]
mod setup_syslog_ng;

/// Debian's rustc-web ships a prebuilt `core` for bpfel-unknown-none; LLVM 22 for bpf-linker.
const EBPF_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
];

/// Real tools the integration tests drive.
const TEST_PACKAGES: &[&str] = &[
    "iproute2",
    "curl",
    "python3",
    "procps",
    "tshark",
    "dnsmasq-base",
    "rsyslog",
    "rsyslog-openssl",
    "openssl",
    // The HTTP sink's proxy test goes through a real HTTP proxy.
    "tinyproxy",
    // The application protocol test's servers, and dig for its DNS over TCP.
    "nginx-light",
    "bind9-dnsutils",
    // `flow-agent top` is driven in a real terminal (tests/tests/live_view.rs).
    "tmux",
    // The package test: builds, checks, installs and runs the .deb as its unit says.
    "dpkg-dev",
    "binutils",
    "lintian",
    "man-db",
    "adduser",
    "systemd",
    "strace",
    "libcap2-bin",
    // The identity test names a user known only through NSS: a systemd userdb drop-in, read by
    // nss-systemd (its package adds `systemd` to nsswitch.conf).
    "libnss-systemd",
    // The package test completes a command with the packaged bash completion.
    "bash-completion",
    // Failing tests name the agent's programs the kernel skipped (`recursion_misses`).
    "bpftool",
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

pub fn apt_install(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn cargo_bin() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    home.join("bin")
}

fn ensure_bpf_linker() -> Result<()> {
    if cargo_bin().join("bpf-linker").is_file() {
        return Ok(());
    }
    eprintln!("xtask: building bpf-linker against LLVM 22");
    // bpf-linker's build script finds LLVM through LLVM_PREFIX; llvm-sys through its own variable.
    run(Command::new("cargo")
        .args(["install", "bpf-linker", "--version", "0.13.0", "--locked"])
        .args(["--no-default-features", "--features", "llvm-22"])
        .env("LLVM_PREFIX", "/usr/lib/llvm-22")
        .env("LLVM_SYS_221_PREFIX", "/usr/lib/llvm-22"))
}

pub fn ensure_all() -> Result<()> {
    if !cfg!(target_os = "linux") {
        bail!("flow-agent builds and runs on Linux only");
    }
    apt_install(EBPF_PACKAGES)?;
    ensure_bpf_linker()
}

pub fn ensure_test_tools() -> Result<()> {
    apt_install(TEST_PACKAGES)?;
    setup_syslog_ng::ensure()?;
    pip_install(PIP_TEST_PACKAGES)
}

/// Independent implementations the tests compare against (e.g. Community ID).
const PIP_TEST_PACKAGES: &[(&str, &str)] = &[
    ("communityid", "communityid"),
    // JA4/JA4S oracle of the application protocol test.
    ("ja4plus", "ja4plus"),
];

fn pip_install(packages: &[(&str, &str)]) -> Result<()> {
    for (module, package) in packages {
        let present = Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !present {
            eprintln!("xtask: installing {package} from PyPI");
            run(Command::new("python3").args(["-m", "pip", "install", "-q", package]))?;
        }
    }
    Ok(())
}
