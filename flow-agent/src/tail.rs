//! `flow-agent tail`: the running agent's events as lines, from its live socket.
use std::{
    io::{ErrorKind, Write},
    path::{Path, PathBuf},
};

use flow_agent::{
    config::ConfigSource,
    encode::Format,
    sink::subscribe::{
        client::{self, SubscribeError},
        protocol::{Request, RuleError},
        socket_in, DEFAULT_SOCKET,
    },
};

#[derive(clap::Args)]
pub(crate) struct TailArgs {
    /// Record format: native, ecs, ocsf, zeek or sysmon.
    #[arg(long, short = 'f', default_value = "native", value_parser = parse_format)]
    pub(crate) format: Format,
    /// Only events matching this rule (repeatable: any of them), in the rule language of
    /// [filter]: e.g. --filter 'remote_port = 443, process_name = "curl"'.
    #[arg(long, value_name = "RULE")]
    pub(crate) filter: Vec<String>,
    /// No events matching this rule (repeatable).
    #[arg(long, value_name = "RULE")]
    pub(crate) exclude: Vec<String>,
    /// The agent's live socket [default: [live] socket of the configuration file].
    #[arg(long, value_name = "PATH")]
    pub(crate) socket: Option<PathBuf>,
}

pub(crate) fn parse_format(s: &str) -> Result<Format, UnknownFormat> {
    Format::ALL
        .into_iter()
        .find(|f| f.name() == s)
        .ok_or_else(|| UnknownFormat(s.into()))
}

/// A `--format` value that names no format.
#[derive(Debug, thiserror::Error)]
#[error("{0:?}: expected native, ecs, ocsf, zeek or sysmon")]
pub(crate) struct UnknownFormat(String);

/// Why `tail` or `top` could not run: a bad argument (exit 2) or the agent (exit 1).
pub(crate) enum TailError {
    Usage(String),
    Rule(RuleError),
    Agent(SubscribeError),
}

/// The request the arguments make; an error names the bad rule.
pub(crate) fn request(
    format: Format,
    filter: &[String],
    exclude: &[String],
) -> Result<Request, TailError> {
    let mut request = Request {
        format,
        ..Request::default()
    };
    for (rules, exclude) in [(filter, false), (exclude, true)] {
        for rule in rules {
            request.add_rule(rule, exclude).map_err(TailError::Rule)?;
        }
    }
    Ok(request)
}

/// The socket to read: `--socket`, else `[live] socket` of the configuration file (`-c FILE`,
/// else the agent's default file when there is one), else the default socket.
pub(crate) fn socket(given: Option<&Path>, config: &ConfigSource) -> Result<PathBuf, TailError> {
    let file = match (given, config) {
        (Some(socket), _) => return Ok(socket.to_path_buf()),
        (None, ConfigSource::BuiltIn) => return Ok(DEFAULT_SOCKET.into()),
        (None, ConfigSource::Given(file) | ConfigSource::Default(file)) => file,
    };
    let problem = |why: String| TailError::Usage(format!("{}: {why}", file.display()));
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        // The agent's default file may be root's alone; the socket's group may still subscribe.
        Err(e)
            if e.kind() == ErrorKind::PermissionDenied
                && matches!(config, ConfigSource::Default(_)) =>
        {
            return Ok(DEFAULT_SOCKET.into())
        }
        Err(e) => return Err(problem(format!("{e} (--socket PATH needs no file)"))),
    };
    let socket = socket_in(&text).map_err(|e| problem(e.to_string()))?;
    if socket.as_os_str().is_empty() {
        return Err(problem(
            "[live] socket = \"\": the live view is off in this file".into(),
        ));
    }
    Ok(socket)
}

/// Prints every record until the agent stops (Ok) or stdout closes (Ok).
pub(crate) fn run(args: &TailArgs, config: &ConfigSource) -> Result<(), TailError> {
    let request = request(args.format, &args.filter, &args.exclude)?;
    let socket = socket(args.socket.as_deref(), config)?;
    let mut sub = client::subscribe(&socket, &request).map_err(TailError::Agent)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut line = String::new();
    while sub.next_record(&mut line).map_err(TailError::Agent)? {
        line.push('\n');
        match out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => {
                return Err(TailError::Agent(SubscribeError::Io {
                    path: "stdout".into(),
                    source: e,
                }))
            }
        }
    }
    Ok(())
}
