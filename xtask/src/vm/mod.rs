//! `cargo xtask vm-test`: boot real Debian kernels in qemu (TCG) with virtme-ng over the host's
//! root filesystem, run the prebuilt integration test binaries inside each of them and print a
//! kernel × test matrix.
//!
//! Knobs (environment variables of `cargo xtask vm-test`):
//! - `FLOW_VM_TESTS`: comma-separated test binary names (`attribution`, `tcp_capture`, ...);
//!   only those run. Default: all.
//! - `FLOW_VM_TEST_ARGS`: extra libtest arguments for every binary (whitespace-separated), e.g.
//!   a test name filter.
//! - `FLOW_VM_TEST_THREADS`: libtest threads per binary (default [`TEST_THREADS`]).
//! - `FLOW_VM_TIMEOUT_SECS`, `FLOW_VM_CACHE`: see [`VM_TIMEOUT`] and [`vm_test`].
//! - Every other `FLOW_*` variable is passed into the guest; `FLOW_TEST_SCALE` and
//!   `FLOW_TEST_SLOW` default to [`GUEST_DEFAULTS`] there.

mod boot;
mod kernel;
mod report;
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use std::{env, fs};

use report::KernelTimes;

use anyhow::{bail, Context, Result};

// The parts of vm_test, for callers that need only some of them.
#[allow(unused_imports)]
pub use boot::{run_in_vm, VmRun};
#[allow(unused_imports)]
pub use kernel::{fetch_kernel, FetchedKernel, KernelSpec};
#[allow(unused_imports)]
pub use report::{parse_libtest, print_matrix, TestOutcome};
pub use tools::ensure_vm_tools;

/// Kernels run when none is named.
pub const DEFAULT_KERNELS: &[&str] = &["5.10", "6.1", "6.12"];
/// Time limit for one VM (boot plus every test binary), unless `$FLOW_VM_TIMEOUT_SECS` says
/// otherwise: TCG is slow, and CI has 60 minutes in all.
pub const VM_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Printed by the test script before each binary runs and, with "exit N time MSms", after it.
const BINARY_MARKER: &str = "VM-TEST-BINARY ";
/// The tests' speed knobs in the guest, unless the host's environment sets them (see
/// `flow_agent_tests::scaled` and `slowed`): under TCG the guest runs some 30 times slower than
/// the host, so the load tests run a tenth of their connections (each still checked exactly)
/// and every bound the tests wait for is ten times longer.
pub const GUEST_DEFAULTS: &[(&str, &str)] = &[("FLOW_TEST_SCALE", "0.1"), ("FLOW_TEST_SLOW", "10")];
/// Tests of one binary run one at a time: the emulated guest has two slow vCPUs, and every
/// agent test starts its own agent, which sees (and spends time on) every other test's flows.
pub const TEST_THREADS: u32 = 1;

