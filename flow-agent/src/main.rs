use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use flow_agent::{
    config::{self, Config, ConfigError, ConfigSource, LogLevel, Overrides},
    event::HostInfo,
    logger,
    runtime::{self, KernelUnsupported, RunOptions},
    sink::OutputConfig,
    units::Seconds,
};

mod help;
mod manual;
mod tail;
mod top;

/// Exit statuses (docs/cli.md).
const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 2;
const EXIT_KERNEL: u8 = 3;

#[derive(Parser)]
#[command(
    name = "flow-agent",
    version,
    about = help::ABOUT,
    long_about = help::LONG_ABOUT,
    after_help = help::AFTER_HELP,
    after_long_help = help::AFTER_LONG_HELP,
    max_term_width = 100
)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(
        long,
        short = 'c',
        global = true,
        value_name = "FILE",
        long_help = help::CONFIG
    )]
    config: Option<PathBuf>,
    /// Read no configuration file: not /etc/flow-agent/config.toml either.
    #[arg(
        long,
        global = true,
        conflicts_with = "config",
        long_help = help::NO_CONFIG
    )]
    no_config: bool,
    /// The agent's log level: error, warn, info, debug or trace [default: info, or [agent] log_level].
    #[arg(long, global = true, value_name = "LEVEL", value_parser = parse_level)]
    log_level: Option<LogLevel>,
    /// Send events here instead of the file's outputs (repeatable).
    #[arg(
        long,
        short = 'o',
        global = true,
        value_name = "SINK[:TARGET][:FORMAT]",
        value_parser = config::parse_output_spec,
        long_help = help::OUTPUT
    )]
    output: Vec<OutputConfig>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Capture flows and write events to the outputs (the default command).
    #[command(long_about = help::RUN)]
    Run(RunArgs),
    /// Report which kernel hooks this kernel allows, by loading and attaching one of each kind.
    #[command(long_about = help::PROBE)]
    Probe {
        /// Machine-readable JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Also run the start-up self-check (known loopback traffic and one exec compared
        /// with the records that come back) and print one line per check.
        #[arg(long)]
        self_check: bool,
    },
    /// Validate a configuration file without starting: exit 0 when valid, 2 when not.
    #[command(long_about = help::CHECK_CONFIG)]
    CheckConfig {
        /// The file to check [default: --config FILE, else /etc/flow-agent/config.toml].
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Print the configuration: the effective one, or with --default every option at its default.
    #[command(long_about = help::CONFIG_CMD)]
    Config {
        /// Every option at its default, commented: a starting point for a configuration file.
        #[arg(long)]
        default: bool,
    },
    /// Print the running agent's events as lines, from its live socket, until it stops.
    #[command(long_about = help::TAIL)]
    Tail(tail::TailArgs),
    /// A terminal view of what talks now, per process, from the running agent's live socket.
    #[command(long_about = help::TOP)]
    Top(top::TopArgs),
    /// Print the agent's version.
    Version,
    /// Print a shell completion script: bash, zsh or fish (the package installs them).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages into DIR (packaging: cargo xtask deb).
    #[command(hide = true)]
    Manual {
        dir: PathBuf,
        /// The pages' date (YYYY-MM-DD).
        #[arg(long, default_value = "")]
        date: String,
    },
}

#[derive(clap::Args, Default)]
struct RunArgs {
    /// Seconds between update events of open flows [overrides [flows] update_interval].
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    update_interval: Option<Seconds>,
    /// Seconds without a packet after which a UDP flow ends [overrides [flows] udp_idle_timeout].
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    udp_idle_timeout: Option<Seconds>,
    /// Count TCP packets per socket in the kernel: IP bytes, TCP flags, first byte times, Zeek
    /// history from packets [overrides [capture] tcp_detail].
    #[arg(long, value_name = "on|off", value_parser = parse_switch)]
    tcp_detail: Option<bool>,
}

fn parse_level(s: &str) -> Result<LogLevel, config::UnknownLogLevel> {
    s.parse()
}

