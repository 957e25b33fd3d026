use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use flow_agent::{
    capture::CaptureConfig,
    flows::FlowTableConfig,
    logger,
    runtime::{self, RunOptions},
};

/// flow-agent: every TCP and UDP flow on this host, attributed to the process behind it.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Log level of the agent's own messages on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "info", value_parser = parse_level)]
    log_level: log::LevelFilter,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Capture flows and write events as JSON lines on stdout (the default).
    Run(RunArgs),
    /// Report which hooks this kernel allows, by loading and attaching one of each kind.
    Probe {
        /// Machine-readable JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Print the agent's version.
    Version,
}

#[derive(clap::Args, Default)]
struct RunArgs {
    /// Configuration file (TOML); without it: native events on stdout.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Seconds between update events of open flows.
    #[arg(long, default_value_t = 60)]
    update_interval: u64,
    /// Seconds without a packet after which a UDP flow ends.
    #[arg(long, default_value_t = 60)]
    udp_idle_timeout: u64,
    /// Count TCP packets per socket in the kernel: IP bytes, TCP flags, first byte times and
    /// Zeek history from packets (docs/events.md, "TCP detail").
    #[arg(long, value_enum, default_value_t = Switch::On)]
    tcp_detail: Switch,
}

#[derive(Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
enum Switch {
    #[default]
    On,
    Off,
}

fn parse_level(s: &str) -> Result<log::LevelFilter, String> {
    s.parse()
        .map_err(|_| format!("unknown log level {s:?}: expected error, warn, info, debug or trace"))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    logger::init(cli.log_level);
    match cli.command.unwrap_or(Command::Run(RunArgs {
        config: None,
        update_interval: 60,
        udp_idle_timeout: 60,
        tcp_detail: Switch::On,
    })) {
        Command::Probe { json } => {
            let report = flow_agent::probe::run();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", flow_agent::probe::render(&report));
            }
            if !report.baseline_ok {
                std::process::exit(2);
            }
            Ok(())
        }
        Command::Version => {
            println!("flow-agent {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Run(args) => {
            let opts = RunOptions {
                capture: CaptureConfig {
                    tcp_detail: args.tcp_detail == Switch::On,
                    ..CaptureConfig::default()
                },
                flows: FlowTableConfig {
                    update_interval: Duration::from_secs(args.update_interval.max(1)),
                    udp_idle_timeout: Duration::from_secs(args.udp_idle_timeout.max(1)),
                    host: flow_agent::enrich::host::HostInfo::read(),
                    ..FlowTableConfig::default()
                },
                poll_interval: Duration::from_millis(100),
                config: match &args.config {
                    Some(path) => flow_agent::config::load(path)?,
                    None => flow_agent::config::Config::default(),
                },
                reload: args.config.clone().map(|path| {
                    Box::new(move || Ok(flow_agent::config::load(&path)?))
                        as Box<dyn FnMut() -> Result<flow_agent::config::Config>>
                }),
            };
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(runtime::run(opts))
        }
    }
}
