//! The configuration file and the command line, through the real binary: check-config on
//! broken files (exact line, column, key and exit status), `config --default` round trip,
//! secrets kept out of `config` and credentials over plain HTTP warned about,
//! the agent refusing an invalid or unsafe file, and SIGHUP reloads with real traffic (a
//! changed filter, update interval and local networks take effect; a flow spanning the reload
//! keeps its events; an invalid new file leaves the old one in force).
//!
//! The reload test needs root, kernel BTF, iproute2 and python3.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use flow_agent_tests::{
    unused_port, Agent, Cmd, Output, Spawned, TempDir, TestHost, ABSENT_DEFAULT_CONFIG,
    DEFAULT_CONFIG_ENV,
};
use serde_json::{json, Value};

const EXIT_CONFIG: i32 = 2;

/// `flow-agent ARGS...`, with no default configuration file (whatever the host's /etc holds).
fn flow_agent(args: &[&str]) -> Result<Output> {
    flow_agent_with_default(args, Path::new(ABSENT_DEFAULT_CONFIG))
}

/// `flow-agent ARGS...` with `default` in place of /etc/flow-agent/config.toml.
fn flow_agent_with_default(args: &[&str], default: &Path) -> Result<Output> {
    Cmd::host(&Agent::binary()?.display().to_string())
        .args(args)
        .env(DEFAULT_CONFIG_ENV, default)
        .env("RUST_BACKTRACE", "1")
        .timeout(Duration::from_secs(30))
        .output()
}

/// Writes `text` as `name` in `dir` with mode 0644 (the umask may be stricter or looser).
fn config_file(dir: &TempDir, name: &str, text: &str) -> Result<PathBuf> {
    let p = dir.write(name, text)?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))?;
    Ok(p)
}

/// Runs check-config on `text` and returns (exit code, stdout, stderr).
fn check_config(dir: &TempDir, text: &str) -> Result<(Option<i32>, String, String)> {
    let p = config_file(dir, "c.toml", text)?;
    let out = flow_agent(&["check-config", &p.display().to_string()])?;
    Ok((out.status.code(), out.stdout_str(), out.stderr_str()))
}

fn expect_rejected(dir: &TempDir, text: &str, want: &str) -> Result<()> {
    let (code, stdout, stderr) = check_config(dir, text)?;
    let path = dir.path().join("c.toml");
    let want = format!("flow-agent: error: {}{want}\n", path.display());
    ensure!(
        code == Some(EXIT_CONFIG) && stderr == want && stdout.is_empty(),
        "check-config on\n{text}\nwant exit 2 and stderr\n{want}got exit {code:?}, stdout {stdout:?}, stderr\n{stderr}"
    );
    Ok(())
}

#[test]
fn check_config_names_line_key_and_expectation() -> Result<()> {
    let dir = TempDir::new("cfg-check")?;
    expect_rejected(
        &dir,
        "[flows]\nupdate_interval = 5\nidle_timeout = 3\n",
        ":3:1: flows.idle_timeout: unknown field `idle_timeout`, expected one of `update_interval`, `udp_idle_timeout`, `accept_wait`",
    )?;
    expect_rejected(
        &dir,
        "[health]\nstats_interval = \"often\"\n",
        ":2:18: health.stats_interval: invalid type: string \"often\", expected u64",
    )?;
    expect_rejected(
        &dir,
        "[filter]\ninclude = [{ remote_port = 443 }]\nexclude = [\n  { remote_cidr = \"10.0.0/8\" },\n]\n",
        ":4:19: filter.exclude[0].remote_cidr: \"10.0.0/8\" is not a CIDR (expected e.g. 10.0.0.0/8 or fd00::/8): bad address",
    )?;
    expect_rejected(
        &dir,
        "[[outputs]]\nname = \"siem\"\nformat = \"ecs\"\n",
        ":1:1: outputs[0]: an output needs one sink table: stdout, file, syslog or http (expected e.g. [outputs.stdout] under this [[outputs]])",
    )?;
    // Every problem is reported, in file order.
    expect_rejected(
        &dir,
        "[[outputs]]\nformat = \"native\"\n\n[[outputs]]\nformat = \"ecs\"\n[outputs.stdout]\n[outputs.syslog]\naddress = \"127.0.0.1:514\"\n",
        &format!(
            ":1:1: outputs[0]: an output needs one sink table: stdout, file, syslog or http (expected e.g. [outputs.stdout] under this [[outputs]])\n\
             flow-agent: error: {}:4:1: outputs[1]: an output has one sink, this one has stdout and syslog (expected one sink table per [[outputs]]: add another [[outputs]] for each further sink)",
            dir.path().join("c.toml").display()
        ),
    )?;
    expect_rejected(
        &dir,
        "[flows]\nupdate_interval = 30\n\n[capture]\nring_buffer_bytes = 1000000\n",
        ":5:1: capture.ring_buffer_bytes: 1000000 is not usable (expected a power of two from 4096 to 1073741824, e.g. 8388608)",
    )?;
    expect_rejected(
        &dir,
        "[[outputs]]\n[outputs.file]\npath = \"/nonexistent-flow-agent-dir/flows.json\"\n",
        ":3:1: outputs[0].file.path: directory /nonexistent-flow-agent-dir does not exist (expected an existing directory for /nonexistent-flow-agent-dir/flows.json)",
    )?;
    expect_rejected(
        &dir,
        "[[outputs]]\n[outputs.http]\nurl = \"https://127.0.0.1:9200/in\"\nclient_cert = \"/etc/flow-agent/c.pem\"\n",
        ":2:10: outputs[0].http: client_cert and client_key go together: set both or neither",
    )?;
    expect_rejected(
        &dir,
        "[[outputs]]\n[outputs.http]\nurl = \"http://127.0.0.1:8080/in\"\nclient_cert = \"/c.pem\"\nclient_key = \"k\"\n",
        ":2:10: outputs[0].http: client_cert applies to https urls only",
    )?;
    // The proxy's password stays out of the error.
    expect_rejected(
        &dir,
        "[[outputs]]\n[outputs.http]\nurl = \"https://127.0.0.1:9200/in\"\nproxy = \"https://u:s3cret@proxy:3128\"\n",
        ":4:1: outputs[0].http.proxy: proxy: scheme \"https\" is not supported, the proxy is reached over plain HTTP (http://HOST:PORT)",
    )?;
    expect_rejected(
        &dir,
        "[agent\nlog_level = \"info\"\n",
        ":1:7: invalid table header: expected `.`, `]`",
    )?;
    Ok(())
}

