//! libtest output to outcomes, outcomes to the kernel × test matrix.

use std::fs;
use std::path::Path;

use super::boot::VmRun;
use super::{file_name, BINARY_MARKER};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    pub name: String,
    pub passed: bool,
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
                "ok" => Some(TestOutcome { name, passed: true }),
                "FAILED" => Some(TestOutcome {
                    name,
                    passed: false,
                }),
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

/// Prints a test × kernel table (pass, FAIL, — for not run); a kernel that did not boot fails
/// the "(boot)" row. Returns true if every kernel booted and every test passed.
pub fn print_matrix(results: &[(String, Result<Vec<TestOutcome>, String>)]) -> bool {
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
                Ok(Some(_)) => "FAIL",
                Ok(None) | Err(_) => "—",
            }
        });
        row(name, cells.collect());
    }
    for (kernel, result) in results {
        if let Err(reason) = result {
            println!("kernel {kernel}: {reason}");
        }
    }
    results
        .iter()
        .all(|(_, r)| r.as_ref().is_ok_and(|tests| tests.iter().all(|t| t.passed)))
}

/// Splits the test script's output per binary. A binary that failed without a failing test
/// (crash, bad arguments, no libtest output) gets a failing row of its own.
pub(super) fn test_outcomes(run: &VmRun, prefix: bool) -> Result<Vec<TestOutcome>, String> {
    let Some(status) = run.exit_status else {
        let what = if run.timed_out {
            "timed out"
        } else {
            "VM stopped before the script ended"
        };
        return Err(format!("{what}; console log {}", run.log.display()));
    };
    let mut all = Vec::new();
    let (mut stem, mut body) = (String::new(), String::new());
    for line in run.stdout.lines() {
        let Some(marked) = line.strip_prefix(BINARY_MARKER) else {
            body.push_str(line);
            body.push('\n');
            continue;
        };
        let Some(rc) = marked.strip_prefix("exit ") else {
            // Cargo names test binaries `<crate>-<hash>`.
            let name = file_name(Path::new(marked.trim_matches('\'')));
            stem = name
                .rsplit_once('-')
                .map_or(name.as_str(), |(s, _)| s)
                .to_string();
            body.clear();
            continue;
        };
        let mut tests = parse_libtest(&body);
        if prefix {
            tests
                .iter_mut()
                .for_each(|t| t.name = format!("{stem}::{}", t.name));
        }
        if rc != "0" && tests.iter().all(|t| t.passed) {
            tests.push(TestOutcome {
                name: format!("{stem} (exit status {rc})"),
                passed: false,
            });
        }
        all.extend(tests);
    }
    if status != 0 && all.iter().all(|t| t.passed) {
        all.push(TestOutcome {
            name: format!("(script exit status {status})"),
            passed: false,
        });
    }
    Ok(all)
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
}
