//! The HTTP sink against a real HTTP server on loopback (python3's http.server, plain or TLS)
//! that logs every request and fails on demand: NDJSON and Elasticsearch `_bulk` bodies,
//! gzip, TLS with a private CA, retries after 503 and through seconds of 401, `_bulk` item
//! failures (only those sent again), batches refused for size (413) or content (400) sent
//! again in halves with only a record refused alone dropped and counted. What arrives is
//! compared with the events the agent printed on a second output (native on stdout).
//!
//! Needs root, kernel BTF, iproute2, python3, openssl, nginx (mutual TLS) and tinyproxy.

mod common;
#[path = "http_sink/mtls.rs"]
mod mtls;
#[path = "http_sink/proxy.rs"]
mod proxy;
#[path = "http_sink/secrets.rs"]
mod secrets;

use anyhow::{bail, ensure, Context, Result};
use common::*;
use flow_agent_tests::{
    require_tools, slowed, unused_port, Agent, Cmd, Spawned, TempDir, TestHost,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Logs each request as one JSON line (path, headers, body decompressed, answer) and
/// answers from a plan (argv[1], JSON):
/// - `fail_first`: N first requests get 503 with `Connection: close` and `Retry-After: 1`;
/// - `reject_match`: a request whose body contains this text (or every text of this list)
///   gets 400;
/// - `control`: a file read at each request (JSON, absent: `{}`): `status` answers every
///   request with that status; `max_body` answers 413 to a body of more bytes;
/// - `bulk`: answer as Elasticsearch `_bulk`, per document: `[text, status, times]` rules,
///   the first rule whose text the document contains sets its status for its first `times`
///   attempts (null: always); other documents 201;
/// - `cert`/`key`: serve HTTPS.
const RECEIVER: &str = r#"
import gzip, http.server, json, ssl, sys, threading
plan = json.loads(sys.argv[1])
lock = threading.Lock()
state = {"n": 0, "attempts": {}}

def control():
    try:
        with open(plan["control"]) as f:
            return json.load(f)
    except (KeyError, FileNotFoundError):
        return {}

def match_list():
    m = plan["reject_match"]
    return [m] if isinstance(m, str) else m

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
        ctl = control()
        with lock:
            state["n"] += 1
            if ctl.get("status"):
                status, answer = ctl["status"], {"error": "status on demand"}
                if status == 401:
                    extra = {"WWW-Authenticate": 'Bearer realm="flows"'}
            elif ctl.get("max_body") and len(raw) > ctl["max_body"]:
                status, answer = 413, {"error": "body above %d bytes" % ctl["max_body"]}
            elif state["n"] <= plan.get("fail_first", 0):
                status, answer = 503, {"error": "unavailable on demand"}
                extra = {"Connection": "close", "Retry-After": "1"}
            elif plan.get("reject_match") and all(m in text for m in match_list()):
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
        if "Connection" in extra:
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
/// Args: port, N, and any others (ignored: padding of the command line). Prints `done` when
/// every connection is closed.
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

/// Text that every event of a flow in `host`'s namespace carries in its native JSON, and no
/// other: for a receiver to pick this test's records (other tests, here or in another run on
/// the host, use the same ports in their own namespaces).
fn netns_text(host: &TestHost) -> Result<String> {
    Ok(format!("\"netns\":{}", host.netns_inode()?))
}

/// Runs CONNECTIONS connections to `port` in `host`'s namespace (fresh, no other flows) and
/// returns the events the agent printed for them on stdout, once all their end events are
/// there.
fn make_flows(agent: &Agent, host: &TestHost, port: u16) -> Result<Vec<Value>> {
    Ok(make_connections(agent, host, port, CONNECTIONS, "")?.events)
}

/// The connections one process made, as the agent reported them.
struct Flows {
    /// Every event of their flows the agent printed on stdout, in its order.
    events: Vec<Value>,
    /// The process that made them.
    pid: u32,
    /// Its network namespace (inode).
    netns: u64,
}

impl Flows {
    /// End events of the connecting side, one per connection.
    fn connect_ends(&self, port: u16) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| is_end(e) && get(e, "dest_port") == port)
            .filter(|e| get(e, "attribution") == "connector")
            .collect()
    }
}

