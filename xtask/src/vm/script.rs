//! The shell script that runs in each VM (or on the host): the hook report, then every test
//! binary in turn, with markers the report module splits its output at.

use std::path::{Path, PathBuf};

/// Printed by the script before each binary runs and, with "exit N time MSms", after it.
pub const BINARY_MARKER: &str = "VM-TEST-BINARY ";
/// `flow-agent probe --json` output follows this line ...
pub const PROBE_BEGIN: &str = "VM-PROBE-JSON";
/// ... up to this one, which carries the probe's exit status.
pub const PROBE_END: &str = "VM-PROBE-END ";
/// Prefix of the lines `flow-agent run` logged while it started (the hook tier it chose).
pub const AGENT_LINE: &str = "VM-AGENT ";
/// Followed by the milliseconds from `flow-agent run` to its "ready" line (to 0.1 s).
pub const AGENT_READY_LINE: &str = "VM-AGENT-READY-MS ";
/// How long the script waits for the agent it starts to be ready, before FLOW_TEST_SLOW.
const AGENT_READY_SECS: u32 = 60;

/// One test binary and the tests of it to run.
#[derive(Debug, Clone)]
pub struct TestRun {
    pub path: PathBuf,
    /// Exact test names (`--exact`); empty: every test.
    pub filters: Vec<String>,
}

/// What every target runs: the binaries, the extra libtest arguments of every binary, and
/// libtest's thread count (None: libtest's default, the number of CPUs).
pub struct Binaries<'a> {
    pub runs: &'a [TestRun],
    pub args: &'a [String],
    pub threads: Option<u32>,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The guest script: the workspace made writable, the variables of `vars` exported, then
/// [`body`].
/// The guest's root is the host's, read-only: a tmpfs overlay makes the workspace writable
/// (target/tmp, test fixtures) inside the VM without touching the host's files. Its lower
/// layer, and the `cached` directories, come from the cached view of the host's files when
/// the guest has one (`$HOSTFS`, see `boot::HOSTFS`).
pub fn vm_script(
    workspace: &Path,
    cached: &[PathBuf],
    vars: &[(String, String)],
    binaries: &Binaries,
) -> String {
    let ws = quote(&workspace.display().to_string());
    let mut s = String::new();
    for dir in cached {
        let dir = quote(&dir.display().to_string());
        s += &format!("[ -z \"$HOSTFS\" ] || mount --bind \"$HOSTFS\"{dir} {dir}\n");
    }
    s += &format!(
        "mkdir -p /run/ws/upper /run/ws/work\n\
         mount -t overlay overlay -o lowerdir=\"$HOSTFS\"{ws},upperdir=/run/ws/upper,workdir=/run/ws/work {ws}\n"
    );
    // The guest starts with init's environment: pass on the variables the tests read.
    for (name, value) in vars {
        s += &format!("export {name}={}\n", quote(value));
    }
    s + &body(workspace, binaries)
}

/// The host's script: [`body`] with the caller's environment, as `cargo test` would run it.
pub fn host_script(workspace: &Path, binaries: &Binaries) -> String {
    body(workspace, binaries)
}

/// From the workspace root: the hook report, then every binary, its exit status and run time
/// reported. `--show-output` puts what passing tests print (the scale they ran at) on the
/// console.
fn body(workspace: &Path, binaries: &Binaries) -> String {
    let mut s = format!("cd {}\nfailed=0\n", quote(&workspace.display().to_string()));
    s += &hooks_part();
    let args: Vec<String> = binaries.args.iter().map(|a| quote(a)).collect();
    let threads = binaries
        .threads
        .map_or(String::new(), |n| format!(" --test-threads={n}"));
    for run in binaries.runs {
        let bin = quote(&run.path.display().to_string());
        let mut args = args.clone();
        if !run.filters.is_empty() {
            args.push("--exact".into());
            args.extend(run.filters.iter().map(|f| quote(f)));
        }
        s += &format!(
            "echo {BINARY_MARKER}{bin}\nt0=$(date +%s%N)\n\
             {bin}{threads} --color=never --show-output {}\n",
            args.join(" ")
        );
        s += &format!(
            "rc=$?; ms=$(( ($(date +%s%N) - t0) / 1000000 ))\n\
             echo \"{BINARY_MARKER}exit $rc time ${{ms}}ms\"; [ $rc = 0 ] || failed=1\n"
        );
    }
    s + "exit $failed\n"
}

