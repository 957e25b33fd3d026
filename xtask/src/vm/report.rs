//! libtest output to outcomes, outcomes to the kernel × test matrix.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::binary_stem;
use super::boot::VmRun;
use super::script::BINARY_MARKER;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    pub name: String,
    pub passed: bool,
    /// Why it is known to fail on this kernel (see `compat::KNOWN_GAPS`): a failure then is
    /// shown as `gap` and does not fail the run.
    pub known_gap: Option<&'static str>,
}

impl TestOutcome {
    pub fn new(name: String, passed: bool) -> Self {
        Self {
            name,
            passed,
            known_gap: None,
        }
    }

    fn counts(&self) -> bool {
        self.passed || self.known_gap.is_some()
    }
}

/// Reads libtest's `test NAME ... ok|FAILED` lines; ignored tests are left out.
pub fn parse_libtest(output: &str) -> Vec<TestOutcome> {
    output
        .lines()
        .filter_map(|line| {
            let line = strip_colors(line);
            let (name, status) = line
                .trim_end()
                .strip_prefix("test ")?
                .rsplit_once(" ... ")?;
            let name = name.trim_end_matches(" - should panic").to_string();
            match status.trim() {
                "ok" => Some(TestOutcome::new(name, true)),
                "FAILED" => Some(TestOutcome::new(name, false)),
                _ => None,
            }
        })
        .collect()
}

/// Drops ANSI colour sequences (`ESC [ ... m`): on the VM's console libtest colours by default.
fn strip_colors(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

/// Why a kernel has no test outcomes.
#[derive(Debug, thiserror::Error)]
pub enum KernelFailed {
    /// The VM could not be run at all.
    #[error("{0:#}")]
    Run(anyhow::Error),
    #[error("{stopped}, before the script started; console log {}", .log.display())]
    NeverStarted { stopped: String, log: PathBuf },
}

/// Prints a test × kernel table (pass, FAIL, — for not run); a kernel that did not boot fails
/// the "(boot)" row. Returns true if every kernel booted and every test passed.
pub fn print_matrix(results: &[(String, Result<Vec<TestOutcome>, KernelFailed>)]) -> bool {
    let mut names: Vec<&str> = Vec::new();
    for outcome in results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .flatten()
    {
        if !names.contains(&outcome.name.as_str()) {
            names.push(&outcome.name);
        }
    }
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0).max(6);
    let row = |name: &str, cells: Vec<&str>| {
        let cells: String = cells.iter().map(|c| format!(" {c:>7}")).collect();
        println!("{name:width$}{cells}");
    };
    row(
        "test",
        results.iter().map(|(kernel, _)| kernel.as_str()).collect(),
    );
    row(
        "(boot)",
        results
            .iter()
            .map(|(_, r)| if r.is_ok() { "ok" } else { "FAIL" })
            .collect(),
    );
    for name in &names {
        let cells = results.iter().map(|(_, r)| {
            match r
                .as_ref()
                .map(|tests| tests.iter().find(|t| t.name == *name))
            {
                Ok(Some(test)) if test.passed => "pass",
                Ok(Some(test)) if test.known_gap.is_some() => "gap",
                Ok(Some(_)) => "FAIL",
                Ok(None) | Err(_) => "—",
            }
        });
        row(name, cells.collect());
    }
    for (kernel, result) in results {
        match result {
            Err(reason) => println!("kernel {kernel}: {reason}"),
            Ok(tests) => {
                for t in tests.iter().filter(|t| !t.passed) {
                    if let Some(why) = t.known_gap {
                        println!("gap on {kernel}: {}: {why}", t.name);
                    }
                }
            }
        }
    }
    results.iter().all(|(_, r)| {
        r.as_ref()
            .is_ok_and(|tests| tests.iter().all(TestOutcome::counts))
    })
}

/// One test binary's part of the test script's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryRun {
    /// `<crate or test>` of cargo's `<crate or test>-<hash>`.
    pub stem: String,
    /// Its exit status; None when the VM stopped while it ran.
    pub exit: Option<String>,
    /// How long it ran, as the guest measured it.
    pub time: Option<Duration>,
    /// Its output (libtest's).
    pub output: String,
}

/// Splits the test script's output per binary, at the markers the script prints.
pub fn binary_runs(stdout: &str) -> Vec<BinaryRun> {
    let mut runs: Vec<BinaryRun> = Vec::new();
    for line in stdout.lines() {
        let Some(marked) = line.strip_prefix(BINARY_MARKER) else {
            if let Some(run) = runs.last_mut().filter(|r| r.exit.is_none()) {
                run.output.push_str(line);
                run.output.push('\n');
            }
            continue;
        };
        match (marked.strip_prefix("exit "), runs.last_mut()) {
            (Some(rest), Some(run)) => {
                // `exit RC time MSms`
                let mut words = rest.split_whitespace();
                run.exit = words.next().map(String::from);
                run.time = match (words.next(), words.next()) {
                    (Some("time"), Some(ms)) => ms
                        .trim_end_matches("ms")
                        .parse()
                        .ok()
                        .map(Duration::from_millis),
                    _ => None,
                };
            }
            (Some(_), None) => {}
            (None, _) => runs.push(BinaryRun {
                stem: binary_stem(Path::new(marked.trim_matches('\''))),
                exit: None,
                time: None,
                output: String::new(),
            }),
        }
    }
    runs
}