#[test]
fn check_config_accepts_a_valid_file() -> Result<()> {
    let dir = TempDir::new("cfg-ok")?;
    let text = r#"
[agent]
log_level = "warn"
[flows]
update_interval = 30
accept_wait = 0.5
[enrich]
local_networks = ["10.0.0.0/8", "fd00::/8"]
[filter]
exclude = [{ remote_cidr = "169.254.169.254/32" }, { process_name = "chronyd", transport = "udp" }]
[[outputs]]
name = "console"
format = "native"
[outputs.stdout]
[outputs.filter]
include = [{ direction = "outbound", remote_port = [53, "8000-8100"] }]
"#;
    let (code, stdout, stderr) = check_config(&dir, text)?;
    let path = dir.path().join("c.toml");
    ensure!(
        code == Some(0) && stdout == format!("{}: ok\n", path.display()) && stderr.is_empty(),
        "exit {code:?}, stdout {stdout:?}, stderr {stderr:?}"
    );
    Ok(())
}

#[test]
fn unsafe_or_missing_files_are_refused() -> Result<()> {
    let dir = TempDir::new("cfg-perm")?;
    let p = config_file(&dir, "c.toml", "")?;
    let ps = p.display().to_string();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666))?;
    for args in [vec!["check-config", &ps], vec!["run", "--config", &ps]] {
        let out = flow_agent(&args)?;
        let want = format!(
            "flow-agent: error: {ps}: mode 0666 lets its group and all users write it (expected no write permission for group and others; chmod go-w {ps})\n"
        );
        ensure!(
            out.status.code() == Some(EXIT_CONFIG) && out.stderr_str() == want,
            "{args:?}: exit {:?}, stderr {:?}",
            out.status.code(),
            out.stderr_str()
        );
    }
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o620))?;
    let out = flow_agent(&["check-config", &ps])?;
    ensure!(
        out.status.code() == Some(EXIT_CONFIG)
            && out
                .stderr_str()
                .contains("mode 0620 lets its group write it"),
        "group-writable: {:?}",
        out.stderr_str()
    );
    // The directory, too.
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))?;
    let out = flow_agent(&["check-config", &ps])?;
    ensure!(
        out.status.code() == Some(EXIT_CONFIG)
            && out.stderr_str().contains(&format!(
                "its directory {}: mode 0777 lets its group and all users write in it",
                dir.path().display()
            )),
        "world-writable directory: {:?}",
        out.stderr_str()
    );
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let missing = dir.path().join("missing.toml").display().to_string();
    let out = flow_agent(&["check-config", &missing])?;
    ensure!(
        out.status.code() == Some(EXIT_CONFIG)
            && out.stderr_str()
                == format!("flow-agent: error: {missing}: cannot read the configuration file: No such file or directory (os error 2)\n"),
        "missing file: {:?}",
        out.stderr_str()
    );
    Ok(())
}

#[test]
fn the_agent_refuses_to_start_on_an_invalid_file() -> Result<()> {
    let dir = TempDir::new("cfg-refuse")?;
    let p = config_file(&dir, "c.toml", "[filter]\nexclude = [{ port = 53 }]\n")?;
    let ps = p.display().to_string();
    for args in [vec!["run", "--config", &ps], vec!["--config", &ps]] {
        let out = flow_agent(&args)?;
        let stderr = out.stderr_str();
        ensure!(
            out.status.code() == Some(EXIT_CONFIG)
                && stderr.starts_with(&format!("flow-agent: error: {ps}:2:14: filter.exclude[0].port: unknown field `port`, expected one of `remote_cidr`"))
                && stderr.lines().count() == 1
                && out.stdout.is_empty(),
            "{args:?}: exit {:?}, stdout {:?}, stderr {stderr:?}",
            out.status.code(),
            out.stdout_str()
        );
    }
    // Command-line overrides are checked too, and usage errors exit 2 as well.
    let out = flow_agent(&["run", "--output", "file:relative.json"])?;
    ensure!(
        out.status.code() == Some(EXIT_CONFIG)
            && out.stderr_str()
                == "flow-agent: error: command line: outputs[0].file.path: \"relative.json\" is a relative path (expected an absolute path)\n",
        "{:?}",
        out.stderr_str()
    );
    let out = flow_agent(&["run", "--output", "kafka:x"])?;
    ensure!(
        out.status.code() == Some(EXIT_CONFIG)
            && out.stderr_str().contains("unknown sink \"kafka\""),
        "{:?}",
        out.stderr_str()
    );
    let out = flow_agent(&["--log-level", "loud"])?;
    ensure!(
        out.status.code() == Some(EXIT_CONFIG)
            && out.stderr_str().contains("unknown log level \"loud\""),
        "{:?}",
        out.stderr_str()
    );
    Ok(())
}

