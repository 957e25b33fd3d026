//! What each kernel allows (the agent's probe) and which hook tier the agent used there: the
//! script's probe and agent lines, turned into a table and into rows of the matrix.

use serde_json::Value;

use super::report::TestOutcome;
use super::script::{AGENT_LINE, AGENT_READY_LINE, PROBE_BEGIN, PROBE_END};

/// Hooks a faster tier would use; each VM kernel must have them, and the probe must say so.
const FAST_HOOKS: &[&str] = &["fentry", "fexit", "kprobe"];

/// One probe check: a hook kind and whether this kernel allowed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub available: bool,
    pub detail: Option<String>,
}

/// What the script reported about the kernel's hooks.
#[derive(Debug, Default)]
pub struct HookReport {
    /// `uname -r` as the probe saw it.
    pub kernel: Option<String>,
    pub checks: Vec<Check>,
    pub baseline_ok: bool,
    /// Why no probe report could be read (no output, not JSON).
    pub probe_error: Option<String>,
    /// What the agent logged as its hook tier ("baseline (fentry/fexit ...)").
    pub tier: Option<String>,
    /// The agent's log while it started, for a failure message.
    pub agent_log: Vec<String>,
    /// From `flow-agent run` to its "ready" line, as the script measured it.
    pub ready_ms: Option<u64>,
}

impl HookReport {
    pub fn parse(stdout: &str) -> HookReport {
        let mut report = HookReport::default();
        let mut json = None::<String>;
        for line in stdout.lines() {
            if line == PROBE_BEGIN {
                json = Some(String::new());
            } else if let Some(status) = line.strip_prefix(PROBE_END) {
                let text = json.take().unwrap_or_default();
                report.read_probe(&text, status.trim());
            } else if let Some(text) = json.as_mut() {
                text.push_str(line);
                text.push('\n');
            } else if let Some(ms) = line.strip_prefix(AGENT_READY_LINE) {
                report.ready_ms = ms.trim().parse().ok();
            } else if let Some(log) = line.strip_prefix(AGENT_LINE) {
                if let Some(tier) = log.split("hook tier: ").nth(1) {
                    report.tier = Some(tier.trim_end_matches('"').to_string());
                }
                report.agent_log.push(log.to_string());
            }
        }
        if report.kernel.is_none() && report.probe_error.is_none() {
            report.probe_error = Some("the script printed no probe report".into());
        }
        report
    }

    fn read_probe(&mut self, text: &str, status: &str) {
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let first = text.lines().next().unwrap_or("(nothing)");
                self.probe_error = Some(format!(
                    "flow-agent probe --json (exit {status}) printed no report ({e}): {first}"
                ));
                return;
            }
        };
        self.kernel = value["kernel"].as_str().map(String::from);
        self.baseline_ok = value["baseline_ok"].as_bool().unwrap_or(false);
        self.checks = value["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| Check {
                name: c["name"].as_str().unwrap_or("?").to_string(),
                available: c["available"].as_bool().unwrap_or(false),
                detail: c["detail"].as_str().map(String::from),
            })
            .collect();
    }

    fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Matrix rows: the probe ran and found the baseline; on a kernel expected to have the
    /// fast hooks, it reports them; the agent started and said which tier it used.
    pub fn outcomes(&self, expect_fast_hooks: bool) -> Vec<TestOutcome> {
        let mut rows = vec![TestOutcome::new(
            "(probe: baseline hooks available)".into(),
            self.probe_error.is_none() && self.baseline_ok,
        )];
        if expect_fast_hooks {
            rows.push(TestOutcome::new(
                "(probe: fentry, fexit, kprobe available)".into(),
                FAST_HOOKS
                    .iter()
                    .all(|h| self.check(h).is_some_and(|c| c.available)),
            ));
        }
        rows.push(TestOutcome::new(
            "(agent: reports its hook tier)".into(),
            self.tier.is_some(),
        ));
        rows
    }

    fn cell(&self, name: &str) -> String {
        match self.check(name) {
            Some(c) if c.available => "yes".into(),
            Some(c) => match &c.detail {
                Some(d) => format!("no: {}", d.chars().take(60).collect::<String>()),
                None => "no".into(),
            },
            None => "?".into(),
        }
    }
}

/// Prints, per kernel, what the probe found and the tier the agent used; and why, where the
/// probe or the agent did not report.
pub fn print_hooks(reports: &[(String, HookReport)]) {
    if reports.is_empty() {
        return;
    }
    println!();
    for (target, r) in reports {
        println!(
            "{target:>6}: kernel {}",
            r.kernel.as_deref().unwrap_or("(unknown)")
        );
        if let Some(e) = &r.probe_error {
            println!("        probe: {e}");
        }
        for hook in FAST_HOOKS {
            println!("        {hook:<7} {}", r.cell(hook));
        }
        let missing: Vec<&str> = r
            .checks
            .iter()
            .filter(|c| !c.available && !FAST_HOOKS.contains(&c.name.as_str()))
            .map(|c| c.name.as_str())
            .collect();
        if !missing.is_empty() {
            println!("        also unavailable: {}", missing.join(", "));
        }
        if let Some(ms) = r.ready_ms {
            println!(
                "        agent's start to ready: {:.1} s",
                ms as f64 / 1000.0
            );
        }
        match &r.tier {
            Some(tier) => println!("        agent's hook tier: {tier}"),
            None => {
                println!("        agent's hook tier: NOT REPORTED; its log:");
                for line in r.agent_log.iter().rev().take(10).rev() {
                    println!("          {line}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_probe_and_tier() {
        let out = "VM-PROBE-JSON\n{\n \"kernel\": \"6.1.0-50-amd64\",\n \"checks\": [\
                   {\"name\": \"fentry\", \"available\": true, \"baseline\": false},\
                   {\"name\": \"fexit\", \"available\": true, \"baseline\": false},\
                   {\"name\": \"kprobe\", \"available\": false, \"detail\": \"ENOENT\", \"baseline\": false}],\n\
                   \"baseline_ok\": true, \"fentry_ok\": true\n}\nVM-PROBE-END 0\n\
                   VM-AGENT level=info target=flow_agent::runtime msg=\"hook tier: baseline (fentry/fexit allowed, not used yet)\"\n\
                   VM-TEST-BINARY '/t/x-1'\n";
        let r = HookReport::parse(out);
        assert_eq!(r.kernel.as_deref(), Some("6.1.0-50-amd64"));
        assert_eq!(
            r.tier.as_deref(),
            Some("baseline (fentry/fexit allowed, not used yet)")
        );
        assert_eq!(r.cell("fentry"), "yes");
        assert_eq!(r.cell("kprobe"), "no: ENOENT");
        let rows: Vec<(String, bool)> = r
            .outcomes(true)
            .into_iter()
            .map(|t| (t.name, t.passed))
            .collect();
        assert_eq!(
            rows,
            [
                ("(probe: baseline hooks available)".to_string(), true),
                (
                    "(probe: fentry, fexit, kprobe available)".to_string(),
                    false
                ),
                ("(agent: reports its hook tier)".to_string(), true),
            ]
        );
        assert_eq!(r.outcomes(false).len(), 2);
    }

    #[test]
    fn no_probe_output_is_a_failure() {
        let r = HookReport::parse("VM-TEST-BINARY '/t/x-1'\n");
        assert!(r.probe_error.is_some());
        assert!(r.outcomes(false).iter().all(|t| !t.passed));
    }
}
