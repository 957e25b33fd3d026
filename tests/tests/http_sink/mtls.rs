//! Mutual TLS against real nginx (`ssl_verify_client on`) on loopback, in front of the
//! receiver: the output with a client certificate (its key a systemd credential) gets every
//! flow through, nginx naming the certificate it verified; the output without one is
//! refused by nginx (400) and keeps its records. A client certificate that is missing, not
//! PEM, or whose key is another's is refused at start, naming the option and file.
use super::*;

const NGINX_CONF: &str = r#"
daemon off;
master_process off;
user root;
error_log {dir}/error.log;
pid {dir}/nginx.pid;
events { worker_connections 64; }
http {
    log_format mtls '$request_uri $status $ssl_client_verify';
    access_log {dir}/access.log mtls;
    client_body_temp_path {dir};
    proxy_temp_path {dir};
    fastcgi_temp_path {dir};
    uwsgi_temp_path {dir};
    scgi_temp_path {dir};
    server {
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {dir}/server.pem;
        ssl_certificate_key {dir}/server.key;
        ssl_client_certificate {dir}/ca.pem;
        ssl_verify_client on;
        location / {
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header X-Client-Subject $ssl_client_s_dn;
        }
    }
}
"#;

/// A client certificate signed by the test CA of [`make_certificates`]: client.pem and
/// client.key in `dir`; client.der, the same certificate not in PEM.
fn make_client_certificate(dir: &Path) -> Result<()> {
    openssl(
        dir,
        &format!(
            "req {NEW_KEY} -keyout client.key -out client.csr -subj /CN=flow-agent-test-client"
        ),
    )?;
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )?;
    openssl(
        dir,
        "x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem \
         -days 2 -extfile client.ext",
    )?;
    openssl(dir, "x509 -in client.pem -outform DER -out client.der")
}

/// nginx with [`NGINX_CONF`] on a free loopback port, once it accepts connections.
fn start_nginx(dir: &TempDir, upstream: u16) -> Result<(Spawned, u16)> {
    let port = unused_port()?;
    let conf = NGINX_CONF
        .replace("{dir}", &dir.path().display().to_string())
        .replace("{port}", &port.to_string())
        .replace("{upstream}", &upstream.to_string());
    let conf = dir.write("nginx.conf", conf)?;
    let nginx = Cmd::host("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .spawn()?;
    wait_listening("nginx", port, &|| {
        std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
    })?;
    Ok((nginx, port))
}

/// `(uri, status, client verification)` of each request nginx logged.
fn nginx_log(dir: &TempDir) -> Result<Vec<(String, u16, String)>> {
    let log = std::fs::read_to_string(dir.path().join("access.log")).unwrap_or_default();
    log.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            ensure!(f.len() == 3, "nginx log line {l:?}");
            Ok((f[0].to_string(), f[1].parse()?, f[2].to_string()))
        })
        .collect()
}

