//! Project automation: `cargo xtask setup|build|run|test|lint|vm-test|deb|bench|fuzz|spec-fixture`.
mod bench;
mod deb;
mod fuzz;
mod setup;
mod spec_fixture;
mod vm;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "flow-agent build, run and test automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing: Debian packages of the eBPF toolchain and test tools, bpf-linker.
    Setup,
    /// Set up, then build the agent (with its embedded kernel programs).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Set up, build and start the agent with its default configuration (events on stdout).
    Run {
        #[arg(long)]
        release: bool,
        /// Arguments passed to `flow-agent run`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then run unit tests and the integration tests on the running kernel.
    Test {
        /// Only this test name filter (passed to the test harness).
        filter: Option<String>,
    },
    /// rustfmt check and clippy -D warnings on every target (and the eBPF crate's format and
    /// compiler warnings).
    Lint,
    /// Build the Debian package (release binary, unit, config, man page) into target/debian.
    Deb(deb::DebArgs),
    /// Build every cargo-fuzz target of fuzz/ and run each for a bounded time (nightly).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = fuzz::DEFAULT_SECONDS)]
        seconds: u64,
        /// Only these targets (default: all).
        targets: Vec<String>,
    },
    /// Run every test binary in VMs booting real distribution kernels, and on the host's kernel.
    VmTest {
        /// A kernel of the matrix (host, 5.10, 6.1, 6.12), repeatable; default: all.
        #[arg(long)]
        kernel: Vec<String>,
        /// Every test binary, not only the kernel-compatibility suite (docs/vm-tests.md).
        #[arg(long)]
        full: bool,
    },
    /// Measure the agent's cost against no sensor and its peers (docs/performance.md).
    Bench(bench::BenchArgs),
    /// Derive the format tests' spec fixture (tests/fixtures/specs) from the published specs.
    SpecFixture {
        /// Only check that the committed fixture matches the specs.
        #[arg(long)]
        check: bool,
        /// The folder of the published specs (default: ../shared/specs beside the repository).
        #[arg(long)]
        specs: Option<PathBuf>,
    },
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

fn build(release: bool) -> Result<PathBuf> {
    let mut c = cargo();
    c.args(["build", "-p", "flow-agent"]);
    if release {
        c.arg("--release");
    }
    run(&mut c)?;
    let profile = if release { "release" } else { "debug" };
    Ok(target_dir().join(profile).join("flow-agent"))
}

/// Where cargo puts the workspace's builds: `CARGO_TARGET_DIR` when set (relative to the
/// workspace), else `target/`.
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// Builds every test binary of the workspace without running it; returns their paths.
fn test_binaries() -> Result<Vec<PathBuf>> {
    let out = cargo()
        .args(["test", "--workspace", "--no-run", "--message-format=json"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("building the test binaries")?;
    if !out.status.success() {
        bail!("building the test binaries failed");
    }
    let mut bins = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact" && msg["profile"]["test"] == true {
            if let Some(exe) = msg["executable"].as_str() {
                bins.push(PathBuf::from(exe));
            }
        }
    }
    Ok(bins)
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Setup => setup::ensure_all().and_then(|()| setup::ensure_test_tools()),
        Cmd::Build { release } => {
            setup::ensure_all()?;
            build(release).map(drop)
        }
        Cmd::Run { release, args } => {
            setup::ensure_all()?;
            let bin = build(release)?;
            run(Command::new(bin).arg("run").args(args))
        }
        Cmd::Test { filter } => {
            setup::ensure_all()?;
            setup::ensure_test_tools()?;
            let bin = build(false)?;
            let mut c = cargo();
            c.args(["test", "--workspace", "--no-fail-fast"])
                .env("FLOW_AGENT_BIN", &bin);
            if let Some(f) = filter {
                c.args(["--", &f]);
            }
            run(&mut c)
        }
        Cmd::Lint => {
            run(cargo().args(["fmt", "--all", "--", "--check"]))?;
            run(cargo().args([
                "fmt",
                "--manifest-path",
                "flow-agent-ebpf/Cargo.toml",
                "--",
                "--check",
            ]))?;
            setup::ensure_all()?;
            run(cargo().env("FLOW_AGENT_EBPF_DENY_WARNINGS", "1").args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        }
        Cmd::Deb(args) => deb::main(args),
        Cmd::Bench(args) => bench::bench(args),
        Cmd::Fuzz { seconds, targets } => fuzz::fuzz(seconds, &targets),
        Cmd::SpecFixture { check, specs } => {
            spec_fixture::main(&specs.unwrap_or_else(spec_fixture::default_specs), check)
        }
        Cmd::VmTest { kernel, full } => {
            setup::ensure_all()?;
            setup::ensure_test_tools()?;
            // The release build, as users roll it out; also, under TCG the debug build takes
            // some 20 s to start (parsing the kernel's BTF), and every agent test starts one.
            // The guest inherits FLOW_* variables: the tests find the agent through this one.
            if std::env::var_os("FLOW_AGENT_BIN").is_none() {
                std::env::set_var("FLOW_AGENT_BIN", build(true)?);
            }
            let binaries = test_binaries()?;
            if !vm::vm_test(&kernel, &workspace_root(), &binaries, full)? {
                // The matrix says what failed; a backtrace of this line would only hide it.
                eprintln!("vm-test: some kernel failed (matrix above)");
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