/// The tests libtest had started and not finished when its binary was stopped, as far as its
/// output tells: with one test thread, a `test NAME ... ` line with no result yet; with more,
/// `test NAME has been running for over 60 seconds` lines with no result later.
fn unfinished_tests(output: &str) -> Vec<String> {
    let finished: Vec<String> = parse_libtest(output).into_iter().map(|t| t.name).collect();
    let mut started = Vec::new();
    for line in output.lines().map(strip_colors) {
        let Some(rest) = line.strip_prefix("test ") else {
            continue;
        };
        let name = match rest.rsplit_once(" ...") {
            Some((name, status)) if status.trim().is_empty() => name,
            _ => match rest.strip_suffix(" has been running for over 60 seconds") {
                Some(name) => name,
                None => continue,
            },
        };
        if !finished.iter().any(|f| f == name) && !started.iter().any(|s| s == name) {
            started.push(name.to_string());
        }
    }
    started
}

/// The outcomes of every binary that ran. A binary that failed without a failing test (crash,
/// bad arguments, no libtest output) gets a failing row of its own, and so does one the VM
/// stopped (time limit) while it ran, naming the test it was in. Only a VM whose script never
/// started is an error (the "(boot)" row).
pub(super) fn test_outcomes(
    run: &VmRun,
    binaries: &[BinaryRun],
) -> Result<Vec<TestOutcome>, KernelFailed> {
    let stopped = if run.timed_out {
        format!(
            "VM time limit reached after {:.0}s",
            run.total_time.as_secs_f64()
        )
    } else if let Some(why) = &run.stalled {
        format!("VM stopped as hung: {why}")
    } else {
        "VM stopped before the script ended".to_string()
    };
    if run.exit_status.is_none() && run.boot_time.is_none() {
        return Err(KernelFailed::NeverStarted {
            stopped,
            log: run.log.clone(),
        });
    }
    let prefix = binaries.len() > 1;
    let mut all = Vec::new();
    for bin in binaries {
        let stem = &bin.stem;
        let mut tests = parse_libtest(&bin.output);
        if prefix {
            tests
                .iter_mut()
                .for_each(|t| t.name = format!("{stem}::{}", t.name));
        }
        match bin.exit.as_deref() {
            None => {
                let mut unfinished = unfinished_tests(&bin.output);
                if prefix {
                    unfinished = unfinished.iter().map(|t| format!("{stem}::{t}")).collect();
                }
                if unfinished.is_empty() {
                    unfinished.push(stem.clone());
                }
                tests.extend(
                    unfinished
                        .into_iter()
                        .map(|what| TestOutcome::new(format!("{what} ({stopped})"), false)),
                );
            }
            Some(rc) if rc != "0" && tests.iter().all(|t| t.passed) => tests.push(
                TestOutcome::new(format!("{stem} (exit status {rc})"), false),
            ),
            Some(_) => {}
        }
        all.extend(tests);
    }
    match run.exit_status {
        Some(status) if status != 0 && all.iter().all(|t| t.passed) => all.push(TestOutcome::new(
            format!("(script exit status {status})"),
            false,
        )),
        None if binaries.iter().all(|b| b.exit.is_some()) => {
            all.push(TestOutcome::new(format!("(script: {stopped})"), false))
        }
        _ => {}
    }
    Ok(all)
}

/// How long one kernel's VM and each of its test binaries took.
pub struct KernelTimes {
    pub kernel: String,
    pub boot: Option<Duration>,
    pub total: Duration,
    pub binaries: Vec<BinaryRun>,
}

/// Prints seconds per test binary × kernel, then boot and the whole VM. Every kernel runs the
/// same binaries in the same order: rows go by position (two binaries may share a stem, such
/// as a crate's lib and bin unit tests).
pub fn print_times(times: &[KernelTimes]) {
    if times.is_empty() {
        return;
    }
    let rows = times.iter().map(|t| t.binaries.len()).max().unwrap_or(0);
    let mut labels: Vec<String> = Vec::new();
    for i in 0..rows {
        let stem = times
            .iter()
            .find_map(|t| t.binaries.get(i))
            .map_or("?".to_string(), |b| b.stem.clone());
        let seen = labels
            .iter()
            .filter(|l| l.split(" #").next() == Some(stem.as_str()))
            .count();
        labels.push(match seen {
            0 => stem,
            n => format!("{stem} #{}", n + 1),
        });
    }
    let secs =
        |d: Option<Duration>| d.map_or("—".to_string(), |d| format!("{:.0}s", d.as_secs_f64()));
    let width = labels.iter().map(|l| l.len()).max().unwrap_or(0).max(14);
    let row = |name: &str, cells: Vec<String>| {
        let cells: String = cells.iter().map(|c| format!(" {c:>7}")).collect();
        println!("{name:width$}{cells}");
    };
    println!();
    row("time", times.iter().map(|t| t.kernel.clone()).collect());
    for (i, label) in labels.iter().enumerate() {
        row(
            label,
            times
                .iter()
                .map(|t| secs(t.binaries.get(i).and_then(|b| b.time)))
                .collect(),
        );
    }
    row("(boot)", times.iter().map(|t| secs(t.boot)).collect());
    row(
        "(VM total)",
        times.iter().map(|t| secs(Some(t.total))).collect(),
    );
    let all: Duration = times.iter().map(|t| t.total).sum();
    println!("all VMs: {:.0}s", all.as_secs_f64());
}

