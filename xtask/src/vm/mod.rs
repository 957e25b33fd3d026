//! `cargo xtask vm-test`: boot real Debian kernels in qemu (TCG) with virtme-ng over the host's
//! root filesystem, run the prebuilt integration test binaries inside each of them and print a
//! kernel × test matrix.

mod boot;
mod kernel;
mod report;
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use std::{env, fs};

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
/// Printed by the test script before each binary runs and, with "exit N", after it.
const BINARY_MARKER: &str = "VM-TEST-BINARY ";

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
    let binaries = test_binaries
        .iter()
        .map(|b| fs::canonicalize(b).with_context(|| format!("test binary {}", b.display())))
        .collect::<Result<Vec<_>>>()?;
    let script = test_script(workspace, &binaries, test_args);
    let timeout = env::var("FLOW_VM_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(VM_TIMEOUT, Duration::from_secs);
    let mut results = Vec::new();
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
                    // A kernel that did not boot is a failure: show why.
                    report::print_log_tail(&run.log, 60);
                }
                report::test_outcomes(&run, binaries.len() > 1)
            }
        };
        results.push((spec.name.to_string(), outcome));
    }
    Ok(print_matrix(&results))
}

/// The guest script: every binary in turn from the workspace root, its exit status reported,
/// with the host's FLOW_*, RUST_LOG, RUST_BACKTRACE and PATH variables.
/// The guest's root is the host's, read-only: a tmpfs overlay makes the workspace writable
/// (target/tmp, test fixtures) inside the VM without touching the host's files.
fn test_script(workspace: &Path, binaries: &[PathBuf], args: &[String]) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
    let ws = quote(&workspace.display().to_string());
    let mut s = format!(
        "mkdir -p /run/ws/upper /run/ws/work\n\
         mount -t overlay overlay -o lowerdir={ws},upperdir=/run/ws/upper,workdir=/run/ws/work {ws}\n\
         cd {ws}\nfailed=0\n"
    );
    // The guest starts with init's environment: pass on the variables the tests read.
    for (name, value) in env::vars() {
        // PATH too: the tests run the same tools (pyenv's python with its packages) as the host.
        if name.starts_with("FLOW_")
            || name == "RUST_LOG"
            || name == "RUST_BACKTRACE"
            || name == "PATH"
        {
            s += &format!("export {name}={}\n", quote(&value));
        }
    }
    for bin in binaries {
        let bin = quote(&bin.display().to_string());
        s += &format!(
            "echo {BINARY_MARKER}{bin}\n{bin} --test-threads=1 --color=never {}\n",
            args.join(" ")
        );
        s += &format!("rc=$?; echo \"{BINARY_MARKER}exit $rc\"; [ $rc = 0 ] || failed=1\n");
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
