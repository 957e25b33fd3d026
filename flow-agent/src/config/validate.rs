//! Checks that serde cannot make: ranges, conflicts between options, paths that must exist,
//! outputs with exactly one sink. Every problem is reported, not only the first.
use std::{collections::HashMap, path::Path};

use super::{
    error::Issue,
    locate::KeyPath,
    sections::{CaptureSettings, EnrichConfig, FlowsConfig},
    Config,
};
use crate::filter::FilterConfig;

/// Kernel map sizes above this are a typo, not a plan (and would pin gigabytes of memory).
const MAX_TABLE_ENTRIES: u32 = 1 << 24;
const MAX_RING_BYTES: u32 = 1 << 30;
/// The ring buffer is made of pages.
const PAGE: u32 = 4096;

pub(crate) fn check(cfg: &Config) -> Vec<Issue> {
    let mut issues = Vec::new();
    let root = KeyPath::root();
    flows(&cfg.flows, &root.key("flows"), &mut issues);
    capture(&cfg.capture, &root.key("capture"), &mut issues);
    enrich(&cfg.enrich, &root.key("enrich"), &mut issues);
    filter(&cfg.filter, &root.key("filter"), &mut issues);
    outputs(cfg, &root.key("outputs"), &mut issues);
    let rate_limit = root.key("rate_limit");
    for (key, problem) in cfg.rate_limit.problems() {
        issues.push(Issue::new(rate_limit.key(key), problem));
    }
    let live = root.key("live");
    for (key, problem) in cfg.live.problems() {
        issues.push(Issue::new(live.key(key), problem));
    }
    if let Err(e) = cfg.health.metrics_address() {
        issues.push(Issue::new(
            root.key("health").key("metrics_listen"),
            e.to_string(),
        ));
    }
    issues
}

fn flows(f: &FlowsConfig, path: &KeyPath, issues: &mut Vec<Issue>) {
    // The flow table ticks once a second: shorter intervals cannot be honoured.
    for (key, v) in [
        ("update_interval", f.update_interval),
        ("udp_idle_timeout", f.udp_idle_timeout),
    ] {
        if v.0 < 1.0 {
            issues.push(Issue::new(
                path.key(key),
                format!("{} is too short (expected at least 1 second)", v.0),
            ));
        }
    }
    if f.accept_wait.0 > 60.0 {
        issues.push(Issue::new(
            path.key("accept_wait"),
            format!(
                "{} is too long (expected at most 60 seconds: inbound flows wait this long before they are reported)",
                f.accept_wait.0
            ),
        ));
    }
}

fn enrich(e: &EnrichConfig, path: &KeyPath, issues: &mut Vec<Issue>) {
    let most = crate::enrich::identity::MAX_ANCESTRY_DEPTH;
    if e.ancestry_depth as usize > most {
        issues.push(Issue::new(
            path.key("ancestry_depth"),
            format!(
                "{} ancestors is too many (expected 0 to {most}: each is looked up per process)",
                e.ancestry_depth
            ),
        ));
    }
    let max = flow_common::PAYLOAD_CAPTURE_LEN;
    if e.content_bytes as usize > max {
        issues.push(Issue::new(
            path.key("content_bytes"),
            format!(
                "{} is more than the kernel copies (expected 0 to {max})",
                e.content_bytes
            ),
        ));
    }
}

fn capture(c: &CaptureSettings, path: &KeyPath, issues: &mut Vec<Issue>) {
    let rb = c.ring_buffer_bytes;
    if !rb.is_power_of_two() || !(PAGE..=MAX_RING_BYTES).contains(&rb) {
        issues.push(Issue::new(
            path.key("ring_buffer_bytes"),
            format!("{rb} is not usable (expected a power of two from {PAGE} to {MAX_RING_BYTES}, e.g. 8388608)"),
        ));
    } else if c.wakeup_bytes > rb {
        issues.push(Issue::new(
            path.key("wakeup_bytes"),
            format!(
                "{} is larger than capture.ring_buffer_bytes ({rb}): the consumer would never be woken (expected at most {rb}, or 0 to wake on every record)",
                c.wakeup_bytes
            ),
        ));
    }
    for (key, v) in [
        ("process_ring_bytes", c.process_ring_bytes),
        ("dns_ring_bytes", c.dns_ring_bytes),
    ] {
        if !v.is_power_of_two() || !(PAGE..=MAX_RING_BYTES).contains(&v) {
            issues.push(Issue::new(
                path.key(key),
                format!(
                    "{v} is not usable (expected a power of two from {PAGE} to {MAX_RING_BYTES})"
                ),
            ));
        }
    }
    for (key, v) in [
        ("tcp_sockets", c.tcp_sockets),
        ("udp_flows", c.udp_flows),
        ("udp_owners", c.udp_owners),
        ("processes", c.processes),
        ("listeners", c.listeners),
    ] {
        if !(1..=MAX_TABLE_ENTRIES).contains(&v) {
            issues.push(Issue::new(
                path.key(key),
                format!("{v} entries is not usable (expected 1 to {MAX_TABLE_ENTRIES})"),
            ));
        }
    }
}

fn filter(f: &FilterConfig, path: &KeyPath, issues: &mut Vec<Issue>) {
    for (list, rules) in [("include", &f.include), ("exclude", &f.exclude)] {
        for (i, rule) in rules.iter().enumerate() {
            if rule.is_empty() {
                issues.push(Issue::new(
                    path.key(list).index(i),
                    "a rule without conditions would match every flow (expected at least one of remote_cidr, local_cidr, remote_port, local_port, transport, direction, exe, process_name, user, container_id, cgroup)",
                ));
            }
        }
    }
}

