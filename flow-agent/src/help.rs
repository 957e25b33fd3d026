//! The texts of `--help`: written as a manual page (docs/cli.md has the same content).

pub const ABOUT: &str =
    "flow-agent: every TCP and UDP flow on this host, attributed to the process behind it.";

pub const LONG_ABOUT: &str = "\
flow-agent - host network flow sensor

flow-agent watches every TCP and UDP flow of this host through eBPF programs (tracepoints,
a raw tracepoint and cgroup v2 programs) and writes one event when a flow starts, one at
every update interval while it lasts and one when it ends, each naming the process, user,
cgroup and container behind it. Events go to the configured outputs (stdout, file, syslog,
HTTP) in the native, ECS, OCSF, Zeek or Sysmon format.

Without a command, flow-agent runs (as `flow-agent run`). It reads the configuration file
--config names, else /etc/flow-agent/config.toml when that exists; without a file it
writes native events as JSON lines on stdout. The agent's own log goes to stderr (logfmt)
or to the systemd journal, never to stdout.";

pub const AFTER_HELP: &str = "\
Exit status: 0 ok, 1 runtime error, 2 usage or configuration error, 3 kernel unsupported.
`flow-agent --help` prints the full manual.";

pub const AFTER_LONG_HELP: &str = "\
CONFIGURATION
    One TOML file: --config FILE, else /etc/flow-agent/config.toml when it exists (the log
    says which at start; --no-config reads none). It has the sections [agent], [flows], [enrich], [capture],
    [filter], [health] and [[outputs]]. Every key is optional. `flow-agent config --default`
    prints every option at its default; docs/configuration.md documents each.

    The agent refuses a file that anyone but root or its own user could change: the file
    must be owned by root or by the agent's user and not writable by group or others, and
    so must every directory above it (sticky directories such as /tmp excepted).

FILTERS
    [filter] (global) and [outputs.filter] (per output) hold include and exclude rules on
    remote_cidr, local_cidr, remote_port, local_port, transport, direction, exe,
    process_name, user, container_id and cgroup. A flow passes when it matches any include
    rule (or there is none) and no exclude rule; it is kept or dropped as a whole, on the
    decision taken at its start. Global exclude rules on remote_cidr, remote_port and
    transport only are decided in the kernel, so flows they exclude cost almost nothing.
    See docs/filters.md.

SIGNALS
    SIGHUP   Reload the configuration file: outputs, filters, [flows], [enrich] and
             [agent] change without losing an event; [capture] sizes need a restart. An
             invalid file is rejected with an error in the log and the running
             configuration stays in force.
    SIGTERM, SIGINT
             Stop: every open flow gets its end event (end_reason agent_shutdown), the
             outputs are flushed and closed, and the agent exits 0.

EXIT STATUS
    0   Success (run: stopped by SIGTERM or SIGINT).
    1   Runtime error: an output or the kernel programs could not start, or the agent
        stopped on an error.
    2   Usage or configuration error: unknown option, invalid or unsafe configuration file
        (each problem printed with file, line, column and key).
    3   This kernel lacks a hook the agent needs (run, probe).

ENVIRONMENT
    FLOW_AGENT_JOURNAL_SOCKET
             The journal's socket for log_target = \"journald\" (default
             /run/systemd/journal/socket).
    FLOW_AGENT_DEFAULT_CONFIG
             For tests only: replaces /etc/flow-agent/config.toml as the file read
             without --config.

FILES
    /etc/flow-agent/config.toml
             The configuration file read when --config is not given and it exists (and
             the one the packaged service names with --config).

