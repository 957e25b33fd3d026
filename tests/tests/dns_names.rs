//! Names of remote endpoints from DNS: a real dnsmasq answers in one test host, curl resolves
//! through it from the other (`ip netns exec` puts /etc/netns/NAME/resolv.conf in place), and
//! the agent must name the flow with what curl asked for, for as long as the TTL allows, in
//! every format that has a place for the name (ECS, OCSF, Sysmon; conn.log has none).
mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::{agent, finish, image_path, python, setup, spawn_py, wait_for_line, EVENT_TIMEOUT};
use flow_agent_tests::{require_tools, ResolvConf, Spawned, TempDir, TestHost};
use serde_json::{json, Value};

const HTTP_PORT: u16 = 8080;
/// dnsmasq's TTL for its own records: short, so the test can outlive it.
const TTL_S: u64 = 3;

fn start_dnsmasq(server: &TestHost, addr: &str) -> Result<Spawned> {
    let proc = server
        .cmd("dnsmasq")
        .args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--pid-file=",
            "--user=root",
        ])
        .arg(format!("--listen-address={addr}"))
        .arg(format!("--host-record=web.flowtest,{addr}"))
        .arg("--cname=www.flowtest,web.flowtest")
        // Other names of the domain do not exist (NXDOMAIN), rather than being refused.
        .arg("--local=/flowtest/")
        .arg(format!("--local-ttl={TTL_S}"))
        .spawn()?;
    // dnsmasq answers over TCP too: its TCP listener says it is up.
    server.wait_for_tcp_listen(53)?;
    Ok(proc)
}