#[test]
fn default_config_round_trips() -> Result<()> {
    let dir = TempDir::new("cfg-default")?;
    let out = flow_agent(&["config", "--default"])?;
    ensure!(
        out.status.success(),
        "config --default: {}",
        out.stderr_str()
    );
    let default = out.stdout_str();
    ensure!(
        default.contains("\n[capture]\n")
            && default.contains("\n[[outputs]]\n")
            && default.contains("# "),
        "not a commented file with every section:\n{default}"
    );
    let p = config_file(&dir, "default.toml", &default)?;
    let ps = p.display().to_string();
    let out = flow_agent(&["check-config", &ps])?;
    ensure!(
        out.status.success(),
        "check-config on the default: {}",
        out.stderr_str()
    );
    // The effective configuration of the default file is the built-in one (no file).
    let from_file = flow_agent(&["config", "--config", &ps])?;
    let builtin = flow_agent(&["config"])?;
    ensure!(
        from_file.status.success() && builtin.status.success(),
        "config: {} {}",
        from_file.stderr_str(),
        builtin.stderr_str()
    );
    ensure!(
        from_file.stdout_str() == builtin.stdout_str(),
        "default file:\n{}\nbuilt-in:\n{}",
        from_file.stdout_str(),
        builtin.stdout_str()
    );
    // Overrides show in the effective configuration.
    let over = flow_agent(&["config", "--output", "stdout:ecs", "--log-level", "debug"])?;
    let text = over.stdout_str();
    ensure!(
        text.contains("log_level = \"debug\"") && text.contains("format = \"ecs\""),
        "{text}"
    );
    Ok(())
}

/// An output with every kind of secret: basic authentication, credential headers, a token in
/// the URL's query. `SCHEME` and `PORT` are filled in.
const SECRETS: &str = r#"
[[outputs]]
name = "collector"
[outputs.http]
url = "SCHEME://127.0.0.1:PORT/in?access_token=qs-s3cret&tenant=blue"
user = "flow-writer"
password = "pw-s3cret"
headers = { "X-Api-Key" = "hdr-s3cret", "X-Scope-OrgID" = "org-s3cret" }
[outputs.http.delivery]
close_timeout = 0.5
"#;

const SECRET_VALUES: [&str; 4] = ["qs-s3cret", "pw-s3cret", "hdr-s3cret", "org-s3cret"];

fn secrets(scheme: &str, port: u16) -> String {
    SECRETS
        .replace("SCHEME", scheme)
        .replace("PORT", &port.to_string())
}

/// `flow-agent config` prints the effective configuration without its secrets: passwords,
/// every header value, secret-looking query values; names, users and the rest stay.
#[test]
fn config_prints_no_password_header_value_or_token() -> Result<()> {
    let dir = TempDir::new("cfg-redact")?;
    let p = config_file(&dir, "c.toml", &secrets("https", 8443))?;
    let out = flow_agent(&["config", "--config", &p.display().to_string()])?;
    let text = out.stdout_str();
    ensure!(out.status.success(), "config: {}", out.stderr_str());
    for secret in SECRET_VALUES {
        ensure!(
            !text.contains(secret) && !out.stderr_str().contains(secret),
            "{secret} printed:\n{text}"
        );
    }
    for shown in [
        "url = \"https://127.0.0.1:8443/in?access_token=<redacted>&tenant=blue\"",
        "user = \"flow-writer\"",
        "password = \"<redacted>\"",
        "X-Api-Key = \"<redacted>\"",
        "X-Scope-OrgID = \"<redacted>\"",
        "name = \"collector\"",
    ] {
        ensure!(text.contains(shown), "{shown:?} not in:\n{text}");
    }
    Ok(())
}

/// Credentials on an `http://` URL: check-config accepts the file (exit 0, `FILE: ok`) with
/// one warning line naming the output and each credential, never its value; `https://` gets
/// none.
#[test]
fn check_config_warns_about_credentials_sent_over_plain_http() -> Result<()> {
    let dir = TempDir::new("cfg-plain")?;
    let (code, stdout, stderr) = check_config(&dir, &secrets("http", 8080))?;
    let path = dir.path().join("c.toml");
    let want = format!(
        "flow-agent: warning: {}: outputs[0].http: INSECURE: credentials in clear text: the basic authentication password, header X-Api-Key, query parameter access_token sent to http://127.0.0.1:8080 unencrypted, readable and reusable by anyone on the network path; use an https:// url\n",
        path.display()
    );
    ensure!(
        code == Some(0) && stdout == format!("{}: ok\n", path.display()) && stderr == want,
        "exit {code:?}, stdout {stdout:?}, stderr:\n{stderr}want:\n{want}"
    );
    let (code, _, stderr) = check_config(&dir, &secrets("https", 8443))?;
    ensure!(
        code == Some(0) && stderr.is_empty(),
        "https: exit {code:?}, stderr {stderr}"
    );
    Ok(())
}

/// The same warning in the agent's log when it starts such an output.
#[test]
fn the_agent_warns_at_start_about_credentials_sent_over_plain_http() -> Result<()> {
    setup()?;
    let dir = TempDir::new("cfg-plain-run")?;
    // A port nothing listens on: the warning is about the configuration, not the collector.
    let port = unused_port()?;
    let p = config_file(&dir, "c.toml", &secrets("http", port))?;
    let agent = agent(&["--config", &p.display().to_string()])?;
    wait_stderr(&agent, "http sink: INSECURE: credentials in clear text", 1)?;
    let stderr = agent.stderr();
    ensure!(
        stderr.contains(&format!(
            "the basic authentication password, header X-Api-Key, query parameter access_token sent to http://127.0.0.1:{port} unencrypted"
        )),
        "{stderr}"
    );
    // Its log names the URL (start, delivery failures) without the token, and no other secret.
    for secret in SECRET_VALUES {
        ensure!(!stderr.contains(secret), "{secret} logged:\n{stderr}");
    }
    agent.stop()?;
    Ok(())
}

