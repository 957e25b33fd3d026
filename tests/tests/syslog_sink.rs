//! The syslog sink against real forwarders: private rsyslogd and syslog-ng instances on
//! loopback ports chosen at run time and unix sockets in a scratch directory. Each output's
//! messages are compared byte for byte (the forwarder writes the MSG part) with the records the
//! agent printed on its stdout output; an outage under load must lose nothing, and the counts
//! in the agent's stats events must agree. Unix sockets are read as /dev/log is, and get the
//! local syslog form: the forwarders must find its tag, pid and severity.
#[path = "syslog_sink/forwarders.rs"]
mod forwarders;

use anyhow::{bail, ensure, Context, Result};
use flow_agent_tests::{
    describe_bound, require_root_and_bpf, require_tools, scaled, slowed, unused_port, Agent,
    TempDir,
};
use forwarders::{Fields, Forwarder, Input, Kind, Listen, Pki};
use serde_json::Value;
use std::{
    collections::HashSet,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

/// Bound for records to reach a forwarder, and for stats events to show something.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(90);

/// One test at a time: each runs an agent that sees every flow on the host, the other
/// tests' included, and the machine may be small.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn setup() -> Result<std::sync::MutexGuard<'static, ()>> {
    require_root_and_bpf()?;
    require_tools(&["rsyslogd", "openssl", "python3"])?;
    Ok(SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

/// One `[[outputs]]` syslog table.
struct Output {
    name: String,
    /// Which forwarder and input should receive it (None: none should).
    to: Option<(Kind, String)>,
    toml: String,
}

fn output(
    name: &str,
    transport: &str,
    address: &str,
    extra: &str,
    delivery: &str,
    buffers: &Path,
) -> String {
    format!(
        "[[outputs]]\nname = \"{name}\"\n[outputs.syslog]\ntransport = \"{transport}\"\n\
         address = \"{address}\"\nhostname = \"test-host\"\n{extra}\n\
         [outputs.syslog.delivery]\nbuffer_dir = \"{}\"\nbackoff_initial = 0.1\n\
         backoff_max = 1\n{delivery}\n",
        buffers.join(name).display()
    )
}

/// Outputs for every input of a forwarder, named `<prefix>-<input>`.
fn outputs_for(
    kind: Kind,
    prefix: &str,
    inputs: &[Input],
    pki: &Pki,
    delivery: &str,
    buffers: &Path,
) -> Vec<Output> {
    let ca = format!(
        "ca_file = \"{}\"\nserver_name = \"localhost\"",
        pki.ca.display()
    );
    inputs
        .iter()
        .map(|i| {
            let name = format!("{prefix}-{}", i.name);
            let (transport, address, extra) = match &i.listen {
                Listen::UnixDgram(p) | Listen::UnixFields(p) => {
                    ("unix", p.display().to_string(), String::new())
                }
                Listen::UnixStream(p) => ("unix-stream", p.display().to_string(), String::new()),
                Listen::Udp(port) => ("udp", format!("127.0.0.1:{port}"), String::new()),
                Listen::TcpOctet(port) => (
                    "tcp",
                    format!("127.0.0.1:{port}"),
                    "framing = \"octet-counting\"".into(),
                ),
                Listen::TcpNewline(port) => (
                    "tcp",
                    format!("127.0.0.1:{port}"),
                    "framing = \"newline\"".into(),
                ),
                Listen::TlsOctet(port) => (
                    "tls",
                    format!("127.0.0.1:{port}"),
                    format!("framing = \"octet-counting\"\n{ca}"),
                ),
                Listen::TlsNewline(port) => (
                    "tls",
                    format!("127.0.0.1:{port}"),
                    format!("framing = \"newline\"\n{ca}"),
                ),
            };
            Output {
                toml: output(&name, transport, &address, &extra, delivery, buffers),
                name,
                to: Some((kind, i.name.clone())),
            }
        })
        .collect()
}

fn agent_config(dir: &TempDir, outputs: &[Output]) -> Result<std::path::PathBuf> {
    let mut toml =
        "[health]\nstats_interval = 1\n\n[[outputs]]\nname = \"stdout\"\n[outputs.stdout]\n\n"
            .to_string();
    for o in outputs {
        toml += &o.toml;
        toml.push('\n');
    }
    dir.write("agent.toml", toml)
}

/// `n` TCP connections on loopback (each a start and an end event), with a listener in the
/// same process.
fn make_flows(n: usize) -> Result<()> {
    let script = r#"
import socket, sys, threading
n = int(sys.argv[1])
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(256)
def serve():
    for _ in range(n):
        c, _ = srv.accept()
        c.recv(16)
        c.close()
t = threading.Thread(target=serve)
t.start()
port = srv.getsockname()[1]
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"x")
    s.close()
t.join()
"#;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script, &n.to_string()])
        .output()
        .context("running the flow generator")?;
    ensure!(
        out.status.success(),
        "flow generator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn is_stats(ev: &Value) -> bool {
    ev["event_action"] == "stats"
}

/// The report of sink `name` in a stats event.
fn sink<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["sinks"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or(&Value::Null)
}

fn count(report: &Value, key: &str) -> u64 {
    report[key].as_u64().unwrap_or(u64::MAX)
}

/// Waits until `forwarder`'s input has received at least `n` messages.
fn wait_received(f: &Forwarder, input: &str, n: usize) -> Result<Vec<String>> {
    let deadline = Instant::now() + slowed(DELIVERY_TIMEOUT);
    loop {
        let got = f.received(input);
        if got.len() >= n {
            return Ok(got);
        }
        if Instant::now() > deadline {
            bail!(
                "{:?} input {input}: {} of {n} messages within {}\nforwarder stderr: {}",
                f.kind,
                got.len(),
                describe_bound(DELIVERY_TIMEOUT),
                f.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn first_difference(got: &[String], want: &[String]) -> String {
    let i = got
        .iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    format!(
        "{} received, {} written; first difference at line {i}:\n  received: {}\n  written:  {}",
        got.len(),
        want.len(),
        got.get(i).map_or("(none)", |s| s.as_str()),
        want.get(i).map_or("(none)", |s| s.as_str())
    )
}

fn forwarder_of<'a>(forwarders: &'a [&Forwarder], kind: Kind) -> &'a Forwarder {
    forwarders
        .iter()
        .find(|f| f.kind == kind)
        .expect("forwarder started")
}

/// Inputs of every kind, on fresh ports and sockets in `dir`.
fn all_inputs(dir: &Path, with_newline_tls: bool) -> Result<Vec<Input>> {
    let mut v = vec![
        Input {
            name: "unix".into(),
            listen: Listen::UnixDgram(dir.join("unix.sock")),
        },
        Input {
            name: "stream".into(),
            listen: Listen::UnixStream(dir.join("stream.sock")),
        },
        Input {
            name: "udp".into(),
            listen: Listen::Udp(unused_port()?),
        },
        Input {
            name: "tcp-octet".into(),
            listen: Listen::TcpOctet(unused_port()?),
        },
        Input {
            name: "tcp-newline".into(),
            listen: Listen::TcpNewline(unused_port()?),
        },
        Input {
            name: "tls-octet".into(),
            listen: Listen::TlsOctet(unused_port()?),
        },
    ];
    if with_newline_tls {
        v.push(Input {
            name: "tls-newline".into(),
            listen: Listen::TlsNewline(unused_port()?),
        });
    }
    Ok(v)
}

#[test]
fn every_transport_and_framing_delivers_every_record_byte_for_byte() -> Result<()> {
    let _serial = setup()?;
    let dir = TempDir::new("syslog-all")?;
    let pki = Pki::create(dir.path())?;
    let buffers = dir.path().join("buffers");
    let rs_dir = dir.path().join("rsyslog");
    let ng_dir = dir.path().join("syslog-ng");
    std::fs::create_dir_all(&rs_dir)?;
    std::fs::create_dir_all(&ng_dir)?;
    let rs_inputs = all_inputs(&rs_dir, true)?;
    let ng_inputs = all_inputs(&ng_dir, true)?;
    let rsyslog = Forwarder::start(Kind::Rsyslog, &rs_dir, rs_inputs.clone(), &pki)?;
    let syslog_ng = Forwarder::start(Kind::SyslogNg, &ng_dir, ng_inputs.clone(), &pki)?;

    let mut outputs = outputs_for(Kind::Rsyslog, "rs", &rs_inputs, &pki, "", &buffers);
    outputs.extend(outputs_for(
        Kind::SyslogNg,
        "ng",
        &ng_inputs,
        &pki,
        "",
        &buffers,
    ));
    // TLS verification is on: a server that the configured CA did not sign, or that does not
    // carry the expected name, gets nothing.
    let tls_port = match rs_inputs
        .iter()
        .find(|i| i.name == "tls-octet")
        .unwrap()
        .listen
    {
        Listen::TlsOctet(p) => p,
        _ => unreachable!(),
    };
    let addr = format!("127.0.0.1:{tls_port}");
    for (name, extra) in [
        (
            "bad-ca",
            format!(
                "ca_file = \"{}\"\nserver_name = \"localhost\"",
                pki.other_ca.display()
            ),
        ),
        (
            "bad-name",
            format!(
                "ca_file = \"{}\"\nserver_name = \"wrong.example\"",
                pki.ca.display()
            ),
        ),
    ] {
        outputs.push(Output {
            // A handshake the server is slow to answer under load is retried soon.
            toml: output(
                name,
                "tls",
                &addr,
                &extra,
                "close_timeout = 1\nsend_timeout = 3",
                &buffers,
            ),
            name: name.into(),
            to: None,
        });
    }
    let config = agent_config(&dir, &outputs)?;
    let agent = Agent::start(&["--config", config.to_str().unwrap()])?;
    make_flows(scaled(300))?;
    // Stats events after the load, so that they are compared too.
    let after_load = agent.event_count();
    wait_stats(&agent, "the load done", |i, _| i >= after_load)?;
    // Both refused outputs have tried at least once (a loaded machine may take a while), and a
    // stats event written after that carries their errors.
    let deadline = Instant::now() + slowed(Duration::from_secs(60));
    while !["bad-ca", "bad-name"].iter().all(|bad| {
        agent.stderr().lines().any(|l| {
            l.contains(&format!("output {bad}:")) && l.contains("invalid peer certificate")
        })
    }) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let tried = agent.event_count();
    wait_stats(&agent, "the refused outputs tried", |i, _| i >= tried)?;
    let stderr_handle = agent.stderr();
    let (events, lines) = agent.stop_with_lines()?;
    ensure!(
        lines.len() > scaled(300) * 2,
        "only {} records written",
        lines.len()
    );

    let forwarders = [&rsyslog, &syslog_ng];
    let mut failures = Vec::new();
    for o in outputs.iter().filter(|o| o.to.is_some()) {
        let (kind, input) = o.to.as_ref().unwrap();
        let f = forwarder_of(&forwarders, *kind);
        match wait_received(f, input, lines.len()) {
            Ok(got) if got == lines => {}
            Ok(got) => failures.push(format!(
                "output {}: {}",
                o.name,
                first_difference(&got, &lines)
            )),
            Err(e) => failures.push(format!("output {}: {e:#}", o.name)),
        }
    }
    let last_stats = events
        .iter()
        .rev()
        .find(|e| is_stats(e))
        .context("no stats event")?;
    let stderr = stderr_handle;
    for bad in ["bad-ca", "bad-name"] {
        let r = sink(last_stats, bad);
        if count(r, "sent") != 0 || count(r, "errors") == 0 {
            failures.push(format!(
                "output {bad}: expected nothing sent and errors, stats say {r}"
            ));
        }
        let logged = stderr.lines().any(|l| {
            l.contains(&format!("output {bad}:")) && l.contains("invalid peer certificate")
        });
        if !logged {
            failures.push(format!(
                "output {bad}: no log line about the invalid peer certificate"
            ));
        }
    }
    ensure!(
        failures.is_empty(),
        "{}\n--- agent stderr (tail) ---\n{}",
        failures.join("\n"),
        stderr
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}

/// Waits for the first stats event (on stdout) that satisfies `pred`; returns its index
/// among the printed lines and the event.
fn wait_stats(
    agent: &Agent,
    what: &str,
    pred: impl Fn(usize, &Value) -> bool,
) -> Result<(usize, Value)> {
    let deadline = Instant::now() + slowed(DELIVERY_TIMEOUT);
    let mut checked = 0;
    let mut last = None;
    loop {
        let new = agent.events_since(checked);
        for (i, ev) in new.iter().enumerate() {
            if is_stats(ev) {
                if pred(checked + i, ev) {
                    return Ok((checked + i, ev.clone()));
                }
                last = Some(ev.clone());
            }
        }
        checked += new.len();
        if Instant::now() > deadline {
            bail!(
                "no stats event with {what} within {} ({checked} events); last: {}\n--- agent stderr ---\n{}",
                describe_bound(DELIVERY_TIMEOUT),
                last.map_or("none".into(), |v| v.to_string()),
                agent.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn forwarders_stopped_under_load_lose_nothing_and_stats_agree() -> Result<()> {
    let _serial = setup()?;
    let dir = TempDir::new("syslog-outage")?;
    let pki = Pki::create(dir.path())?;
    let buffers = dir.path().join("buffers");
    let rs_dir = dir.path().join("rsyslog");
    let ng_dir = dir.path().join("syslog-ng");
    let rs_inputs = vec![
        Input {
            name: "tcp-octet".into(),
            listen: Listen::TcpOctet(unused_port()?),
        },
        Input {
            name: "tls-octet".into(),
            listen: Listen::TlsOctet(unused_port()?),
        },
        Input {
            name: "capped".into(),
            listen: Listen::TcpNewline(unused_port()?),
        },
    ];
    let ng_inputs = vec![
        Input {
            name: "tcp-octet".into(),
            listen: Listen::TcpOctet(unused_port()?),
        },
        Input {
            name: "tls-newline".into(),
            listen: Listen::TlsNewline(unused_port()?),
        },
    ];
    let mut rsyslog = Forwarder::start(Kind::Rsyslog, &rs_dir, rs_inputs.clone(), &pki)?;
    let mut syslog_ng = Forwarder::start(Kind::SyslogNg, &ng_dir, ng_inputs.clone(), &pki)?;
    // A small memory queue, so the disk buffer does the work during the outage; time enough
    // at shutdown for the last records (they pass through the disk buffer too) on a busy host.
    let delivery = "queue_records = 50\nclose_timeout = 30";
    let mut outputs = outputs_for(
        Kind::Rsyslog,
        "rs",
        &rs_inputs[..2],
        &pki,
        delivery,
        &buffers,
    );
    outputs.extend(outputs_for(
        Kind::SyslogNg,
        "ng",
        &ng_inputs,
        &pki,
        delivery,
        &buffers,
    ));
    // A disk buffer cap far below the outage's volume: what does not fit is dropped and
    // counted, newest first.
    let capped =
        "queue_records = 20\nbuffer_max_bytes = 65536\ndrop_policy = \"newest\"\nclose_timeout = 5";
    outputs.extend(outputs_for(
        Kind::Rsyslog,
        "rs",
        &rs_inputs[2..],
        &pki,
        capped,
        &buffers,
    ));
    let normal: Vec<String> = outputs
        .iter()
        .map(|o| o.name.clone())
        .filter(|n| n != "rs-capped")
        .collect();
    let config = agent_config(&dir, &outputs)?;
    let agent = Agent::start(&["--config", config.to_str().unwrap()])?;

    make_flows(scaled(100))?;
    let n = agent.json_lines().len();
    wait_received(&rsyslog, "tcp-octet", n)?;
    rsyslog.stop()?;
    syslog_ng.stop()?;
    make_flows(scaled(1500))?;
    // The outage shows in the stats: records in the disk buffers, drops at the cap.
    wait_stats(
        &agent,
        "records buffered on disk and drops at the cap",
        |_, s| {
            normal.iter().all(|n| count(sink(s, n), "buffered") > 0)
                && count(sink(s, "rs-capped"), "dropped") > 0
        },
    )?;
    rsyslog.restart()?;
    syslog_ng.restart()?;
    make_flows(scaled(100))?;
    // Back to normal: the disk buffers drained, and every record handed to each output is
    // sent, waiting in memory, or (capped only) dropped; nothing else.
    let (i, stats) = wait_stats(&agent, "drained buffers and agreeing counts", |i, s| {
        let agree = |n: &str| {
            let r = sink(s, n);
            count(r, "buffered") == 0
                && count(r, "sent") + count(r, "queued") + count(r, "dropped") == i as u64
        };
        normal
            .iter()
            .all(|n| agree(n) && count(sink(s, n), "dropped") == 0)
            && agree("rs-capped")
    })?;
    let dropped = count(sink(&stats, "rs-capped"), "dropped");
    println!("stats event {i}: {stats}");
    let stopped = agent.stop_with_output()?;
    let lines = stopped.json_lines;

    let want: HashSet<&String> = lines.iter().collect();
    let mut failures = Vec::new();
    let forwarders = [&rsyslog, &syslog_ng];
    for o in &outputs {
        let (kind, input) = o.to.as_ref().unwrap();
        let f = forwarder_of(&forwarders, *kind);
        let expect = if o.name == "rs-capped" {
            i.min(lines.len()) - dropped as usize
        } else {
            lines.len()
        };
        // At least once: wait for the distinct records, duplicates allowed.
        let deadline = Instant::now() + slowed(DELIVERY_TIMEOUT);
        let got = loop {
            let got = f.received(input);
            let distinct: HashSet<&String> = got.iter().collect();
            if distinct.len() >= expect || Instant::now() > deadline {
                break got;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let distinct: HashSet<&String> = got.iter().collect();
        let foreign = distinct.difference(&want).count();
        let missing: Vec<&&String> = want.difference(&distinct).collect();
        // First occurrences in the order written: resent records only repeat earlier ones.
        let mut seen = HashSet::new();
        let firsts: Vec<&String> = got.iter().filter(|l| seen.insert(*l)).collect();
        let in_order = firsts
            .iter()
            .zip(lines.iter().filter(|l| distinct.contains(l)))
            .all(|(a, b)| *a == b);
        println!(
            "output {}: {} messages, {} distinct, {} duplicates, {} missing, {} foreign",
            o.name,
            got.len(),
            distinct.len(),
            got.len() - distinct.len(),
            missing.len(),
            foreign
        );
        if foreign > 0 || !in_order {
            failures.push(format!(
                "output {}: {foreign} foreign records, in order: {in_order}",
                o.name
            ));
        }
        if o.name == "rs-capped" {
            // The stats event's counts cover the records written before it; records after it
            // may still meet the cap later, which a later stats event would count.
            let counted: HashSet<&String> = lines[..i.min(lines.len())].iter().collect();
            let missing_counted = counted.difference(&distinct).count();
            if missing_counted as u64 != dropped {
                failures.push(format!(
                    "output rs-capped: {missing_counted} of the records before stats event {i} missing, it says {dropped} dropped",
                ));
            }
        } else if !missing.is_empty() {
            let at: Vec<usize> = (0..lines.len())
                .filter(|&k| !distinct.contains(&lines[k]))
                .collect();
            failures.push(format!(
                "output {}: {} of {} records missing (output positions {}..={}, stats event {i}), e.g. {}",
                o.name,
                missing.len(),
                lines.len(),
                at[0],
                at[at.len() - 1],
                missing[0]
            ));
        }
    }
    ensure!(
        failures.is_empty(),
        "{}\n--- agent stderr ---\n{}",
        failures.join("\n"),
        stopped.stderr
    );
    Ok(())
}

#[test]
fn records_on_disk_when_the_agent_is_killed_are_delivered_by_the_next_agent() -> Result<()> {
    let _serial = setup()?;
    let dir = TempDir::new("syslog-kill")?;
    let pki = Pki::create(dir.path())?;
    let buffers = dir.path().join("buffers");
    let rs_dir = dir.path().join("rsyslog");
    let inputs = vec![Input {
        name: "tcp-octet".into(),
        listen: Listen::TcpOctet(unused_port()?),
    }];
    // The syslog output comes first: each batch is on its disk buffer before stdout prints it.
    let queue = 10;
    let outputs = outputs_for(
        Kind::Rsyslog,
        "rs",
        &inputs,
        &pki,
        &format!("queue_records = {queue}"),
        &buffers,
    );
    let mut toml = "[health]\nstats_interval = 1\n\n".to_string();
    toml += &outputs[0].toml;
    toml += "\n[[outputs]]\nname = \"stdout\"\n[outputs.stdout]\n";
    let config = dir.write("agent.toml", toml)?;
    let args = ["--config", config.to_str().unwrap()];

    // The forwarder is down: past the memory queue, every record goes to the disk buffer.
    let first = Agent::start(&args)?;
    make_flows(scaled(200))?;
    wait_stats(&first, "the load written", |i, _| i >= scaled(200) * 2)?;
    let printed = first.json_lines();
    drop(first); // SIGKILL: no close, no chance to persist anything more

    let rsyslog = Forwarder::start(Kind::Rsyslog, &rs_dir, inputs, &pki)?;
    let second = Agent::start(&args)?;
    // What was only in memory (the first `queue` records) died with the process; everything
    // after it was on disk and is replayed, in order, before the new agent's own records.
    let want = &printed[queue..];
    let got = wait_received(&rsyslog, "tcp-octet", want.len())?;
    let stderr = second.stderr();
    second.stop()?;
    ensure!(
        got.len() >= want.len() && got[..want.len()] == *want,
        "replay after SIGKILL: {}\n--- second agent stderr ---\n{stderr}",
        first_difference(&got[..want.len().min(got.len())], want)
    );
    ensure!(
        stderr.contains("undelivered records from an earlier run"),
        "the replay was not logged:\n{stderr}"
    );
    Ok(())
}

/// A plain TCP syslog collector with octet-counting framing: every message received, parsed
/// into (MSGID, MSG), on any connection.
struct Collector {
    port: u16,
    messages: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl Collector {
    fn start() -> Result<Self> {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let all = messages.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let all = all.clone();
                std::thread::spawn(move || {
                    let mut pending: Vec<u8> = Vec::new();
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        // `LENGTH SP MESSAGE`, as many as are whole.
                        while let Some(sp) = pending.iter().position(|b| *b == b' ') {
                            let Some(len) = std::str::from_utf8(&pending[..sp])
                                .ok()
                                .and_then(|l| l.parse::<usize>().ok())
                            else {
                                return;
                            };
                            if pending.len() < sp + 1 + len {
                                break;
                            }
                            let message: Vec<u8> =
                                pending.drain(..sp + 1 + len).skip(sp + 1).collect();
                            let text = String::from_utf8_lossy(&message).to_string();
                            // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG
                            let fields: Vec<&str> = text.splitn(8, ' ').collect();
                            if fields.len() == 8 {
                                all.lock()
                                    .unwrap()
                                    .push((fields[5].to_string(), text.clone()));
                            }
                        }
                    }
                });
            }
        });
        Ok(Self { port, messages })
    }

    /// The whole messages with this MSGID received so far.
    fn messages(&self, msgid: &str) -> Vec<String> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| m == msgid)
            .map(|(_, t)| t.clone())
            .collect()
    }

    fn wait(&self, msgid: &str, n: usize) -> Result<Vec<String>> {
        let deadline = Instant::now() + slowed(DELIVERY_TIMEOUT);
        loop {
            let got = self.messages(msgid);
            if got.len() >= n {
                return Ok(got);
            }
            ensure!(
                Instant::now() < deadline,
                "{msgid}: {} of {n} messages within {}",
                got.len(),
                describe_bound(DELIVERY_TIMEOUT)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The MSG part of an RFC 5424 message without structured data.
fn msg(message: &str) -> &str {
    message.splitn(8, ' ').nth(7).unwrap_or_default()
}

/// Leaf values by dotted name (array elements by index).
fn leaves(prefix: &str, v: &Value, out: &mut std::collections::BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                leaves(&format!("{prefix}{k}."), v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                leaves(&format!("{prefix}{i}."), v, out);
            }
        }
        _ => {
            out.insert(prefix.trim_end_matches('.').to_string(), v.clone());
        }
    }
}

/// `short` is `full`, or `full` shortened: a prefix of it ending with `…`. Returns whether it
/// was shortened.
fn same_or_shortened(what: &str, short: &str, full: &str) -> Result<bool> {
    if short == full {
        return Ok(false);
    }
    let kept = short
        .strip_suffix('…')
        .with_context(|| format!("{what}: {short:?} is neither {full:?} nor shortened"))?;
    ensure!(
        full.starts_with(kept) && kept.len() < full.len(),
        "{what}: {short:?} is not a prefix of {full:?}"
    );
    Ok(true)
}

/// Compares a shortened JSON record with the whole one: the same leaves plus `marker`, each
/// value the same or shortened; returns how many were shortened.
fn compare_json(what: &str, short: &Value, full: &Value, marker: &str) -> Result<usize> {
    let (mut s, mut f) = (Default::default(), Default::default());
    leaves("", short, &mut s);
    leaves("", full, &mut f);
    ensure!(
        s.remove(marker) == Some(Value::Bool(true)),
        "{what}: no {marker}: true in {short}"
    );
    ensure!(
        s.keys().eq(f.keys()),
        "{what}: fields {:?}, the whole record has {:?}",
        s.keys().collect::<Vec<_>>(),
        f.keys().collect::<Vec<_>>()
    );
    let mut shortened = 0;
    for (k, v) in &s {
        match (v, &f[k]) {
            (Value::String(a), Value::String(b)) => {
                shortened += usize::from(same_or_shortened(&format!("{what} {k}"), a, b)?)
            }
            (a, b) => ensure!(a == b, "{what} {k}: {a} instead of {b}"),
        }
    }
    Ok(shortened)
}

/// `oversize = "truncate"`: a connection of a process with a long path and command line makes
/// records longer than the outputs' `max_message_bytes`; each arrives within the limit, still
/// a valid record of its format (native: valid against docs/events.schema.json; sysmon:
/// well-formed XML), marked, with every field of the whole record (written to stdout and
/// files), each value the same or a prefix of it ending with `…`.
#[test]
fn records_too_long_for_a_message_arrive_shortened_valid_and_marked() -> Result<()> {
    let _serial = setup()?;
    let dir = TempDir::new("syslog-truncate")?;
    let collector = Collector::start()?;
    // A server for curl: answers every request at once.
    let server = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = server.local_addr()?.port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for s in server.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = [0u8; 8192];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    // curl from a path of about 1 KB (its image_path and process_args[0]).
    let mut bin = dir.path().to_path_buf();
    for i in 0..9 {
        bin.push(format!("{i}{}", "d".repeat(110)));
    }
    std::fs::create_dir_all(&bin)?;
    let curl = bin.join("curl");
    std::fs::copy("/usr/bin/curl", &curl)?;

    let syslog = |name: &str, format: &str, max: usize| {
        format!(
            "[[outputs]]\nname = \"{name}\"\nformat = \"{format}\"\n[outputs.syslog]\n\
             transport = \"tcp\"\naddress = \"127.0.0.1:{}\"\nframing = \"octet-counting\"\n\
             msgid = \"{format}\"\nmax_message_bytes = {max}\noversize = \"truncate\"\n\
             [outputs.syslog.delivery]\nbuffer_dir = \"{}\"\n",
            collector.port,
            dir.path().join(format!("buf-{name}")).display()
        )
    };
    let file = |format: &str| {
        format!(
            "[[outputs]]\nname = \"whole-{format}\"\nformat = \"{format}\"\n[outputs.file]\npath = \"{}\"\n",
            dir.path().join(format!("{format}.log")).display()
        )
    };
    let config = dir.write(
        "agent.toml",
        format!(
            "[health]\nstats_interval = 0\n[filter]\ninclude = [{{ remote_port = {port}, direction = \"outbound\" }}]\n\
             [[outputs]]\nname = \"stdout\"\n[outputs.stdout]\n{}{}{}{}{}",
            file("ecs"),
            file("sysmon"),
            syslog("short-native", "native", 3000),
            syslog("short-ecs", "ecs", 3000),
            syslog("short-sysmon", "sysmon", 1400),
        ),
    )?;
    let agent = Agent::start(&["--config", config.to_str().unwrap()])?;
    let header = format!("X-Long: {}", "é\"\\'x".repeat(600));
    let out = Command::new(&curl)
        .args(["-s", "-o", "/dev/null", "-H", &header])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()?;
    ensure!(out.status.success(), "curl: {out:?}");
    agent.wait_for(|e| e["event_action"] == "end", DELIVERY_TIMEOUT)?;
    let native = collector.wait("native", 2)?;
    let ecs = collector.wait("ecs", 2)?;
    let sysmon = collector.wait("sysmon", 1)?;
    let stdout = agent.stop()?;

    // Native: the records of stdout, shortened, valid against the schema.
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/events.schema.json"
    ))?)?;
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| anyhow::anyhow!("compiling the schema: {e}"))?;
    ensure!(stdout.len() == 2, "{} events on stdout", stdout.len());
    for (message, whole) in native.iter().zip(&stdout) {
        ensure!(
            message.len() <= 3000,
            "native message of {} bytes",
            message.len()
        );
        ensure!(
            serde_json::to_string(whole)?.len() > 3000,
            "the whole record fits: nothing to test"
        );
        let doc: Value = serde_json::from_str(msg(message)).context("native: not JSON")?;
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        ensure!(errors.is_empty(), "native: {errors:?}\n{doc}");
        let n = compare_json("native", &doc, whole, "record_truncated")?;
        ensure!(n >= 2, "native: {n} values shortened");
        ensure!(doc["command_line"]
            .as_str()
            .is_some_and(|c| c.ends_with('…')));
    }
    // ECS: as the whole ECS records of the file output.
    let whole_ecs: Vec<Value> = std::fs::read_to_string(dir.path().join("ecs.log"))?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(whole_ecs.len() == 2);
    for (message, whole) in ecs.iter().zip(&whole_ecs) {
        ensure!(
            message.len() <= 3000,
            "ecs message of {} bytes",
            message.len()
        );
        let doc: Value = serde_json::from_str(msg(message)).context("ecs: not JSON")?;
        let n = compare_json("ecs", &doc, whole, "flow_agent.record_truncated")?;
        ensure!(n >= 2, "ecs: {n} values shortened");
    }
    // Sysmon: well-formed, the same Data elements plus RecordTruncated.
    let whole_sysmon = std::fs::read_to_string(dir.path().join("sysmon.log"))?;
    let whole_sysmon = whole_sysmon.lines().next().context("no sysmon record")?;
    ensure!(whole_sysmon.len() > 1400);
    let message = &sysmon[0];
    ensure!(
        message.len() <= 1400,
        "sysmon message of {} bytes",
        message.len()
    );
    let data = |xml: &str| -> Result<Vec<(String, String)>> {
        let doc = roxmltree::Document::parse(xml).context("not well-formed XML")?;
        Ok(doc
            .descendants()
            .filter(|n| n.has_tag_name("Data"))
            .map(|n| {
                (
                    n.attribute("Name").unwrap_or_default().to_string(),
                    n.text().unwrap_or_default().to_string(),
                )
            })
            .collect())
    };
    let mut short = data(msg(message))?;
    let full = data(whole_sysmon)?;
    ensure!(
        short.pop() == Some(("RecordTruncated".into(), "true".into())),
        "sysmon: not marked: {message}"
    );
    ensure!(short.len() == full.len(), "sysmon: {short:?}\n{full:?}");
    let mut shortened = 0;
    for ((name, value), (want_name, want)) in short.iter().zip(&full) {
        ensure!(name == want_name, "sysmon: {name} instead of {want_name}");
        shortened += usize::from(same_or_shortened(&format!("sysmon {name}"), value, want)?);
    }
    ensure!(shortened >= 1, "sysmon: nothing shortened");
    let image = &short
        .iter()
        .find(|(n, _)| n == "Image")
        .context("no Image")?
        .1;
    ensure!(image.ends_with('…') && image.starts_with(&dir.path().display().to_string()));
    Ok(())
}

/// A unix socket read the way rsyslog and syslog-ng read /dev/log (rsyslog's imuxsock special
/// parser, syslog-ng's default one): the local form's tag, pid, severity and facility are
/// parsed as such, and the MSG is the record.
#[test]
fn unix_socket_messages_carry_the_tag_pid_and_severity() -> Result<()> {
    let _serial = setup()?;
    let dir = TempDir::new("syslog-local")?;
    let pki = Pki::create(dir.path())?;
    let buffers = dir.path().join("buffers");
    let mut forwarders = Vec::new();
    let mut outputs = Vec::new();
    for (kind, prefix) in [(Kind::Rsyslog, "rs"), (Kind::SyslogNg, "ng")] {
        let fdir = dir.path().join(prefix);
        let inputs = vec![Input {
            name: "system".into(),
            listen: Listen::UnixFields(fdir.join("log.sock")),
        }];
        forwarders.push(Forwarder::start(kind, &fdir, inputs.clone(), &pki)?);
        for mut o in outputs_for(kind, prefix, &inputs, &pki, "", &buffers) {
            o.toml = o.toml.replace(
                "[outputs.syslog]\n",
                "[outputs.syslog]\napp_name = \"flowtest\"\nfacility = \"local3\"\nseverity = \"warning\"\n",
            );
            outputs.push(o);
        }
    }
    let config = agent_config(&dir, &outputs)?;
    let agent = Agent::start(&["--config", config.to_str().unwrap()])?;
    let pid = agent.pid().to_string();
    make_flows(scaled(20))?;
    let (_, lines) = agent.stop_with_lines()?;
    ensure!(!lines.is_empty(), "no records written");
    let mut failures = Vec::new();
    for f in &forwarders {
        let got = wait_received(f, "system", lines.len())?;
        let mut msgs = Vec::new();
        for line in &got {
            match Fields::parse(line) {
                Some(p)
                    if p.tag == "flowtest"
                        && p.pid == pid
                        && p.severity == "warning"
                        && p.facility == "local3" =>
                {
                    msgs.push(p.msg)
                }
                _ => {
                    failures.push(format!(
                        "{:?}: want flowtest|{pid}|warning|local3|RECORD, got {line}",
                        f.kind
                    ));
                    break;
                }
            }
        }
        if msgs != lines {
            failures.push(format!("{:?}: {}", f.kind, first_difference(&msgs, &lines)));
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
