//! `cargo xtask vm-test`: boot real Debian kernels in qemu (TCG) with virtme-ng over the host's
//! root filesystem, run the prebuilt test binaries inside each of them (and on the host's own
//! kernel, without a VM) and print a kernel × test matrix, what each kernel's probe found and
//! the hook tier the agent used there.
//!
//! By default each kernel runs the kernel-compatibility suite ([`compat::SUITE`]); `--full` runs
//! every test binary.
//!
//! Knobs (environment variables of `cargo xtask vm-test`):
//! - `FLOW_VM_TESTS`: comma-separated test binary names (`attribution`, `tcp_capture`, ...);
//!   only those run. Default: all (of the suite).
//! - `FLOW_VM_TEST_ARGS`: extra libtest arguments for every binary (whitespace-separated), e.g.
//!   a test name filter.
//! - `FLOW_VM_TEST_THREADS`: libtest threads per binary in a VM (default [`TEST_THREADS`]).
//! - `FLOW_VM_TIMEOUT_SECS`, `FLOW_VM_CACHE`: see [`VM_TIMEOUT`] and [`vm_test`].
//! - Every other `FLOW_*` variable is passed into the guest; `FLOW_TEST_SCALE` and
//!   `FLOW_TEST_SLOW` default to [`GUEST_DEFAULTS`] there.

mod boot;
mod compat;
mod failures;
mod hooks;
mod kernel;
mod report;
mod script;
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use std::{env, fs};

use anyhow::{bail, Context, Result};

use boot::{run_in_vm, run_on_host};
use hooks::HookReport;
use kernel::{fetch_kernel, KernelSpec};
use report::{print_matrix, KernelFailed, KernelTimes};
use script::{Binaries, TestRun};
pub use tools::ensure_vm_tools;

/// The matrix's name for the running kernel, tested without a VM.
pub const HOST: &str = "host";
/// Kernels run when none is named: the host's and the VM kernels.
pub const DEFAULT_KERNELS: &[&str] = &[HOST, "5.10", "6.1", "6.12"];
/// Time limit for one VM (boot plus every test binary) or the host's run, unless
/// `$FLOW_VM_TIMEOUT_SECS` says otherwise; see docs/vm-tests.md for what a kernel takes (5.10:
/// some 40 minutes on 2 shared cores, so the former 20 minutes cut every run short).
pub const VM_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// The tests' speed knobs in the guest, unless the host's environment sets them (see
/// `flow_agent_tests::scaled` and `slowed`): under TCG the guest runs some 30 times slower than
/// the host, so the load tests run a tenth of their connections (each still checked exactly)
/// and every bound the tests wait for is ten times longer.
pub const GUEST_DEFAULTS: &[(&str, &str)] = &[("FLOW_TEST_SCALE", "0.1"), ("FLOW_TEST_SLOW", "10")];
/// Tests of one binary run as many at a time as the guest has vCPUs, as `cargo test` runs them
/// on a host with as many cores (the tests use their own namespaces and subnets; an agent test
/// checks only its own flows). Much of a test's time in the guest is waiting (for processes to
/// start, timeouts to expire): two at a time take some 40% less time than one at a time.
pub const TEST_THREADS: u32 = boot::VM_CPUS;

