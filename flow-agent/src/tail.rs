//! `flow-agent tail`: the running agent's events as lines, from its live socket.
use std::{
    io::{ErrorKind, Write},
    path::PathBuf,
};

use flow_agent::{
    encode::Format,
    sink::subscribe::{
        client::{self, SubscribeError},
        protocol::Request,
        DEFAULT_SOCKET,
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
    /// The agent's live socket ([live] socket).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub(crate) socket: PathBuf,
}

pub(crate) fn parse_format(s: &str) -> Result<Format, String> {
    Format::ALL
        .into_iter()
        .find(|f| f.name() == s)
        .ok_or_else(|| format!("{s:?}: expected native, ecs, ocsf, zeek or sysmon"))
}

/// Why `tail` or `top` could not run: a bad argument (exit 2) or the agent (exit 1).
pub(crate) enum TailError {
    Usage(String),
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
            request.add_rule(rule, exclude).map_err(TailError::Usage)?;
        }
    }
    Ok(request)
}

/// Prints every record until the agent stops (Ok) or stdout closes (Ok).
pub(crate) fn run(args: &TailArgs) -> Result<(), TailError> {
    let request = request(args.format, &args.filter, &args.exclude)?;
    let mut sub = client::subscribe(&args.socket, &request).map_err(TailError::Agent)?;
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
