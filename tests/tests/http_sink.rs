//! The HTTP sink against a real HTTP server on loopback (python3's http.server, plain or TLS)
//! that logs every request and fails on demand: NDJSON and Elasticsearch `_bulk` bodies,
//! gzip, TLS with a private CA, retries after 503, `_bulk` item failures (only those sent
//! again), and refused batches counted as dropped. What arrives is compared with the events
//! the agent printed on a second output (native on stdout).
//!
//! Needs root, kernel BTF, iproute2, python3 and openssl.

mod common;

use anyhow::{bail, ensure, Context, Result};
use common::*;
use flow_agent_tests::{require_tools, slowed, Agent, Cmd, Spawned, TempDir, TestHost};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Logs each request as one JSON line (path, headers, body decompressed, answer) and
/// answers from a plan (argv[1], JSON):
/// - `fail_first`: N first requests get 503 with `Connection: close` and `Retry-After: 1`;
/// - `reject_match`: a request whose body contains this text gets 400;
/// - `bulk`: answer as Elasticsearch `_bulk`, per document: `[text, status, times]` rules,
///   the first rule whose text the document contains sets its status for its first `times`
///   attempts (null: always); other documents 201;
/// - `cert`/`key`: serve HTTPS.
const RECEIVER: &str = r#"
import gzip, http.server, json, ssl, sys, threading
plan = json.loads(sys.argv[1])
lock = threading.Lock()
state = {"n": 0, "attempts": {}}