#[test]
fn help_and_version() -> Result<()> {
    let out = flow_agent(&["--help"])?;
    let help = out.stdout_str();
    for section in [
        "CONFIGURATION",
        "FILTERS",
        "SIGNALS",
        "EXIT STATUS",
        "EXAMPLES",
        "check-config",
        "--output <SINK[:TARGET][:FORMAT]>",
    ] {
        ensure!(help.contains(section), "--help lacks {section:?}:\n{help}");
    }
    ensure!(out.status.success());
    let out = flow_agent(&["version"])?;
    ensure!(
        out.status.success() && out.stdout_str().starts_with("flow-agent 0."),
        "{}",
        out.stdout_str()
    );
    Ok(())
}

/// Without --config, /etc/flow-agent/config.toml (here moved by FLOW_AGENT_DEFAULT_CONFIG,
/// which only tests set): check-config checks it, `config` shows it, --no-config ignores it.
#[test]
fn check_config_and_config_use_the_default_file_without_config() -> Result<()> {
    let dir = TempDir::new("cfg-default-file")?;
    let default = config_file(&dir, "config.toml", "[flows]\nupdate_interval = 7\n")?;
    let ds = default.display().to_string();

    let out = flow_agent_with_default(&["check-config"], &default)?;
    ensure!(
        out.status.code() == Some(0)
            && out.stdout_str() == format!("{ds}: ok\n")
            && out.stderr_str().is_empty(),
        "check-config without FILE: exit {:?}, stdout {:?}, stderr {:?}",
        out.status.code(),
        out.stdout_str(),
        out.stderr_str()
    );
    // --config still comes first, and a FILE before both.
    let other = config_file(&dir, "other.toml", "")?;
    let os = other.display().to_string();
    for args in [
        vec!["check-config", "--config", &os],
        vec!["check-config", &os],
    ] {
        let out = flow_agent_with_default(&args, &default)?;
        ensure!(
            out.status.success() && out.stdout_str() == format!("{os}: ok\n"),
            "{args:?}: {:?} {:?}",
            out.stdout_str(),
            out.stderr_str()
        );
    }

    let effective = |args: &[&str], default: &Path| -> Result<String> {
        let out = flow_agent_with_default(args, default)?;
        ensure!(out.status.success(), "{args:?}: {}", out.stderr_str());
        Ok(out.stdout_str())
    };
    ensure!(
        effective(&["config"], &default)?.contains("\nupdate_interval = 7\n"),
        "config without --config does not show the default file"
    );
    let builtin = effective(&["config"], Path::new(ABSENT_DEFAULT_CONFIG))?;
    ensure!(builtin.contains("\nupdate_interval = 60\n"), "{builtin}");
    ensure!(
        effective(&["config", "--no-config"], &default)? == builtin,
        "--no-config still read the default file"
    );
    ensure!(
        effective(&["config", "--config", &os], &default)? == builtin,
        "--config did not replace the default file"
    );

    // A default file that is wrong is an error, not a silent fallback to the built-in defaults.
    std::fs::write(&default, "[flows]\nupdate_interval = \"soon\"\n")?;
    for args in [vec!["check-config"], vec!["config"], vec!["run"]] {
        let out = flow_agent_with_default(&args, &default)?;
        ensure!(
            out.status.code() == Some(EXIT_CONFIG)
                && out.stderr_str().starts_with(&format!(
                    "flow-agent: error: {ds}:2:19: flows.update_interval: invalid type"
                )),
            "{args:?} on an invalid default file: exit {:?}, stderr {:?}",
            out.status.code(),
            out.stderr_str()
        );
    }
    // check-config without FILE and without a default file: nothing to check.
    let out = flow_agent(&["check-config"])?;
    ensure!(
        out.status.code() == Some(EXIT_CONFIG)
            && out.stderr_str()
                == format!("flow-agent: error: {ABSENT_DEFAULT_CONFIG}: cannot read the configuration file: No such file or directory (os error 2)\n"),
        "check-config without any file: {:?}",
        out.stderr_str()
    );
    let out = flow_agent_with_default(&["check-config", "--no-config"], &default)?;
    ensure!(
        out.status.code() == Some(EXIT_CONFIG)
            && out
                .stderr_str()
                .contains("check-config with --no-config needs a file"),
        "check-config --no-config: {:?}",
        out.stderr_str()
    );
    let out = flow_agent(&["config", "--config", &os, "--no-config"])?;
    ensure!(
        out.status.code() == Some(EXIT_CONFIG) && out.stderr_str().contains("cannot be used with"),
        "--config with --no-config: {:?}",
        out.stderr_str()
    );
    Ok(())
}

