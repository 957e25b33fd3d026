//! Secrets out of the configuration file: the password as a systemd credential (a name in
//! `$CREDENTIALS_DIRECTORY`, as `LoadCredential=` provides it) and a header value from a file;
//! the collector receives them, the log and `flow-agent config` never show them.
use super::*;

#[test]
fn password_from_a_credential_and_a_header_from_a_file_reach_the_collector() -> Result<()> {
    setup()?;
    let receiver = Receiver::start(json!({}))?;
    let dir = TempDir::new("http-secrets")?;
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds)?;
    std::fs::write(creds.join("collector-password"), "changeme\n")?;
    let key_file = dir.write("api-key", "file-key-4242\n")?;
    let http = format!(
        r#"
[[outputs]]
name = "collector"
[outputs.http]
url = "http://127.0.0.1:{}/ingest"
user = "elastic"
password_file = "collector-password"
header_files = {{ "X-Api-Key" = "{}" }}
{}
"#,
        receiver.port,
        key_file.display(),
        delivery(&dir, "collector")
    );
    let config = dir.write(
        "agent.toml",
        format!("[health]\nmetrics_listen = \"\"\n\n[[outputs]]\nname = \"events\"\n[outputs.stdout]\n{http}"),
    )?;
    // What systemd does with LoadCredential=: the directory in the agent's environment.
    let agent = Agent::start_with_env(
        &["--config", &config.display().to_string()],
        &[("CREDENTIALS_DIRECTORY", &creds.display().to_string())],
    )?;
    let events = make_flows(&agent, &TestHost::new()?, 9407)?;
    wait_taken(&receiver, &events)?;
    for r in receiver.requests()? {
        let h = &r["headers"];
        // base64("elastic:changeme"): the final newline of the credential is not sent.
        ensure!(
            h["authorization"] == "Basic ZWxhc3RpYzpjaGFuZ2VtZQ==",
            "{h}"
        );
        ensure!(h["x-api-key"] == "file-key-4242", "{h}");
    }
    let stderr = agent.stderr();
    ensure!(
        !stderr.contains("changeme") && !stderr.contains("file-key-4242"),
        "a secret reached the log"
    );
    agent.stop()?;

    // Without the credentials directory the output is refused, naming the option.
    let err = refused_config(&config)?;
    ensure!(
        err.contains("password_file") && err.contains("CREDENTIALS_DIRECTORY"),
        "{err}"
    );
    Ok(())
}
