//! After the matrix and the times: what each failed test printed, so that the end of a CI log
//! (often all a reader gets to see) says why a cell is FAIL, not only which.

use super::report::{parse_libtest, KernelTimes};

/// Lines of one failure shown at most: the last ones, where the error is.
const MAX_LINES: usize = 40;

/// Prints, per kernel, each failed test's captured output (its last [`MAX_LINES`] lines), and
/// the end of the output of a binary that failed without a failing test (a crash).
pub fn print_failures(times: &[KernelTimes]) {
    for kernel in times {
        for bin in &kernel.binaries {
            let failed: Vec<String> = parse_libtest(&bin.output)
                .into_iter()
                .filter(|t| !t.passed)
                .map(|t| t.name)
                .collect();
            for name in &failed {
                let block = test_output(&bin.output, name);
                print_block(
                    &format!("{}::{name} on {}", bin.stem, kernel.kernel),
                    &block,
                );
            }
            if failed.is_empty() && bin.exit.as_deref().is_some_and(|rc| rc != "0") {
                let all: Vec<&str> = bin.output.lines().collect();
                print_block(&format!("{} on {}", bin.stem, kernel.kernel), &all);
            }
        }
    }
}

fn print_block(title: &str, lines: &[&str]) {
    println!("\n--- failure: {title} ---");
    let skip = lines.len().saturating_sub(MAX_LINES);
    if skip > 0 {
        println!("[{skip} earlier lines in the log above]");
    }
    for line in &lines[skip..] {
        println!("{line}");
    }
}

/// The lines libtest printed under `---- NAME stdout ----`, up to the next such header, the
/// closing list of names or an error's backtrace (dozens of lines that would push the error
/// itself out of the excerpt).
fn test_output<'a>(output: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("---- {name} stdout ----");
    let mut lines = output.lines().skip_while(|l| l.trim() != header);
    if lines.next().is_none() {
        return Vec::new();
    }
    let mut block: Vec<&str> = lines
        .take_while(|l| {
            !(l.starts_with("---- ") && l.ends_with(" ----"))
                && *l != "failures:"
                && *l != "successes:"
                && l.trim() != "Stack backtrace:"
        })
        .collect();
    while block.last().is_some_and(|l| l.trim().is_empty()) {
        block.pop();
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_one_tests_block_and_stops_at_the_next() {
        let out = "running 2 tests\ntest a ... ok\ntest b ... FAILED\n\nsuccesses:\n\n\
                   ---- a stdout ----\nfine\n\nsuccesses:\n    a\n\nfailures:\n\n\
                   ---- b stdout ----\nscale 1\nError: capture saw payload\n\n\
                   failures:\n    b\n\ntest result: FAILED. 1 passed; 1 failed\n";
        assert_eq!(
            test_output(out, "b"),
            ["scale 1", "Error: capture saw payload"]
        );
        assert_eq!(test_output(out, "a"), ["fine"]);
        assert!(test_output(out, "c").is_empty());
    }

    #[test]
    fn a_block_between_two_failures_ends_at_the_second_header() {
        let out = "failures:\n\n---- x stdout ----\none\n---- y stdout ----\ntwo\n";
        assert_eq!(test_output(out, "x"), ["one"]);
        assert_eq!(test_output(out, "y"), ["two"]);
    }

    #[test]
    fn a_backtrace_is_left_out() {
        let out =
            "---- x stdout ----\nError: capture saw payload\n\nStack backtrace:\n   0: anyhow\n";
        assert_eq!(test_output(out, "x"), ["Error: capture saw payload"]);
    }
}
