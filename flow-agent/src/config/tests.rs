use std::path::Path;

use super::*;
use crate::encode::Format;

fn problems(text: &str) -> Vec<String> {
    match parse(text, Path::new("c.toml")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.lines(),
    }
}

fn one(text: &str) -> String {
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:#?}");
    p[0].clone()
}

#[test]
fn empty_file_is_the_default() {
    assert_eq!(parse("", Path::new("c.toml")).unwrap(), Config::default());
}

#[test]
fn default_toml_parses_back_to_the_defaults() {
    let text = default_toml();
    assert_eq!(
        parse(&text, Path::new("d.toml")).unwrap(),
        Config::default()
    );
    assert!(text.contains("# error, warn, info, debug or trace"));
    assert!(text.contains("\n[capture]\n"), "{text}");
    assert!(text.contains("[[outputs]]"));
}

#[test]
fn unknown_key_names_its_line_and_table() {
    assert_eq!(
        one("[flows]\nupdate_interval = 5\nudp_timeout = 3\n"),
        "c.toml:3:1: flows.udp_timeout: unknown field `udp_timeout`, expected one of `update_interval`, `udp_idle_timeout`, `accept_wait`"
    );
    assert!(one("[agnet]\n").starts_with("c.toml:1:2: agnet: unknown field `agnet`"));
}

#[test]
fn wrong_type_says_what_is_expected() {
    assert_eq!(
        one("[enrich]\ncommunity_id_seed = \"x\"\n"),
        "c.toml:2:21: enrich.community_id_seed: invalid type: string \"x\", expected u16"
    );
    assert_eq!(
        one("[enrich]\ndns_events = 1\n"),
        "c.toml:2:14: enrich.dns_events: invalid type: integer `1`, expected a boolean"
    );
    assert_eq!(
        one("[flows]\naccept_wait = -1\n"),
        "c.toml:2:15: flows.accept_wait: -1 is not a duration (expected a number of seconds from 0 to 31536000)"
    );
}

#[test]
fn bad_cidr_in_an_output_filter() {
    let text = r#"
[[outputs]]
[outputs.stdout]

[[outputs]]
format = "ecs"
[outputs.file]
path = "/x.json"
[outputs.filter]
exclude = [
  { remote_port = 53 },
  { remote_cidr = "10.0.0/8" },
]
"#;
    assert_eq!(
        one(text),
        "c.toml:12:19: outputs[1].filter.exclude[1].remote_cidr: \"10.0.0/8\" is not a CIDR (expected e.g. 10.0.0.0/8 or fd00::/8): bad address"
    );
}

#[test]
fn syntax_errors_have_a_position() {
    assert_eq!(
        one("[agent\nlog_level = 1\n"),
        "c.toml:1:7: invalid table header: expected `.`, `]`"
    );
}

#[test]
fn outputs_need_exactly_one_sink() {
    assert_eq!(
        one("[[outputs]]\nformat = \"ecs\"\n"),
        "c.toml:1:1: outputs[0]: an output needs one sink table: stdout, file, syslog or http (expected e.g. [outputs.stdout] under this [[outputs]])"
    );
    let two = one("[[outputs]]\n[outputs.stdout]\n[outputs.file]\npath = \"/tmp/f\"\n");
    assert!(
        two.starts_with(
            "c.toml:1:1: outputs[0]: an output has one sink, this one has stdout and file"
        ),
        "{two}"
    );
}

#[test]
fn every_semantic_problem_is_reported() {
    let text = r#"
[flows]
update_interval = 0.5
[capture]
ring_buffer_bytes = 5000
[filter]
include = [{}]
[[outputs]]
name = "a"
[outputs.stdout]
[[outputs]]
name = "a"
[outputs.stdout]
[[outputs]]
format = "sysmon"
[outputs.http]
url = "http://127.0.0.1:1/"
[[outputs]]
[outputs.file]
path = "/nonexistent-dir/flows.json"
[[outputs]]
[outputs.file]
path = "relative.json"
"#;
    let p = problems(text);
    let want = [
        "c.toml:3:1: flows.update_interval: 0.5 is too short (expected at least 1 second)",
        "c.toml:5:1: capture.ring_buffer_bytes: 5000 is not usable",
        "c.toml:7:12: filter.include[0]: a rule without conditions would match every flow",
        "c.toml:12:1: outputs[1].name: \"a\" is already the name of outputs[0]",
        "c.toml:13:10: outputs[1].stdout: outputs[0] already writes to stdout",
        "c.toml:15:1: outputs[2].format: sysmon records are not JSON",
        "c.toml:20:1: outputs[3].file.path: directory /nonexistent-dir does not exist",
        "c.toml:23:1: outputs[4].file.path: \"relative.json\" is a relative path",
    ];
    assert_eq!(p.len(), want.len(), "{p:#?}");
    for (got, want) in p.iter().zip(want) {
        assert!(
            got.starts_with(want),
            "{got}\n  does not start with\n{want}"
        );
    }
}

