//! The result of the start-up self-check (runtime/self_check.rs): one entry per field the agent
//! compared between traffic it made itself and the records its pipeline produced for it.
use serde::Serialize;

/// One compared field.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct SelfCheck {
    /// `<flow>.<field>`, e.g. `tcp4.client.bytes` or `exec.image_path`.
    pub name: String,
    pub ok: bool,
    pub expected: String,
    pub got: String,
}

/// Every check of one self-check run.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct SelfCheckReport {
    /// Every check passed.
    pub ok: bool,
    /// Wall time the run took, traffic and verification together.
    pub duration_ms: f64,
    /// Kernel-side records lost while it ran (a ring or table too small for the host's load):
    /// failed checks then say nothing about the agent's eyes.
    pub records_lost: u64,
    pub checks: Vec<SelfCheck>,
}

impl SelfCheckReport {
    pub fn failed(&self) -> impl Iterator<Item = &SelfCheck> {
        self.checks.iter().filter(|c| !c.ok)
    }

    /// The failed checks in one line: `name: expected E, got G; ...`.
    pub fn describe_failures(&self) -> String {
        self.failed()
            .map(|c| format!("{}: expected {}, got {}", c.name, c.expected, c.got))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// One line per check, for `flow-agent probe --self-check`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for c in &self.checks {
            s += &format!(
                "{:<4} {:<28} expected {:<40} got {}\n",
                if c.ok { "ok" } else { "FAIL" },
                c.name,
                c.expected,
                c.got
            );
        }
        s += &format!(
            "self-check: {} ({} checks, {:.0} ms)\n",
            if self.ok { "ok" } else { "FAILED" },
            self.checks.len(),
            self.duration_ms
        );
        s
    }
}