#[test]
fn a_client_certificate_gets_through_nginx_and_an_output_without_one_keeps_its_records(
) -> Result<()> {
    setup()?;
    require_tools(&["openssl", "nginx"])?;
    let dir = TempDir::new("http-mtls")?;
    make_certificates(dir.path())?;
    make_client_certificate(dir.path())?;
    let receiver = Receiver::start(json!({}))?;
    let (_nginx, port) = start_nginx(&dir, receiver.port)?;
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds)?;
    std::fs::copy(dir.path().join("client.key"), creds.join("collector-key"))?;
    let path = |f: &str| dir.path().join(f).display().to_string();
    let config = write_config(
        &dir,
        &format!(
            r#"
[[outputs]]
name = "mtls"
[outputs.http]
url = "https://127.0.0.1:{port}/mtls"
ca_file = "{ca}"
client_cert = "{cert}"
client_key = "collector-key"
{mtls}

[[outputs]]
name = "nocert"
[outputs.http]
url = "https://127.0.0.1:{port}/nocert"
ca_file = "{ca}"
{nocert}
"#,
            ca = path("ca.pem"),
            cert = path("client.pem"),
            mtls = delivery(&dir, "mtls"),
            nocert = delivery(&dir, "nocert"),
        ),
    )?;
    // What systemd does with LoadCredential=: the directory in the agent's environment.
    let agent = Agent::start_with_env(
        &["--config", &config.display().to_string()],
        &[("CREDENTIALS_DIRECTORY", &creds.display().to_string())],
    )?;
    let events = make_flows(&agent, &TestHost::new()?, 9408)?;
    wait_taken_at(&receiver, &events, Some("/mtls"))?;
    for r in receiver.requests()? {
        ensure!(r["path"] == "/mtls", "request past nginx: {r}");
        ensure!(
            r["headers"]["x-client-subject"] == "CN=flow-agent-test-client",
            "{r}"
        );
    }
    // Refused by nginx, never dropped: every record waits in the queue or the buffer.
    let report = wait_sink_report(&agent, "nocert", "its records kept", |s| {
        s["errors"].as_u64() >= Some(1)
            && s["queued"].as_u64().unwrap_or(0) + s["buffered"].as_u64().unwrap_or(0)
                >= events.len() as u64
    })?;
    ensure!(report["sent"] == 0 && report["dropped"] == 0, "{report}");
    let stderr = agent.stderr_once_it_has("asked for a client certificate", EVENT_TIMEOUT);
    ensure!(
        stderr.contains("asked for a client certificate"),
        "{stderr}"
    );
    let log = nginx_log(&dir)?;
    ensure!(
        log.iter()
            .any(|(uri, status, verify)| uri == "/nocert" && *status == 400 && verify == "NONE"),
        "{log:?}"
    );
    ensure!(
        log.iter()
            .filter(|(uri, ..)| uri == "/mtls")
            .all(|(_, status, verify)| *status == 200 && verify == "SUCCESS"),
        "{log:?}"
    );
    agent.stop()?;
    Ok(())
}

#[test]
fn a_client_certificate_missing_not_pem_or_of_another_key_is_refused() -> Result<()> {
    setup()?;
    require_tools(&["openssl"])?;
    let dir = TempDir::new("http-mtls-bad")?;
    make_certificates(dir.path())?;
    make_client_certificate(dir.path())?;
    let path = |f: &str| dir.path().join(f).display().to_string();
    for (cert, key, want) in [
        (
            path("absent.pem"),
            path("client.key"),
            format!("client_cert: reading {}", path("absent.pem")),
        ),
        (
            path("client.der"),
            path("client.key"),
            format!(
                "client_cert {}: no PEM certificate in it",
                path("client.der")
            ),
        ),
        (
            path("client.pem"),
            path("client.pem"),
            format!("client_key {}: no PEM private key", path("client.pem")),
        ),
        (
            path("client.pem"),
            path("server.key"),
            format!(
                "client_key {} does not match the certificate of client_cert {}",
                path("server.key"),
                path("client.pem")
            ),
        ),
    ] {
        let config = dir.write(
            "agent.toml",
            format!(
                "[[outputs]]\n[outputs.http]\nurl = \"https://127.0.0.1:9/\"\n\
                 client_cert = \"{cert}\"\nclient_key = \"{key}\"\n"
            ),
        )?;
        let err = refused_config(&config)?;
        ensure!(err.contains(&want), "want {want:?} in:\n{err}");
    }
    let config = dir.write(
        "agent.toml",
        format!(
            "[[outputs]]\n[outputs.http]\nurl = \"http://127.0.0.1:9/\"\n\
             client_cert = \"{}\"\nclient_key = \"{}\"\n",
            path("client.pem"),
            path("client.key")
        ),
    )?;
    let err = refused_config(&config)?;
    ensure!(
        err.contains("client_cert applies to https urls only"),
        "{err}"
    );
    Ok(())
}