def bulk_answer(text):
    lines = text.split("\n")
    assert lines[-1] == "", "body not newline-terminated"
    lines = lines[:-1]
    assert len(lines) % 2 == 0, "odd number of _bulk lines"
    items = []
    for action, doc in zip(lines[0::2], lines[1::2]):
        json.loads(doc)
        status = 201
        tries = state["attempts"].get(doc, 0)
        state["attempts"][doc] = tries + 1
        for match, s, times in plan.get("bulk", []):
            if match in doc:
                if times is None or tries < times:
                    status = s
                break
        item = {"_index": json.loads(action)["create"].get("_index"), "status": status}
        if status >= 300:
            item["error"] = {"type": "test_failure", "reason": "status %d on demand" % status}
        items.append({"create": item})
    errors = any(i["create"]["status"] >= 300 for i in items)
    return {"took": 1, "errors": errors, "items": items}

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        encoding = self.headers.get("Content-Encoding")
        text = (gzip.decompress(raw) if encoding == "gzip" else raw).decode()
        extra = {}
        with lock:
            state["n"] += 1
            if state["n"] <= plan.get("fail_first", 0):
                status, answer = 503, {"error": "unavailable on demand"}
                extra = {"Connection": "close", "Retry-After": "1"}
            elif plan.get("reject_match") and plan["reject_match"] in text:
                status, answer = 400, {"error": "refused on demand"}
            elif "bulk" in plan:
                status, answer = 200, bulk_answer(text)
            else:
                status, answer = 200, {}
            log = {"n": state["n"], "path": self.path, "body": text, "status": status,
                   "headers": {k.lower(): v for k, v in self.headers.items()}}
            if "items" in answer:
                log["items"] = [i["create"]["status"] for i in answer["items"]]
            print(json.dumps(log), flush=True)
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        if extra:
            self.close_connection = True

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
if plan.get("cert"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(plan["cert"], plan["key"])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
sys.stdout.write("listening %d\n" % server.server_address[1])
sys.stdout.flush()
server.serve_forever()
"#;

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

const CONNECTIONS: usize = 4;
/// Each connection is a client and a server flow, each with a start and an end event.
const EVENTS_PER_CONNECTION: usize = 4;

struct Receiver {
    proc: Spawned,
    port: u16,
}

impl Receiver {
    fn start(plan: Value) -> Result<Self> {
        let proc = Cmd::host(&python()?.display().to_string())
            .arg("-c")
            .arg(RECEIVER)
            .arg(plan.to_string())
            .spawn()?;
        // A whole line: the harness also shows one still being written.
        let deadline = Instant::now() + slowed(Duration::from_secs(10));
        let port = loop {
            let out = proc.stdout_so_far();
            if let Some(port) = out.split_inclusive('\n').find_map(|l| {
                l.strip_prefix("listening ")?
                    .strip_suffix('\n')?
                    .parse()
                    .ok()
            }) {
                break port;
            }
            ensure!(
                Instant::now() < deadline,
                "the receiver did not start: {out:?} {}",
                proc.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(Self { proc, port })
    }

    /// Every request so far, in arrival order (whole lines only).
    fn requests(&self) -> Result<Vec<Value>> {
        let out = self.proc.stdout_so_far();
        out.split_inclusive('\n')
            .filter_map(|l| l.strip_suffix('\n'))
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).with_context(|| format!("receiver line {l:?}")))
            .collect()
    }

    /// Documents the server took (from requests to `path`, or all), in order: NDJSON lines
    /// of 2xx requests, or `_bulk` documents whose item status was 2xx.
    fn taken(&self, path: Option<&str>) -> Result<Vec<Value>> {
        let mut docs = Vec::new();
        for r in self.requests()? {
            if path.is_some_and(|p| r["path"] != p) {
                continue;
            }
            for (i, doc) in documents(&r)?.into_iter().enumerate() {
                let status = match r["items"].as_array() {
                    Some(items) => items[i].as_u64().unwrap_or(0),
                    None => r["status"].as_u64().unwrap_or(0),
                };
                if (200..300).contains(&status) {
                    docs.push(doc);
                }
            }
        }
        Ok(docs)
    }

    fn stderr(&self) -> String {
        self.proc.stderr_so_far()
    }
}

/// The JSON documents of a logged request: every line, or every second line for `_bulk`.
fn documents(request: &Value) -> Result<Vec<Value>> {
    let body = request["body"].as_str().context("request without body")?;
    let lines: Vec<&str> = body.split_terminator('\n').collect();
    let docs: Vec<&str> = if request.get("items").is_some() {
        lines.iter().skip(1).step_by(2).copied().collect()
    } else {
        lines
    };
    docs.iter()
        .map(|d| serde_json::from_str(d).with_context(|| format!("document {d:?}")))
        .collect()
}

/// Runs CONNECTIONS connections to `port` in a fresh namespace and returns the events the
/// agent printed for them on stdout, once all their end events are there.
fn make_flows(agent: &Agent, port: u16) -> Result<Vec<Value>> {
    let host = TestHost::new()?;
    let proc = spawn_py(
        &host,
        CONNECTOR,
        &[port.to_string(), CONNECTIONS.to_string()],
    )?;
    finish(proc, Duration::from_secs(30))?;
    let ours = move |e: &Value| get(e, "dest_port") == port || get(e, "src_port") == port;
    agent.wait_for_count(
        move |e| ours(e) && is_end(e),
        2 * CONNECTIONS,
        EVENT_TIMEOUT,
    )?;
    let events: Vec<Value> = agent.events().into_iter().filter(ours).collect();
    ensure!(
        events.len() == CONNECTIONS * EVENTS_PER_CONNECTION,
        "{} events for port {port}, want {}",
        events.len(),
        CONNECTIONS * EVENTS_PER_CONNECTION
    );
    Ok(events)
}

/// Waits until the receiver took every one of `events`; errors when one of them was taken
/// twice.
fn wait_taken(receiver: &Receiver, events: &[Value]) -> Result<Vec<Value>> {
    wait_taken_at(receiver, events, None)
}

/// [`wait_taken`] for the requests to one path.
fn wait_taken_at(receiver: &Receiver, events: &[Value], path: Option<&str>) -> Result<Vec<Value>> {
    let deadline = Instant::now() + slowed(Duration::from_secs(60));
    loop {
        let taken = receiver.taken(path)?;
        let missing: Vec<&Value> = events.iter().filter(|e| !taken.contains(e)).collect();
        if missing.is_empty() {
            for e in events {
                let n = taken.iter().filter(|t| *t == e).count();
                ensure!(n == 1, "event taken {n} times: {e}");
            }
            return Ok(taken);
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {} events never reached the receiver, first: {}\nreceiver stderr: {}",
                missing.len(),
                events.len(),
                missing[0],
                receiver.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The report of output `name` in the first stats event (after `skip` events) for which
/// `pred` holds, waiting for it.
fn wait_sink_report(
    agent: &Agent,
    name: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let find = |e: &Value| {
        get(e, "event_action") == "stats"
            && e["sinks"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["name"] == name))
                .is_some_and(&pred)
    };
    let ev = agent
        .wait_for(find, Duration::from_secs(60))
        .with_context(|| format!("no stats event where output {name} has {what}"))?;
    Ok(ev["sinks"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .cloned()
        .unwrap_or_default())
}

/// The delivery table of an http output: its disk buffer in the test's directory, so that
/// tests running at once, or a buffer left by an earlier run, do not meet.
fn delivery(dir: &TempDir, output: &str) -> String {
    format!(
        "[outputs.http.delivery]\nbuffer_dir = \"{}\"\n",
        dir.path().join(format!("buffer-{output}")).display()
    )
}

fn start_agent(dir: &TempDir, http: &str) -> Result<Agent> {
    let config = dir.write(
        "agent.toml",
        format!(
            r#"
[health]
stats_interval = 1
metrics_listen = ""

[[outputs]]
name = "events"
[outputs.stdout]

{http}
"#
        ),
    )?;
    agent(&["--config", &config.display().to_string()])
}

/// Every request: POST to one of `paths`, NDJSON content type, lines newline-terminated JSON,
/// gzipped when its path is one of `gzipped`.
fn check_requests(receiver: &Receiver, paths: &[&str], gzipped: &[&str]) -> Result<()> {
    for r in receiver.requests()? {
        let h = &r["headers"];
        ensure!(
            paths.iter().any(|p| r["path"] == *p),
            "request to {}: {r}",
            r["path"]
        );
        ensure!(h["content-type"] == "application/x-ndjson", "headers {h}");
        ensure!(
            h["user-agent"]
                .as_str()
                .is_some_and(|u| u.starts_with("flow-agent/")),
            "headers {h}"
        );
        let gzip = gzipped.iter().any(|p| r["path"] == *p);
        let want_encoding = if gzip { json!("gzip") } else { Value::Null };
        ensure!(h["content-encoding"] == want_encoding, "headers {h}");
        let body = r["body"].as_str().unwrap_or_default();
        ensure!(
            !body.is_empty() && body.ends_with('\n'),
            "body not newline-terminated: {body:?}"
        );
        documents(&r)?;
    }
    Ok(())
}

#[test]
fn ndjson_gzip_every_event_arrives_after_503s() -> Result<()> {
    setup()?;
    let receiver = Receiver::start(json!({"fail_first": 3}))?;
    let dir = TempDir::new("http-ndjson")?;
    let agent = start_agent(
        &dir,
        &format!(
            r#"
[[outputs]]
name = "collector"
[outputs.http]
url = "http://127.0.0.1:{}/ingest?source=flow-agent"
gzip = true
headers = {{ "X-Api-Key" = "test-key" }}
{}
"#,
            receiver.port,
            delivery(&dir, "collector")
        ),
    )?;
    let events = make_flows(&agent, 9401)?;
    wait_taken(&receiver, &events)?;
    let path = "/ingest?source=flow-agent";
    check_requests(&receiver, &[path], &[path])?;
    let requests = receiver.requests()?;
    let refused: Vec<&Value> = requests.iter().filter(|r| r["status"] == 503).collect();
    ensure!(refused.len() == 3, "{} requests got 503", refused.len());
    ensure!(requests
        .iter()
        .all(|r| r["headers"]["x-api-key"] == "test-key"));
    // Each 503 closed the connection: the next attempt connected again.
    let report = wait_sink_report(&agent, "collector", "3 errors and reconnects", |s| {
        s["errors"].as_u64() >= Some(3) && s["reconnects"].as_u64() >= Some(3)
    })?;
    ensure!(report["dropped"] == 0, "{report}");
    ensure!(
        report["kind"] == "http" && report["format"] == "native",
        "{report}"
    );
    ensure!(
        !agent.stderr().contains("test-key"),
        "a header value reached the log"
    );
    agent.stop()?;
    Ok(())
}

#[test]
fn elasticsearch_bulk_resends_only_failed_items() -> Result<()> {
    setup()?;
    let (retried, refused) = (9402u16, 9403u16);
    let receiver = Receiver::start(json!({"bulk": [
        [format!("\"dest_port\":{retried}"), 429, 1],
        [format!("\"dest_port\":{refused}"), 400, null],
    ]}))?;
    let dir = TempDir::new("http-bulk")?;
    let agent = start_agent(
        &dir,
        &format!(
            r#"
[[outputs]]
name = "elastic"
[outputs.http]
url = "http://127.0.0.1:{}"
mode = "elasticsearch_bulk"
index = "logs-flow-test"
user = "elastic"
password = "changeme"
{}
"#,
            receiver.port,
            delivery(&dir, "elastic")
        ),
    )?;
    let retried_events = make_flows(&agent, retried)?;
    let refused_events = make_flows(&agent, refused)?;
    let taken = wait_taken(&receiver, &retried_events)?;
    for e in &refused_events {
        ensure!(!taken.contains(e), "a refused document was taken: {e}");
    }
    check_requests(&receiver, &["/_bulk"], &[])?;

    // Action lines, and which attempts carried which documents.
    let mut attempts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in receiver.requests()? {
        ensure!(r["headers"]["authorization"] == "Basic ZWxhc3RpYzpjaGFuZ2VtZQ==");
        let body = r["body"].as_str().unwrap_or_default();
        for (i, line) in body.split_terminator('\n').enumerate() {
            if i % 2 == 0 {
                ensure!(
                    line == r#"{"create":{"_index":"logs-flow-test"}}"#,
                    "action {line}"
                );
            }
        }
        let items = r["items"].as_array().context("no items logged")?;
        for (doc, status) in documents(&r)?.iter().zip(items) {
            attempts
                .entry(doc.to_string())
                .or_default()
                .push(status.as_u64().unwrap_or(0));
        }
    }
    // 429 once, then taken: sent exactly twice; refused: sent once; the rest once.
    for e in &retried_events {
        ensure!(
            attempts[&e.to_string()] == [429, 201],
            "{e}: {:?}",
            attempts[&e.to_string()]
        );
    }
    for e in &refused_events {
        ensure!(
            attempts[&e.to_string()] == [400],
            "{e}: {:?}",
            attempts[&e.to_string()]
        );
    }
    let resent: Vec<&String> = attempts
        .iter()
        .filter(|(_, s)| s.len() > 1 && s[0] != 429)
        .map(|(d, _)| d)
        .collect();
    ensure!(
        resent.is_empty(),
        "documents sent again without a 429: {resent:?}"
    );

    let want = refused_events.len() as u64;
    let report = wait_sink_report(&agent, "elastic", "the refused documents dropped", |s| {
        s["dropped"].as_u64() == Some(want)
    })?;
    ensure!(report["queued"].as_u64().is_some(), "{report}");
    agent.stop()?;
    Ok(())
}

#[test]
fn a_refused_batch_is_dropped_and_counted_later_ones_arrive() -> Result<()> {
    setup()?;
    let refused = 9404u16;
    let receiver = Receiver::start(json!({"reject_match": format!("\"dest_port\":{refused}")}))?;
    let dir = TempDir::new("http-400")?;
    let agent = start_agent(
        &dir,
        &format!(
            "[[outputs]]\nname = \"collector\"\n[outputs.http]\nurl = \"http://127.0.0.1:{}/\"\n{}",
            receiver.port,
            delivery(&dir, "collector")
        ),
    )?;
    let refused_events = make_flows(&agent, refused)?;
    // Every refused record is in a 400 request; nothing else is dropped.
    let deadline = Instant::now() + slowed(Duration::from_secs(60));
    let dropped_records = loop {
        let requests = receiver.requests()?;
        let rejected: Vec<Value> = requests
            .iter()
            .filter(|r| r["status"] == 400)
            .map(documents)
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        if refused_events.iter().all(|e| rejected.contains(e)) {
            break rejected.len() as u64;
        }
        ensure!(
            Instant::now() < deadline,
            "the refused events never reached the receiver"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let later = make_flows(&agent, 9405)?;
    let taken = wait_taken(&receiver, &later)?;
    ensure!(refused_events.iter().all(|e| !taken.contains(e)));
    let report = wait_sink_report(&agent, "collector", "the refused batch dropped", |s| {
        s["dropped"].as_u64() == Some(dropped_records)
    })?;
    ensure!(report["dropped"] == dropped_records, "{report}");
    ensure!(
        agent.stderr().contains("refused on demand"),
        "the server's answer is not in the log"
    );
    agent.stop()?;
    Ok(())
}

/// Two private CAs, and a server certificate for 127.0.0.1 signed by the first, made with
/// openssl: ca.pem, other-ca.pem, server.pem and server.key in `dir`.
fn make_certificates(dir: &Path) -> Result<()> {
    let openssl = |args: &str| -> Result<()> {
        let out = Cmd::host("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .output()?;
        ensure!(out.status.success(), "openssl {args}: {}", out.stderr_str());
        Ok(())
    };
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    openssl(&format!(
        "req -x509 {key} -keyout ca.key -out ca.pem -days 2 -subj /CN=flow-agent-test-CA"
    ))?;
    openssl(&format!(
        "req -x509 {key} -keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=other-CA"
    ))?;
    openssl(&format!(
        "req {key} -keyout server.key -out server.csr -subj /CN=127.0.0.1"
    ))?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )?;
    openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
         -days 2 -extfile server.ext",
    )
}

#[test]
fn https_private_ca_verified_other_ca_refused_unverified_taken() -> Result<()> {
    setup()?;
    require_tools(&["openssl"])?;
    let dir = TempDir::new("http-tls")?;
    make_certificates(dir.path())?;
    let path = |f: &str| dir.path().join(f).display().to_string();
    let receiver = Receiver::start(json!({"cert": path("server.pem"), "key": path("server.key")}))?;
    let agent = start_agent(
        &dir,
        &format!(
            r#"
[[outputs]]
name = "trusted"
[outputs.http]
url = "https://127.0.0.1:{port}/tls"
ca_file = "{ca}"
gzip = true
{trusted}

[[outputs]]
name = "untrusted"
[outputs.http]
url = "https://127.0.0.1:{port}/never"
ca_file = "{other}"
{untrusted}

[[outputs]]
name = "unverified"
[outputs.http]
url = "https://127.0.0.1:{port}/unverified"
tls_verify = false
{unverified}
"#,
            port = receiver.port,
            ca = path("ca.pem"),
            other = path("other-ca.pem"),
            trusted = delivery(&dir, "trusted"),
            untrusted = delivery(&dir, "untrusted"),
            unverified = delivery(&dir, "unverified"),
        ),
    )?;
    let events = make_flows(&agent, 9406)?;
    wait_taken_at(&receiver, &events, Some("/tls"))?;
    // tls_verify = false takes any certificate (and says so in the log).
    wait_taken_at(&receiver, &events, Some("/unverified"))?;
    ensure!(agent.stderr().contains("tls_verify = false"));
    // The output whose CA did not sign the server's certificate never got through.
    check_requests(&receiver, &["/tls", "/unverified"], &["/tls"])?;
    let report = wait_sink_report(&agent, "untrusted", "failed TLS handshakes", |s| {
        s["errors"].as_u64() >= Some(1)
    })?;
    ensure!(report["sent"] == 0 && report["dropped"] == 0, "{report}");
    ensure!(
        agent.stderr().contains("UnknownIssuer"),
        "no certificate error in the log:\n{}",
        agent.stderr()
    );
    agent.stop()?;
    Ok(())
}

#[test]
fn a_format_that_is_not_json_is_refused() -> Result<()> {
    setup()?;
    let dir = TempDir::new("http-format")?;
    let config = dir.write(
        "agent.toml",
        "[[outputs]]\nformat = \"sysmon\"\n[outputs.http]\nurl = \"http://127.0.0.1:9/\"\n",
    )?;
    let err = refused_config(&config)?;
    ensure!(
        err.contains("outputs[0].format: sysmon records are not JSON"),
        "{err}"
    );
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

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// CRC-32 (IEEE) of the concatenated parts, the checksum of disk buffer records.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for b in parts.iter().flat_map(|p| p.iter()) {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The start of a disk buffer segment of format 2 (docs/delivery.md).
const SEGMENT_HEADER: &[u8] = b"FLOWSG\x02\x00";

/// A format 2 segment holding `records`.
fn encode_segment(records: &[&[u8]]) -> Vec<u8> {
    let mut out = SEGMENT_HEADER.to_vec();
    for r in records {
        let len = (r.len() as u32).to_le_bytes();
        out.extend_from_slice(&len);
        out.extend_from_slice(&crc32(&[&len, r]).to_le_bytes());
        out.extend_from_slice(r);
    }
    out
}

/// The records (JSON) of a format 2 segment from byte `offset` on, checksums verified.
fn segment_records(bytes: &[u8], offset: usize) -> Result<Vec<Value>> {
    ensure!(bytes.starts_with(SEGMENT_HEADER), "not a format 2 segment");
    let mut at = offset.max(SEGMENT_HEADER.len());
    let mut records = Vec::new();
    while at < bytes.len() {
        ensure!(bytes.len() - at >= 8, "a torn header at {at}");
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into()?) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into()?);
        let payload = bytes
            .get(at + 8..at + 8 + len)
            .with_context(|| format!("a torn record at {at}"))?;
        ensure!(
            crc32(&[&bytes[at..at + 4], payload]) == crc,
            "bad checksum at {at}"
        );
        records.push(serde_json::from_slice(payload)?);
        at += 8 + len;
    }
    Ok(records)
}

fn segment_path(buffer: &Path, id: u64) -> std::path::PathBuf {
    buffer.join(format!("{id:016x}.seg"))
}

/// Numbers of the segment files in `buffer`, sorted.
fn segment_ids(buffer: &Path) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(buffer)? {
        let name = entry?.file_name();
        let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        ids.push(u64::from_str_radix(hex, 16)?);
    }
    ids.sort_unstable();
    Ok(ids)
}

/// The ack file: segment and offset of the first unacknowledged record.
fn read_ack(buffer: &Path) -> Result<Option<(u64, usize)>> {
    let Ok(bytes) = std::fs::read(buffer.join("ack")) else {
        return Ok(None);
    };
    ensure!(bytes.len() == 20, "ack file of {} bytes", bytes.len());
    Ok(Some((
        u64::from_le_bytes(bytes[0..8].try_into()?),
        u64::from_le_bytes(bytes[8..16].try_into()?) as usize,
    )))
}

/// A file outside the buffer, and what it must stay.
struct Outside {
    path: std::path::PathBuf,
    bytes: Vec<u8>,
}

impl Outside {
    fn new(dir: &TempDir, name: &str, bytes: Vec<u8>) -> Result<Outside> {
        let path = dir.write(name, &bytes)?;
        Ok(Outside { path, bytes })
    }

    fn check(&self, links: u64) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&self.path)?;
        ensure!(
            std::fs::read(&self.path)? == self.bytes,
            "{} was changed",
            self.path.display()
        );
        ensure!(
            meta.nlink() == links && meta.uid() == 0,
            "{}: {} links, uid {}",
            self.path.display(),
            meta.nlink(),
            meta.uid()
        );
        Ok(())
    }
}

/// The http output `collector` with its disk buffer in `buffer`, capped at `cap` bytes.
fn buffered(port: u16, buffer: &Path, cap: u64) -> String {
    format!(
        "[[outputs]]\nname = \"collector\"\n[outputs.http]\nurl = \"http://127.0.0.1:{port}/\"\n\
         [outputs.http.delivery]\nbuffer_dir = \"{}\"\nqueue_records = 1\nbuffer_max_bytes = {cap}\n\
         backoff_initial = 0.2\nbackoff_max = 1\n",
        buffer.display()
    )
}

#[test]
fn the_disk_buffer_sets_aside_planted_links_and_a_corrupt_segment_and_replays_the_rest(
) -> Result<()> {
    setup()?;
    let dir = TempDir::new("http-buffer-links")?;
    let buffer = dir.path().join("buffer");
    // Nothing listens: records wait in 4 KiB segments (a 32 KiB cap), a few in each.
    let first = start_agent(&dir, &buffered(free_port()?, &buffer, 32 << 10))?;
    let mut port = 9410;
    while segment_ids(&buffer)?.len() < 5 {
        ensure!(port < 9440, "30 rounds of flows and fewer than 5 segments");
        make_flows(&first, port)?;
        port += 1;
    }
    first.stop()?;

    // What the restarted agent owes: every record from the ack position on, except those of
    // the segment damaged here (the second one replayed).
    let ack = read_ack(&buffer)?;
    let ids: Vec<u64> = segment_ids(&buffer)?
        .into_iter()
        .filter(|id| ack.is_none_or(|(s, _)| *id >= s))
        .collect();
    ensure!(ids.len() >= 3, "segments {ids:?} from the ack {ack:?}");
    let corrupt = ids[1];
    let (mut owed, mut lost) = (Vec::new(), Vec::new());
    for id in &ids {
        let from = ack.filter(|(s, _)| s == id).map_or(0, |(_, o)| o);
        let records = segment_records(&std::fs::read(segment_path(&buffer, *id))?, from)?;
        if *id == corrupt {
            lost = records;
        } else {
            owed.extend(records);
        }
    }
    ensure!(
        lost.len() >= 2,
        "{} records in the damaged segment",
        lost.len()
    );
    ensure!(!owed.is_empty(), "no record in the other segments");
    let mut damaged = std::fs::read(segment_path(&buffer, corrupt))?;
    // A byte of the first record's payload, with the segment's other records after it.
    damaged[SEGMENT_HEADER.len() + 8 + 1] ^= 0x20;
    std::fs::write(segment_path(&buffer, corrupt), &damaged)?;

    // Links planted under the buffer's names, to files outside it.
    let outside = TempDir::new("http-buffer-outside")?;
    let target = Outside::new(
        &outside,
        "precious",
        b"root:x:0:0::/root:/bin/sh\n".repeat(99),
    )?;
    let last = *ids.last().context("no segment")?;
    let symlinked = segment_path(&buffer, last + 1);
    std::os::unix::fs::symlink(&target.path, &symlinked)?;
    for name in ["ack.tmp", "segment.tmp"] {
        std::os::unix::fs::symlink(&target.path, buffer.join(name))?;
    }
    // A valid segment with a torn tail: a recovery through the link would cut it and send it.
    let planted_record = br#"{"planted":"through a hard link"}"#;
    let mut planted_bytes = encode_segment(&[planted_record]);
    planted_bytes.extend_from_slice(&[7, 0, 0, 0, 1]);
    let planted = Outside::new(&outside, "planted", planted_bytes)?;
    let hard_linked = segment_path(&buffer, last + 2);
    std::fs::hard_link(&planted.path, &hard_linked)?;

    let receiver = Receiver::start(json!({}))?;
    let second = start_agent(&dir, &buffered(receiver.port, &buffer, 1 << 20))?;
    wait_taken(&receiver, &owed)?;
    let log = second.stderr();
    let report = wait_sink_report(&second, "collector", "the errors of set-aside files", |s| {
        s["errors"].as_u64() >= Some(3)
    })?;
    second.stop()?;

    let taken = receiver.taken(None)?;
    for r in &lost {
        ensure!(
            !taken.contains(r),
            "a record of the corrupt segment was sent: {r}"
        );
    }
    ensure!(
        !taken.iter().any(|d| d.get("planted").is_some()),
        "the hard-linked segment's record was sent"
    );
    target.check(1)?;
    planted.check(2)?;
    let aside = |path: &Path, suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        std::path::PathBuf::from(p)
    };
    let corrupt_path = segment_path(&buffer, corrupt);
    ensure!(std::fs::read(aside(&corrupt_path, ".corrupt"))? == damaged);
    ensure!(std::fs::symlink_metadata(aside(&symlinked, ".refused"))?
        .file_type()
        .is_symlink());
    for (path, why) in [
        (&corrupt_path, "damaged record at offset 8".to_string()),
        (&symlinked, "is a symbolic link; not read".into()),
        (&hard_linked, "has 2 hard links".into()),
    ] {
        let suffix = if path == &corrupt_path {
            ".corrupt"
        } else {
            ".refused"
        };
        let line = format!("moved aside to {}", aside(path, suffix).display());
        ensure!(
            log.lines().any(|l| l.contains(&path.display().to_string())
                && l.contains(&why)
                && l.contains(&line)),
            "no log line naming {} ({why}):\n{log}",
            path.display()
        );
    }
    // Each file set aside is an error; the damaged segment's unreadable record is dropped.
    ensure!(
        report["errors"] == 3 && report["dropped"].as_u64() >= Some(1),
        "{report}"
    );
    Ok(())
}