/// `flow-agent run` without --config runs with the default file, says so, and reloads it on
/// SIGHUP.
#[test]
fn the_agent_runs_and_reloads_the_default_file_without_config() -> Result<()> {
    setup()?;
    let dir = TempDir::new("cfg-default-run")?;
    let default = config_file(&dir, "config.toml", "[health]\nstats_interval = 1\n")?;
    let agent = Cmd::host(&Agent::binary()?.display().to_string())
        .arg("run")
        .env(DEFAULT_CONFIG_ENV, &default)
        .spawn()?;
    let wait = |what: &str, pred: &dyn Fn(&Spawned) -> bool| -> Result<()> {
        let deadline =
            std::time::Instant::now() + flow_agent_tests::slowed(Duration::from_secs(60));
        while !pred(&agent) {
            ensure!(
                std::time::Instant::now() < deadline,
                "{what}: not within 60 s\nstderr:\n{}",
                agent.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    };
    wait("ready", &|a| a.stderr_so_far().contains("flow-agent ready"))?;
    let said = format!(
        "configuration file {} (the default: no --config given",
        default.display()
    );
    ensure!(
        agent.stderr_so_far().contains(&said),
        "the log does not say which file:\n{}",
        agent.stderr_so_far()
    );
    // The file's stats_interval (the built-in one is 60 s).
    wait("a stats event", &|a| {
        a.stdout_so_far().contains("\"event_action\":\"stats\"")
    })?;
    write_atomically(&default, "[health]\nstats_interval = 0\n")?;
    agent.signal(libc::SIGHUP)?;
    wait("the reload", &|a| {
        a.stderr_so_far().contains("configuration reloaded")
    })?;
    agent.signal(libc::SIGTERM)?;
    let out = agent.wait(Duration::from_secs(30))?;
    ensure!(
        out.status.success(),
        "exit {}: {}",
        out.status,
        out.stderr_str()
    );
    Ok(())
}

/// Server: accepts on every port given, reads each connection to EOF, replies, closes.
const SERVER: &str = r#"
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], port)); s.listen(16)
    while True:
        c, _ = s.accept()
        def one(c):
            while c.recv(65536): pass
            c.sendall(b"ok"); c.close()
        threading.Thread(target=one, args=(c,), daemon=True).start()
for p in sys.argv[2:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
print("listening", flush=True)
threading.Event().wait()
"#;

/// Client: connects, prints its local port, sends a line, then closes, at once or (to hold
/// the connection) once the file given as third argument exists. Args: address, port, file.
const CLIENT: &str = r#"
import os, socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
print("port", c.getsockname()[1], flush=True)
c.sendall(b"hello\n")
while len(sys.argv) > 3 and not os.path.exists(sys.argv[3]):
    time.sleep(0.05)
c.shutdown(socket.SHUT_WR)
while c.recv(100): pass
c.close()
print("done", flush=True)
"#;

/// One connection that closes at once; returns the client's port.
fn connect(client: &TestHost, server: &str, port: u16) -> Result<u16> {
    let p = spawn_py(client, CLIENT, &[server.into(), port.to_string()])?;
    let out = finish(p, Duration::from_secs(20))?;
    Ok(value_after(&out, "port")? as u16)
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, path).context("replacing the configuration")
}

fn sighup(agent: &Agent) -> Result<()> {
    // SAFETY: kill(2) on the agent's pid, a child the harness has not reaped.
    ensure!(unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) } == 0);
    Ok(())
}

