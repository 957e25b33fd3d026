//! The agent's health reporting: periodic stats events on the outputs and Prometheus metrics
//! on a loopback port, checked against the flow events the agent printed.
//!
//! The agent sees every flow on the host, the test's own and any other, so counts are
//! compared with the agent's own output stream (exact), not with a guess of the traffic.
//!
//! Needs root, kernel BTF, iproute2 and python3.

mod common;

use anyhow::{bail, ensure, Context, Result};
use common::*;
use flow_agent_tests::{slowed, unused_port, Agent, Cmd, TempDir, TestHost};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Makes N TCP connections to itself on the namespace's loopback, each sending a few bytes.
/// Args: port, N. Prints `done` when every connection is closed.
const CONNECTOR: &str = r#"
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
ls = socket.socket()
ls.bind(("127.0.0.1", port))
ls.listen(n)
for i in range(n):
    c = socket.create_connection(("127.0.0.1", port))
    a, _ = ls.accept()
    c.sendall(b"x" * (i + 1))
    assert a.recv(100) == b"x" * (i + 1)
    a.close()
    c.close()
print("done", flush=True)
"#;

const PORT: u16 = 9300;
/// `enrich_losses` of the stats event, `kind` of `flow_agent_enrich_losses_total`.
const ENRICH_LOSS_KINDS: [&str; 6] = [
    "payload_table_full",
    "dns_answers_malformed",
    "dns_answers_unsolicited",
    "dns_answers_mismatched",
    "dns_queries_evicted",
    "dns_events_dropped",
];
const CONNECTIONS: usize = 5;

/// One keep-alive HTTP/1.1 connection to the metrics endpoint: its scrapes add no flows.
struct Scraper {
    reader: BufReader<TcpStream>,
}

/// One HTTP answer.
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Scraper {
    fn connect(port: u16) -> Result<Self> {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .with_context(|| format!("connecting to the metrics endpoint on port {port}"))?;
        tcp.set_read_timeout(Some(slowed(Duration::from_secs(30))))?;
        Ok(Self {
            reader: BufReader::new(tcp),
        })
    }

    fn request(&mut self, method: &str, path: &str) -> Result<Answer> {
        self.exchange(method, path)
            .with_context(|| format!("{method} {path} from the metrics endpoint"))
    }

    fn exchange(&mut self, method: &str, path: &str) -> Result<Answer> {
        write!(
            self.reader.get_mut(),
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut headers = BTreeMap::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').context("bad header line")?;
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let len: usize = headers
            .get("content-length")
            .context("answer without content-length")?
            .parse()?;
        let mut body = vec![0; if method == "HEAD" { 0 } else { len }];
        self.reader.read_exact(&mut body)?;
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8(body)?,
        })
    }

    fn metrics(&mut self) -> Result<Metrics> {
        let a = self.request("GET", "/metrics")?;
        ensure!(a.status == 200, "GET /metrics: {} {}", a.status, a.body);
        ensure!(
            a.headers.get("content-type").map(String::as_str)
                == Some("text/plain; version=0.0.4; charset=utf-8"),
            "content-type {:?}",
            a.headers.get("content-type")
        );
        parse_exposition(&a.body)
    }
}

/// Samples by `name{labels}` (labels as written, sorted by the agent).
#[derive(Debug)]
struct Metrics {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

impl Metrics {
    fn get(&self, series: &str) -> Result<u64> {
        self.samples
            .get(series)
            .map(|v| *v as u64)
            .with_context(|| format!("no series {series}; have {:?}", self.samples.keys()))
    }
}

/// The standard `process_*` families against the agent's own /proc entries.
fn check_process_metrics(m: &Metrics, pid: u32) -> Result<()> {
    let value = |name: &str| {
        ensure!(m.types.contains_key(name), "no TYPE for {name}");
        m.samples
            .get(name)
            .copied()
            .with_context(|| format!("no {name}"))
    };
    let proc_file = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}"));
    let limits = proc_file("limits")?;
    let soft: f64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .context("Max open files")?
        .parse()?;
    ensure!(value("process_max_fds")? == soft, "max fds vs {soft}");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as f64;
    let open = value("process_open_fds")?;
    ensure!(
        (open - fds).abs() <= 8.0,
        "open fds {open}, /proc says {fds}"
    );
    let status = proc_file("status")?;
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("VmRSS")?
        .parse()?;
    let rss = value("process_resident_memory_bytes")?;
    ensure!(
        rss > rss_kib * 1024.0 / 2.0 && rss < rss_kib * 1024.0 * 2.0,
        "rss {rss} bytes, VmRSS {rss_kib} KiB"
    );
    // Field 22 of stat (after the command in parentheses) in clock ticks since boot.
    let stat = proc_file("stat")?;
    let after_comm = stat.rsplit_once(") ").context("stat")?.1;
    let start_ticks: f64 = after_comm
        .split(' ')
        .nth(19)
        .context("starttime")?
        .parse()?;
    let btime: f64 = std::fs::read_to_string("/proc/stat")?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .context("btime")?
        .trim()
        .parse()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let start = value("process_start_time_seconds")?;
    ensure!(
        (start - (btime + start_ticks / ticks)).abs() < 0.02,
        "start time {start}"
    );
    let cpu = value("process_cpu_seconds_total")?;
    ensure!(
        cpu > 0.0 && m.types["process_cpu_seconds_total"] == "counter",
        "cpu {cpu}"
    );
    Ok(())
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses `{a="x",b="y\"z"}`: checks label names and escapes; returns the rest of the line.
fn check_labels(s: &str) -> Result<&str> {
    let mut rest = s.strip_prefix('{').context("labels start with {")?;
    loop {
        let eq = rest.find('=').context("label without =")?;
        ensure!(is_name(&rest[..eq]), "bad label name {:?}", &rest[..eq]);
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .context("label value not quoted")?;
        let mut escaped = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                let closes = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                closes
            })
            .map(|(i, _)| i)
            .context("unterminated label value")?;
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else {
            return rest.strip_prefix('}').context("labels end with }");
        }
    }
}