#[test]
fn a_buffer_directory_others_could_write_in_or_a_planted_lock_link_is_refused_naming_it(
) -> Result<()> {
    setup()?;
    let dir = TempDir::new("http-buffer-dir")?;
    let config = |buffer: &Path| {
        dir.write(
            "agent.toml",
            format!(
                "[[outputs]]\n[outputs.http]\nurl = \"http://127.0.0.1:9/\"\n\
                 [outputs.http.delivery]\nbuffer_dir = \"{}\"\n",
                buffer.display()
            ),
        )
    };
    let make = |name: &str, mode: u32| -> Result<std::path::PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.path().join(name);
        std::fs::create_dir(&p)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        Ok(p)
    };
    // Writable by its group, sticky or not: a configuration error, before anything starts.
    let shared = make("shared", 0o1770)?;
    let path = config(&shared)?;
    let want = format!(
        "outputs[0].http.delivery.buffer_dir: directory {0}: mode 1770 lets its group create files in it (expected no write permission for group and others; chmod go-w {0})",
        shared.display()
    );
    let err = refused_config(&path)?;
    ensure!(err.contains(&want), "{err}");
    let check = Cmd::host(&Agent::binary()?.display().to_string())
        .args(["check-config", &path.display().to_string()])
        .output()?;
    ensure!(
        check.status.code() == Some(2) && check.stderr_str().contains(&want),
        "check-config: {} {}",
        check.status,
        check.stderr_str()
    );

    // Another user's: refused when the output starts.
    let theirs = make("theirs", 0o700)?;
    std::os::unix::fs::chown(&theirs, Some(65534), None)?;
    let err = refused_config(&config(&theirs)?)?;
    ensure!(
        err.contains(&format!(
            "disk buffer: directory {} is refused: it belongs to uid 65534, another user",
            theirs.display()
        )),
        "{err}"
    );

    // Its lock planted as a link: refused, the target left as it was.
    let outside = TempDir::new("http-buffer-dir-outside")?;
    let target = Outside::new(&outside, "precious", b"keep me\n".to_vec())?;
    let ours = make("ours", 0o700)?;
    std::os::unix::fs::symlink(&target.path, ours.join("lock"))?;
    let err = refused_config(&config(&ours)?)?;
    ensure!(
        err.contains(&format!(
            "disk buffer: {} is a symbolic link (remove it)",
            ours.join("lock").display()
        )),
        "{err}"
    );
    target.check(1)
}