/// Runs the compat suite (every test binary if `full`) on each kernel of `kernels` (the host's,
/// [`HOST`], directly; the others in a VM, [`TEST_THREADS`] tests at a time) and prints the
/// matrix, the hooks each kernel allows and the time each binary took; true if everything
/// passed but the [`compat::KNOWN_GAPS`]. The download cache is `$FLOW_VM_CACHE` if set, else
/// `<workspace>/.vm-cache`.
pub fn vm_test(
    kernels: &[String],
    workspace: &Path,
    test_binaries: &[PathBuf],
    full: bool,
) -> Result<bool> {
    let cache =
        env::var_os("FLOW_VM_CACHE").map_or_else(|| workspace.join(".vm-cache"), PathBuf::from);
    let kernels: Vec<String> = match kernels {
        [] => DEFAULT_KERNELS.iter().map(|k| k.to_string()).collect(),
        named => named.to_vec(),
    };
    let targets = kernels
        .iter()
        .map(|k| Target::parse(k))
        .collect::<Result<Vec<_>>>()?;
    if targets.iter().any(|t| matches!(t, Target::Vm(_))) {
        ensure_vm_tools()?;
    }
    let built = test_binaries
        .iter()
        .map(|b| fs::canonicalize(b).with_context(|| format!("test binary {}", b.display())))
        .collect::<Result<Vec<_>>>()?;
    let mut binaries: Vec<TestRun> = if full {
        built
            .iter()
            .map(|path| TestRun {
                path: path.clone(),
                filters: Vec::new(),
            })
            .collect()
    } else {
        compat::suite_runs(&built)?
    };
    if let Ok(wanted) = env::var("FLOW_VM_TESTS") {
        let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
        binaries.retain(|b| wanted.contains(&binary_stem(&b.path).as_str()));
        if binaries.is_empty() {
            let known: Vec<String> = test_binaries.iter().map(|b| binary_stem(b)).collect();
            bail!(
                "FLOW_VM_TESTS={wanted:?} names no test binary; known: {}",
                known.join(", ")
            );
        }
    }
    let args: Vec<String> = env::var("FLOW_VM_TEST_ARGS")
        .map(|extra| extra.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let threads = match env::var("FLOW_VM_TEST_THREADS") {
        Ok(n) => n
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("FLOW_VM_TEST_THREADS={n:?}: want a number ≥ 1"))?,
        Err(_) => TEST_THREADS,
    };
    let python_dir = real_python_dir();
    let guest_env = guest_env(env::vars(), python_dir.as_deref());
    let knobs: Vec<String> = guest_env
        .iter()
        .filter(|(k, _)| k.starts_with("FLOW_TEST_"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    eprintln!(
        "vm: {} test binaries ({}); in VMs {threads} test thread(s) each, {}",
        binaries.len(),
        if full { "--full" } else { "compat suite" },
        knobs.join(" ")
    );
    // The interpreter's installation (its standard library) is read through the cached view
    // too; /usr already is.
    let cached: Vec<PathBuf> = python_dir
        .iter()
        .filter_map(|bin| Path::new(bin).parent())
        .filter(|prefix| !prefix.starts_with("/usr"))
        .map(Path::to_path_buf)
        .collect();
    let vm_script = script::vm_script(
        workspace,
        &cached,
        &guest_env,
        &Binaries {
            runs: &binaries,
            args: &args,
            threads: Some(threads),
        },
    );
    let host_script = script::host_script(
        workspace,
        &Binaries {
            runs: &binaries,
            args: &args,
            threads: None,
        },
    );
    let timeout = env::var("FLOW_VM_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(VM_TIMEOUT, Duration::from_secs);
    let mut hook_reports = Vec::new();
    let mut results = Vec::new();
    let mut times = Vec::new();
    let mut retried = Vec::new();
    for target in &targets {
        let name = target.name().to_string();
        let run = match target {
            Target::Host => {
                eprintln!("vm: running on the host's kernel (no VM)");
                // As `cargo test` runs them: the host's environment, libtest's thread count.
                run_on_host(&cache.join(HOST), &host_script, timeout)
            }
            Target::Vm(spec) => fetch_kernel(spec, &cache).and_then(|k| {
                eprintln!(
                    "vm: booting kernel {}: {} ({})",
                    k.name, k.release, k.package
                );
                let run = run_in_vm(&k, &vm_script, timeout)?;
                let Some(why) = &run.stalled else {
                    return Ok(run);
                };
                // A guest that hangs under emulation says nothing of the code under test: its
                // suite runs once more in a fresh VM, and the hang stays in the log.
                eprintln!("vm: kernel {name} hung ({why}); its suite runs again in a new VM");
                report::print_log_tail(&run.log, 60);
                let first_log = run.log.with_extension("hung.log");
                let _ = fs::rename(&run.log, &first_log);
                retried.push(format!(
                    "{name}: first VM hung ({why}), log {}",
                    first_log.display()
                ));
                run_in_vm(&k, &vm_script, timeout)
            }),
        };
        let outcome = match run {
            Err(e) => Err(KernelFailed::Run(e)),
            Ok(run) => {
                let binaries = report::binary_runs(&run.stdout);
                print!("{}", run.stdout);
                let secs = |d: Duration| format!("{:.1}s", d.as_secs_f64());
                eprintln!(
                    "vm: kernel {name}: boot {}, total {}, console log {}",
                    run.boot_time.map_or("-".into(), secs),
                    secs(run.total_time),
                    run.log.display()
                );
                if run.exit_status.is_none() {
                    // A kernel that did not boot, or a script that did not finish: show why.
                    report::print_log_tail(&run.log, 60);
                }
                let hooks = HookReport::parse(&run.stdout);
                let outcome = report::test_outcomes(&run, &binaries).map(|mut tests| {
                    tests.splice(0..0, hooks.outcomes(target.expects_fast_hooks()));
                    for t in &mut tests {
                        t.known_gap = compat::known_gap(&name, &t.name);
                    }
                    tests
                });
                hook_reports.push((name.clone(), hooks));
                times.push(KernelTimes {
                    kernel: name.clone(),
                    boot: run.boot_time,
                    total: run.total_time,
                    binaries,
                });
                outcome
            }
        };
        results.push((name, outcome));
    }
    hooks::print_hooks(&hook_reports);
    let passed = print_matrix(&results);
    report::print_times(&times);
    for r in &retried {
        println!("retried: {r}");
    }
    failures::print_failures(&times);
    Ok(passed)
}

/// A column of the matrix.
enum Target {
    /// The running kernel, without a VM.
    Host,
    Vm(KernelSpec),
}

impl Target {
    fn parse(name: &str) -> Result<Target> {
        match name {
            HOST => Ok(Target::Host),
            _ => KernelSpec::parse(name).map(Target::Vm),
        }
    }

    fn name(&self) -> &str {
        match self {
            Target::Host => HOST,
            Target::Vm(spec) => spec.name,
        }
    }

    /// The VM kernels are Debian's, built with BTF, fentry/fexit and kprobes: a probe that
    /// does not find them there is wrong. The host may be anything (this one forbids both).
    fn expects_fast_hooks(&self) -> bool {
        matches!(self, Target::Vm(_))
    }
}

/// Cargo names test binaries `<crate or test>-<hash>`.
fn binary_stem(path: &Path) -> String {
    let name = file_name(path);
    name.rsplit_once('-')
        .map_or(name.as_str(), |(stem, _)| stem)
        .to_string()
}

/// The directory of the interpreter that `python3` on PATH runs, when PATH finds a wrapper
/// elsewhere (pyenv's shims): the guest gets it first in PATH, so the tests run the same
/// interpreter without the shim, which starts a dozen processes each time (half a minute
/// under TCG).
fn real_python_dir() -> Option<String> {
    let found = tools::which("python3")?;
    let out = Command::new(&found)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let exe = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let dir = exe.parent()?;
    (out.status.success() && exe.is_file() && found.parent() != Some(dir))
        .then(|| dir.display().to_string())
}

/// The variables the guest gets from the host: FLOW_* (but the runner's own FLOW_VM_*),
/// RUST_LOG, RUST_BACKTRACE and PATH (with `python_dir` first, see [`real_python_dir`]), then
/// the defaults of [`GUEST_DEFAULTS`] not set already.
fn guest_env(
    host: impl Iterator<Item = (String, String)>,
    python_dir: Option<&str>,
) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = host
        .filter(|(name, _)| {
            // PATH too: the tests run the same tools (pyenv's python with its packages) as the
            // host.
            (name.starts_with("FLOW_") && !name.starts_with("FLOW_VM_"))
                || name == "RUST_LOG"
                || name == "RUST_BACKTRACE"
                || name == "PATH"
        })
        .map(|(name, value)| match python_dir {
            Some(dir) if name == "PATH" => (name, format!("{dir}:{value}")),
            _ => (name, value),
        })
        .collect();
    for (name, value) in GUEST_DEFAULTS {
        if !vars.iter().any(|(n, _)| n == name) {
            vars.push((name.to_string(), value.to_string()));
        }
    }
    vars
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
            ("PATH", "/shims:/usr/bin"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let vars = guest_env(host.into_iter(), Some("/py/bin"));
        let got: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("FLOW_TEST_SLOW", "3"),
                ("FLOW_AGENT_BIN", "/a"),
                ("PATH", "/py/bin:/shims:/usr/bin"),
                ("FLOW_TEST_SCALE", "0.1")
            ]
        );
    }

    #[test]
    fn binary_stems() {
        assert_eq!(
            binary_stem(Path::new("/x/flow_agent-487b8b21ccc2b338")),
            "flow_agent"
        );
    }
}
