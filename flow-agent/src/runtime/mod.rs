//! The agent's main loop: drain the ring buffer in batches, feed the flow table, hand events to
//! the outputs, reload the configuration on SIGHUP, and on SIGTERM/SIGINT end every open flow
//! before exiting. [`Agent`](agent::Agent) has one method per wake-up cause.
use std::time::Duration;

use anyhow::{Context, Result};

use crate::{
    capture::CaptureConfig, config::Config, enrich::EnrichmentConfig, flows::FlowTableConfig,
};

mod agent;
mod kernel;
mod self_check;
mod stages;
mod watchdog;
mod write;

pub use self_check::{report as report_self_check, standalone as self_check, SelfCheckFailed};

/// The kernel lacks a hook the agent needs (exit status 3).
#[derive(Debug, thiserror::Error)]
#[error("this kernel lacks hooks the agent needs: {0}")]
pub struct KernelUnsupported(pub(crate) String);

pub struct RunOptions {
    pub capture: CaptureConfig,
    pub flows: FlowTableConfig,
    pub enrich: EnrichmentConfig,
    /// How often the ring buffer is drained when no wake-up comes.
    pub poll_interval: Duration,
    /// Outputs, filters, health reporting and the agent's log; `capture` and `flows` are
    /// derived from it.
    pub config: Config,
    /// Reads the configuration again on SIGHUP (outputs, filters, `[flows]`, `[enrich]` and
    /// `[agent]` change; `[capture]` needs a restart); without it SIGHUP only logs.
    pub reload: Option<Box<dyn FnMut() -> Result<Config>>>,
}

pub async fn run(opts: RunOptions) -> Result<()> {
    let user = std::env::var(crate::service::USER_ENV)
        .ok()
        .or_else(|| Some(opts.config.agent.user.clone()).filter(|u| !u.is_empty()));
    // Joined while the agent may: after the drop, fchown gives files only its own groups.
    let groups =
        crate::sink::file::output_groups(&opts.config.outputs).context("starting the outputs")?;
    let service = crate::service::Service::start(user.as_deref(), &groups)?;
    // The kernel's BTF is read once, for the probe and the capture.
    let mut loader =
        crate::capture::Loader::new().map_err(|e| KernelUnsupported(format!("btf ({e})")))?;
    // The hooks come from the same probe `flow-agent probe` prints (its baseline part).
    let report = crate::probe::run_baseline(&mut loader);
    if !report.baseline_ok {
        let missing: Vec<String> = report
            .checks
            .iter()
            .filter(|c| c.baseline && !c.available)
            .map(|c| {
                format!(
                    "{} ({})",
                    c.name,
                    c.detail.as_deref().unwrap_or("unavailable")
                )
            })
            .collect();
        return Err(KernelUnsupported(missing.join("; ")).into());
    }
    log::info!("hook tier: baseline (the only tier; `flow-agent probe` says whether fentry/fexit are allowed)");
    // Before the agent says it is ready: a SIGTERM right after must end it cleanly.
    let signals = agent::Signals::new()?;
    let agent = agent::Agent::start(opts, service, &mut loader)?;
    // Its parse of the BTF is large and of no use once the programs are loaded.
    drop(loader);
    crate::logger::notice(
        module_path!(),
        &format!(
            "flow-agent ready: kernel programs attached (cgroup v2 at {})",
            agent.cgroup_root().display()
        ),
    );
    agent.run(signals).await?;
    log::info!("shut down: every open flow reported as ended");
    Ok(())
}