#[test]
fn directories_others_could_write_in_or_links_are_refused() {
    let base = std::env::temp_dir().join(format!("flow-agent-cfg-dirs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let shared = base.join("shared");
    let link = base.join("link");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::set_permissions(
        &shared,
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    std::os::unix::fs::symlink(&base, &link).unwrap();
    let text = format!(
        "[[outputs]]\n[outputs.file]\npath = \"{0}/e.json\"\n\
         [[outputs]]\n[outputs.http]\nurl = \"http://127.0.0.1:1/\"\n[outputs.http.delivery]\nbuffer_dir = \"{0}\"\n\
         [[outputs]]\n[outputs.syslog]\naddress = \"127.0.0.1:1\"\n[outputs.syslog.delivery]\nbuffer_dir = \"{1}\"\n",
        shared.display(),
        link.display()
    );
    let p = problems(&text);
    let mode = format!(
        "directory {0}: mode 1777 lets its group and all users create files in it (expected no write permission for group and others; chmod go-w {0})",
        shared.display()
    );
    assert_eq!(
        p,
        [
            format!("c.toml:3:1: outputs[0].file.path: {mode}"),
            format!("c.toml:8:1: outputs[1].http.delivery.buffer_dir: {mode}"),
            format!(
                "c.toml:13:1: outputs[2].syslog.delivery.buffer_dir: directory {} is a symbolic link (expected the real path)",
                link.display()
            ),
        ]
    );
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn values_reach_the_flow_table() {
    let cfg = parse(
        r#"
[flows]
update_interval = 5
udp_idle_timeout = 2.5
accept_wait = 0
[enrich]
local_networks = "192.0.2.0/24"
community_id_seed = 7
dns_events = true
[[outputs]]
format = "ocsf"
[outputs.stdout]
"#,
        Path::new("c.toml"),
    )
    .unwrap();
    let t = cfg.flow_table_config();
    assert_eq!(t.update_interval.as_secs(), 5);
    assert_eq!(t.udp_idle_timeout.as_millis(), 2500);
    assert!(t.accept_wait.is_zero());
    assert_eq!(t.community_id_seed, 7);
    let e = cfg.enrich_config(Default::default());
    assert_eq!(e.local_networks.len(), 1);
    assert!(e.local_networks[0].contains("192.0.2.9".parse().unwrap()));
    assert!(e.dns_events);
    assert!(
        !Config::default()
            .enrich_config(Default::default())
            .dns_events
    );
    assert_eq!(cfg.outputs[0].format, Format::Ocsf);
    // The effective configuration prints and parses back.
    assert_eq!(parse(&cfg.to_toml(), Path::new("e.toml")).unwrap(), cfg);
}

/// Leaf key paths of a TOML table (array tables without their index).
fn leaf_keys(t: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in t {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) if !t.is_empty() => leaf_keys(t, &path, out),
            toml::Value::Array(a) if a.iter().all(toml::Value::is_table) && !a.is_empty() => {
                for t in a.iter().filter_map(toml::Value::as_table) {
                    leaf_keys(t, &path, out);
                }
            }
            _ => out.push(path),
        }
    }
}

fn doc(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_option_is_documented() {
    let table: toml::Table = toml::from_str(&Config::default().to_toml()).unwrap();
    let mut keys = Vec::new();
    leaf_keys(&table, "", &mut keys);
    // Keys a default leaves out (no value) are documented all the same.
    keys.push("outputs.name".into());
    let text = doc("configuration.md");
    let mut missing = Vec::new();
    for key in &keys {
        let (section, leaf) = key.rsplit_once('.').unwrap_or(("", key));
        let heading = format!("## `[{}]`", section.split('.').next().unwrap_or(""));
        let heading = if section.starts_with("outputs") {
            "## `[[outputs]]`".to_string()
        } else {
            heading
        };
        let Some(at) = text.find(&heading) else {
            missing.push(format!("{key} (no section {heading})"));
            continue;
        };
        let body = &text[at..];
        let body = &body[..body[3..].find("\n## ").map_or(body.len(), |i| i + 3)];
        // A key, or a (sink) table documented by its header.
        if !body.contains(&format!("`{leaf}`")) && !body.contains(&format!("`[{key}]`")) {
            missing.push(key.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks {missing:?}"
    );
}

#[test]
fn every_filter_condition_is_documented() {
    let all: crate::filter::Rule = toml::from_str(
        r#"
        remote_cidr = "10.0.0.0/8"
        local_cidr = "10.0.0.0/8"
        remote_port = 1
        local_port = 1
        transport = "tcp"
        direction = "inbound"
        exe = "x"
        process_name = "x"
        user = "x"
        container_id = "ab"
        cgroup = "/"
        "#,
    )
    .unwrap();
    let text = doc("filters.md");
    for name in all.condition_names() {
        assert!(
            text.contains(&format!("| `{name}` |")),
            "docs/filters.md lacks {name}"
        );
    }
    assert_eq!(all.condition_names().len(), 11);
}

#[test]
fn rate_limit_problems_name_their_key() {
    assert_eq!(
        one("[rate_limit]\nenabled = true\nper_process_burst = 0\n"),
        "c.toml:3:1: rate_limit.per_process_burst: 0 admits no flow at all (expected at least 1 while the rate is not 0)"
    );
    assert_eq!(
        one("[rate_limit]\nsummary_interval = 0.5\n"),
        "c.toml:2:1: rate_limit.summary_interval: 0.5 is out of range (expected 1 to 3600 seconds)"
    );
    let ok = parse(
        "[rate_limit]\nenabled = true\nper_process_rate = 2.5\nglobal_rate = 50\n",
        Path::new("c.toml"),
    )
    .unwrap();
    assert!(ok.rate_limit.enabled && ok.rate_limit.global().is_on());
}

#[test]
fn the_printed_configuration_hides_secrets_and_nothing_else() {
    let cfg = parse(
        r#"
[[outputs]]
name = "collector"
[outputs.http]
url = "https://collector:8443/in?api_key=qs-secret&tenant=blue"
user = "flow"
password = "pw-secret"
headers = { Authorization = "Bearer hdr-secret", "X-Scope-OrgID" = "tenant-7" }
[[outputs]]
[outputs.syslog]
transport = "tls"
address = "127.0.0.1:6514"
server_name = "logs.example"
client_cert = "/etc/flow-agent/cert.pem"
client_key = "/etc/flow-agent/key.pem"
"#,
        Path::new("c.toml"),
    )
    .unwrap();
    let printed = cfg.to_toml_redacted();
    for secret in ["qs-secret", "pw-secret", "hdr-secret", "tenant-7"] {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
    }
    // Everything else is as it was: the same TOML but for the secrets.
    let mut want: toml::Table = toml::from_str(&cfg.to_toml()).unwrap();
    let http = want["outputs"][0]["http"].as_table_mut().unwrap();
    let redacted = || toml::Value::from("<redacted>");
    http["url"] = "https://collector:8443/in?api_key=<redacted>&tenant=blue".into();
    http["password"] = redacted();
    for (_, v) in http["headers"].as_table_mut().unwrap().iter_mut() {
        *v = redacted();
    }
    assert_eq!(toml::from_str::<toml::Table>(&printed).unwrap(), want);
    assert!(printed.contains("client_key = \"/etc/flow-agent/key.pem\""));
    // Nothing in the defaults looks secret.
    let default = Config::default();
    assert_eq!(default.to_toml_redacted(), default.to_toml());
}

#[test]
fn process_events_and_ancestry_depth_are_checked() {
    let p = parse(
        "[enrich]\nprocess_events = true\nancestry_depth = 16\n",
        Path::new("c.toml"),
    )
    .unwrap();
    assert!(p.enrich.process_events);
    assert_eq!(p.enrich_config(Default::default()).ancestry_depth, 16);
    let e = one("[enrich]\nancestry_depth = 17\n");
    assert!(
        e.starts_with(
            "c.toml:2:1: enrich.ancestry_depth: 17 ancestors is too many (expected 0 to 16"
        ),
        "{e}"
    );
}