/// What the kernel allows (`flow-agent probe --json`) and which hook tier the agent chooses
/// on it: `flow-agent run` is started, and stopped once ready, or after a bound (stretched by
/// FLOW_TEST_SLOW); its log is printed with [`AGENT_LINE`]. No metrics endpoint: the default
/// port may be taken on a shared host.
fn hooks_part() -> String {
    format!(
        r#"echo {PROBE_BEGIN}
"$FLOW_AGENT_BIN" probe --json
echo "{PROBE_END}$?"
agent_dir=$(mktemp -d)
printf '[health]\nmetrics_listen = ""\n' > "$agent_dir/agent.toml"
"$FLOW_AGENT_BIN" run --config "$agent_dir/agent.toml" > /dev/null 2> "$agent_dir/log" &
agent=$!
t0=$(date +%s%N)
waited=0
while ! grep -q 'flow-agent ready' "$agent_dir/log" && kill -0 $agent 2> /dev/null \
    && [ $waited -lt $(( {AGENT_READY_SECS} * 10 * ${{FLOW_TEST_SLOW:-1}} )) ]; do
    sleep 0.1; waited=$((waited + 1))
done
! grep -q 'flow-agent ready' "$agent_dir/log" \
    || echo "{AGENT_READY_LINE}$(( ($(date +%s%N) - t0) / 1000000 ))"
kill -TERM $agent 2> /dev/null; wait $agent
sed 's/^/{AGENT_LINE}/' "$agent_dir/log"
rm -rf "$agent_dir"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_time_each_binary() {
        let vars = [("FLOW_TEST_SCALE".to_string(), "0.1".to_string())];
        let runs = [
            TestRun {
                path: PathBuf::from("/ws/target/debug/deps/udp-01"),
                filters: vec![],
            },
            TestRun {
                path: PathBuf::from("/ws/target/debug/deps/tcp-02"),
                filters: vec!["a".into(), "b".into()],
            },
        ];
        let args = ["--exact".to_string()];
        let bins = Binaries {
            runs: &runs,
            args: &args,
            threads: Some(2),
        };
        let s = vm_script(Path::new("/ws"), &[PathBuf::from("/py")], &vars, &bins);
        assert!(s.contains("export FLOW_TEST_SCALE='0.1'\n"), "{s}");
        assert!(
            s.contains("[ -z \"$HOSTFS\" ] || mount --bind \"$HOSTFS\"'/py' '/py'\n"),
            "{s}"
        );
        assert!(s.contains("lowerdir=\"$HOSTFS\"'/ws',upperdir"), "{s}");
        assert!(
            s.contains("'/ws/target/debug/deps/udp-01' --test-threads=2 --color=never --show-output '--exact'\n"),
            "{s}"
        );
        assert!(
            s.contains("'/ws/target/debug/deps/tcp-02' --test-threads=2 --color=never --show-output '--exact' --exact 'a' 'b'\n"),
            "{s}"
        );
        assert!(
            s.contains("echo \"VM-TEST-BINARY exit $rc time ${ms}ms\""),
            "{s}"
        );
        assert!(s.contains("\"$FLOW_AGENT_BIN\" probe --json\n"), "{s}");
        let host = host_script(
            Path::new("/ws"),
            &Binaries {
                threads: None,
                ..bins
            },
        );
        assert!(!host.contains("mount"), "{host}");
        assert!(
            host.contains("'/ws/target/debug/deps/udp-01' --color=never"),
            "{host}"
        );
    }
}