EXAMPLES
    Native events on stdout, no configuration file:
        flow-agent
    Validate a file before installing it:
        flow-agent check-config /tmp/new.toml
    Validate /etc/flow-agent/config.toml, the file the service runs with:
        flow-agent check-config
    Run with the built-in defaults although /etc/flow-agent/config.toml exists:
        flow-agent run --no-config
    Start a file from the defaults:
        flow-agent config --default > /etc/flow-agent/config.toml
    Run with a file, but print ECS events on stdout instead of its outputs:
        flow-agent run --config /etc/flow-agent/config.toml --output stdout:ecs
    Write OCSF events to a file, with debug logs:
        flow-agent --output file:/var/log/flow-agent/flows.json:ocsf --log-level debug
    Reload after editing the file:
        kill -HUP $(pidof flow-agent)

SEE ALSO
    docs/cli.md, docs/configuration.md, docs/filters.md, docs/events.md";

pub const CONFIG: &str = "\
Configuration file (TOML). Without it /etc/flow-agent/config.toml is read when it exists,
else the built-in defaults apply: native events on stdout. The file must not be writable by
anyone but root or the agent's user; SIGHUP reloads it.";

pub const NO_CONFIG: &str = "\
Read no configuration file, not /etc/flow-agent/config.toml either: the built-in defaults
and the command line's options only. Not with --config.";

pub const OUTPUT: &str = "\
Send events to this output instead of the configuration's [[outputs]] (repeatable: every
--output given replaces them all; filters of the file still apply globally). Forms:
    stdout[:FORMAT]            e.g. stdout, stdout:ecs
    file:PATH[:FORMAT]         e.g. file:/var/log/flows.json:ocsf
    syslog:ADDRESS[:FORMAT]    e.g. syslog:127.0.0.1:514:ecs
    http:URL[:FORMAT]          e.g. http:http://127.0.0.1:9200/_bulk:ecs
FORMAT is native (default), ecs, ocsf, zeek or sysmon; the other options of the sink keep
their defaults.";

pub const RUN: &str = "\
Load the kernel programs, capture every TCP and UDP flow and write events to the outputs
until SIGTERM or SIGINT. SIGHUP reloads the configuration file. This is the default
command. Needs root, or the capabilities the packaged service grants.";

pub const PROBE: &str = "\
Load and attach one minimal program of every kind of hook the agent uses and print which
this kernel allows. Exits 3 when a hook the agent needs is missing.";

pub const CHECK_CONFIG: &str = "\
Validate a configuration file without starting the agent: syntax, unknown keys, wrong
types, bad CIDRs and ports, outputs without exactly one sink, conflicting options,
directories that do not exist, and the file's ownership and permissions. Every problem is
printed as FILE:LINE:COLUMN: KEY: what is wrong (expected ...). Exits 0 and prints
`FILE: ok` when the file is valid, 2 when it is not. --output and --log-level are checked
with it. Without FILE: the --config file, else /etc/flow-agent/config.toml.";

pub const CONFIG_CMD: &str = "\
Print a configuration as TOML. With --default: every option at its default with comments,
which parses back to the built-in defaults. Without: the effective configuration, the
--config file (else /etc/flow-agent/config.toml when it exists, else the defaults) with the
command line's overrides applied.";

pub const TAIL: &str = "\
Subscribe to the running agent's live socket (--socket, else [live] socket of the --config
file or /etc/flow-agent/config.toml, else /run/flow-agent/events.sock) and print its events,
one record a line, in the chosen format. --filter and --exclude take rules of the [filter]
language, the inside of one inline table: --filter 'remote_port = 443, process_name =
\"curl\"'. The agent filters before it encodes; stats events come only without --filter.
Exits 0 when the agent stops, 1 when no agent listens, access is denied or the agent dropped
this subscriber for reading too slowly, 2 for a bad rule or a file that names no socket. Needs
root or membership of the socket's group.";

pub const TOP: &str = "\
A terminal view of the running agent's flows, one row per process: pid, user, container,
open flows, connections per second, bytes in and out per second, busiest remote. Refreshes
every second. Keys: up/down choose a process, Enter shows its open flows, 1-9 sort by a
column (again: reverse), q quits. Reads the live socket like `tail`, and subscribes again
(\"reconnecting\") when the agent stops, restarts or drops it.";