fn curl(client: &TestHost, url: &str) -> Result<()> {
    let out = client
        .cmd("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "10", url])
        .output()?;
    ensure!(out.status.success(), "curl {url}: {out:?}");
    Ok(())
}

fn http_end(agent: &flow_agent_tests::Agent, addr: &str, skip: usize) -> Result<Value> {
    let want = |e: &Value| {
        e["event_action"] == "end"
            && e["attribution"] == "connector"
            && e["dest_ip"] == addr
            && e["dest_port"] == HTTP_PORT
    };
    agent
        .wait_for_count(want, skip + 1, EVENT_TIMEOUT)
        .with_context(|| format!("waiting for HTTP flow end number {}", skip + 1))?;
    agent
        .events()
        .into_iter()
        .filter(|e| want(e))
        .nth(skip)
        .context("end event vanished")
}

#[test]
fn flows_carry_the_name_the_process_resolved_until_its_ttl_ends() -> Result<()> {
    setup()?;
    require_tools(&["dnsmasq", "curl"])?;
    let (client, server) = TestHost::pair()?;
    let addr = server.ns_addr_v4().to_string();
    let _dns = start_dnsmasq(&server, &addr)?;
    let dir = TempDir::new("ftdns")?;
    dir.write("index.html", "hello\n")?;
    let _http = server
        .cmd(&python()?.display().to_string())
        .args(["-m", "http.server", &HTTP_PORT.to_string(), "--bind", &addr])
        .arg("--directory")
        .arg(dir.path())
        .spawn()?;
    server.wait_for_tcp_listen(HTTP_PORT)?;
    let _resolv = ResolvConf::point(&client, &addr)?;
    // Native on stdout, the other formats in files: the name must reach each that has a place.
    let cfg = dir.write(
        "formats.toml",
        FORMATS_CONFIG.replace("{dir}", &dir.path().display().to_string()),
    )?;
    let agent = agent(&["--config", &cfg.display().to_string()])?;

    // By a name behind a CNAME: the flow carries the name asked for and the chain.
    curl(&client, &format!("http://www.flowtest:{HTTP_PORT}/"))?;
    let named = http_end(&agent, &addr, 0)?;
    let want = [
        ("dest_fqdn", json!("www.flowtest")),
        ("dest_hostname", json!("www")),
        ("dns_chain", json!(["www.flowtest", "web.flowtest"])),
    ];
    for (k, v) in &want {
        ensure!(&named[k] == v, "{k}: want {v}: {named:#}");
    }
    ensure!(
        named["src_hostname"].is_string(),
        "this host's name as src_hostname: {named:#}"
    );
    // The DNS flow itself is a UDP flow to port 53 of the resolver, by curl.
    agent
        .wait_for(
            |e| {
                e["transport_protocol"] == "udp"
                    && e["dest_port"] == 53
                    && e["dest_ip"] == addr.as_str()
            },
            EVENT_TIMEOUT,
        )
        .context("waiting for curl's DNS flow")?;

    // By address after the TTL: no name any more.
    std::thread::sleep(Duration::from_secs(TTL_S + 1));
    curl(&client, &format!("http://{addr}:{HTTP_PORT}/"))?;
    let unnamed = http_end(&agent, &addr, 1)?;
    ensure!(
        unnamed.get("dest_fqdn").is_none() && unnamed.get("dns_chain").is_none(),
        "the answer expired {TTL_S} s after it came: {unnamed:#}"
    );
    agent.stop()?;
    names_in_every_format(&dir, &named)
}

/// Native events on stdout; ECS, OCSF, Zeek and Sysmon records in files of `{dir}`.
const FORMATS_CONFIG: &str = r#"
[[outputs]]
format = "native"
[outputs.stdout]

[[outputs]]
format = "ecs"
[outputs.file]
path = "{dir}/ecs.log"

[[outputs]]
format = "ocsf"
[outputs.file]
path = "{dir}/ocsf.log"

[[outputs]]
format = "zeek"
[outputs.file]
path = "{dir}/zeek.log"

[[outputs]]
format = "sysmon"
[outputs.file]
path = "{dir}/sysmon.log"
"#;

/// The name curl resolved through dnsmasq is in every format that has a place for it: ECS
/// `destination.domain` and `related.hosts`, OCSF `dst_endpoint.hostname` and `domain`, Sysmon
/// `DestinationHostname` of the connection's event 3; conn.log has no field for names (its
/// record of the connection is there, nameless).
fn names_in_every_format(dir: &TempDir, named: &Value) -> Result<()> {
    let lines = |format: &str| -> Result<Vec<String>> {
        let path = dir.path().join(format!("{format}.log"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(text.lines().map(str::to_string).collect())
    };
    let json = |format: &str| -> Result<Vec<Value>> {
        lines(format)?
            .iter()
            .map(|l| serde_json::from_str(l).with_context(|| format!("{format}: {l}")))
            .collect()
    };
    let flow_id = &named["flow_id"];
    let ecs = json("ecs")?;
    let doc = ecs
        .iter()
        .find(|d| d["flow_agent"]["flow_id"] == *flow_id && d["event"]["type"][1] == "end")
        .context("no ECS end document of the named flow")?;
    ensure!(
        doc["destination"]["domain"] == "www.flowtest"
            && doc["related"]["hosts"]
                .as_array()
                .is_some_and(|h| h.contains(&json!("www.flowtest"))),
        "ECS names of the flow to www.flowtest: {doc:#}"
    );
    let ocsf = json("ocsf")?;
    let ev = ocsf
        .iter()
        .find(|e| e["metadata"]["correlation_uid"] == *flow_id && e["class_uid"] == 4001)
        .context("no OCSF event of the named flow")?;
    ensure!(
        ev["dst_endpoint"]["hostname"] == "www.flowtest"
            && ev["dst_endpoint"]["domain"] == "flowtest",
        "OCSF names of the flow to www.flowtest: {ev:#}"
    );
    let (pid, port) = (named["pid"].to_string(), named["src_port"].to_string());
    let sysmon = lines("sysmon")?;
    let rec = sysmon
        .iter()
        .find(|l| {
            l.contains(&format!(r#"<Data Name="ProcessId">{pid}</Data>"#))
                && l.contains(&format!(r#"<Data Name="SourcePort">{port}</Data>"#))
        })
        .context("no Sysmon event 3 of the named flow")?;
    ensure!(
        rec.contains(r#"<Data Name="DestinationHostname">www.flowtest</Data>"#),
        "Sysmon names of the flow to www.flowtest: {rec}"
    );
    let zeek = json("zeek")?;
    ensure!(
        zeek.iter().any(|r| r["id.orig_p"] == named["src_port"]
            && r["id.resp_p"] == HTTP_PORT
            && r["proto"] == "tcp"),
        "no conn.log record of the named flow"
    );
    Ok(())
}

/// Asks the resolver (argv[1]) for the A record of each name (argv[2:]), one UDP socket per
/// name, message ids 0x1000 up; prints its pid first, then each answer's RCODE.
const RESOLVER_CLIENT: &str = r#"
import os, socket, struct, sys
print("pid", os.getpid(), flush=True)
for i, name in enumerate(sys.argv[2:]):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.connect((sys.argv[1], 53))
    labels = name.encode("latin-1").split(b".")
    q = struct.pack(">HHHHHH", 0x1000 + i, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l for l in labels) + b"\0" + struct.pack(">HH", 1, 1)
    s.send(q)
    r = s.recv(4096)
    print("rcode", name.encode("unicode_escape").decode(), r[3] & 15, flush=True)
    s.close()
print("done", flush=True)
"#;

#[test]
fn dns_events_name_the_query_its_answers_and_the_process_that_asked() -> Result<()> {
    setup()?;
    require_tools(&["dnsmasq", "dig"])?;
    let (client, server) = TestHost::pair()?;
    let addr = server.ns_addr_v4().to_string();
    let client_addr = client.ns_addr_v4().to_string();
    let _dns = start_dnsmasq(&server, &addr)?;
    let dir = TempDir::new("ftdnsev")?;
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[enrich]\ndns_events = true\n")?;
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    let agent = agent(&["--config", &cfg.display().to_string()])?;

    let names = ["www.flowtest", "nx.flowtest", "Odd\x07.flowtest"];
    let mut args = vec![addr.clone()];
    args.extend(names.iter().map(|n| n.to_string()));
    let asker = spawn_py(&client, RESOLVER_CLIENT, &args)?;
    let pid: u32 = wait_for_line(&asker, "pid", Duration::from_secs(10))?[4..]
        .trim()
        .parse()?;
    let out = finish(asker, Duration::from_secs(30))?;
    ensure!(out.contains("done"), "resolver client: {out}");
    ensure!(out.contains("rcode www.flowtest 0"), "{out}");
    ensure!(out.contains("rcode nx.flowtest 3"), "{out}");

    // The agent sees every DNS answer of the host, the other test's included (it asks for
    // www.flowtest too): only answers to this test's client from this test's resolver.
    let ours = |e: &Value| {
        e["event_action"] == "dns_query"
            && e["client_ip"] == client_addr.as_str()
            && e["resolver_ip"] == addr.as_str()
    };
    let dns = |name: &'static str| move |e: &Value| ours(e) && e["query_name"] == name;
    let image = image_path(&python()?)?;
    let asked = |ev: &Value, name: &str, id: u64| -> Result<()> {
        let want = [
            ("transport_protocol", json!("udp")),
            ("query_name", json!(name)),
            ("query_type", json!("A")),
            ("query_type_id", json!(1)),
            ("transaction_id", json!(id)),
            ("client_ip", json!(client_addr)),
            ("resolver_ip", json!(addr)),
            ("resolver_port", json!(53)),
            ("network_locality", json!("internal")),
            ("pid", json!(pid)),
            ("image_path", json!(image)),
        ];
        for (k, v) in &want {
            ensure!(&ev[k] == v, "{k}: want {v}: {ev:#}");
        }
        ensure!(ev["client_port"].as_u64().is_some_and(|p| p > 0), "{ev:#}");
        ensure!(ev["process_entity_id"].is_string(), "{ev:#}");
        ensure!(ev["community_id"].is_string(), "{ev:#}");
        // The event names the DNS flow, whose start carries the same process.
        let flow_id = ev["flow_id"].as_str().context("flow_id")?.to_string();
        let start = agent
            .wait_for(
                |e| e["event_action"] == "start" && e["flow_id"] == flow_id.as_str(),
                EVENT_TIMEOUT,
            )
            .context("the DNS flow's start")?;
        ensure!(
            start["pid"] == json!(pid) && start["dest_port"] == 53,
            "{start:#}"
        );
        Ok(())
    };

    // A name behind a CNAME: both answers, in order, with dnsmasq's TTL.
    let www = agent
        .wait_for(dns("www.flowtest"), EVENT_TIMEOUT)
        .context("dns_query event for www.flowtest")?;
    asked(&www, "www.flowtest", 0x1000)?;
    let want = [
        ("response_code", json!("NOERROR")),
        ("response_code_id", json!(0)),
        (
            "answers",
            json!([
                {"name": "www.flowtest", "type": "CNAME", "ttl": TTL_S, "data": "web.flowtest"},
                {"name": "web.flowtest", "type": "A", "ttl": TTL_S, "data": addr},
            ]),
        ),
        ("answers_truncated", json!(false)),
        ("resolved_ips", json!([addr])),
    ];
    for (k, v) in &want {
        ensure!(&www[k] == v, "{k}: want {v}: {www:#}");
    }

    // A name that does not exist: NXDOMAIN and no answers.
    let nx = agent
        .wait_for(dns("nx.flowtest"), EVENT_TIMEOUT)
        .context("dns_query event for nx.flowtest")?;
    asked(&nx, "nx.flowtest", 0x1001)?;
    ensure!(
        nx["response_code"] == "NXDOMAIN"
            && nx["response_code_id"] == 3
            && nx["answers"] == json!([])
            && nx["resolved_ips"] == json!([]),
        "{nx:#}"
    );

    // A hostile label: lower case, the control byte escaped as \DDD.
    let odd = agent
        .wait_for(dns("odd\\007.flowtest"), EVENT_TIMEOUT)
        .context("dns_query event for the hostile name")?;
    asked(&odd, "odd\\007.flowtest", 0x1002)?;
    ensure!(odd["response_code"] == "NXDOMAIN", "{odd:#}");

    // Over TCP (the answer is the connection's first payload): dig asks.
    let dig = client
        .cmd("dig")
        .args(["+tcp", "+tries=1", "+time=5", "+short", "-p", "53"])
        .arg(format!("@{addr}"))
        .args(["web.flowtest", "A"])
        .spawn()?;
    let dig_pid = dig.pid();
    let out = finish(dig, Duration::from_secs(20))?;
    ensure!(out.contains(&addr), "dig +tcp: {out}");
    let tcp = agent
        .wait_for(
            |e| ours(e) && e["transport_protocol"] == "tcp",
            EVENT_TIMEOUT,
        )
        .context("dns_query event over TCP")?;
    let want = [
        ("query_name", json!("web.flowtest")),
        ("response_code", json!("NOERROR")),
        ("resolved_ips", json!([addr])),
        ("resolver_ip", json!(addr)),
        ("resolver_port", json!(53)),
        ("client_ip", json!(client_addr)),
        ("pid", json!(dig_pid)),
    ];
    for (k, v) in &want {
        ensure!(&tcp[k] == v, "{k}: want {v}: {tcp:#}");
    }

    // One event per answer, none for the queries.
    let n = agent
        .events()
        .iter()
        .filter(|e| ours(e) && e["transport_protocol"] == "udp")
        .count();
    ensure!(
        n == names.len(),
        "{n} dns_query events for {} answers",
        names.len()
    );
    // Each is what docs/events.schema.json describes.
    let schema_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("docs/events.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(schema_path)?)?;
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| anyhow::anyhow!("compiling the schema: {e}"))?;
    for ev in [&www, &nx, &odd, &tcp] {
        let errors: Vec<String> = validator.iter_errors(ev).map(|e| e.to_string()).collect();
        ensure!(errors.is_empty(), "{errors:?}: {ev:#}");
    }
    agent.stop()?;
    Ok(())
}

/// Addresses on the loopback of the test namespace: one a forged answer claims, one a real
/// answer gives.
const FORGED_ADDR: &str = "127.0.0.77";
const LEGIT_ADDR: &str = "127.0.0.78";
const CONNECT_PORT: u16 = 8081;

/// One process, on the loopback of its namespace (args: forged address, legit address, port):
/// a UDP socket that asked nothing gets an answer forged from 127.0.0.1:53 claiming that
/// forged.flowtest is the forged address (sent by a raw socket, which writes its own UDP
/// header; TTL one hour); then the process asks a resolver of its own on 127.0.0.1:53 for
/// legit.flowtest and gets the legit address. It connects to each address right after its
/// answer (to a listener of its own).
const FORGER: &str = r#"
import socket, struct, sys
forged, legit, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def wire(n):
    return b"".join(bytes([len(l)]) + l for l in n.encode().split(b".")) + b"\0"
def question(n):
    return wire(n) + struct.pack(">HH", 1, 1)
def answer(ident, n, addr):
    m = struct.pack(">HHHHHH", ident, 0x8180, 1, 1, 0, 0) + question(n)
    return m + b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 3600, 4) + socket.inet_aton(addr)
def connect(addr):
    srv = socket.socket()
    srv.bind((addr, port))
    srv.listen(1)
    c = socket.create_connection((addr, port), timeout=5)
    a, _ = srv.accept()
    c.close(); a.close(); srv.close()

victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
victim.settimeout(5)
victim.bind(("127.0.0.1", 0))
payload = answer(0x5353, "forged.flowtest", forged)
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
udp = struct.pack(">HHHH", 53, victim.getsockname()[1], 8 + len(payload), 0)
raw.sendto(udp + payload, ("127.0.0.1", 0))
got, src = victim.recvfrom(4096)
assert got == payload and src == ("127.0.0.1", 53), (got, src)
print("forged answer delivered", flush=True)
connect(forged)

resolver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
resolver.settimeout(5)
resolver.bind(("127.0.0.1", 53))
asker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
asker.settimeout(5)
asker.connect(("127.0.0.1", 53))
asker.send(struct.pack(">HHHHHH", 0x4444, 0x0100, 1, 0, 0, 0) + question("legit.flowtest"))
q, client = resolver.recvfrom(512)
resolver.sendto(answer(struct.unpack(">H", q[:2])[0], "legit.flowtest", legit), client)
asker.recv(512)
connect(legit)
print("done", flush=True)
"#;

#[test]
fn a_forged_answer_to_a_socket_that_asked_nothing_names_no_flow() -> Result<()> {
    setup()?;
    let host = TestHost::new()?;
    let netns = host.netns_inode()?;
    let dir = TempDir::new("ftforge")?;
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[enrich]\ndns_events = true\n")?;
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    let agent = agent(&["--config", &cfg.display().to_string()])?;

    let args = [FORGED_ADDR, LEGIT_ADDR, &CONNECT_PORT.to_string()].map(String::from);
    let out = finish(spawn_py(&host, FORGER, &args)?, Duration::from_secs(30))?;
    ensure!(
        out.contains("forged answer delivered") && out.contains("done"),
        "forger: {out}"
    );
    let end_to = |addr: &'static str| {
        move |e: &Value| {
            e["event_action"] == "end"
                && e["attribution"] == "connector"
                && e["dest_ip"] == addr
                && e["dest_port"] == CONNECT_PORT
                && e["netns"] == netns
        }
    };
    // The answer the process asked for names its connection: names are still learned here.
    let legit = agent
        .wait_for(end_to(LEGIT_ADDR), EVENT_TIMEOUT)
        .context("the connection to the legitimately answered address")?;
    ensure!(
        legit["dest_fqdn"] == "legit.flowtest",
        "the answer to the query names the flow: {legit:#}"
    );
    agent
        .wait_for(
            |e| e["event_action"] == "dns_query" && e["query_name"] == "legit.flowtest",
            EVENT_TIMEOUT,
        )
        .context("dns_query event of the answered query")?;
    // The forged answer came first: it names nothing and is no dns_query event.
    let forged = agent
        .wait_for(end_to(FORGED_ADDR), EVENT_TIMEOUT)
        .context("the connection to the forged address")?;
    ensure!(
        forged.get("dest_fqdn").is_none() && forged.get("dns_chain").is_none(),
        "an answer no query asked for names the flow: {forged:#}"
    );
    let events = agent.stop()?;
    let forged_events: Vec<&Value> = events
        .iter()
        .filter(|e| e["query_name"] == "forged.flowtest")
        .collect();
    ensure!(
        forged_events.is_empty(),
        "dns_query events for the forged answer: {forged_events:#?}"
    );
    Ok(())
}
