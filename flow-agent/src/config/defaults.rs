//! `flow-agent config --default`: every option at its default, as a commented TOML file that
//! parses back to the built-in defaults. The values come from `Config::default()` itself, so
//! they cannot drift from the code; the comments are the short form of
//! docs/configuration.md.
use toml_edit::{DocumentMut, Item, Table};

use super::Config;

const HEADER: &str = "\
# flow-agent configuration: every option at its default (flow-agent config --default).
# Every key is optional; a file with none of them behaves like no file at all.
# Durations are in seconds (integers or decimals). See docs/configuration.md.
";

/// Comments by key path (array tables without their index).
const COMMENTS: &[(&str, &str)] = &[
    (
        "agent",
        "The agent's own log (never written to stdout, where events go).",
    ),
    (
        "agent.log_level",
        "error, warn, info, debug or trace. --log-level overrides it.",
    ),
    (
        "agent.log_target",
        "stderr (logfmt lines) or journald (the journal's native protocol; stderr when\n\
         the journal's socket is absent).",
    ),
    (
        "agent.user",
        "Run as this user once the kernel programs are attached, keeping only the\n\
         capabilities the agent needs (docs/security-privileges.md). Empty: stay the user\n\
         that started it. $FLOW_AGENT_USER overrides it. Read at start, not on SIGHUP.",
    ),
    (
        "agent.allow_degraded",
        "When the start-up self-check (docs/health.md) fails, log it as an error and run\n\
         on instead of exiting with status 3.",
    ),
    ("flows", "Flow lifecycle timing."),
    (
        "flows.update_interval",
        "An open flow reports an update event this often (at least 1).",
    ),
    (
        "flows.udp_idle_timeout",
        "A UDP flow with no packet for this long ends with end_reason idle (at least 1).",
    ),
    (
        "flows.accept_wait",
        "An inbound TCP flow waits this long for accept() to name its process before it is\n\
         reported with the listening process (at most 60).",
    ),
    ("enrich", "What events add to the kernel's facts."),
    (
        "enrich.content_bytes",
        "Show this many bytes (at most 2048) of each direction's first payload as printable\n\
         ASCII in orig_content and resp_content. 0 (the default) shows none: payload can be\n\
         private. Needs capture.payload_inspection.",
    ),
    (
        "enrich.dns_events",
        "Write a dns_query event for every answered DNS query this host asked: the question,\n\
         response code, answers, resolver and the asking process. Off by default.",
    ),
    (
        "enrich.process_events",
        "Write a process_start event at every exec and a process_end event (exit code,\n\
         duration) at every exit, with the process_entity_id its flows carry. Off by default.",
    ),
    (
        "enrich.ancestry_depth",
        "Name up to this many ancestors of each event's process (ancestors: pid, entity id,\n\
         image), the parent first, at most 16. 0 (the default) names none.",
    ),
    (
        "enrich.hash_max_bytes",
        "Executables up to this size are hashed (image_sha256), off the event path; larger\n\
         ones are skipped (image_hash_skipped: too_large). 0 turns hashing off.",
    ),
    (
        "enrich.ja4s",
        "Add the JA4S fingerprint of the TLS server hello to TLS flows. Off by default: JA4S\n\
         is under the FoxIO License 1.1, which allows no commercial use without a licence\n\
         from FoxIO (JA4 itself is BSD-3-Clause and always on; see NOTICE).",
    ),
    (
        "enrich.local_networks",
        "A remote address in these networks makes a flow's network_locality internal.",
    ),
    (
        "enrich.community_id_seed",
        "Seed of the Community ID hash (0-65535); every sensor of a site must use the same.",
    ),
    (
        "capture",
        "Sizes of the kernel-side tables, fixed when the kernel programs load: a change\n\
         takes effect at the next start, not on SIGHUP.",
    ),
    (
        "capture.ring_buffer_bytes",
        "Kernel-to-agent ring buffer: a power of two, 4096 to 1073741824.",
    ),
    (
        "capture.process_ring_bytes",
        "Ring of exec, fork, exit and credential records: a power of two, 4096 to\n\
         1073741824 (an exec record takes 4-8 KiB).",
    ),
    (
        "capture.dns_ring_bytes",
        "Ring of DNS messages (1 KiB each): a power of two, 4096 to 1073741824.",
    ),
    (
        "capture.wakeup_bytes",
        "The agent is woken once this many bytes wait (else every 100 ms); 0 wakes it\n\
         for every record.",
    ),
    ("capture.tcp_sockets", "Open TCP sockets tracked at once."),
    (
        "capture.udp_flows",
        "UDP flows (socket and remote endpoint) tracked at once.",
    ),
    (
        "capture.udp_owners",
        "UDP sockets whose owning process is remembered.",
    ),
    (
        "capture.processes",
        "Processes whose start time and parent are remembered.",
    ),
    (
        "capture.listeners",
        "Listening TCP sockets whose owning process is remembered.",
    ),
    (
        "capture.tcp_detail",
        "The TCP detail tier (off by default): count TCP packets per socket in the kernel\n\
         for IP bytes, TCP flags, first byte times and history from packets, and copy first\n\
         payloads (payload_inspection). Costs about 0.3 us per TCP packet and 9 us per short\n\
         connection (docs/performance.md). --tcp-detail on|off overrides it.",
    ),
    (
        "capture.payload_inspection",
        "Copy the first payload segment (up to 2048 bytes) of each direction of each TCP\n\
         connection to recognise its application protocol, TLS server name and fingerprints.\n\
         Needs capture.tcp_detail (its per-packet program finds the segment).",
    ),
    (
        "capture.tcp_detail_sockets",
        "TCP sockets whose packets are counted at once (LRU; evictions are counted losses).",
    ),
    (
        "filter",
        "Global filter, applied before every output's own. A flow passes when it matches\n\
         any include rule (or there is none) and no exclude rule; a rule matches when all\n\
         its conditions do. Conditions: remote_cidr, local_cidr, remote_port, local_port,\n\
         transport, direction, exe, process_name, user, container_id, cgroup. Example:\n\
         exclude = [{ remote_cidr = \"169.254.169.254/32\" },\n\
         \x20          { process_name = \"chronyd\", transport = \"udp\" }]\n\
         See docs/filters.md.",
    ),
    (
        "filter.include",
        "Rules a flow must match one of (empty: every flow).",
    ),
    ("filter.exclude", "Rules a flow must match none of."),
    ("health", "The agent's own health reports."),
    (
        "health.stats_interval",
        "Seconds between stats events written to the outputs; 0 writes none.",
    ),
    (
        "health.metrics_listen",
        "IP:PORT of the Prometheus metrics endpoint; empty disables it.",
    ),
    (
        "health.metrics_allow_remote",
        "Allows a metrics_listen address other than loopback (no authentication there).",
    ),
    (
        "health.watchdog_interval",
        "Seconds the kernel may show TCP, UDP or process activity while a program family\n\
         delivers no record before the watchdog logs an error and runs the self-check\n\
         again; 0 turns it off. See docs/health.md.",
    ),
    (
        "rate_limit",
        "Optional limits on new flows a second, per process (by process entity id) and for\n\
         all processes together. Decided once per flow: an admitted flow keeps all its\n\
         events, a suppressed one has none and is counted in a rate_limited summary event,\n\
         in stats events and in metrics. See docs/configuration.md.",
    ),
    ("rate_limit.enabled", "Off by default."),
    (
        "rate_limit.per_process_rate",
        "Flows a second each process may start after its burst; 0: no per-process limit.",
    ),
    (
        "rate_limit.per_process_burst",
        "Flows a process may start at once (at least 1 while per_process_rate is not 0).",
    ),
    (
        "rate_limit.global_rate",
        "Flows a second all processes together may start after the burst; 0: no global limit.",
    ),
    (
        "rate_limit.global_burst",
        "Flows all processes may start at once.",
    ),
    (
        "rate_limit.summary_interval",
        "Seconds between rate_limited summaries (1-3600); written only when something was\n\
         suppressed, and at shutdown.",
    ),
    (
        "rate_limit.max_processes",
        "Processes whose limit state is kept (each about 100 bytes); beyond it the least\n\
         recently limited are forgotten (counted as processes_evicted) and start again with\n\
         a full burst. Also caps the summaries per interval.",
    ),
    (
        "outputs",
        "Where events go: one [[outputs]] table per destination, each with exactly one sink\n\
         table: [outputs.stdout], [outputs.file], [outputs.syslog] or [outputs.http].\n\
         --output replaces them all.",
    ),
    (
        "outputs.format",
        "native, ecs, ocsf, zeek or sysmon (docs/events.md describes native).\n\
         name = \"...\" names the output in logs and stats (default <sink>-<index>).",
    ),
    (
        "outputs.filter",
        "This output's own filter (same rules as [filter]).",
    ),
    ("outputs.stdout", "One record per line on stdout."),
    (
        "live",
        "The live view: a unix socket that `flow-agent tail` and `flow-agent top` read,\n\
         each subscriber with its own filter and format. Changes need a restart.",
    ),
    (
        "live.socket",
        "Path of the socket (mode 0660); \"\" turns the live view off.",
    ),
    (
        "live.group",
        "Group of the socket, whose members may subscribe; \"\": the agent's own group.",
    ),
    (
        "live.queue_bytes",
        "Bytes a subscriber may fall behind before it is dropped (and counted).",
    ),
    (
        "live.max_subscribers",
        "Subscribers at once; more are refused.",
    ),
];

