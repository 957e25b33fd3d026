//! The agent's log in a real systemd-journald: its stderr connected to the journal's stream
//! (systemd-cat, with `JOURNAL_STREAM` set as systemd sets it for a service), in a private
//! mount namespace whose own /run and /var/log/journal hold that journald, so the host's
//! journal (if any) is never touched. `journalctl -p err` must show the agent's errors and
//! only them.
use anyhow::{ensure, Context, Result};
use flow_agent_tests::{find_tool, require_root_and_bpf, require_tools, Agent, TempDir};
use serde_json::Value;
use std::process::Command;

const JOURNALD: &str = "/lib/systemd/systemd-journald";

/// Runs in the namespace: starts journald, runs the agent twice on the journal's stream (a
/// configuration error, then a start until ready), prints the journal as JSON, then what
/// `-p err` selects after a marker line.
const SCRIPT: &str = r#"set -eu
mount -t tmpfs tmpfs /run
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
mkdir -p /run/systemd/journal /run/log/journal
"$JOURNALD" & J=$!
# The agent's own pid (the shell below execs it): $! would be the shell running systemd-cat,
# and killing that would leave the agent running after the test.
PIDFILE=/run/flow-agent-test.pid; export PIDFILE
trap 'kill $J; [ -s $PIDFILE ] && kill -TERM $(cat $PIDFILE) 2>/dev/null || true' EXIT
for i in $(seq 300); do [ -S /run/systemd/journal/stdout ] && break; sleep 0.1; done
# What systemd does for a service: stderr is the journal's stream, JOURNAL_STREAM names it.
stream() {
  systemd-cat -t flow-agent-test sh -c \
    'echo $$ > "$PIDFILE"; JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2); export JOURNAL_STREAM; exec "$@" >/dev/null' \
    sh "$@"
}
stream "$AGENT" check-config "$BAD" || true
: > "$PIDFILE"
stream "$AGENT" run --no-config & A=$!
for i in $(seq 1200); do
  journalctl -D /run/log/journal -o cat --no-pager | grep -q 'flow-agent ready' && break
  sleep 0.1
done
kill -TERM "$(cat "$PIDFILE")"; wait $A || true
: > "$PIDFILE"
journalctl -D /run/log/journal -o json --no-pager -t flow-agent-test
echo '-- err --'
journalctl -D /run/log/journal -o json --no-pager -t flow-agent-test -p err
"#;

fn entries(json_lines: &str) -> Result<Vec<Value>> {
    json_lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("journal entry {l:?}")))
        .collect()
}

fn field<'a>(entry: &'a Value, name: &str) -> &'a str {
    entry[name].as_str().unwrap_or_default()
}

#[test]
fn errors_reach_the_journal_at_priority_err() -> Result<()> {
    require_root_and_bpf()?;
    let _shared = super::shared();
    require_tools(&["unshare", "systemd-cat", "journalctl", "stat"])?;
    ensure!(
        std::path::Path::new(JOURNALD).exists(),
        "{JOURNALD} missing: apt-get install -y systemd (cargo xtask setup)"
    );
    let dir = TempDir::new("flow-journal")?;
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[agent]\nlog_level = \"loud\"\n")?;
    let out = Command::new(find_tool("unshare")?)
        .args(["--mount", "--propagation", "private", "sh", "-c", SCRIPT])
        .env("JOURNALD", JOURNALD)
        .env("AGENT", Agent::binary()?)
        .env("BAD", &bad)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "journal script: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let (all, err) = stdout.split_once("-- err --\n").context("marker line")?;
    let (all, err) = (entries(all)?, entries(err)?);
    let error = all
        .iter()
        .find(|e| field(e, "MESSAGE").starts_with("flow-agent: error: "))
        .with_context(|| format!("no configuration error in the journal: {all:#?}"))?;
    ensure!(
        field(error, "MESSAGE").contains("loud") && field(error, "PRIORITY") == "3",
        "error entry {error:#}"
    );
    let ready = all
        .iter()
        .find(|e| field(e, "MESSAGE").contains("flow-agent ready"))
        .with_context(|| format!("no ready line in the journal: {all:#?}"))?;
    ensure!(
        field(ready, "PRIORITY") == "6" && field(ready, "MESSAGE").starts_with("level=info "),
        "ready entry {ready:#}"
    );
    // `journalctl -p err` shows the error and no info line.
    ensure!(
        !err.is_empty() && err.iter().all(|e| field(e, "PRIORITY") <= "3"),
        "journalctl -p err: {err:#?}"
    );
    ensure!(
        err.iter()
            .any(|e| field(e, "MESSAGE") == field(error, "MESSAGE")),
        "journalctl -p err misses the error: {err:#?}"
    );
    Ok(())
}