/// Checks the text exposition grammar (0.0.4) line by line: HELP and TYPE once per family
/// before its samples, valid names, labels and values.
fn parse_exposition(text: &str) -> Result<Metrics> {
    ensure!(
        text.ends_with('\n'),
        "exposition does not end with a newline"
    );
    let (mut samples, mut types, mut helps) = (BTreeMap::new(), BTreeMap::new(), BTreeSet::new());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').context("HELP without text")?;
            ensure!(is_name(name) && !help.is_empty(), "bad HELP line {line:?}");
            ensure!(helps.insert(name.to_string()), "second HELP for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').context("TYPE without type")?;
            ensure!(is_name(name), "bad TYPE line {line:?}");
            ensure!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type in {line:?}"
            );
            ensure!(
                !samples.keys().any(|s: &String| s.starts_with(name)),
                "TYPE of {name} after its samples"
            );
            ensure!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "second TYPE for {name}"
            );
        } else {
            ensure!(!line.starts_with('#'), "unexpected comment {line:?}");
            let name_end = line.find(['{', ' ']).context("sample without value")?;
            let name = &line[..name_end];
            ensure!(is_name(name), "bad metric name in {line:?}");
            let rest = if line[name_end..].starts_with('{') {
                check_labels(&line[name_end..]).with_context(|| format!("in {line:?}"))?
            } else {
                &line[name_end..]
            };
            let value = rest.strip_prefix(' ').context("no space before value")?;
            let value: f64 = value
                .parse()
                .with_context(|| format!("bad value in {line:?}"))?;
            let kind = types
                .get(name)
                .with_context(|| format!("{name} has no TYPE"))?;
            ensure!(helps.contains(name), "{name} has no HELP");
            if kind == "counter" {
                ensure!(name.ends_with("_total"), "counter {name} lacks _total");
            }
            let series = &line[..line.len() - rest.len()];
            ensure!(
                samples.insert(series.to_string(), value).is_none(),
                "series {series} twice"
            );
        }
    }
    Ok(Metrics { samples, types })
}

fn is_stats(ev: &Value) -> bool {
    get(ev, "event_action") == "stats"
}

/// The report of output `name` in a stats event.
fn sink<'a>(stats: &'a Value, name: &str) -> Result<&'a Value> {
    stats["sinks"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .with_context(|| format!("no sink {name} in {stats}"))
}

/// Every stats event agrees with the stream before it: events_total and the stdout sink's
/// accepted count are the flow events printed before it, its sent count those plus the
/// earlier stats events. Returns the number of stats events checked.
fn check_stats_against_stream(events: &[Value], output: &str) -> Result<usize> {
    let (mut flows, mut stats) = (0u64, 0u64);
    for ev in events {
        if !is_stats(ev) {
            flows += 1;
            continue;
        }
        let s = sink(ev, output)?;
        let want = json!({"events_total": flows, "accepted": flows, "sent": flows + stats});
        let got = json!({"events_total": ev["events_total"], "accepted": s["accepted"], "sent": s["sent"]});
        ensure!(
            got == want,
            "stats event #{stats} disagrees with the {flows} flow events printed before it: got {got}, want {want}\n{ev}"
        );
        for k in ["queued", "buffered", "dropped", "errors", "reconnects"] {
            ensure!(s[k] == 0, "stdout sink {k} is {} in {ev}", s[k]);
        }
        stats += 1;
    }
    Ok(stats as usize)
}