/// Runs every test binary (one test at a time) in a VM per kernel and prints the matrix; true
/// if everything passed. The download cache is `$FLOW_VM_CACHE` if set, else
/// `<workspace>/.vm-cache`.
pub fn vm_test(
    kernels: &[String],
    workspace: &Path,
    test_binaries: &[PathBuf],
    test_args: &[String],
) -> Result<bool> {
    ensure_vm_tools()?;
    let cache =
        env::var_os("FLOW_VM_CACHE").map_or_else(|| workspace.join(".vm-cache"), PathBuf::from);
    let kernels: Vec<String> = match kernels {
        [] => DEFAULT_KERNELS.iter().map(|k| k.to_string()).collect(),
        named => named.to_vec(),
    };
    let specs = kernels
        .iter()
        .map(|k| KernelSpec::parse(k))
        .collect::<Result<Vec<_>>>()?;
    let mut binaries = test_binaries
        .iter()
        .map(|b| fs::canonicalize(b).with_context(|| format!("test binary {}", b.display())))
        .collect::<Result<Vec<_>>>()?;
    if let Ok(wanted) = env::var("FLOW_VM_TESTS") {
        let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
        binaries.retain(|b| wanted.contains(&binary_stem(b).as_str()));
        if binaries.is_empty() {
            let known: Vec<String> = test_binaries.iter().map(|b| binary_stem(b)).collect();
            bail!(
                "FLOW_VM_TESTS={wanted:?} names no test binary; known: {}",
                known.join(", ")
            );
        }
    }
    let mut args = test_args.to_vec();
    if let Ok(extra) = env::var("FLOW_VM_TEST_ARGS") {
        args.extend(extra.split_whitespace().map(String::from));
    }
    let threads = match env::var("FLOW_VM_TEST_THREADS") {
        Ok(n) => n
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("FLOW_VM_TEST_THREADS={n:?}: want a number ≥ 1"))?,
        Err(_) => TEST_THREADS,
    };
    let guest_env = guest_env(env::vars());
    let knobs: Vec<String> = guest_env
        .iter()
        .filter(|(k, _)| k.starts_with("FLOW_TEST_"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    eprintln!(
        "vm: {} test binaries, {threads} test thread(s) each, {}",
        binaries.len(),
        knobs.join(" ")
    );
    let script = test_script(workspace, &binaries, &args, threads, &guest_env);
    let timeout = env::var("FLOW_VM_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(VM_TIMEOUT, Duration::from_secs);
    let mut results = Vec::new();
    let mut times = Vec::new();
    for spec in &specs {
        let run = fetch_kernel(spec, &cache).and_then(|k| {
            eprintln!(
                "vm: booting kernel {}: {} ({})",
                k.name, k.release, k.package
            );
            run_in_vm(&k, &script, timeout)
        });
        let outcome = match run {
            Err(e) => Err(format!("{e:#}")),
            Ok(run) => {
                let binaries = report::binary_runs(&run.stdout);
                print!("{}", run.stdout);
                let secs = |d: Duration| format!("{:.1}s", d.as_secs_f64());
                eprintln!(
                    "vm: kernel {}: boot {}, total {}, console log {}",
                    spec.name,
                    run.boot_time.map_or("-".into(), secs),
                    secs(run.total_time),
                    run.log.display()
                );
                if run.exit_status.is_none() {
                    // A kernel that did not boot, or a script that did not finish: show why.
                    report::print_log_tail(&run.log, 60);
                }
                let outcome = report::test_outcomes(&run, &binaries);
                times.push(KernelTimes {
                    kernel: spec.name.to_string(),
                    boot: run.boot_time,
                    total: run.total_time,
                    binaries,
                });
                outcome
            }
        };
        results.push((spec.name.to_string(), outcome));
    }
    let passed = print_matrix(&results);
    report::print_times(&times);
    Ok(passed)
}

/// Cargo names test binaries `<crate or test>-<hash>`.
fn binary_stem(path: &Path) -> String {
    let name = file_name(path);
    name.rsplit_once('-')
        .map_or(name.as_str(), |(stem, _)| stem)
        .to_string()
}

/// The variables the guest gets from the host: FLOW_* (but the runner's own FLOW_VM_*),
/// RUST_LOG, RUST_BACKTRACE and PATH, then the defaults of [`GUEST_DEFAULTS`] not set already.
fn guest_env(host: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = host
        .filter(|(name, _)| {
            // PATH too: the tests run the same tools (pyenv's python with its packages) as the
            // host.
            (name.starts_with("FLOW_") && !name.starts_with("FLOW_VM_"))
                || name == "RUST_LOG"
                || name == "RUST_BACKTRACE"
                || name == "PATH"
        })
        .collect();
    for (name, value) in GUEST_DEFAULTS {
        if !vars.iter().any(|(n, _)| n == name) {
            vars.push((name.to_string(), value.to_string()));
        }
    }
    vars
}

/// The guest script: every binary in turn from the workspace root, its exit status and run
/// time reported, with the variables of [`guest_env`].
/// The guest's root is the host's, read-only: a tmpfs overlay makes the workspace writable
/// (target/tmp, test fixtures) inside the VM without touching the host's files.
/// `--show-output` puts what passing tests print (the scale they ran at) on the console.
fn test_script(
    workspace: &Path,
    binaries: &[PathBuf],
    args: &[String],
    threads: u32,
    vars: &[(String, String)],
) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
    let ws = quote(&workspace.display().to_string());
    let mut s = format!(
        "mkdir -p /run/ws/upper /run/ws/work\n\
         mount -t overlay overlay -o lowerdir={ws},upperdir=/run/ws/upper,workdir=/run/ws/work {ws}\n\
         cd {ws}\nfailed=0\n"
    );
    // The guest starts with init's environment: pass on the variables the tests read.
    for (name, value) in vars {
        s += &format!("export {name}={}\n", quote(value));
    }
    for bin in binaries {
        let bin = quote(&bin.display().to_string());
        s += &format!(
            "echo {BINARY_MARKER}{bin}\nt0=$(date +%s%N)\n\
             {bin} --test-threads={threads} --color=never --show-output {}\n",
            args.join(" ")
        );
        s += &format!(
            "rc=$?; ms=$(( ($(date +%s%N) - t0) / 1000000 ))\n\
             echo \"{BINARY_MARKER}exit $rc time ${{ms}}ms\"; [ $rc = 0 ] || failed=1\n"
        );
    }
    s + "exit $failed\n"
}

/// Runs a command quietly; its output is shown only when it fails.
fn run(cmd: &mut Command) -> Result<()> {
    output(cmd).map(drop)
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        bail!("{cmd:?} failed: {}\n{stdout}{stderr}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_gets_speed_defaults_unless_the_host_set_them() {
        let host = [
            ("FLOW_TEST_SLOW", "3"),
            ("FLOW_VM_TESTS", "attribution"),
            ("FLOW_AGENT_BIN", "/a"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let vars = guest_env(host.into_iter());
        let got: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("FLOW_TEST_SLOW", "3"),
                ("FLOW_AGENT_BIN", "/a"),
                ("FLOW_TEST_SCALE", "0.1")
            ]
        );
    }

    #[test]
    fn script_times_each_binary() {
        let vars = [("FLOW_TEST_SCALE".to_string(), "0.1".to_string())];
        let s = test_script(
            Path::new("/ws"),
            &[PathBuf::from("/ws/target/debug/deps/udp-01")],
            &["--exact".to_string()],
            2,
            &vars,
        );
        assert!(s.contains("export FLOW_TEST_SCALE='0.1'\n"), "{s}");
        assert!(
            s.contains("'/ws/target/debug/deps/udp-01' --test-threads=2 --color=never --show-output '--exact'\n"),
            "{s}"
        );
        assert!(
            s.contains("echo \"VM-TEST-BINARY exit $rc time ${ms}ms\""),
            "{s}"
        );
        assert_eq!(
            binary_stem(Path::new("/x/flow_agent-487b8b21ccc2b338")),
            "flow_agent"
        );
    }
}
