//! `--profile`: where the agent's CPU goes during a connection storm, recorded with perf after
//! the measured runs (perf's own cost must not skew them).
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context, Result};

use super::{
    configurations::{Agents, Configuration},
    procfs,
    runner::Plan,
    workloads::{connections, ports},
};

/// Starts `config`'s sensor, records it with `perf record --call-graph dwarf` during one
/// storm, and writes `perf.data` and a report of the hottest call chains next to `out`.
pub fn record(
    plan: &Plan,
    config: &Configuration,
    agents: &Agents,
    dir: &Path,
    out: &Path,
) -> Result<PathBuf> {
    if Command::new("perf").arg("--version").output().is_err() {
        crate::setup::apt_install(&["linux-perf"]).context("installing perf")?;
    }
    let Some(mut sensor) = config.start(agents, dir)? else {
        bail!("{} runs no sensor to profile", config.name);
    };
    sensor.wait_ready(Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(1));
    let data = out.with_extension("perf.data");
    let mut perf = Command::new("perf")
        .args(["record", "--call-graph", "dwarf,16384", "-F", "499", "-o"])
        .arg(&data)
        .args(["-p", &sensor.pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting perf (Debian package linux-perf)")?;
    std::thread::sleep(Duration::from_millis(500));
    let cpu0 = procfs::cpu_times(sensor.pid)?;
    let run = connections::run(
        ports::STORM,
        plan.lanes,
        Duration::from_secs_f64(plan.storm_s),
        None,
    )?;
    // Let the agent write out the storm before perf stops.
    std::thread::sleep(Duration::from_secs(2));
    let cpu = procfs::cpu_times(sensor.pid)?.since(&cpu0);
    // SAFETY: kill() on our own child's pid, not yet reaped.
    unsafe { libc::kill(perf.id() as i32, libc::SIGINT) };
    perf.wait()?;
    let _ = std::fs::remove_file(&sensor.events);
    sensor.stop(Duration::from_secs(60))?;
    eprintln!(
        "bench: profile: {} connections at {:.0} conn/s under perf, agent CPU {:.2} s",
        run.connections,
        run.rate(),
        cpu.as_secs_f64()
    );
    let report = Command::new("perf")
        .args(["report", "--stdio", "--children", "--percent-limit", "2"])
        .args(["--sort", "symbol", "-g", "none", "-i"])
        .arg(&data)
        .stderr(Stdio::null())
        .output()
        .context("running perf report")?;
    let text = out.with_extension("perf.txt");
    std::fs::write(&text, &report.stdout)?;
    Ok(text)
}