#[test]
fn metrics_and_stats_events_count_what_the_agent_printed() -> Result<()> {
    setup()?;
    let port = unused_port()?;
    let dir = TempDir::new("health")?;
    let config = dir.write(
        "agent.toml",
        format!(
            r#"
[health]
stats_interval = 1
metrics_listen = "127.0.0.1:{port}"

[[outputs]]
name = "events"
[outputs.stdout]
"#
        ),
    )?;
    let agent = agent(&["--config", &config.display().to_string()])?;
    let mut scraper = Scraper::connect(port)?;

    let first = scraper.metrics()?;
    ensure!(first.get(r#"flow_agent_build_info{version="0.1.0"}"#)? == 1);
    check_process_metrics(&first, agent.pid())?;
    ensure!(first.types["flow_agent_sink_queued"] == "gauge");
    ensure!(first.types["flow_agent_events_total"] == "counter");
    for kind in [
        "ring_full",
        "tcp_table_full",
        "udp_table_full",
        "read_failed",
        "owner_table_full",
    ] {
        first.get(&format!(
            r#"flow_agent_kernel_losses_total{{kind="{kind}"}}"#
        ))?;
    }
    ensure!(first.types["flow_agent_enrich_losses_total"] == "counter");
    for kind in ENRICH_LOSS_KINDS {
        first.get(&format!(
            r#"flow_agent_enrich_losses_total{{kind="{kind}"}}"#
        ))?;
    }
    let root = scraper.request("GET", "/")?;
    ensure!(root.status == 200 && root.body.contains("/metrics"));
    ensure!(scraper.request("GET", "/other")?.status == 404);
    ensure!(scraper.request("HEAD", "/metrics")?.status == 200);

    // Known traffic: CONNECTIONS connections, each a client and a server flow.
    let host = TestHost::new()?;
    let proc = spawn_py(
        &host,
        CONNECTOR,
        &[PORT.to_string(), CONNECTIONS.to_string()],
    )?;
    finish(proc, Duration::from_secs(30))?;
    let netns = host.netns_inode()?;
    let ours = |e: &Value| {
        is_end(e)
            && get(e, "netns") == netns
            && (get(e, "dest_port") == PORT || get(e, "src_port") == PORT)
    };
    agent.wait_for_count(ours, 2 * CONNECTIONS, EVENT_TIMEOUT)?;

    // Once no new flow event comes, the metrics, the latest stats event and the printed
    // stream agree exactly. Other hosts' traffic may delay that moment, not change it.
    let label = r#"{output="events",kind="stdout",format="native"}"#;
    let deadline = Instant::now() + slowed(Duration::from_secs(60));
    let (metrics, latest, flows_printed, stats_printed) = loop {
        let before = agent.events();
        let m = scraper.metrics()?;
        // Lets the harness read whatever the agent wrote before the scrape.
        std::thread::sleep(Duration::from_millis(200));
        let after = agent.events();
        let flows_printed = after.iter().filter(|e| !is_stats(e)).count() as u64;
        let latest = after.iter().rev().find(|e| is_stats(e)).cloned();
        let stable = latest.as_ref().is_some_and(|l| {
            before.len() == after.len()
                && l["events_total"] == flows_printed
                && m.get("flow_agent_events_total").ok() == Some(flows_printed)
                && m.get("flow_agent_flows_open").ok() == l["flows_open"].as_u64()
        });
        if stable {
            let stats_printed = after.iter().filter(|e| is_stats(e)).count() as u64;
            break (m, latest.unwrap(), flows_printed, stats_printed);
        }
        if Instant::now() > deadline {
            bail!("flows kept changing for 60 s: metrics and stats events never settled");
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    ensure!(
        flows_printed >= (2 * CONNECTIONS) as u64,
        "only {flows_printed} flow events printed"
    );
    ensure!(metrics.get(&format!("flow_agent_sink_accepted_total{label}"))? == flows_printed);
    // Everything printed: the flow events and the stats events.
    let sent = metrics.get(&format!("flow_agent_sink_sent_total{label}"))?;
    ensure!(
        sent == flows_printed + stats_printed,
        "sent {sent}: want {flows_printed} flow events + {stats_printed} stats events"
    );
    for k in [
        "dropped_total",
        "errors_total",
        "reconnects_total",
        "worker_panics_total",
    ] {
        ensure!(metrics.get(&format!("flow_agent_sink_{k}{label}"))? == 0);
    }
    for k in ["queued", "buffered"] {
        ensure!(metrics.get(&format!("flow_agent_sink_{k}{label}"))? == 0);
    }
    let losses = &latest["kernel_losses"];
    for (kind, v) in losses.as_object().context("kernel_losses")? {
        let series = if kind == "tcp_closes_missed" {
            "flow_agent_tcp_closes_missed_total".to_string()
        } else {
            format!(r#"flow_agent_kernel_losses_total{{kind="{kind}"}}"#)
        };
        ensure!(
            metrics.get(&series)? == *v,
            "{series}: stats event says {v}"
        );
    }
    // Enrichment losses: every kind in the stats event, the same number in the metrics.
    let enrich = latest["enrich_losses"]
        .as_object()
        .context("enrich_losses")?;
    let kinds: Vec<&str> = enrich.keys().map(String::as_str).collect();
    let mut want_kinds = ENRICH_LOSS_KINDS.to_vec();
    want_kinds.sort();
    ensure!(kinds == want_kinds, "enrich_losses kinds {kinds:?}");
    for (kind, v) in enrich {
        let series = format!(r#"flow_agent_enrich_losses_total{{kind="{kind}"}}"#);
        ensure!(
            v.as_u64().is_some() && metrics.get(&series)? == *v,
            "{series}: stats event says {v}"
        );
    }
    ensure!(
        sink(&latest, "events")?["worker_panics"] == 0,
        "worker_panics of the stdout output: {latest}"
    );
    let uptime = metrics.samples["flow_agent_uptime_seconds"];
    ensure!(uptime >= latest["uptime"].as_f64().unwrap_or(f64::MAX));
    drop(scraper);

    agent.wait_for_count(is_stats, 3, EVENT_TIMEOUT)?;
    let events = agent.stop()?;
    let checked = check_stats_against_stream(&events, "events")?;
    ensure!(checked >= 3, "only {checked} stats events");
    let stats = events.iter().find(|e| is_stats(e)).unwrap();
    check(
        "stats event",
        stats,
        &[
            ("event_action", json!("stats")),
            ("agent_version", json!("0.1.0")),
        ],
    )?;
    Ok(())
}

#[test]
fn a_metrics_address_beyond_loopback_needs_consent() -> Result<()> {
    setup()?;
    let dir = TempDir::new("health-remote")?;
    let config = dir.write(
        "agent.toml",
        "[health]\nmetrics_listen = \"0.0.0.0:39464\"\n",
    )?;
    let err = refused_config(&config)?;
    ensure!(
        err.contains("health.metrics_listen \"0.0.0.0:39464\": not a loopback address"),
        "{err}"
    );
    Ok(())
}

/// Waits until `port` answers /metrics (Ok) or refuses connections (Err), as `want_open` says.
fn wait_endpoint(port: u16, want_open: bool) -> Result<()> {
    let deadline = Instant::now() + slowed(Duration::from_secs(20));
    loop {
        let open = Scraper::connect(port).and_then(|mut s| s.metrics()).is_ok();
        if open == want_open {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "metrics on port {port} still {}",
            if open { "served" } else { "not served" }
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_reload_moves_the_metrics_endpoint_and_a_bad_one_is_refused() -> Result<()> {
    setup()?;
    let (first, second) = (unused_port()?, unused_port()?);
    let dir = TempDir::new("health-reload")?;
    let write = |listen: &str| {
        dir.write(
            "agent.toml",
            format!("[health]\nmetrics_listen = \"{listen}\"\n[[outputs]]\n[outputs.stdout]\n"),
        )
    };
    let config = write(&format!("127.0.0.1:{first}"))?;
    let agent = agent(&["--config", &config.display().to_string()])?;
    wait_endpoint(first, true)?;
    let hup = || {
        // SAFETY: kill(2) on the agent, our own child.
        unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) };
    };

    write(&format!("0.0.0.0:{second}"))?;
    hup();
    let deadline = Instant::now() + slowed(Duration::from_secs(20));
    // check-config's validation catches it before the outputs are touched.
    while !agent
        .stderr()
        .contains("the configuration was not reloaded, the previous one stays in force")
    {
        ensure!(
            Instant::now() < deadline,
            "a non-loopback reload was not rejected:\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_endpoint(first, true)?;

    write(&format!("127.0.0.1:{second}"))?;
    hup();
    wait_endpoint(second, true)?;
    wait_endpoint(first, false)?;
    agent.stop()?;
    Ok(())
}

/// Runs the agent with a configuration it must refuse; returns its stderr.
fn refused_config(config: &std::path::Path) -> Result<String> {
    let out = Cmd::host(&Agent::binary()?.display().to_string())
        .args(["run", "--config", &config.display().to_string()])
        .timeout(Duration::from_secs(60))
        .output()?;
    ensure!(
        !out.status.success(),
        "the agent accepted the configuration: {}",
        out.stderr_str()
    );
    Ok(out.stderr_str())
}