/// Waits until stderr has `n` lines containing `text`.
fn wait_stderr(agent: &Agent, text: &str, n: usize) -> Result<()> {
    let deadline = std::time::Instant::now() + flow_agent_tests::slowed(Duration::from_secs(20));
    loop {
        let err = agent.stderr();
        if err.lines().filter(|l| l.contains(text)).count() >= n {
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "no {text:?} (x{n}) on the agent's stderr:\n{err}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The flows the test made: events to the server's address, by flow.
fn flows_to(events: &[Value], server: &str, port: u16, direction: &str) -> Vec<Vec<Value>> {
    let want = [
        ("dest_ip", json!(server)),
        ("dest_port", json!(port)),
        ("network_direction", json!(direction)),
    ];
    by_flow(events.iter().filter(|e| has(e, &want)))
        .into_values()
        .collect()
}

const CONFIG_V1: &str = r#"
[flows]
update_interval = 600
[filter]
include = [{ remote_cidr = "SERVER/32" }, { local_cidr = "SERVER/32" }]
exclude = [{ remote_port = 9502 }]
"#;

/// After the reload: 9503 excluded instead of 9502, updates every second, the test networks
/// no longer local, debug logs; a kernel table size that only a restart can change.
const CONFIG_V2: &str = r#"
[agent]
log_level = "debug"
[flows]
update_interval = 1
[capture]
udp_flows = 32768
[enrich]
local_networks = ["192.0.2.0/24"]
[filter]
include = [{ remote_cidr = "SERVER/32" }, { local_cidr = "SERVER/32" }]
exclude = [{ remote_port = 9503 }]
[[outputs]]
format = "native"
[outputs.stdout]
"#;

const CONFIG_BROKEN: &str = r#"
[filter]
exclude = [{ remote_cidr = "10.0.0/8" }]
"#;

#[test]
fn sighup_reloads_filters_timings_and_enrichment_without_losing_flows() -> Result<()> {
    setup()?;
    let dir = TempDir::new("cfg-reload")?;
    let (client, server) = TestHost::pair()?;
    let saddr = server.ns_addr_v4().to_string();
    let cfg = config_file(&dir, "c.toml", &CONFIG_V1.replace("SERVER", &saddr))?;
    let agent = agent(&["--config", &cfg.display().to_string()])?;
    let srv = spawn_py(
        &server,
        SERVER,
        &[saddr.clone(), "9501".into(), "9502".into(), "9503".into()],
    )?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;

    // A connection that stays open across the reload.
    let release = dir.path().join("release-held-connection");
    let held: Spawned = spawn_py(
        &client,
        CLIENT,
        &[saddr.clone(), "9501".into(), release.display().to_string()],
    )?;
    let held_port = value_after(
        &wait_for_line(&held, "port", Duration::from_secs(10))?,
        "port",
    )? as u16;
    let before_9502 = connect(&client, &saddr, 9502)?;
    let before_9503 = connect(&client, &saddr, 9503)?;
    // Their server sides pass (remote port is the client's): once they ended, all was seen.
    for port in [9502, 9503] {
        agent.wait_for(
            |e| {
                has(
                    e,
                    &[
                        ("dest_port", json!(port)),
                        ("network_direction", json!("inbound")),
                        ("event_action", json!("end")),
                    ],
                )
            },
            EVENT_TIMEOUT,
        )?;
    }

    write_atomically(&cfg, &CONFIG_V2.replace("SERVER", &saddr))?;
    sighup(&agent)?;
    wait_stderr(&agent, "configuration reloaded", 1)?;
    let after_9502 = connect(&client, &saddr, 9502)?;
    let after_9503 = connect(&client, &saddr, 9503)?;
    // The held flow now reports every second.
    agent.wait_for(
        |e| {
            has(
                e,
                &[
                    ("src_port", json!(held_port)),
                    ("event_action", json!("update")),
                ],
            )
        },
        EVENT_TIMEOUT,
    )?;

    // An invalid file: rejected, the previous one stays in force.
    write_atomically(&cfg, CONFIG_BROKEN)?;
    sighup(&agent)?;
    wait_stderr(&agent, "the previous one stays in force", 1)?;
    let broken_9502 = connect(&client, &saddr, 9502)?;
    let broken_9503 = connect(&client, &saddr, 9503)?;
    std::fs::write(&release, "")?;
    finish(held, Duration::from_secs(20))?;
    for port in [after_9502, broken_9502, held_port] {
        agent.wait_for(
            |e| {
                has(
                    e,
                    &[
                        ("src_port", json!(port)),
                        ("network_direction", json!("outbound")),
                        ("event_action", json!("end")),
                    ],
                )
            },
            EVENT_TIMEOUT,
        )?;
    }
    let stderr = agent.stderr();
    let events = agent.stop()?;

    let error = stderr
        .lines()
        .find(|l| l.contains("the previous one stays in force"))
        .unwrap_or_default();
    ensure!(
        error.starts_with("level=error ")
            && error.contains(&format!(
                "{}:3:28: filter.exclude[0].remote_cidr: \\\"10.0.0/8\\\" is not a CIDR",
                cfg.display()
            )),
        "the rejected reload's error names file, line, key: {error}"
    );
    ensure!(
        stderr.lines().any(|l| l.starts_with("level=debug ")),
        "log_level = debug took effect"
    );
    ensure!(
        stderr.lines().any(|l| l.starts_with("level=warn ")
            && l.contains("[capture] changed")
            && l.contains("restart the agent")),
        "a changed [capture] is reported as needing a restart:\n{stderr}"
    );

    // Outbound (client) flows: which local ports appear, phase by phase.
    let client_ports = |port: u16| -> Vec<u64> {
        let mut v: Vec<u64> = flows_to(&events, &saddr, port, "outbound")
            .iter()
            .map(|f| f[0]["src_port"].as_u64().unwrap_or(0))
            .collect();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<u64>| {
        v.sort();
        v
    };
    ensure!(
        client_ports(9502) == sorted(vec![u64::from(after_9502), u64::from(broken_9502)]),
        "9502: excluded before the reload only (before {before_9502}): {:?}",
        client_ports(9502)
    );
    ensure!(
        client_ports(9503) == vec![u64::from(before_9503)],
        "9503: excluded after the reload ({after_9503}) and still after the rejected one ({broken_9503}): {:?}",
        client_ports(9503)
    );
    // Server sides: all six short connections and the held one, each a whole flow.
    for port in [9501, 9502, 9503] {
        let flows = flows_to(&events, &saddr, port, "inbound");
        ensure!(
            flows.len() == if port == 9501 { 1 } else { 3 },
            "{port}: {} inbound flows",
            flows.len()
        );
    }
    // Every flow that appears is whole: one start, one end; the held one spans the reload.
    for port in [9501, 9502, 9503] {
        for dir in ["outbound", "inbound"] {
            for f in flows_to(&events, &saddr, port, dir) {
                let actions: Vec<&str> = f
                    .iter()
                    .map(|e| e["event_action"].as_str().unwrap_or(""))
                    .collect();
                ensure!(
                    actions.first() == Some(&"start")
                        && actions.last() == Some(&"end")
                        && actions.iter().filter(|a| **a == "start").count() == 1
                        && actions.iter().filter(|a| **a == "end").count() == 1,
                    "{port} {dir}: {actions:?}"
                );
            }
        }
    }
    let held_flow = flows_to(&events, &saddr, 9501, "outbound");
    ensure!(held_flow.len() == 1, "held flow: {held_flow:?}");
    let f = &held_flow[0];
    ensure!(
        f[0]["network_locality"] == "internal"
            && f.last().unwrap()["network_locality"] == "external"
            && f.iter().any(|e| e["event_action"] == "update"),
        "held flow: internal before the reload, external after, updates once they were due: {f:?}"
    );
    let after = &flows_to(&events, &saddr, 9502, "outbound")[0];
    ensure!(after[0]["network_locality"] == "external", "{after:?}");
    ensure_no_losses_in(&stderr)
}

/// A syslog collector on loopback: counts the connections made to it and keeps what they
/// sent.
struct Collector {
    port: u16,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    received: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Collector {
    fn start() -> Result<Self> {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (n, r) = (connections.clone(), received.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(len) = stream.read(&mut buf) {
                        if len == 0 {
                            break;
                        }
                        r.lock().unwrap().extend_from_slice(&buf[..len]);
                    }
                });
            }
        });
        Ok(Self {
            port,
            connections,
            received,
        })
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until a record of the flow from local port `port` to the server ended arrived.
    fn wait_end_of(&self, port: u16) -> Result<()> {
        let want = [
            format!("\"src_port\":{port},"),
            "\"event_action\":\"end\"".to_string(),
        ];
        let deadline = std::time::Instant::now() + flow_agent_tests::slowed(EVENT_TIMEOUT);
        loop {
            let got = String::from_utf8_lossy(&self.received.lock().unwrap()).to_string();
            if got
                .split("flow-agent")
                .any(|m| want.iter().all(|w| m.contains(w.as_str())))
            {
                return Ok(());
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "the collector got no end of the flow from port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The reload tests' outputs: native on stdout and to a syslog collector (`SIEM_BUFFER`: its
/// disk buffer directory), plus `EXTRA`.
const OUTPUTS: &str = r#"
[health]
stats_interval = 1
[filter]
include = [{ remote_cidr = "SERVER/32" }, { local_cidr = "SERVER/32" }]
[[outputs]]
name = "events"
[outputs.stdout]
[[outputs]]
name = "siem"
[outputs.syslog]
transport = "tcp"
address = "127.0.0.1:COLLECTOR"
[outputs.syslog.delivery]
buffer_dir = "SIEM_BUFFER"
backoff_initial = 0.1
backoff_max = 1
EXTRA
"#;

/// The report of output `name` in a stats event.
fn sink_report<'a>(stats: &'a Value, name: &str) -> Option<&'a Value> {
    stats["sinks"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

#[test]
fn a_reload_whose_outputs_cannot_start_leaves_the_running_outputs_uninterrupted() -> Result<()> {
    setup()?;
    let dir = TempDir::new("cfg-reload-fail")?;
    let (client, server) = TestHost::pair()?;
    let saddr = server.ns_addr_v4().to_string();
    let collector = Collector::start()?;
    // Where a file output cannot write: a directory. The configuration is valid (its
    // directory exists and is safe); only opening the file fails.
    let not_a_file = dir.path().join("a-directory");
    std::fs::create_dir(&not_a_file)?;
    let config = |siem_buffer: &str, extra: &str| {
        OUTPUTS
            .replace("SERVER", &saddr)
            .replace("COLLECTOR", &collector.port.to_string())
            .replace(
                "SIEM_BUFFER",
                &dir.path().join(siem_buffer).display().to_string(),
            )
            .replace("EXTRA", extra)
    };
    let unwritable = format!(
        "[[outputs]]\nname = \"archive\"\n[outputs.file]\npath = \"{}\"\n",
        not_a_file.display()
    );
    let cfg = config_file(&dir, "c.toml", &config("buf-siem", ""))?;
    let agent = agent(&["--config", &cfg.display().to_string()])?;
    let srv = spawn_py(&server, SERVER, &[saddr.clone(), "9511".into()])?;
    wait_for_line(&srv, "listening", Duration::from_secs(10))?;
    let ended = |port: u16| {
        agent.wait_for(
            |e| {
                has(
                    e,
                    &[
                        ("src_port", json!(port)),
                        ("network_direction", json!("outbound")),
                        ("event_action", json!("end")),
                    ],
                )
            },
            EVENT_TIMEOUT,
        )
    };

    let before = connect(&client, &saddr, 9511)?;
    ended(before)?;
    collector.wait_end_of(before)?;
    ensure!(collector.connections() == 1);

    // 1. New outputs that cannot start, none in the way of the running ones (the syslog
    // output's disk buffer is another directory): the running outputs are not touched.
    write_atomically(&cfg, &config("buf-siem-new", &unwritable))?;
    sighup(&agent)?;
    wait_stderr(&agent, "the previous one stays in force", 1)?;
    let after_failed = connect(&client, &saddr, 9511)?;
    ended(after_failed)?;
    collector.wait_end_of(after_failed)?;
    ensure!(
        collector.connections() == 1,
        "the running syslog output was closed and opened again: {} connections",
        collector.connections()
    );
    wait_stats_after(&agent, agent.event_count())?;

    // 2. The new syslog output wants the running one's disk buffer directory: that one
    // closes first, and since the new outputs cannot start, starts again (a new connection).
    write_atomically(&cfg, &config("buf-siem", &unwritable))?;
    sighup(&agent)?;
    wait_stderr(&agent, "the previous one stays in force", 2)?;
    let after_shared = connect(&client, &saddr, 9511)?;
    ended(after_shared)?;
    collector.wait_end_of(after_shared)?;
    ensure!(
        collector.connections() == 2,
        "{} connections",
        collector.connections()
    );
    wait_stats_after(&agent, agent.event_count())?;

    // 3. A valid reload with the same directory: the old output closes first, the new one
    // takes its buffer and connection's place.
    let before_good_reload = agent.event_count();
    write_atomically(&cfg, &config("buf-siem", ""))?;
    sighup(&agent)?;
    wait_stderr(&agent, "configuration reloaded", 1)?;
    let after_good = connect(&client, &saddr, 9511)?;
    ended(after_good)?;
    collector.wait_end_of(after_good)?;
    ensure!(
        collector.connections() == 3,
        "{} connections",
        collector.connections()
    );
    let stderr = agent.stderr();
    let events = agent.stop()?;

    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("the previous one stays in force"))
        .collect();
    ensure!(errors.len() == 2, "{errors:?}");
    for e in &errors {
        ensure!(
            e.starts_with("level=error ")
                && e.contains(&format!(
                    "outputs.file.path: cannot open {}",
                    not_a_file.display()
                )),
            "the rejected reload names the output that failed: {e}"
        );
    }
    // Every flow, on stdout, whole.
    for port in [before, after_failed, after_shared, after_good] {
        let flows = flows_to(&events, &saddr, 9511, "outbound");
        let f = flows
            .iter()
            .find(|f| f[0]["src_port"] == port)
            .with_context(|| format!("no flow from port {port} on stdout"))?;
        ensure!(
            f.first().unwrap()["event_action"] == "start"
                && f.last().unwrap()["event_action"] == "end",
            "{f:?}"
        );
    }
    // The stdout output ran from start to the good reload without a restart: in every stats
    // event before it, its `accepted` is exactly the flow events printed before (a restarted
    // output counts from zero again).
    let mut flows_before = 0u64;
    let mut checked = Vec::new();
    for e in &events[..before_good_reload] {
        if e["event_action"] != "stats" {
            flows_before += 1;
            continue;
        }
        let accepted = sink_report(e, "events")
            .and_then(|s| s["accepted"].as_u64())
            .context("stats without the events output")?;
        ensure!(
            accepted == flows_before,
            "accepted {accepted}, {flows_before} flow events printed before: {e}"
        );
        checked.push(accepted);
    }
    // Three connections before it, each two flows (client and server side) of at least a
    // start and an end.
    ensure!(
        checked.len() >= 2 && checked.last() >= Some(&12),
        "stats events before the good reload: accepted {checked:?}"
    );
    Ok(())
}

/// Waits for a stats event printed at index `from` or later.
fn wait_stats_after(agent: &Agent, from: usize) -> Result<()> {
    let deadline = std::time::Instant::now() + flow_agent_tests::slowed(EVENT_TIMEOUT);
    while !agent
        .events_since(from)
        .iter()
        .any(|e| e["event_action"] == "stats")
    {
        ensure!(
            std::time::Instant::now() < deadline,
            "no stats event after event {from}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[test]
fn logs_go_to_the_journal_when_configured() -> Result<()> {
    use std::os::unix::net::UnixDatagram;
    setup()?;
    let dir = TempDir::new("cfg-journal")?;
    let socket = dir.path().join("journal.sock");
    let journal = UnixDatagram::bind(&socket)?;
    journal.set_read_timeout(Some(flow_agent_tests::slowed(Duration::from_secs(60))))?;
    let cfg = config_file(&dir, "c.toml", "[agent]\nlog_target = \"journald\"\n")?;
    let agent = Cmd::host(&Agent::binary()?.display().to_string())
        .args(["run", "--config", &cfg.display().to_string()])
        .env("FLOW_AGENT_JOURNAL_SOCKET", &socket)
        .spawn()?;
    let mut entries: Vec<String> = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !entries
        .iter()
        .any(|e| e.contains("MESSAGE=flow-agent ready"))
    {
        let n = journal.recv(&mut buf).with_context(|| {
            format!(
                "no ready entry in the journal; entries so far: {entries:#?}\nstderr: {}",
                agent.stderr_so_far()
            )
        })?;
        entries.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    agent.signal(libc::SIGTERM)?;
    let out = agent.wait(Duration::from_secs(30))?;
    ensure!(
        out.status.success(),
        "agent exit {}: {}",
        out.status,
        out.stderr_str()
    );
    while let Ok(n) = journal.recv(&mut buf) {
        entries.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        if entries
            .last()
            .is_some_and(|e| e.contains("MESSAGE=shut down"))
        {
            break;
        }
    }
    let ready = entries
        .iter()
        .find(|e| e.contains("MESSAGE=flow-agent ready"))
        .context("ready entry")?;
    let fields: Vec<&str> = ready.lines().collect();
    for want in [
        "PRIORITY=6",
        "SYSLOG_IDENTIFIER=flow-agent",
        "LEVEL=info",
        "TARGET=flow_agent::runtime",
    ] {
        ensure!(fields.contains(&want), "{want} missing from {fields:?}");
    }
    ensure!(
        entries
            .iter()
            .any(|e| e.contains("MESSAGE=shut down: every open flow reported as ended")),
        "shutdown entry missing: {entries:#?}"
    );
    ensure!(
        !out.stderr_str().contains("level="),
        "log lines on stderr with the journal as target:\n{}",
        out.stderr_str()
    );
    ensure!(
        out.stdout_str().lines().all(|l| l.starts_with('{')),
        "stdout has non-event lines"
    );
    Ok(())
}

/// The TOML blocks a reader copies: the README's example and docs/install.md's (between its
/// `install-example` markers), with their log directory moved to a temporary one.
#[test]
fn documented_examples_pass_check_config() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    let install = std::fs::read_to_string(root.join("docs/install.md"))?;
    let install = install
        .split("<!-- install-example -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- /install-example -->").next())
        .context("docs/install.md has no install-example block")?;
    let dir = TempDir::new("ftdocs")?;
    for (doc, text) in [("README.md", readme.as_str()), ("docs/install.md", install)] {
        let block = toml_block(text).with_context(|| format!("no ```toml block in {doc}"))?;
        let block = block.replace("/var/log/flow-agent", &dir.path().display().to_string());
        let (code, stdout, stderr) = check_config(&dir, &block)?;
        ensure!(
            code == Some(0),
            "{doc}'s example fails check-config (exit {code:?}): {stdout}{stderr}\n{block}"
        );
    }
    Ok(())
}

/// The first ```toml fenced block of a Markdown text.
fn toml_block(markdown: &str) -> Option<String> {
    let start = markdown.find("```toml\n")? + "```toml\n".len();
    let len = markdown[start..].find("```")?;
    Some(markdown[start..start + len].to_string())
}