fn comment_for(path: &str) -> Option<String> {
    COMMENTS
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, c)| c.lines().map(|l| format!("# {l}\n")).collect::<String>())
}

fn decorate(table: &mut Table, prefix: &str) {
    for (mut key, item) in table.iter_mut() {
        let path = if prefix.is_empty() {
            key.get().to_string()
        } else {
            format!("{prefix}.{}", key.get())
        };
        let comment = comment_for(&path);
        match item {
            Item::Table(t) => {
                if let Some(c) = comment {
                    t.decor_mut().set_prefix(format!("\n{c}"));
                }
                decorate(t, &path);
            }
            Item::ArrayOfTables(a) => {
                for (i, t) in a.iter_mut().enumerate() {
                    if let (0, Some(c)) = (i, &comment) {
                        t.decor_mut().set_prefix(format!("\n{c}"));
                    }
                    decorate(t, &path);
                }
            }
            Item::Value(v) => {
                // Long lists one value a line, for the reader who edits them.
                if let Some(a) = v.as_array_mut().filter(|a| a.len() > 2) {
                    for e in a.iter_mut() {
                        e.decor_mut().set_prefix("\n  ");
                    }
                    a.set_trailing_comma(true);
                    a.set_trailing("\n");
                }
                if let Some(c) = comment {
                    key.leaf_decor_mut().set_prefix(c);
                }
            }
            Item::None => {}
        }
    }
}

/// The default configuration as a commented TOML file.
pub fn default_toml() -> String {
    let text = Config::default().to_toml();
    let mut doc: DocumentMut = text.parse().expect("serialized TOML parses");
    decorate(doc.as_table_mut(), "");
    format!("{HEADER}{doc}")
}