fn outputs(cfg: &Config, path: &KeyPath, issues: &mut Vec<Issue>) {
    if cfg.outputs.is_empty() {
        issues.push(Issue::new(
            path.clone(),
            "no outputs: events would go nowhere (expected at least one [[outputs]] table, or none at all for stdout)",
        ));
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut stdout: Option<usize> = None;
    let mut files: HashMap<&Path, usize> = HashMap::new();
    for (i, out) in cfg.outputs.iter().enumerate() {
        let at = path.index(i);
        filter(&out.filter, &at.key("filter"), issues);
        if let Some(name) = &out.name {
            if name.is_empty() {
                issues.push(Issue::new(
                    at.key("name"),
                    "an empty name (expected a name for logs and stats, or no name key)",
                ));
            } else if let Some(j) = names.insert(name.clone(), i) {
                issues.push(Issue::new(
                    at.key("name"),
                    format!(
                        "{name:?} is already the name of outputs[{j}] (expected a name of its own)"
                    ),
                ));
            }
        }
        let kind = match out.kind() {
            Ok(kind) => kind,
            Err(e) => {
                issues.push(Issue::new(at.clone(), sink_problem(&e.to_string())));
                continue;
            }
        };
        match kind {
            "stdout" => {
                if let Some(j) = stdout.replace(i) {
                    issues.push(Issue::new(
                        at.key("stdout"),
                        format!("outputs[{j}] already writes to stdout: two outputs there would mix their records (expected one stdout output)"),
                    ));
                }
            }
            "file" => {
                let file = out.file.as_ref().expect("kind() says file is set");
                let p = &file.path;
                let key = at.key("file").key("path");
                if !p.is_absolute() {
                    issues.push(Issue::new(
                        key,
                        format!(
                            "{:?} is a relative path (expected an absolute path)",
                            p.display().to_string()
                        ),
                    ));
                } else if let Some(j) = files.insert(p.as_path(), i) {
                    issues.push(Issue::new(
                        key,
                        format!(
                            "outputs[{j}] already writes {} (expected one output per file)",
                            p.display()
                        ),
                    ));
                } else {
                    let dir = p.parent().unwrap_or(Path::new("/"));
                    if !dir.is_dir() {
                        issues.push(Issue::new(
                            key,
                            format!(
                                "directory {} does not exist (expected an existing directory for {})",
                                dir.display(),
                                p.display()
                            ),
                        ));
                    } else if let Some(problem) = directory_problem(dir) {
                        issues.push(Issue::new(key, problem));
                    }
                }
            }
            "http" => {
                let http = out.http.as_ref().expect("kind() says http is set");
                let delivery = at.key("http").key("delivery");
                buffer_dir(out, i, &http.delivery, &delivery, issues);
                // Checked here too, not only when the sink starts: a bad URL is a
                // configuration error (exit 2, nothing started), like every other.
                match crate::sink::http::Endpoint::parse(&http.url) {
                    Err(e) => issues.push(Issue::new(at.key("http").key("url"), e.to_string())),
                    Ok(endpoint) => {
                        if let Some(problem) = http.tls_options_problem(&endpoint) {
                            issues.push(Issue::new(at.key("http"), problem));
                        }
                    }
                }
                if let Some(Err(e)) = http
                    .proxy
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .map(|p| crate::sink::http::Proxy::parse(p, "proxy"))
                {
                    issues.push(Issue::new(at.key("http").key("proxy"), e.to_string()));
                }
                if !out.format.is_json() {
                    issues.push(Issue::new(
                        at.key("format"),
                        format!(
                            "{} records are not JSON; an http output sends JSON (expected native, ecs, ocsf or zeek)",
                            out.format.name()
                        ),
                    ));
                }
            }
            "syslog" => {
                let syslog = out.syslog.as_ref().expect("kind() says syslog is set");
                let delivery = at.key("syslog").key("delivery");
                buffer_dir(out, i, &syslog.delivery, &delivery, issues);
            }
            _ => {}
        }
    }
}

/// A disk buffer directory that exists already must be one the agent will use; one that
/// does not is created private at start.
fn buffer_dir(
    out: &crate::sink::OutputConfig,
    i: usize,
    delivery: &crate::sink::delivery::DeliveryConfig,
    key: &KeyPath,
    issues: &mut Vec<Issue>,
) {
    if delivery.buffer_max_bytes == 0 {
        return;
    }
    let kind = out.kind().unwrap_or("output");
    let name = out.name.clone().unwrap_or_else(|| format!("{kind}-{i}"));
    let dir = delivery.buffer_dir_for(&name);
    if let Some(problem) = directory_problem(&dir) {
        issues.push(Issue::new(key.key("buffer_dir"), problem));
    }
}

/// What the agent will refuse in a directory it writes files in, as far as it can be told
/// before start: a symbolic link, or write permission for group or others. Its owner is
/// checked at start, once the agent's user is known.
fn directory_problem(dir: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(dir).ok()?;
    if meta.file_type().is_symlink() {
        return Some(format!(
            "directory {} is a symbolic link (expected the real path)",
            dir.display()
        ));
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
    let problem = crate::sink::safe_dir::mode_problem(dir, mode)?;
    Some(format!("directory {}: {problem}", dir.display()))
}

/// The sink stage's message without its prefix, with what is expected.
fn sink_problem(message: &str) -> String {
    let m = message
        .strip_prefix("output configuration: ")
        .unwrap_or(message);
    if m.contains("needs one sink table") {
        format!("{m} (expected e.g. [outputs.stdout] under this [[outputs]])")
    } else {
        format!("{m} (expected one sink table per [[outputs]]: add another [[outputs]] for each further sink)")
    }
}
