//! `cargo xtask fuzz`: builds every cargo-fuzz target of `fuzz/` and runs each for a bounded
//! time. Installs what is missing: the nightly toolchain (minimal profile; libFuzzer's
//! instrumentation needs nightly) and cargo-fuzz. A crash fails the run and names the input
//! that caused it (`fuzz/artifacts/TARGET/crash-...`) and how to replay it.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::SystemTime,
};

use anyhow::{bail, Context, Result};

use crate::{run, workspace_root};

/// Seconds each target runs unless told otherwise.
pub const DEFAULT_SECONDS: u64 = 20;

/// `rustup run nightly cargo ...` in `fuzz/`, with nothing of the outer cargo's environment
/// that would pin the stable toolchain.
fn nightly_cargo(fuzz_dir: &Path) -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", "nightly", "cargo"]).current_dir(fuzz_dir);
    for var in [
        "CARGO",
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
    ] {
        c.env_remove(var);
    }
    // The agent declares a rust-version older than nightly: pick dependency versions that
    // suit it rather than failing resolution.
    c.env("CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS", "fallback");
    c
}

fn has_nightly() -> Result<bool> {
    let out = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .context("running rustup (fuzzing needs rustup's nightly toolchain)")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("nightly")))
}

fn has_cargo_fuzz(fuzz_dir: &Path) -> bool {
    nightly_cargo(fuzz_dir)
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The nightly toolchain and cargo-fuzz, installed when missing.
pub fn ensure_tools(fuzz_dir: &Path) -> Result<()> {
    if !has_nightly()? {
        eprintln!("xtask fuzz: installing the nightly toolchain (minimal profile)");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    if !has_cargo_fuzz(fuzz_dir) {
        eprintln!("xtask fuzz: installing cargo-fuzz");
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

/// Every target `cargo fuzz list` names.
fn targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let out = nightly_cargo(fuzz_dir)
        .args(["fuzz", "list"])
        .output()
        .context("cargo fuzz list")?;
    if !out.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Files in `dir` modified at or after `since`.
fn new_files(dir: &Path, since: SystemTime) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// Builds every target, then runs each (or only `only`) for `seconds`.
pub fn fuzz(seconds: u64, only: &[String]) -> Result<()> {
    let fuzz_dir = workspace_root().join("fuzz");
    ensure_tools(&fuzz_dir)?;
    let all = targets(&fuzz_dir)?;
    for t in only {
        if !all.contains(t) {
            bail!("no fuzz target {t:?}; there are: {}", all.join(", "));
        }
    }
    let chosen: Vec<&String> = if only.is_empty() {
        all.iter().collect()
    } else {
        all.iter().filter(|t| only.contains(t)).collect()
    };
    run(nightly_cargo(&fuzz_dir).args(["fuzz", "build"]))?;
    let mut failed = Vec::new();
    for target in chosen {
        eprintln!("xtask fuzz: {target} for {seconds} s");
        let started = SystemTime::now();
        let status = nightly_cargo(&fuzz_dir)
            .args(["fuzz", "run", target, "--"])
            .arg(format!("-max_total_time={seconds}"))
            .status()
            .with_context(|| format!("running fuzz target {target}"))?;
        if !status.success() {
            let artifacts = new_files(&fuzz_dir.join("artifacts").join(target), started);
            let named: Vec<String> = artifacts.iter().map(|p| p.display().to_string()).collect();
            eprintln!(
                "xtask fuzz: {target} failed ({status}); input: {}\n  replay: cd fuzz && cargo +nightly fuzz run {target} {}",
                if named.is_empty() { "none saved".to_string() } else { named.join(", ") },
                named.first().map_or("<artifact>", String::as_str)
            );
            failed.push(format!("{target} ({})", named.join(", ")));
        }
    }
    if !failed.is_empty() {
        bail!("fuzz targets failed: {}", failed.join("; "));
    }
    eprintln!("xtask fuzz: every target ran {seconds} s without a failure");
    Ok(())
}
