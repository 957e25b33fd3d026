//! Through a real HTTP proxy (tinyproxy on loopback, basic authentication required): an http
//! output with the `proxy` option sends absolute-form requests through it although the
//! environment names another proxy; an https output takes `HTTPS_PROXY` from the environment
//! and tunnels TLS through CONNECT; a host `NO_PROXY` names is reached directly. tinyproxy's
//! log shows what went through it.
use super::*;

const USER: &str = "flow";
const PASSWORD: &str = "pr0xy";

/// tinyproxy on a free loopback port, logging each request to `dir`/tinyproxy.log; returns
/// it and its port once it accepts connections.
fn start_tinyproxy(dir: &TempDir) -> Result<(Spawned, u16)> {
    let port = unused_port()?;
    let d = dir.path().display();
    let conf = dir.write(
        "tinyproxy.conf",
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogLevel Connect\n\
             LogFile \"{d}/tinyproxy.log\"\nPidFile \"{d}/tinyproxy.pid\"\n\
             MaxClients 16\nAllow 127.0.0.1\nBasicAuth {USER} {PASSWORD}\n"
        ),
    )?;
    let proxy = Cmd::host("tinyproxy")
        .arg("-d")
        .arg("-c")
        .arg(&conf)
        .spawn()?;
    wait_listening("tinyproxy", port, &|| proxy.stderr_so_far())?;
    Ok((proxy, port))
}

#[test]
fn outputs_go_through_tinyproxy_by_option_and_environment_and_no_proxy_goes_direct() -> Result<()> {
    setup()?;
    require_tools(&["openssl", "tinyproxy"])?;
    let dir = TempDir::new("http-proxy")?;
    make_certificates(dir.path())?;
    let path = |f: &str| dir.path().join(f).display().to_string();
    let plain = Receiver::start(json!({}))?;
    let tls = Receiver::start(json!({"cert": path("server.pem"), "key": path("server.key")}))?;
    let (_tinyproxy, proxy_port) = start_tinyproxy(&dir)?;
    let proxy = format!("http://{USER}:{PASSWORD}@127.0.0.1:{proxy_port}");
    let config = write_config(
        &dir,
        &format!(
            r#"
[[outputs]]
name = "option"
[outputs.http]
url = "http://127.0.0.1:{plain}/plain"
proxy = "{proxy}"
{option}

[[outputs]]
name = "tunnel"
[outputs.http]
url = "https://127.0.0.1:{tls}/tunnel"
ca_file = "{ca}"
{tunnel}

[[outputs]]
name = "direct"
[outputs.http]
url = "http://localhost:{plain}/direct"
{direct}
"#,
            plain = plain.port,
            tls = tls.port,
            ca = path("ca.pem"),
            option = delivery(&dir, "option"),
            tunnel = delivery(&dir, "tunnel"),
            direct = delivery(&dir, "direct"),
        ),
    )?;
    // Port 9 has no proxy: an output that used HTTP_PROXY would deliver nothing.
    let agent = Agent::start_with_env(
        &["--config", &config.display().to_string()],
        &[
            ("HTTPS_PROXY", &proxy),
            ("HTTP_PROXY", "http://127.0.0.1:9"),
            ("NO_PROXY", "example.invalid, localhost"),
        ],
    )?;
    let events = make_flows(&agent, &TestHost::new()?, 9409)?;
    wait_taken_at(&plain, &events, Some("/plain"))?;
    wait_taken_at(&tls, &events, Some("/tunnel"))?;
    wait_taken_at(&plain, &events, Some("/direct"))?;

    // tinyproxy adds Via to what it forwards; the direct requests have none.
    for r in plain.requests()? {
        let via = r["headers"]["via"].as_str().unwrap_or_default();
        match r["path"].as_str() {
            Some("/plain") => ensure!(via.contains("tinyproxy"), "{r}"),
            _ => ensure!(via.is_empty(), "through a proxy: {r}"),
        }
    }
    let log = std::fs::read_to_string(dir.path().join("tinyproxy.log"))?;
    let requests: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once("): ").map(|(_, r)| r))
        .filter(|r| r.ends_with(" HTTP/1.1"))
        .collect();
    let absolute = format!("POST http://127.0.0.1:{}/plain HTTP/1.1", plain.port);
    let connect = format!("CONNECT 127.0.0.1:{} HTTP/1.1", tls.port);
    ensure!(
        requests.contains(&absolute.as_str()),
        "{absolute} not in\n{log}"
    );
    ensure!(
        requests.contains(&connect.as_str()),
        "{connect} not in\n{log}"
    );
    ensure!(
        requests.iter().all(|r| *r == absolute || *r == connect),
        "other requests through the proxy:\n{log}"
    );
    let stderr = agent.stderr();
    ensure!(
        stderr.contains(&format!(
            "through proxy http://{USER}:<redacted>@127.0.0.1:{proxy_port} (from $HTTPS_PROXY)"
        )),
        "{stderr}"
    );
    ensure!(
        !stderr.contains(PASSWORD),
        "the proxy password reached the log"
    );
    agent.stop()?;
    Ok(())
}