/// Why a `run` option's value is not one.
#[derive(Debug, thiserror::Error)]
enum ArgError {
    #[error("{0:?}: expected on or off")]
    NotASwitch(String),
    #[error("{0:?} is not a number of seconds (expected e.g. 60 or 0.5)")]
    NotSeconds(String),
}

fn parse_switch(s: &str) -> Result<bool, ArgError> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(ArgError::NotASwitch(s.into())),
    }
}

fn parse_seconds(s: &str) -> Result<Seconds, ArgError> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=31_536_000.0).contains(&v) => Ok(Seconds(v)),
        _ => Err(ArgError::NotSeconds(s.into())),
    }
}

/// Why the agent stops with a non-zero status: the lines to print and the status.
struct Failure {
    code: u8,
    lines: Vec<String>,
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Self {
            code: EXIT_CONFIG,
            lines: e.lines(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        let code = if e.downcast_ref::<KernelUnsupported>().is_some()
            || e.downcast_ref::<runtime::SelfCheckFailed>().is_some()
        {
            EXIT_KERNEL
        } else if let Some(c) = e.downcast_ref::<ConfigError>() {
            return Self {
                code: EXIT_CONFIG,
                lines: c.lines(),
            };
        } else {
            EXIT_RUNTIME
        };
        Self {
            code,
            lines: vec![format!("{e:#}")],
        }
    }
}

impl From<tail::TailError> for Failure {
    fn from(e: tail::TailError) -> Self {
        match e {
            tail::TailError::Usage(why) => Self {
                code: EXIT_CONFIG,
                lines: vec![why],
            },
            tail::TailError::Rule(e) => Self {
                code: EXIT_CONFIG,
                lines: vec![e.to_string()],
            },
            tail::TailError::Agent(e) => Self {
                code: EXIT_RUNTIME,
                lines: vec![e.to_string()],
            },
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logger::init(cli.log_level.unwrap_or(LogLevel::Info).filter());
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            for line in f.lines {
                logger::fatal(&line);
            }
            ExitCode::from(f.code)
        }
    }
}

fn dispatch(cli: Cli) -> Result<(), Failure> {
    let command = cli.command.unwrap_or(Command::Run(RunArgs::default()));
    let mut overrides = Overrides {
        log_level: cli.log_level,
        outputs: cli.output,
        ..Overrides::default()
    };
    match command {
        Command::Tail(args) => {
            let config = config::choose_file(cli.config, cli.no_config);
            tail::run(&args, &config).map_err(Failure::from)
        }
        Command::Top(args) => {
            let config = config::choose_file(cli.config, cli.no_config);
            top::run(&args, &config).map_err(Failure::from)
        }
        Command::Version => {
            println!("flow-agent {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "flow-agent", &mut std::io::stdout());
            Ok(())
        }
        Command::Manual { dir, date } => {
            let cmd = <Cli as clap::CommandFactory>::command();
            manual::write_pages(cmd, &dir, &date)
                .map_err(|e| anyhow::anyhow!("writing manual pages to {}: {e}", dir.display()))?;
            Ok(())
        }
        Command::Probe {
            json,
            self_check: true,
        } => probe_self_check(cli.config.as_deref(), &overrides, json),
        Command::Probe { json, .. } => {
            let report = flow_agent::probe::run();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(anyhow::Error::from)?
                );
            } else {
                print!("{}", flow_agent::probe::render(&report));
            }
            if !report.baseline_ok {
                return Err(Failure {
                    code: EXIT_KERNEL,
                    lines: vec![
                        "this kernel lacks hooks the agent needs (see the table above)".into(),
                    ],
                });
            }
            Ok(())
        }
        Command::CheckConfig { file } => {
            // Without FILE, the file the agent would run with; a missing default is an error.
            let file = match (file.or(cli.config), cli.no_config) {
                (Some(file), _) => file,
                (None, false) => config::default_path(),
                (None, true) => {
                    let why =
                        "check-config with --no-config needs a file: flow-agent check-config FILE";
                    return Err(Failure {
                        code: EXIT_CONFIG,
                        lines: vec![why.into()],
                    });
                }
            };
            let cfg = effective_config(Some(&file), &overrides)?;
            // Valid, but worth a look: credentials an output would send in clear text.
            for (i, w) in cfg.cleartext_warnings() {
                eprintln!(
                    "flow-agent: warning: {}: outputs[{i}].http: {w}",
                    file.display()
                );
            }
            println!("{}: ok", file.display());
            Ok(())
        }
        Command::Config { default: true } => {
            print!("{}", config::default_toml());
            Ok(())
        }
        Command::Config { default: false } => {
            let source = config::choose_file(cli.config, cli.no_config);
            let cfg = effective_config(source.path(), &overrides)?;
            print!("{}", cfg.to_toml_redacted());
            Ok(())
        }
        Command::Run(args) => {
            overrides.update_interval = args.update_interval;
            overrides.udp_idle_timeout = args.udp_idle_timeout;
            overrides.tcp_detail = args.tcp_detail;
            run(config::choose_file(cli.config, cli.no_config), overrides)
        }
    }
}

