//! The configurations compared: no sensor, flow-agent (native and ECS), and the eBPF peers
//! an operator would otherwise run (libbpf-tools `tcplife`, bpftrace's `tcplife.bt`); with
//! `--baseline REV`, flow-agent built at REV too (`agent-native@base`, `agent-ecs@base`).
use std::{
    fs::File,
    iter,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use flow_agent_tests::Tmux;

use super::{events::OutputFormat, procfs};

pub const TCPLIFE: &str = "/usr/sbin/tcplife";
pub const TCPLIFE_BT: &str = "/usr/sbin/tcplife.bt";

/// Where the agent writes its events during the bench. One template (see `agent_config`):
/// the file sink, as an operator feeding a log shipper runs it; `Stdout` (stdout redirected to
/// the events file) is its equivalent for builds without a file sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentSink {
    #[allow(dead_code)]
    Stdout,
    File,
}

pub const AGENT_SINK: AgentSink = AgentSink::File;

/// Seconds between the agent's stats events, which carry its kernel-side loss counters.
const STATS_INTERVAL: u64 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Baseline,
    /// flow-agent with its default hooks, every event written in this format.
    Agent {
        format: &'static str,
        build: Build,
        /// `flow-agent top` attached to its live socket, in a tmux terminal of 80×24.
        top: bool,
        /// What differs from the default settings.
        tuning: Tuning,
    },
    Tcplife,
    BpftraceTcplife,
}

/// An agent configuration's departure from the default settings, named by a suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tuning {
    Default,
    /// `+detail`: the per-packet TCP detail tier, off by default (`--tcp-detail on`).
    Detail,
    /// `+procs`: process start and end events (`[enrich] process_events`).
    ProcessEvents,
    /// `+nohash`: no executable hashing (`[enrich] hash_max_bytes = 0`).
    NoHash,
}

impl Tuning {
    const ALL: [Tuning; 4] = [
        Tuning::Default,
        Tuning::Detail,
        Tuning::ProcessEvents,
        Tuning::NoHash,
    ];

    pub fn suffix(self) -> &'static str {
        match self {
            Tuning::Default => "",
            Tuning::Detail => "+detail",
            Tuning::ProcessEvents => "+procs",
            Tuning::NoHash => "+nohash",
        }
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Tuning::Detail => &["--tcp-detail", "on"],
            _ => &[],
        }
    }

    fn config(self) -> &'static str {
        match self {
            Tuning::ProcessEvents => "[enrich]\nprocess_events = true\n\n",
            Tuning::NoHash => "[enrich]\nhash_max_bytes = 0\n\n",
            _ => "",
        }
    }
}

/// Which flow-agent binary an agent configuration runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// The working tree's, built by the bench.
    Current,
    /// The one built at `--baseline REV`; the configuration's name ends in `@base`.
    Base,
}

/// The name of an agent configuration run with the `--baseline` build: `agent-ecs@base`.
pub const BASE_SUFFIX: &str = "@base";

/// The name of an agent configuration with `flow-agent top` attached: `agent-native+top`.
pub const TOP_SUFFIX: &str = "+top";

pub fn base_name(name: &str) -> String {
    format!("{name}{BASE_SUFFIX}")
}

pub fn is_base(name: &str) -> bool {
    name.ends_with(BASE_SUFFIX)
}

/// The output format an agent configuration writes, from its name (`agent-ecs@base`: `ecs`);
/// `None` for the others.
pub fn agent_format(name: &str) -> Option<&str> {
    let format = name.strip_prefix("agent-")?;
    let format = format.strip_suffix(BASE_SUFFIX).unwrap_or(format);
    let format = format.strip_suffix(TOP_SUFFIX).unwrap_or(format);
    Some(
        Tuning::ALL
            .iter()
            .filter(|t| !t.suffix().is_empty())
            .find_map(|t| format.strip_suffix(t.suffix()))
            .unwrap_or(format),
    )
}