pub(super) fn print_log_tail(log: &Path, n: usize) {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    eprintln!("--- last {n} lines of {} ---", log.display());
    for line in &lines[lines.len().saturating_sub(n)..] {
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_lines() {
        let out = "running 3 tests\ntest a::b ... ok\ntest c - should panic ... ok\n\
                   test d ... \x1b[31mFAILED\x1b[m\ntest e ... ignored\ntest result: FAILED. 2 passed\n";
        let got: Vec<(String, bool)> = parse_libtest(out)
            .into_iter()
            .map(|t| (t.name, t.passed))
            .collect();
        let want = [("a::b", true), ("c", true), ("d", false)].map(|(n, p)| (n.to_string(), p));
        assert_eq!(got, want);
    }

    fn vm_run(stdout: &str, exit_status: Option<i32>, timed_out: bool) -> VmRun {
        VmRun {
            exit_status,
            timed_out,
            stdout: stdout.to_string(),
            log: "console.log".into(),
            boot_time: Some(Duration::from_secs(20)),
            total_time: Duration::from_secs(900),
            stalled: None,
        }
    }

    fn rows(outcomes: &[TestOutcome]) -> Vec<(&str, bool)> {
        outcomes
            .iter()
            .map(|t| (t.name.as_str(), t.passed))
            .collect()
    }

    #[test]
    fn splits_binaries_with_exit_status_and_time() {
        let out = "VM-TEST-BINARY '/t/deps/udp-0123'\ntest a ... ok\n\
                   VM-TEST-BINARY exit 0 time 1500ms\n\
                   VM-TEST-BINARY '/t/deps/tcp-4567'\ntest b ... FAILED\n\
                   VM-TEST-BINARY exit 101 time 20ms\n";
        let runs = binary_runs(out);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].stem, "udp");
        assert_eq!(runs[0].exit.as_deref(), Some("0"));
        assert_eq!(runs[0].time, Some(Duration::from_millis(1500)));
        assert_eq!(runs[1].output, "test b ... FAILED\n");
        let outcomes = test_outcomes(&vm_run(out, Some(1), false), &runs).unwrap();
        assert_eq!(rows(&outcomes), [("udp::a", true), ("tcp::b", false)]);
    }

    #[test]
    fn a_time_limit_names_the_test_that_was_running() {
        let out = "VM-TEST-BINARY '/t/deps/udp-0123'\ntest a ... ok\n\
                   VM-TEST-BINARY exit 0 time 1500ms\n\
                   VM-TEST-BINARY '/t/deps/attribution-89'\n\nrunning 2 tests\n\
                   test many ... ok\ntest slow ... \n";
        let runs = binary_runs(out);
        assert_eq!(runs[1].exit, None);
        let outcomes = test_outcomes(&vm_run(out, None, true), &runs).unwrap();
        assert_eq!(
            rows(&outcomes),
            [
                ("udp::a", true),
                ("attribution::many", true),
                (
                    "attribution::slow (VM time limit reached after 900s)",
                    false
                )
            ]
        );
        // With two test threads, libtest names a test only when it ends or has run a minute.
        let out = "VM-TEST-BINARY '/t/deps/lifecycle-1'\ntest a ... ok\n\
                   test b has been running for over 60 seconds\n\
                   test a has been running for over 60 seconds\n\
                   test c has been running for over 60 seconds\ntest c ... ok\n";
        let runs = binary_runs(out);
        let outcomes = test_outcomes(&vm_run(out, None, true), &runs).unwrap();
        assert_eq!(
            rows(&outcomes),
            [
                ("a", true),
                ("c", true),
                ("b (VM time limit reached after 900s)", false)
            ]
        );
        // A VM that never reached the script is the "(boot)" failure.
        let mut run = vm_run("", None, true);
        run.boot_time = None;
        assert!(test_outcomes(&run, &[]).is_err());
    }

    #[test]
    fn a_crash_without_failing_test_gets_its_own_row() {
        let out =
            "VM-TEST-BINARY '/t/deps/x-1'\nSegmentation fault\nVM-TEST-BINARY exit 139 time 5ms\n";
        let runs = binary_runs(out);
        let outcomes = test_outcomes(&vm_run(out, Some(1), false), &runs).unwrap();
        assert_eq!(rows(&outcomes), [("x (exit status 139)", false)]);
    }
}