/// `flow-agent probe --self-check`: the hooks first (exit 3 when the baseline is missing),
/// then the self-check, one line per check (or its JSON); exit 3 when a check failed.
fn probe_self_check(
    file: Option<&std::path::Path>,
    overrides: &Overrides,
    json: bool,
) -> Result<(), Failure> {
    let config = effective_config(file, overrides)?;
    let hooks = flow_agent::probe::run();
    if !hooks.baseline_ok {
        print!("{}", flow_agent::probe::render(&hooks));
        return Err(Failure {
            code: EXIT_KERNEL,
            lines: vec!["this kernel lacks hooks the agent needs (see the table above)".into()],
        });
    }
    let report = runtime::self_check(&config)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(anyhow::Error::from)?
        );
    } else {
        print!("{}", report.render());
    }
    if !report.ok {
        return Err(Failure {
            code: EXIT_KERNEL,
            lines: vec![format!("self-check failed: {}", report.describe_failures())],
        });
    }
    Ok(())
}

/// The file (or the defaults) with the command line's overrides, all checked.
fn effective_config(
    file: Option<&std::path::Path>,
    overrides: &Overrides,
) -> Result<Config, Failure> {
    let mut cfg = match file {
        Some(path) => config::load(path)?,
        None => Config::default(),
    };
    overrides.apply(&mut cfg);
    // The file was valid: what is wrong now came from the command line.
    let issues = cfg.check();
    if !issues.is_empty() {
        return Err(Failure {
            code: EXIT_CONFIG,
            lines: issues
                .into_iter()
                .map(|i| format!("command line: {}: {}", i.path, i.message))
                .collect(),
        });
    }
    Ok(cfg)
}

fn run(source: ConfigSource, overrides: Overrides) -> Result<(), Failure> {
    let config = effective_config(source.path(), &overrides)?;
    logger::configure(&config.agent);
    match &source {
        ConfigSource::Given(path) => log::info!("configuration file {}", path.display()),
        ConfigSource::Default(path) => log::info!(
            "configuration file {} (the default: no --config given; --no-config runs without it)",
            path.display()
        ),
        ConfigSource::BuiltIn => {
            log::info!("no configuration file: built-in defaults")
        }
    }
    let file = source.into_path();
    let opts = RunOptions {
        capture: config.capture.to_capture_config(),
        flows: config.flow_table_config(),
        enrich: config.enrich_config(std::sync::Arc::new(HostInfo::read())),
        // An event waits at most this long when too few bytes wait to wake the agent: the
        // latency target (p99 ≤ 50 ms at moderate load), for 50 cheap wake-ups a second.
        poll_interval: std::time::Duration::from_millis(20),
        reload: file.map(|path| {
            Box::new(move || {
                effective_config(Some(&path), &overrides)
                    .map_err(|f| anyhow::anyhow!("{}", f.lines.join("\n")))
            }) as Box<dyn FnMut() -> anyhow::Result<Config>>
        }),
        config,
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)?
        .block_on(runtime::run(opts))
        .map_err(Failure::from)
}