/// Like [`make_flows`] with `n` connections, by a process whose command line ends in `pad`.
fn make_connections(
    agent: &Agent,
    host: &TestHost,
    port: u16,
    n: usize,
    pad: &str,
) -> Result<Flows> {
    let mut args = vec![port.to_string(), n.to_string()];
    if !pad.is_empty() {
        args.push(pad.to_string());
    }
    let proc = spawn_py(host, CONNECTOR, &args)?;
    let pid = proc.pid();
    finish(proc, Duration::from_secs(30))?;
    // The namespace's flows: the agent also prints those of every other test on the host.
    let netns = host.netns_inode()?;
    let ours = move |e: &Value| {
        get(e, "netns") == netns && (get(e, "dest_port") == port || get(e, "src_port") == port)
    };
    agent.wait_for_count(move |e| ours(e) && is_end(e), 2 * n, EVENT_TIMEOUT)?;
    let events: Vec<Value> = agent.events().into_iter().filter(ours).collect();
    ensure!(
        events.len() == n * EVENTS_PER_CONNECTION,
        "{} events for port {port}, want {}",
        events.len(),
        n * EVENTS_PER_CONNECTION
    );
    Ok(Flows { events, pid, netns })
}

/// Checks that `flows` are `n` connections to `port` made by their own process in their own
/// namespace, each from another source port.
fn check_connections(flows: &Flows, port: u16, n: usize) -> Result<()> {
    let ends = flows.connect_ends(port);
    ensure!(
        ends.len() == n,
        "{} connect-side ends, want {n}",
        ends.len()
    );
    let mut source_ports = std::collections::BTreeSet::new();
    for e in &ends {
        ensure!(
            get(e, "pid") == flows.pid && get(e, "netns") == flows.netns,
            "not the connector's (pid {}, netns {}): {e}",
            flows.pid,
            flows.netns
        );
        source_ports.insert(get(e, "src_port").as_u64());
    }
    ensure!(source_ports.len() == n, "source ports {source_ports:?}");
    Ok(())
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
    let config = write_config(dir, http)?;
    agent(&["--config", &config.display().to_string()])
}

