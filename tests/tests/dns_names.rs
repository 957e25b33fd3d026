//! Names of remote endpoints from DNS: a real dnsmasq answers in one test host, curl resolves
//! through it from the other (`ip netns exec` puts /etc/netns/NAME/resolv.conf in place), and
//! the agent must name the flow with what curl asked for, for as long as the TTL allows.
mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::{agent, python, setup, EVENT_TIMEOUT};
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
    let agent = agent(&[])?;

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
    Ok(())
}
