//! Builds the kernel programs (flow-agent-ebpf) for bpfel-unknown-none and leaves the object in
//! OUT_DIR, where src/capture/object.rs embeds it: the shipped agent is one file.
//!
//! Toolchain, first that fits: FLOW_AGENT_EBPF_RUSTC (explicit override); a rustup nightly with
//! rust-src (`-Z build-std=core`); a rustc that ships a prebuilt `core` for the BPF target
//! (Debian's rustc-web, with RUSTC_BOOTSTRAP scoped to aya_ebpf).
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

const TARGET: &str = "bpfel-unknown-none";

struct Toolchain {
    name: String,
    cargo: Vec<String>,
    rustc: Option<PathBuf>,
    build_std: bool,
    bootstrap: bool,
}

fn main() -> Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest
        .parent()
        .context("flow-agent has no parent directory")?;
    let ebpf = root.join("flow-agent-ebpf");
    for p in [
        "flow-agent-ebpf/src",
        "flow-agent-ebpf/Cargo.toml",
        "flow-agent-ebpf/Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("flow-common/src").display()
    );
    println!("cargo:rerun-if-env-changed=FLOW_AGENT_EBPF_RUSTC");
    println!("cargo:rerun-if-env-changed=FLOW_AGENT_EBPF_CARGO");
    println!("cargo:rerun-if-env-changed=FLOW_AGENT_EBPF_DENY_WARNINGS");

    let tc = select_toolchain()?;
    println!("cargo:warning=flow-agent-ebpf: building with {}", tc.name);
    let target_dir = root.join("target/ebpf");
    let mut cmd = Command::new(&tc.cargo[0]);
    cmd.args(&tc.cargo[1..])
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(&target_dir)
        .current_dir(&ebpf);
    if tc.build_std {
        cmd.args(["-Z", "build-std=core"]);
    }
    // The outer cargo's variables (RUSTUP_TOOLCHAIN, RUSTFLAGS, CARGO_*...) must not leak in.
    for (key, _) in env::vars_os() {
        let k = key.to_string_lossy();
        if (k.starts_with("CARGO") && k != "CARGO_HOME") || k.starts_with("RUST") {
            cmd.env_remove(&key);
        }
    }
    if let Some(rustc) = &tc.rustc {
        cmd.env("RUSTC", rustc);
    }
    if tc.bootstrap {
        cmd.env("RUSTC_BOOTSTRAP", "aya_ebpf");
    }
    // `cargo xtask lint` sets it: the kernel programs' warnings fail the lint as the
    // workspace's do (this build's own warnings are not shown otherwise).
    if env::var_os("FLOW_AGENT_EBPF_DENY_WARNINGS").is_some() {
        cmd.env("RUSTFLAGS", "-D warnings");
    }
    cmd.env("PATH", path_with_cargo_bin());
    let status = cmd
        .status()
        .with_context(|| format!("running {:?}", tc.cargo))?;
    if !status.success() {
        bail!(
            "building flow-agent-ebpf with {} failed ({status})",
            tc.name
        );
    }
    for bin in ["flow-agent-ebpf", "flow-agent-probe"] {
        let object = target_dir.join(TARGET).join("release").join(bin);
        let out = PathBuf::from(env::var("OUT_DIR")?).join(format!("{bin}.o"));
        std::fs::copy(&object, &out)
            .with_context(|| format!("copying {} to {}", object.display(), out.display()))?;
    }
    Ok(())
}

fn cargo_bin() -> Option<PathBuf> {
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    Some(home.join("bin"))
}

fn path_with_cargo_bin() -> std::ffi::OsString {
    let mut paths: Vec<PathBuf> = cargo_bin().into_iter().collect();
    paths.extend(env::split_paths(&env::var_os("PATH").unwrap_or_default()));
    env::join_paths(paths).unwrap_or_default()
}

fn sysroot(rustc: &[&str]) -> Option<PathBuf> {
    let out = Command::new(rustc[0])
        .args(&rustc[1..])
        .args(["--print", "sysroot"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn has_prebuilt_core(sysroot: &Path) -> bool {
    std::fs::read_dir(sysroot.join("lib/rustlib").join(TARGET).join("lib"))
        .map(|dir| {
            dir.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
        })
        .unwrap_or(false)
}

fn has_rust_src(sysroot: &Path) -> bool {
    sysroot.join("lib/rustlib/src/rust/library/core").is_dir()
}

fn select_toolchain() -> Result<Toolchain> {
    let mut rejected = Vec::new();
    if let Ok(rustc) = env::var("FLOW_AGENT_EBPF_RUSTC") {
        let cargo = env::var("FLOW_AGENT_EBPF_CARGO").unwrap_or_else(|_| {
            Path::new(&rustc)
                .with_file_name("cargo")
                .to_string_lossy()
                .into_owned()
        });
        let Some(sysroot) = sysroot(&[&rustc]) else {
            bail!("FLOW_AGENT_EBPF_RUSTC={rustc} does not run");
        };
        let prebuilt = has_prebuilt_core(&sysroot);
        if !prebuilt && !has_rust_src(&sysroot) {
            bail!("FLOW_AGENT_EBPF_RUSTC={rustc} has neither a prebuilt core for {TARGET} nor rust-src");
        }
        return Ok(Toolchain {
            name: format!("FLOW_AGENT_EBPF_RUSTC={rustc}"),
            cargo: vec![cargo],
            rustc: Some(rustc.into()),
            build_std: !prebuilt,
            bootstrap: true,
        });
    }
    check_bpf_linker()?;
    match sysroot(&["rustup", "run", "nightly", "rustc"]) {
        Some(s) if has_rust_src(&s) => {
            return Ok(Toolchain {
                name: "rustup nightly with rust-src (-Z build-std=core)".into(),
                cargo: ["rustup", "run", "nightly", "cargo"]
                    .map(String::from)
                    .to_vec(),
                rustc: None,
                build_std: true,
                bootstrap: false,
            })
        }
        Some(s) => rejected.push(format!("rustup nightly: no rust-src in {}", s.display())),
        None => rejected.push("rustup nightly: not installed".into()),
    }
    match sysroot(&["/usr/bin/rustc"]) {
        Some(s) if has_prebuilt_core(&s) => {
            return Ok(Toolchain {
                name: format!("/usr/bin/rustc with the prebuilt core for {TARGET}"),
                cargo: vec!["/usr/bin/cargo".into()],
                rustc: Some("/usr/bin/rustc".into()),
                build_std: false,
                bootstrap: true,
            })
        }
        Some(s) => rejected.push(format!(
            "/usr/bin/rustc: no core for {TARGET} in {} (Debian: libstd-rust-web-dev-bpf)",
            s.display()
        )),
        None => rejected.push("/usr/bin/rustc: not installed (Debian: rustc-web)".into()),
    }
    bail!(
        "no toolchain can build the eBPF programs; run `cargo xtask setup`.\n  {}",
        rejected.join("\n  ")
    )
}

fn check_bpf_linker() -> Result<()> {
    let found = env::split_paths(&path_with_cargo_bin()).any(|p| p.join("bpf-linker").is_file());
    if !found {
        bail!("bpf-linker is not installed; run `cargo xtask setup`");
    }
    Ok(())
}
