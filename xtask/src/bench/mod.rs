//! `cargo xtask bench`: what flow-agent costs its host, side by side with no sensor and with
//! the eBPF tools an operator would otherwise run, in one interleaved run (docs/performance.md).
mod baseline;
mod bpfstats;
mod configurations;
mod events;
mod latency;
mod procfs;
mod profile;
mod programs;
mod report;
mod runner;
mod tools;
mod workloads;

use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::{Context, Result};

use crate::{run, workspace_root};
use baseline::Commit;
use configurations::{Agents, Configuration};
use report::{ConfigStatus, Results};
use runner::Plan;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Short workloads (2–3 s, 20,000 concurrent connections) and 2 repetitions: a few
    /// minutes, for development; the figures are rougher.
    #[arg(long)]
    quick: bool,
    /// Interleaved repetitions of every configuration (default 3; 2 with --quick).
    #[arg(long)]
    reps: Option<u32>,
    /// Only these configurations besides the baseline (comma-separated): agent-native,
    /// agent-ecs, agent-native+top, agent-native+detail, agent-native+procs,
    /// agent-native+nohash, tcplife, bpftrace-tcplife; with --baseline also each agent
    /// configuration with @base.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also build flow-agent at this git revision (in a worktree under target/bench/baseline/)
    /// and run it as agent-native@base and agent-ecs@base, interleaved with the others; the
    /// report compares each agent configuration with its @base twin.
    #[arg(long, value_name = "REV")]
    baseline: Option<String>,
    /// The JSON results file; the markdown table is written beside it (.md).
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// After the measured runs, record the agent (native) with `perf record` during one storm
    /// and write perf.data and a report of where its CPU goes beside the results.
    #[arg(long)]
    profile: bool,
    /// Internal: be one holder process of the concurrency workload (PORT,LANE,COUNT).
    #[arg(long, hide = true)]
    hold_connections: Option<String>,
    /// Internal: be one client process of the exec storm (IP:PORT).
    #[arg(long, hide = true)]
    connect_once: Option<String>,
}

pub fn bench(args: BenchArgs) -> Result<()> {
    if let Some(spec) = &args.hold_connections {
        return workloads::concurrency::holder_main(spec);
    }
    if let Some(addr) = &args.connect_once {
        return workloads::exec_storm::connect_once_main(addr);
    }
    // Wrong arguments fail before anything is built.
    let selected = configurations::select(&args.only, args.baseline.is_some())?;
    let base = args
        .baseline
        .as_deref()
        .map(baseline::resolve)
        .transpose()?;
    // The load generators and the output parsers must not be the bottleneck: run optimized.
    if cfg!(debug_assertions) {
        return reexec_release();
    }
    let started = Instant::now();
    crate::setup::ensure_all()?;
    tools::ensure_bench_tools()?;
    let agents = Agents {
        current: crate::build(true)?,
        base: base.as_ref().map(baseline::build).transpose()?,
    };
    // What was built, before anyone edits the tree during the run.
    let agent = agent_commit();
    let reps = args.reps.unwrap_or(if args.quick { 2 } else { 3 }).max(1);
    let plan = if args.quick {
        Plan::quick(reps)
    } else {
        Plan::full(reps)
    };
    let root = workspace_root();
    let out = out_path(&args.out);
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let dir = root.join("target/bench/run");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    let mut statuses = Vec::new();
    let mut configs: Vec<Configuration> = Vec::new();
    for c in selected {
        let note = configurations::unavailable(&c, &agents, &dir.join("probe"));
        if let Some(why) = &note {
            eprintln!("bench: {} not run: {why}", c.name);
        }
        let runs = note.is_none();
        statuses.push(ConfigStatus {
            name: c.name.clone(),
            runs,
            note,
        });
        if runs {
            configs.push(c);
        }
    }
    let machine = procfs::Machine::describe();
    eprintln!(
        "bench: {} configurations × {} repetitions on {} cores (load average {:.2})",
        configs.len(),
        plan.reps,
        machine.cores,
        machine.load_average_at_start
    );
    let bpf_stats = bpfstats::enable();
    let sessions = runner::run_all(&plan, &configs, &agents, &dir);

    if args.profile {
        match configs.iter().find(|c| c.name == "agent-native") {
            Some(c) => match profile::record(&plan, c, &agents, &dir, &out) {
                Ok(report) => eprintln!("bench: profile report in {}", report.display()),
                Err(e) => eprintln!("bench: profiling failed: {e:#}"),
            },
            None => eprintln!("bench: --profile needs the agent-native configuration"),
        }
    }

    drop(bpf_stats);
    let summary: Vec<_> = statuses
        .iter()
        .filter(|s| s.runs)
        .map(|s| report::summarize(&s.name, &sessions))
        .collect();
    let targets = summary
        .iter()
        .filter(|s| {
            configurations::agent_format(&s.configuration).is_some()
                && !configurations::is_base(&s.configuration)
        })
        .flat_map(report::check_targets)
        .chain(programs::check_against_tcplife(&summary))
        .collect();
    let comparisons = report::comparisons(&summary);
    let results = Results {
        date: utc_now(),
        agent_commit: agent.commit,
        agent_subject: agent.subject,
        base: base.map(|b| b.commit),
        machine,
        quick: args.quick,
        plan,
        duration_s: started.elapsed().as_secs_f64(),
        configurations: statuses,
        summary,
        targets,
        comparisons,
        sessions,
    };
    std::fs::write(&out, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", out.display()))?;
    let table = report::markdown(&results);
    let md = out.with_extension("md");
    std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    println!("{table}");
    eprintln!("bench: results in {} and {}", out.display(), md.display());
    Ok(())
}

fn out_path(out: &std::path::Path) -> PathBuf {
    if out.is_absolute() {
        out.to_path_buf()
    } else {
        workspace_root().join(out)
    }
}

/// Builds this xtask optimized and runs the same command with it.
fn reexec_release() -> Result<()> {
    use std::os::unix::process::CommandExt;
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build
        .current_dir(workspace_root())
        .args(["build", "--quiet", "--release", "-p", "xtask"]);
    run(&mut build)?;
    let exe = crate::target_dir().join("release/xtask");
    let err = Command::new(&exe).args(std::env::args_os().skip(1)).exec();
    Err(err).with_context(|| format!("running {}", exe.display()))
}

fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The commit the agent was built from, `-dirty` with uncommitted changes.
fn agent_commit() -> Commit {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(workspace_root())
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    Commit {
        commit: if dirty {
            format!("{commit}-dirty")
        } else {
            commit
        },
        subject: git(&["log", "-1", "--format=%s", "HEAD"]),
    }
}