/// The flow-agent binaries of this run.
pub struct Agents {
    pub current: PathBuf,
    /// Built at `--baseline REV`.
    pub base: Option<PathBuf>,
}

impl Agents {
    fn binary(&self, build: Build) -> Result<&Path> {
        match build {
            Build::Current => Ok(&self.current),
            Build::Base => self.base.as_deref().context("no --baseline build"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Configuration {
    pub name: String,
    pub kind: Kind,
}

/// Every configuration, in the order a repetition runs them; with `with_base`, each agent
/// configuration is followed by its `@base` twin.
pub fn all(with_base: bool) -> Vec<Configuration> {
    let config = |name: &str, kind| Configuration {
        name: name.into(),
        kind,
    };
    let agent = |format, tuning| Kind::Agent {
        format,
        build: Build::Current,
        top: false,
        tuning,
    };
    let list = vec![
        config("baseline", Kind::Baseline),
        config("agent-native", agent("native", Tuning::Default)),
        config("agent-ecs", agent("ecs", Tuning::Default)),
        // The live view's cost: the same agent while `top` reads every event.
        config(
            "agent-native+top",
            Kind::Agent {
                format: "native",
                build: Build::Current,
                top: true,
                tuning: Tuning::Default,
            },
        ),
        // What the TCP detail tier, hashing and process events cost.
        config("agent-native+detail", agent("native", Tuning::Detail)),
        config("agent-native+procs", agent("native", Tuning::ProcessEvents)),
        config("agent-native+nohash", agent("native", Tuning::NoHash)),
        config("tcplife", Kind::Tcplife),
        config("bpftrace-tcplife", Kind::BpftraceTcplife),
    ];
    list.into_iter()
        .flat_map(|c| {
            let twin = c.base_twin().filter(|_| with_base);
            iter::once(c).chain(twin)
        })
        .collect()
}

/// The configurations to run: the baseline and those named in `only` (all when it is empty).
/// An error for a name that is no configuration, and for `with_base` (`--baseline`) when
/// `only` leaves no `@base` configuration to run it.
pub fn select(only: &[String], with_base: bool) -> Result<Vec<Configuration>> {
    let known = all(with_base);
    if let Some(unknown) = only.iter().find(|o| !known.iter().any(|c| c.name == **o)) {
        if !with_base && all(true).iter().any(|c| c.name == *unknown) {
            bail!("--only {unknown}: needs --baseline REV, the commit to build it from");
        }
        let names: Vec<&str> = known.iter().map(|c| c.name.as_str()).collect();
        bail!(
            "--only {unknown}: no such configuration (there are: {})",
            names.join(", ")
        );
    }
    let selected: Vec<Configuration> = known
        .into_iter()
        .filter(|c| c.name == "baseline" || only.is_empty() || only.contains(&c.name))
        .collect();
    if with_base && !selected.iter().any(|c| is_base(&c.name)) {
        bail!(
            "--baseline: --only selects no @base configuration \
             (e.g. --only agent-native,agent-native@base)"
        );
    }
    Ok(selected)
}

/// The agent's configuration file for the bench: one output, every event, stats each second.
/// The file is never rotated (the bench reads every record of a session from one file); the
/// metrics endpoint is off (its fixed port may be taken by another agent on the machine, and
/// nothing scrapes it here).
pub fn agent_config(format: &str, sink: AgentSink, events: &Path) -> String {
    let sink_table = match sink {
        AgentSink::Stdout => "[outputs.stdout]\n".to_string(),
        AgentSink::File => format!(
            "[outputs.file]\npath = {}\nrotate_size = \"1TiB\"\n",
            toml_string(&events.to_string_lossy())
        ),
    };
    format!(
        "[health]\nstats_interval = {STATS_INTERVAL}\nmetrics_listen = \"\"\n\n[[outputs]]\nname = \"bench\"\nformat = \"{format}\"\n{sink_table}"
    )
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A running sensor.
pub struct Sensor {
    child: Child,
    pub pid: u32,
    /// Where its events go.
    pub events: PathBuf,
    pub stderr: PathBuf,
    pub format: OutputFormat,
    stop_signal: i32,
    ready: Readiness,
    /// `flow-agent top`, started once the agent is ready.
    top: Option<TopView>,
}

/// `flow-agent top` in a detached tmux terminal of 80×24, on a private tmux server.
struct TopView {
    binary: PathBuf,
    socket: PathBuf,
    /// Its terminal while it runs; dropping it kills its tmux server.
    tmux: Option<Tmux>,
}

impl TopView {
    fn start(&mut self) -> Result<()> {
        let top = format!(
            "{} top --socket {}",
            self.binary.display(),
            self.socket.display()
        );
        let tmux = self
            .tmux
            .insert(Tmux::start("flow-agent-bench", (80, 24), &top)?);
        // Subscribed once the agent logged it; a top that exited leaves no session.
        std::thread::sleep(Duration::from_millis(500));
        if !tmux.running() {
            bail!("flow-agent top exited at once");
        }
        Ok(())
    }

    fn stop(&mut self) {
        self.tmux = None;
    }
}

/// The live socket of a `+top` configuration: its own, in the session's directory.
fn live_socket(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

fn live_section(socket: &Path) -> String {
    format!(
        "[live]\nsocket = {}\n\n",
        toml_string(&socket.to_string_lossy())
    )
}

#[derive(Clone, Copy)]
enum Readiness {
    /// The agent says so on stderr.
    AgentLine,
    /// Its eBPF program is loaded and its per-CPU perf buffers are open.
    PerfBuffers,
}

const AGENT_READY: &str = "flow-agent ready";

impl Configuration {
    /// The same agent configuration run with the `--baseline` build; `None` for the others.
    fn base_twin(&self) -> Option<Configuration> {
        let Kind::Agent {
            format,
            build: Build::Current,
            top,
            tuning,
        } = self.kind
        else {
            return None;
        };
        Some(Configuration {
            name: base_name(&self.name),
            kind: Kind::Agent {
                format,
                build: Build::Base,
                top,
                tuning,
            },
        })
    }

    /// Starts this configuration's sensor writing into `dir`; `None` for the baseline.
    pub fn start(&self, agents: &Agents, dir: &Path) -> Result<Option<Sensor>> {
        std::fs::create_dir_all(dir)?;
        let events = dir.join(format!("{}.events", self.name));
        let stderr = dir.join(format!("{}.stderr", self.name));
        let (mut cmd, format, stop_signal, ready, stdout_to_events) = match &self.kind {
            Kind::Baseline => return Ok(None),
            Kind::Agent {
                format,
                build,
                top,
                tuning,
            } => {
                let config = dir.join(format!("{}.toml", self.name));
                let mut text = format!(
                    "{}{}",
                    tuning.config(),
                    agent_config(format, AGENT_SINK, &events)
                );
                if *top {
                    text = format!("{}{text}", live_section(&live_socket(dir, &self.name)));
                }
                std::fs::write(&config, text)?;
                let mut c = Command::new(agents.binary(*build)?);
                c.args(["--log-level", "info", "run", "--config"])
                    .arg(&config);
                c.args(tuning.args());
                (
                    c,
                    OutputFormat::AgentJson,
                    libc::SIGTERM,
                    Readiness::AgentLine,
                    AGENT_SINK == AgentSink::Stdout,
                )
            }
            Kind::Tcplife => (
                Command::new(TCPLIFE),
                OutputFormat::TcplifeText,
                libc::SIGINT,
                Readiness::PerfBuffers,
                true,
            ),
            Kind::BpftraceTcplife => {
                let mut c = Command::new("bpftrace");
                c.arg(TCPLIFE_BT);
                (
                    c,
                    OutputFormat::TcplifeText,
                    libc::SIGINT,
                    Readiness::PerfBuffers,
                    true,
                )
            }
        };
        let out = if stdout_to_events {
            Stdio::from(File::create(&events)?)
        } else {
            File::create(&events)?;
            Stdio::null()
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(File::create(&stderr)?)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        let top = match self.kind {
            // Each build's own `top`: what it asks its agent for is part of what is measured.
            Kind::Agent {
                top: true, build, ..
            } => Some(TopView {
                binary: agents.binary(build)?.to_path_buf(),
                socket: live_socket(dir, &self.name),
                tmux: None,
            }),
            _ => None,
        };
        Ok(Some(Sensor {
            top,
            pid: child.id(),
            child,
            events,
            stderr,
            format,
            stop_signal,
            ready,
        }))
    }
}

impl Sensor {
    /// Waits until the sensor captures; an error with its stderr if it exits first.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("exited ({status}) before capturing: {}", self.stderr_tail());
            }
            let ready = match self.ready {
                Readiness::AgentLine => {
                    std::fs::read_to_string(&self.stderr).is_ok_and(|s| s.contains(AGENT_READY))
                }
                Readiness::PerfBuffers => {
                    let fds = procfs::fd_targets(self.pid);
                    let progs = fds.iter().filter(|t| t.contains("bpf-prog")).count();
                    let perf = fds.iter().filter(|t| t.contains("[perf_event]")).count();
                    progs >= 1 && perf >= cores
                }
            };
            if ready {
                // Attach and the first reads settle.
                std::thread::sleep(Duration::from_millis(300));
                if let Some(top) = &mut self.top {
                    top.start()?;
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("not capturing after {timeout:?}: {}", self.stderr_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of its stderr, for error messages.
    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(6)..].join(" | ");
        if tail.is_empty() {
            "(nothing on stderr)".into()
        } else {
            tail
        }
    }

    /// Signals it to stop (it writes what it holds) and waits, killing it after `timeout`.
    pub fn stop(mut self, timeout: Duration) -> Result<()> {
        if let Some(top) = &mut self.top {
            top.stop();
        }
        // SAFETY: kill() on our own child's pid; it has not been reaped yet.
        unsafe { libc::kill(self.pid as i32, self.stop_signal) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() && status.code() != Some(130) {
                    eprintln!(
                        "bench: sensor {} exited with {status}: {}",
                        self.pid,
                        self.stderr_tail()
                    );
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("did not stop within {timeout:?} of its signal; killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Why a peer cannot run here, found by starting it once; `None` when it runs. The agent is
/// not tried out: a failure to start shows in its sessions.
pub fn unavailable(config: &Configuration, agents: &Agents, dir: &Path) -> Option<String> {
    match &config.kind {
        Kind::Agent { top: true, .. } if !has_tmux() => {
            return Some("tmux missing (Debian package tmux not installed)".into())
        }
        Kind::Baseline | Kind::Agent { .. } => return None,
        Kind::Tcplife if !Path::new(TCPLIFE).exists() => {
            return Some(format!(
                "{TCPLIFE} missing (Debian package libbpf-tools not installed)"
            ))
        }
        Kind::BpftraceTcplife if !Path::new(TCPLIFE_BT).exists() => {
            return Some(format!(
                "{TCPLIFE_BT} missing (Debian package bpftrace not installed)"
            ))
        }
        _ => {}
    }
    let mut sensor = match config.start(agents, dir) {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(e) => return Some(format!("{e:#}")),
    };
    let outcome = sensor.wait_ready(Duration::from_secs(60));
    let stderr = std::fs::read_to_string(&sensor.stderr).unwrap_or_default();
    let _ = sensor.stop(Duration::from_secs(30));
    match outcome {
        Ok(()) => None,
        Err(e) => Some(explain_failure(&config.kind, &stderr, &format!("{e:#}"))),
    }
}

fn has_tmux() -> bool {
    Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A failure to start in the words an operator needs: a missing kernel feature by its name.
fn explain_failure(kind: &Kind, stderr: &str, error: &str) -> String {
    let no_kprobes = !Path::new("/sys/kernel/tracing/kprobe_events").exists()
        && !Path::new("/sys/kernel/debug/tracing/kprobe_events").exists();
    if *kind == Kind::BpftraceTcplife && stderr.contains("kprobe") && no_kprobes {
        return "does not run here: no kprobes (this kernel has no kprobe_events: \
                CONFIG_KPROBES is off); tcplife.bt attaches kprobe:tcp_set_state"
            .into();
    }
    format!("does not run here: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_config_template_for_both_sinks() {
        let path = Path::new("/tmp/b \"x\"/agent.events");
        assert_eq!(
            agent_config("ecs", AgentSink::Stdout, path),
            "[health]\nstats_interval = 1\nmetrics_listen = \"\"\n\n[[outputs]]\nname = \"bench\"\nformat = \"ecs\"\n[outputs.stdout]\n"
        );
        assert_eq!(
            agent_config("native", AgentSink::File, path),
            "[health]\nstats_interval = 1\nmetrics_listen = \"\"\n\n[[outputs]]\nname = \"bench\"\nformat = \"native\"\n[outputs.file]\npath = \"/tmp/b \\\"x\\\"/agent.events\"\nrotate_size = \"1TiB\"\n"
        );
    }

    fn names(configs: &[Configuration]) -> Vec<&str> {
        configs.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn base_twins_follow_their_agent_configuration() {
        assert_eq!(
            names(&all(false)),
            [
                "baseline",
                "agent-native",
                "agent-ecs",
                "agent-native+top",
                "agent-native+detail",
                "agent-native+procs",
                "agent-native+nohash",
                "tcplife",
                "bpftrace-tcplife"
            ]
        );
        let with_base = all(true);
        assert_eq!(
            names(&with_base),
            [
                "baseline",
                "agent-native",
                "agent-native@base",
                "agent-ecs",
                "agent-ecs@base",
                "agent-native+top",
                "agent-native+top@base",
                "agent-native+detail",
                "agent-native+detail@base",
                "agent-native+procs",
                "agent-native+procs@base",
                "agent-native+nohash",
                "agent-native+nohash@base",
                "tcplife",
                "bpftrace-tcplife"
            ]
        );
        assert_eq!(
            with_base[4].kind,
            Kind::Agent {
                format: "ecs",
                build: Build::Base,
                top: false,
                tuning: Tuning::Default,
            }
        );
        assert_eq!(agent_format("agent-native+detail@base"), Some("native"));
        assert_eq!(agent_format("agent-ecs+procs"), Some("ecs"));
        assert_eq!(agent_format("agent-native+top"), Some("native"));
        assert_eq!(agent_format("agent-ecs@base"), Some("ecs"));
        assert_eq!(agent_format("agent-native"), Some("native"));
        assert_eq!(agent_format("tcplife"), None);
        assert!(is_base("agent-native@base") && !is_base("baseline"));
    }

    #[test]
    fn selection_by_only() {
        let only = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let picked = select(&only(&["agent-native", "agent-native@base"]), true).unwrap();
        assert_eq!(
            names(&picked),
            ["baseline", "agent-native", "agent-native@base"]
        );
        assert_eq!(names(&select(&[], false).unwrap()).len(), 9);
        let err = |names: &[&str], base| select(&only(names), base).unwrap_err().to_string();
        assert!(err(&["agent-native@base"], false).contains("needs --baseline REV"));
        assert!(err(&["tcplife"], true).contains("no @base configuration"));
        assert!(err(&["agent-xml"], false).contains("no such configuration"));
        assert!(err(&["tcplife@base"], true).contains("no such configuration"));
    }

    #[test]
    fn missing_kprobes_named() {
        let msg = explain_failure(
            &Kind::BpftraceTcplife,
            "create_probe_event: open(/sys/kernel/tracing/kprobe_events): No such file",
            "exited",
        );
        if Path::new("/sys/kernel/tracing/kprobe_events").exists() {
            assert!(msg.starts_with("does not run here: exited"));
        } else {
            assert!(msg.contains("no kprobes"), "{msg}");
        }
    }
}