/// The configuration file of [`start_agent`]: stats every second, events on stdout, and
/// the `http` outputs.
fn write_config(dir: &TempDir, http: &str) -> Result<std::path::PathBuf> {
    dir.write(
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
    )
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
    let events = make_flows(&agent, &TestHost::new()?, 9401)?;
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
    let (retried, refused, failed) = (9402u16, 9403u16, 9410u16);
    let (retried_host, refused_host, failed_host) =
        (TestHost::new()?, TestHost::new()?, TestHost::new()?);
    // The documents of each namespace, not of a port any other test may use as well.
    let receiver = Receiver::start(json!({"bulk": [
        [netns_text(&retried_host)?, 429, 1],
        [netns_text(&refused_host)?, 400, null],
        [netns_text(&failed_host)?, 500, 1],
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
    let retried_events = make_flows(&agent, &retried_host, retried)?;
    let refused_events = make_flows(&agent, &refused_host, refused)?;
    let failed_events = make_flows(&agent, &failed_host, failed)?;
    let taken = wait_taken(
        &receiver,
        &[retried_events.clone(), failed_events.clone()].concat(),
    )?;
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
    // 429 or 500 once, then taken: sent exactly twice; refused: sent once; the rest once.
    for (events, status) in [(&retried_events, 429), (&failed_events, 500)] {
        for e in events {
            ensure!(
                attempts[&e.to_string()] == [status, 201],
                "{e}: {:?}",
                attempts[&e.to_string()]
            );
        }
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
        .filter(|(_, s)| s.len() > 1 && !matches!(s[0], 429 | 500))
        .map(|(d, _)| d)
        .collect();
    ensure!(
        resent.is_empty(),
        "documents sent again without a 429 or 500: {resent:?}"
    );

    let want = refused_events.len() as u64;
    let report = wait_sink_report(&agent, "elastic", "the refused documents dropped", |s| {
        s["dropped"].as_u64() == Some(want)
    })?;
    ensure!(report["queued"].as_u64().is_some(), "{report}");
    agent.stop()?;
    Ok(())
}

/// Where RECEIVER's `control` file is.
fn control_path(dir: &TempDir) -> std::path::PathBuf {
    dir.path().join("control.json")
}

/// Tells the receiver what to answer from now on (RECEIVER's `control`); written whole, then
/// renamed, so that no request reads half a file.
fn set_control(dir: &TempDir, control: Value) -> Result<()> {
    let tmp = dir.write("control.json.tmp", control.to_string())?;
    std::fs::rename(&tmp, control_path(dir)).context("renaming the control file")
}

/// An http output "collector" to `url` with a short back-off, keeping `queue_records` in
/// memory, for the flows of the test's `ports` only (and stats events): other tests' flows,
/// and the agent's own to the collector, stay out.
fn collector(dir: &TempDir, url: &str, ports: &[u16], queue_records: usize) -> String {
    format!(
        "[[outputs]]\nname = \"collector\"\n[outputs.http]\nurl = \"{url}\"\n{}\
         queue_records = {queue_records}\nbackoff_initial = 0.2\nbackoff_max = 1\n\
         [outputs.filter]\ninclude = [{{ local_port = {ports:?} }}, {{ remote_port = {ports:?} }}]\n",
        delivery(dir, "collector")
    )
}

/// The documents of every request answered `status` that carried one document alone.
fn refused_alone(receiver: &Receiver, status: u64) -> Result<Vec<Value>> {
    let mut alone = Vec::new();
    for r in receiver.requests()? {
        let docs = documents(&r)?;
        if r["status"] == status && docs.len() == 1 {
            alone.extend(docs);
        }
    }
    Ok(alone)
}

/// Waits until every one of `events` was refused alone with `status`; returns all the
/// documents refused alone so far.
fn wait_refused_alone(receiver: &Receiver, events: &[Value], status: u64) -> Result<Vec<Value>> {
    let deadline = Instant::now() + slowed(Duration::from_secs(60));
    loop {
        let alone = refused_alone(receiver, status)?;
        if events.iter().all(|e| alone.contains(e)) {
            return Ok(alone);
        }
        ensure!(
            Instant::now() < deadline,
            "not every event was refused alone with {status}: {} of {} were",
            events.iter().filter(|e| alone.contains(e)).count(),
            events.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_400_drops_only_the_records_refused_alone_and_the_rest_arrive() -> Result<()> {
    setup()?;
    let (refused, later_port) = (9404u16, 9405u16);
    let dir = TempDir::new("http-400")?;
    // Held back at first (503), so that both sides' records go in one request.
    set_control(&dir, json!({"status": 503}))?;
    // The connecting side's records of this namespace (not of a port any other test may use
    // too); not the accepting side's.
    let refused_host = TestHost::new()?;
    let receiver = Receiver::start(json!({
        "control": control_path(&dir),
        "reject_match": [netns_text(&refused_host)?, "\"attribution\":\"connector\""],
    }))?;
    let url = format!("http://127.0.0.1:{}/", receiver.port);
    let agent = start_agent(&dir, &collector(&dir, &url, &[refused, later_port], 10_000))?;
    let flows = make_flows(&agent, &refused_host, refused)?;
    let (refused_events, spared): (Vec<Value>, Vec<Value>) = flows
        .into_iter()
        .partition(|e| get(e, "attribution") == "connector");
    ensure!(refused_events.len() == 2 * CONNECTIONS && spared.len() == 2 * CONNECTIONS);
    set_control(&dir, json!({}))?;

    let alone = wait_refused_alone(&receiver, &refused_events, 400)?;
    let later = make_flows(&agent, &TestHost::new()?, later_port)?;
    let taken = wait_taken(&receiver, &[spared.clone(), later].concat())?;
    ensure!(refused_events.iter().all(|e| !taken.contains(e)));
    // The accepting side's records were refused with the others, then taken in a half.
    let mut refused_together = 0;
    for r in receiver.requests()? {
        let docs = documents(&r)?;
        if r["status"] == 400 && docs.len() > 1 {
            refused_together += docs.iter().filter(|d| spared.contains(d)).count();
        }
    }
    ensure!(
        refused_together > 0,
        "no request refused both sides' records"
    );
    // Dropped: exactly the records refused alone, each once.
    ensure!(
        alone.len() == refused_events.len(),
        "refused alone: {alone:?}"
    );
    let report = wait_sink_report(&agent, "collector", "the refused records dropped", |s| {
        s["dropped"].as_u64() >= Some(alone.len() as u64)
    })?;
    ensure!(report["dropped"] == alone.len() as u64, "{report}");
    let stderr = agent.stderr_once_it_has("refused on demand", EVENT_TIMEOUT);
    ensure!(
        stderr.contains("refused on demand"),
        "the server's answer is not in the log:\n{stderr}"
    );
    agent.stop()?;
    Ok(())
}

#[test]
fn a_collector_answering_401_for_seconds_gets_every_flow_once_afterwards() -> Result<()> {
    setup()?;
    let dir = TempDir::new("http-401")?;
    let (port, n) = (9407u16, 20);
    set_control(&dir, json!({"status": 401}))?;
    let receiver = Receiver::start(json!({"control": control_path(&dir)}))?;
    let url = format!("http://127.0.0.1:{}/ingest", receiver.port);
    // 8 records in memory: the rest of the outage goes to the disk buffer.
    let agent = start_agent(&dir, &collector(&dir, &url, &[port], 8))?;
    let outage = Instant::now();
    let flows = make_connections(&agent, &TestHost::new()?, port, n, "")?;
    check_connections(&flows, port, n)?;

    // Held, none sent or dropped: the oldest in memory, the rest on disk.
    let ours = flows.events.len() as u64;
    let held = wait_sink_report(&agent, "collector", "the flows held", |s| {
        let held = s["queued"].as_u64().unwrap_or(0) + s["buffered"].as_u64().unwrap_or(0);
        held >= ours && s["sent"] == 0
    })?;
    ensure!(held["dropped"] == 0, "{held}");
    ensure!(held["queued"].as_u64() <= Some(8), "{held}");
    ensure!(held["buffered"].as_u64() >= Some(ours - 8), "{held}");
    while outage.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
    }
    set_control(&dir, json!({}))?;

    wait_taken(&receiver, &flows.events)?;
    let requests = receiver.requests()?;
    let unauthorized = requests.iter().filter(|r| r["status"] == 401).count() as u64;
    ensure!(unauthorized >= 3, "{unauthorized} requests got 401");
    // Sent in the agent's order, after every 401.
    let last_401 = requests
        .iter()
        .rposition(|r| r["status"] == 401)
        .unwrap_or(0);
    let taken_later: Vec<Value> = requests[last_401..]
        .iter()
        .filter(|r| r["status"] == 200)
        .map(documents)
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .filter(|d| flows.events.contains(d))
        .collect();
    ensure!(taken_later == flows.events, "not in the agent's order");

    // Each 401 was a failed attempt and a retry, nothing was dropped; all was delivered.
    let report = wait_sink_report(&agent, "collector", "everything delivered", |s| {
        s["queued"] == 0 && s["buffered"] == 0 && s["sent"].as_u64() >= Some(ours)
    })?;
    ensure!(report["dropped"] == 0, "{report}");
    ensure!(report["errors"].as_u64() >= Some(unauthorized), "{report}");
    ensure!(
        report["reconnects"].as_u64() >= Some(unauthorized),
        "{report}"
    );

    // Logged with the status and the collector once, not once per attempt; and the end (after
    // the request that delivered, so it may reach stderr's reader after the receiver has it).
    let stderr = agent.stderr_once_it_has("delivering to", EVENT_TIMEOUT);
    let logged: Vec<&str> = stderr.lines().filter(|l| l.contains("HTTP 401")).collect();
    let minutes = outage.elapsed().as_secs() / 60;
    ensure!(
        !logged.is_empty() && logged.len() as u64 <= 1 + minutes,
        "{} log lines for {unauthorized} 401s:\n{stderr}",
        logged.len()
    );
    ensure!(logged[0].contains(&url), "{}", logged[0]);
    ensure!(
        stderr
            .lines()
            .any(|l| l.contains("delivering to") && l.contains(&url)),
        "recovery not logged:\n{stderr}"
    );
    agent.stop()?;
    Ok(())
}

/// The value of metric series `series` (name and labels, as printed) at the agent's
/// metrics endpoint on `port`.
fn metric(port: u16, series: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut body = String::new();
    c.read_to_string(&mut body)?;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_string)
        .with_context(|| format!("no {series} in {body}"))
}

/// Item 8 of issue 16 on the real agent: the delivery worker of an http output panics three
/// times (a debug-build fault, `FLOW_AGENT_TEST_WORKER_PANICS`, just before a send); each
/// panic is logged and counted in stats events and metrics, the worker is started again, and
/// every record of the test's flows arrives exactly once.
#[test]
fn a_delivery_worker_that_panics_is_restarted_and_delivers_every_later_record() -> Result<()> {
    setup()?;
    let dir = TempDir::new("http-panic")?;
    let (port, n, panics) = (9408u16, 10, 3u64);
    let receiver = Receiver::start(json!({}))?;
    let url = format!("http://127.0.0.1:{}/ingest", receiver.port);
    let metrics_port = unused_port()?;
    let config = dir.write(
        "agent.toml",
        format!(
            "[health]\nstats_interval = 1\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\n\
             [[outputs]]\nname = \"events\"\n[outputs.stdout]\n\n{}",
            collector(&dir, &url, &[port], 1000)
        ),
    )?;
    let agent = Agent::start_with_env(
        &["--config", &config.display().to_string()],
        &[("FLOW_AGENT_TEST_WORKER_PANICS", &panics.to_string())],
    )?;
    // The first sends (stats events) panic, the worker each time started again.
    let report = wait_sink_report(&agent, "collector", "3 worker panics", |s| {
        s["worker_panics"].as_u64() == Some(panics)
    })?;
    ensure!(report["dropped"] == 0, "{report}");
    let flows = make_connections(&agent, &TestHost::new()?, port, n, "")?;
    check_connections(&flows, port, n)?;
    wait_taken(&receiver, &flows.events)?;

    let report = wait_sink_report(&agent, "collector", "everything sent", |s| {
        s["queued"] == 0 && s["sent"].as_u64() >= Some(flows.events.len() as u64)
    })?;
    ensure!(
        report["worker_panics"] == panics && report["dropped"] == 0,
        "{report}"
    );
    let series =
        "flow_agent_sink_worker_panics_total{output=\"collector\",kind=\"http\",format=\"native\"}";
    ensure!(metric(metrics_port, series)? == panics.to_string());
    // Counted before it is logged: the last panic's line may come after the counters say so.
    let stderr = agent.stderr_once_it_has(
        &format!("the delivery worker panicked ({panics} since start)"),
        EVENT_TIMEOUT,
    );
    let logged = stderr
        .lines()
        .filter(|l| {
            l.contains("level=error")
                && l.contains("output collector: the delivery worker panicked")
                && l.contains("test fault: FLOW_AGENT_TEST_WORKER_PANICS")
        })
        .count() as u64;
    ensure!(logged == panics, "{logged} panics logged:\n{stderr}");
    agent.stop()?;
    Ok(())
}

#[test]
fn a_collector_refusing_large_bodies_gets_halves_and_only_records_too_large_are_dropped(
) -> Result<()> {
    setup()?;
    let dir = TempDir::new("http-413")?;
    let (short_port, long_port) = (9408u16, 9409u16);
    // Held back at first (503), so that the flows go in one batch far above the limit.
    set_control(&dir, json!({"status": 503}))?;
    let receiver = Receiver::start(json!({"control": control_path(&dir)}))?;
    let url = format!("http://127.0.0.1:{}/", receiver.port);
    let agent = start_agent(
        &dir,
        &collector(&dir, &url, &[short_port, long_port], 10_000),
    )?;
    let short = make_connections(&agent, &TestHost::new()?, short_port, 6, "")?;
    check_connections(&short, short_port, 6)?;
    // A command line that makes each of this process's records larger than the limit.
    let long = make_connections(&agent, &TestHost::new()?, long_port, 2, &"x".repeat(3000))?;
    check_connections(&long, long_port, 2)?;

    // The limit: above every other record of the output so far (with room for counters
    // growing), below every record of the long command line. A body is the records, each
    // with a newline.
    let sizes = |wanted: &dyn Fn(&Value) -> bool| -> Vec<usize> {
        agent
            .json_lines()
            .iter()
            .filter(|l| serde_json::from_str(l).is_ok_and(|e| wanted(&e)))
            .map(|l| l.len() + 1)
            .collect()
    };
    // The first stats event carries the start-up self-check (several KiB, more with IPv6): it
    // may be above the limit and be dropped alone like the long records; later ones may not.
    let others = sizes(&|e| {
        short.events.contains(e)
            || (get(e, "event_action") == "stats" && e.get("self_check").is_none())
    });
    let other_max = others.into_iter().max().unwrap_or(0);
    let long_min = sizes(&|e| long.events.contains(e))
        .into_iter()
        .min()
        .unwrap_or(0);
    let limit = other_max + 512;
    ensure!(
        long_min > limit,
        "records of the long command line ({long_min} bytes) not above {limit}"
    );
    set_control(&dir, json!({"max_body": limit}))?;

    let ours = [short.events.clone(), long.events.clone()].concat();
    let taken = wait_taken(&receiver, &short.events)?;
    let alone = wait_refused_alone(&receiver, &long.events, 413)?;
    ensure!(long.events.iter().all(|e| !taken.contains(e)));
    ensure!(short.events.iter().all(|e| !alone.contains(e)));
    // Taken in the agent's order.
    let short_taken: Vec<&Value> = taken.iter().filter(|d| short.events.contains(d)).collect();
    ensure!(
        short_taken.iter().copied().eq(short.events.iter()),
        "not in the agent's order"
    );
    // Once nothing is left to send, every record of the held batch has been settled.
    wait_sink_report(&agent, "collector", "nothing left to send", |s| {
        s["queued"] == 0 && s["buffered"] == 0
    })?;
    let (taken, alone) = (receiver.taken(None)?, refused_alone(&receiver, 413)?);
    // The held batch was refused whole, then in halves; each record of those requests was
    // in the end taken or refused alone, never both.
    let mut split = 0;
    for r in receiver.requests()? {
        let docs = documents(&r)?;
        let size = r["body"].as_str().map_or(0, str::len);
        ensure!(r["status"] != 200 || size <= limit, "{size} bytes taken");
        if r["status"] != 413 || docs.len() < 2 || !docs.iter().any(|d| ours.contains(d)) {
            continue;
        }
        split += 1;
        for d in &docs {
            ensure!(taken.contains(d) != alone.contains(d), "lost or twice: {d}");
        }
    }
    ensure!(split >= 1, "no request of several records got 413");
    // Dropped: the records refused alone, each once.
    let report = wait_sink_report(&agent, "collector", "the large records dropped", |s| {
        s["dropped"].as_u64() >= Some(alone.len() as u64)
    })?;
    ensure!(report["dropped"] == alone.len() as u64, "{report}");
    let stderr = agent.stderr_once_it_has("a request of one record", EVENT_TIMEOUT);
    ensure!(
        stderr.contains("HTTP 413") && stderr.contains("a request of one record"),
        "the refused record is not in the log:\n{stderr}"
    );
    agent.stop()?;
    Ok(())
}

/// openssl's options for a new P-256 key, unencrypted.
const NEW_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

/// Runs openssl with `args` (split at spaces) in `dir`.
fn openssl(dir: &Path, args: &str) -> Result<()> {
    let out = Cmd::host("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()?;
    ensure!(out.status.success(), "openssl {args}: {}", out.stderr_str());
    Ok(())
}

/// Two private CAs, and a server certificate for 127.0.0.1 signed by the first, made with
/// openssl: ca.pem, other-ca.pem, server.pem and server.key in `dir`.
fn make_certificates(dir: &Path) -> Result<()> {
    let openssl = |args: &str| openssl(dir, args);
    let key = NEW_KEY;
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
    let events = make_flows(&agent, &TestHost::new()?, 9406)?;
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
    let stderr = agent.stderr_once_it_has("UnknownIssuer", EVENT_TIMEOUT);
    ensure!(
        stderr.contains("UnknownIssuer"),
        "no certificate error in the log:\n{stderr}"
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

/// Waits until `server` (named in the error, with `log()`) accepts connections on loopback
/// `port`.
fn wait_listening(server: &str, port: u16, log: &dyn Fn() -> String) -> Result<()> {
    let deadline = Instant::now() + slowed(Duration::from_secs(10));
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(
            Instant::now() < deadline,
            "{server} did not listen on port {port}: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
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
    let first = start_agent(&dir, &buffered(unused_port()?, &buffer, 32 << 10))?;
    let mut port = 9410;
    while segment_ids(&buffer)?.len() < 5 {
        ensure!(port < 9440, "30 rounds of flows and fewer than 5 segments");
        make_flows(&first, &TestHost::new()?, port)?;
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
