//! The event contract: docs/events.md, docs/events.schema.json and the native encoder
//! (flow-agent/src/encode/native.rs: its lists of flow fields and its serde structs) name the
//! same fields, and every event a real agent prints validates against the schema.
//!
//! The agent test drives real TCP flows (a connection already open when the agent starts, HTTP
//! over IPv4 and IPv6, a refused connect, a connect the client gives up on, a connection nobody
//! accepts, connections still open at shutdown) and
//! UDP flows (request/response over IPv4 and IPv6, a stream still running at shutdown) between two
//! test namespaces, then stops the agent and validates every event it printed, its own and any
//! other flow's on this host. Needs root and kernel BTF (fails, never skips, without them).

use anyhow::{bail, ensure, Context, Result};
use flow_agent_tests::{
    describe_bound, find_tool, require_root_and_bpf, require_tools, slowed, Agent, Spawned,
    TempDir, TestHost,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const HTTP_PORT: u16 = 8080;
/// Nothing listens here: connects are refused.
const CLOSED_PORT: u16 = 8081;
/// A listener that never calls accept(): its connections stay attributed to the listener.
const NO_ACCEPT_PORT: u16 = 8082;
const UDP_PORT: u16 = 9999;
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on every helper process that would otherwise run until killed.
const HELPER_LIFETIME_S: &str = "60";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn read(rel: &str) -> Result<String> {
    let p = workspace().join(rel);
    std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
}

fn schema() -> Result<Value> {
    serde_json::from_str(&read("docs/events.schema.json")?)
        .context("docs/events.schema.json is not valid JSON")
}

/// Draft 2020-12 validator with `format` asserted (date-time, ipv4, ipv6), not just annotated.
fn validator(schema: &Value) -> Result<jsonschema::Validator> {
    if let Err(e) = jsonschema::draft202012::meta::validate(schema) {
        bail!("docs/events.schema.json is not a valid draft 2020-12 schema: {e}");
    }
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| anyhow::anyhow!("compiling docs/events.schema.json: {e}"))
}

/// Property names of the schema's flow events (`$defs/flow`), and the interval object's as
/// `interval.NAME`.
fn schema_fields(schema: &Value) -> Result<BTreeSet<String>> {
    let top = schema["$defs"]["flow"]["properties"]
        .as_object()
        .context("schema has no $defs/flow/properties")?;
    let interval = schema["$defs"]["interval"]["properties"]
        .as_object()
        .context("schema has no $defs/interval/properties")?;
    Ok(top
        .keys()
        .cloned()
        .chain(interval.keys().map(|k| format!("interval.{k}")))
        .collect())
}

/// Field names documented in docs/events.md: the first cell, in backticks, of every table row
/// in the `## Fields` section (up to the next `## ` heading).
fn doc_fields(md: &str) -> Result<BTreeSet<String>> {
    let mut in_fields = false;
    let mut seen_section = false;
    let mut names = BTreeSet::new();
    for line in md.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            in_fields = h.trim() == "Fields";
            seen_section |= in_fields;
            continue;
        }
        if !in_fields {
            continue;
        }
        let Some(row) = line.strip_prefix('|') else {
            continue;
        };
        // One name, or several documented together: `a`, `b`.
        let cell = row.split('|').next().unwrap_or_default();
        for name in cell.split(',').map(str::trim) {
            if let Some(name) = name.strip_prefix('`').and_then(|c| c.strip_suffix('`')) {
                ensure!(
                    names.insert(name.to_string()),
                    "docs/events.md documents `{name}` twice"
                );
            }
        }
    }
    ensure!(seen_section, "docs/events.md has no `## Fields` section");
    Ok(names)
}

/// The native encoder: the lists of the fields it writes of flow events (`FLOW_FIELDS`,
/// `INTERVAL_FIELDS`), and private serde structs that name each field it writes of the other
/// kinds.
const NATIVE_SRC: &str = "flow-agent/src/encode/native.rs";

/// The names in `const NAME: &[&str] = &[...]` of the native encoder's source (`prefix`
/// prepended): the fields it writes of one kind, in order (the encoder's unit tests check that
/// it writes them so).
fn const_fields(src: &str, name: &str, prefix: &str) -> Result<BTreeSet<String>> {
    let list = const_list(src, name)?;
    let names: BTreeSet<String> = list.iter().map(|f| format!("{prefix}{f}")).collect();
    ensure!(names.len() == list.len(), "{name} names a field twice");
    Ok(names)
}

/// The names in `const NAME: &[&str] = &[...]` of the native encoder's source, in order.
fn const_list(src: &str, name: &str) -> Result<Vec<String>> {
    let start = src
        .find(&format!("const {name}: &[&str] = &["))
        .with_context(|| format!("no `const {name}: &[&str]` in {NATIVE_SRC}"))?;
    let body = &src[start..];
    let body = &body[body.find("= &[").context("list without body")? + 4..];
    let body = &body[..body.find("];").context("unterminated list")?];
    let mut names = Vec::new();
    for item in body.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let field = item
            .strip_prefix('"')
            .and_then(|i| i.strip_suffix('"'))
            .with_context(|| format!("{name}: `{item}` is not a string literal"))?;
        names.push(field.to_string());
    }
    ensure!(!names.is_empty(), "no fields found in `{name}`");
    Ok(names)
}

/// A process event's fields: `PROCESS_EVENT_FIELDS`, then `FLOW_FIELDS` from `pid` to
/// `systemd_unit` (without the event's `tid`) and from `hostname` to `agent_version`.
fn process_event_fields(src: &str) -> Result<BTreeSet<String>> {
    let flow = const_list(src, "FLOW_FIELDS")?;
    let at = |k: &str| {
        flow.iter()
            .position(|x| x == k)
            .with_context(|| format!("FLOW_FIELDS has no {k}"))
    };
    let process = &flow[at("pid")?..=at("systemd_unit")?];
    let host = &flow[at("hostname")?..=at("agent_version")?];
    Ok(const_fields(src, "PROCESS_EVENT_FIELDS", "")?
        .into_iter()
        .chain(process.iter().filter(|k| *k != "tid").cloned())
        .chain(host.iter().cloned())
        .collect())
}

/// Serialized field names of `struct NAME` in the native encoder's source (`prefix`
/// prepended): each field's name, or the name its `#[serde(rename = "...")]` gives it.
fn struct_fields(src: &str, name: &str, prefix: &str) -> Result<BTreeSet<String>> {
    let start = [format!("struct {name}<"), format!("struct {name} {{")]
        .iter()
        .find_map(|s| src.find(s.as_str()))
        .with_context(|| format!("no `struct {name}` in {NATIVE_SRC}"))?;
    // The attributes on the struct itself: a rename_all would rename every field.
    let attrs = src[..start].rsplit("\n\n").next().unwrap_or_default();
    ensure!(
        !attrs.contains("rename_all"),
        "{name} uses serde rename_all: teach tests/tests/schema.rs about it"
    );
    let body = &src[start..];
    let body = &body[body.find('{').context("struct without body")? + 1..];
    let body = &body[..body.find("\n}").context("unterminated struct")?];
    let mut names = BTreeSet::new();
    let mut rename: Option<String> = None;
    let mut flatten = false;
    for line in body.lines().map(str::trim) {
        if line.starts_with("//") {
            continue;
        }
        if let Some(attr) = line.strip_prefix("#[serde(") {
            flatten |= attr.contains("flatten");
            if let Some((_, r)) = attr.split_once("rename = \"") {
                rename = r.split('"').next().map(str::to_string);
            }
            continue;
        }
        let line = line
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub ");
        if flatten {
            // A flattened struct's fields are the event's own.
            let (_, ty) = line.split_once(": ").context("flatten on no field")?;
            let inner = ty.split(['<', ',']).next().unwrap_or_default().trim();
            names.extend(struct_fields(src, inner, prefix)?);
            flatten = false;
            continue;
        }
        if let Some((field, _)) = line.split_once(": ") {
            let field = field.trim_start_matches("r#");
            if field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                let field = rename.take().unwrap_or_else(|| field.to_string());
                names.insert(format!("{prefix}{field}"));
            }
        }
    }
    ensure!(rename.is_none(), "{name}: a serde rename on no field");
    ensure!(!names.is_empty(), "no fields found in `struct {name}`");
    Ok(names)
}

fn diff(a: &BTreeSet<String>, b: &BTreeSet<String>) -> Vec<String> {
    a.difference(b).cloned().collect()
}

/// Property names of the schema's `rate_limited` summaries (`$defs/rate_limited`).
fn rate_limited_schema_fields(schema: &Value) -> Result<BTreeSet<String>> {
    def_fields(schema, "rate_limited")
}

/// Property names of one of the schema's `$defs`.
fn def_fields(schema: &Value, def: &str) -> Result<BTreeSet<String>> {
    Ok(schema["$defs"][def]["properties"]
        .as_object()
        .with_context(|| format!("schema has no $defs/{def}/properties"))?
        .keys()
        .cloned()
        .collect())
}

/// The backticked names of the table rows in the `## Rate-limited flows` section of
/// docs/events.md: (the names of the first cells, the names anywhere in a row).
fn rate_limited_doc_fields(md: &str) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    section_doc_fields(md, "Rate-limited flows")
}

/// The backticked names of the table rows of the section `## TITLE` of docs/events.md: (the
/// names of the first cells, the names anywhere in a row).
fn section_doc_fields(md: &str, title: &str) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let start = md
        .find(&format!("\n## {title}\n"))
        .with_context(|| format!("docs/events.md has no `## {title}` section"))?;
    let section = &md[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let ticked = |text: &str| -> Vec<String> {
        text.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let (mut first, mut all) = (BTreeSet::new(), BTreeSet::new());
    for row in section.lines().filter_map(|l| l.strip_prefix('|')) {
        first.extend(ticked(row.split('|').next().unwrap_or_default()));
        all.extend(ticked(row));
    }
    ensure!(!first.is_empty(), "the {title} section has no field table");
    Ok((first, all))
}

/// Every string of every `enum`/`const` under the properties of the schema's flow events and
/// `rate_limited` summaries, by property name.
fn enum_values(schema: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for def in ["flow", "rate_limited", "dns_query", "process"] {
        for (k, v) in schema["$defs"][def]["properties"]
            .as_object()
            .into_iter()
            .flatten()
        {
            let values = v["enum"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(v.get("const"));
            for s in values.filter_map(Value::as_str) {
                out.entry(k.clone()).or_default().insert(s.to_string());
            }
        }
    }
    out
}

#[test]
fn docs_schema_and_struct_name_the_same_fields() -> Result<()> {
    let schema = schema()?;
    validator(&schema)?;
    let in_schema = schema_fields(&schema)?;
    let md = read("docs/events.md")?;
    let in_docs = doc_fields(&md)?;
    let src = read(NATIVE_SRC)?;
    let mut in_struct = const_fields(&src, "FLOW_FIELDS", "")?;
    in_struct.extend(const_fields(&src, "INTERVAL_FIELDS", "interval.")?);

    let rl_schema = rate_limited_schema_fields(&schema)?;
    let (rl_doc_first, rl_doc_all) = rate_limited_doc_fields(&md)?;
    let rl_struct = struct_fields(&src, "NativeRateLimited", "")?;

    let dns_schema = def_fields(&schema, "dns_query")?;
    let (dns_doc_first, dns_doc_all) = section_doc_fields(&md, "DNS queries")?;
    let dns_struct = struct_fields(&src, "NativeDns", "")?;
    let answer_schema: BTreeSet<String> = schema["$defs"]["dns_query"]["properties"]["answers"]
        ["items"]["properties"]
        .as_object()
        .context("schema has no dns_query answers items")?
        .keys()
        .cloned()
        .collect();
    let answer_struct = struct_fields(&src, "NativeAnswer", "")?;

    let proc_schema = def_fields(&schema, "process")?;
    let (proc_doc_first, proc_doc_all) = section_doc_fields(&md, "Process events")?;
    let proc_const = process_event_fields(&src)?;

    let mut problems = Vec::new();
    for (what, missing) in [
        (
            "of process events in the schema but not in docs/events.md's Process events table",
            diff(&proc_schema, &proc_doc_all),
        ),
        (
            "named in docs/events.md's Process events table but not in the schema's process",
            diff(&proc_doc_first, &proc_schema),
        ),
        (
            "of process events (PROCESS_EVENT_FIELDS and the process's and host's FLOW_FIELDS, flow-agent/src/encode/native.rs) but not in the schema's process",
            diff(&proc_const, &proc_schema),
        ),
        (
            "in the schema's process but not in PROCESS_EVENT_FIELDS and the process's and host's FLOW_FIELDS",
            diff(&proc_schema, &proc_const),
        ),
        (
            "of dns_query in the schema but not in docs/events.md's DNS queries table",
            diff(&dns_schema, &dns_doc_all),
        ),
        (
            "named in docs/events.md's DNS queries table but not in the schema's dns_query",
            diff(&dns_doc_first, &dns_schema),
        ),
        (
            "in NativeDns (flow-agent/src/encode/native.rs) but not in the schema's dns_query",
            diff(&dns_struct, &dns_schema),
        ),
        (
            "in the schema's dns_query but not in NativeDns",
            diff(&dns_schema, &dns_struct),
        ),
        (
            "of NativeAnswer but not in the schema's dns_query answers",
            diff(&answer_struct, &answer_schema),
        ),
        (
            "of the schema's dns_query answers but not in NativeAnswer",
            diff(&answer_schema, &answer_struct),
        ),
        (
            "of the schema's dns_query answers but not in docs/events.md's DNS queries table",
            diff(&answer_schema, &dns_doc_all),
        ),
        (
            "of rate_limited in the schema but not in docs/events.md's Rate-limited flows table",
            diff(&rl_schema, &rl_doc_all),
        ),
        (
            "named in docs/events.md's Rate-limited flows table but not in the schema's rate_limited",
            diff(&rl_doc_first, &rl_schema),
        ),
        (
            "in NativeRateLimited (flow-agent/src/encode/native.rs) but not in the schema's rate_limited",
            diff(&rl_struct, &rl_schema),
        ),
        (
            "in the schema's rate_limited but not in NativeRateLimited",
            diff(&rl_schema, &rl_struct),
        ),
        (
            "in the schema but not documented in docs/events.md",
            diff(&in_schema, &in_docs),
        ),
        (
            "documented in docs/events.md but not in the schema",
            diff(&in_docs, &in_schema),
        ),
        (
            "in FLOW_FIELDS/INTERVAL_FIELDS (flow-agent/src/encode/native.rs) but not in the schema",
            diff(&in_struct, &in_schema),
        ),
        (
            "in the schema but not in FLOW_FIELDS/INTERVAL_FIELDS",
            diff(&in_schema, &in_struct),
        ),
    ] {
        if !missing.is_empty() {
            problems.push(format!("fields {what}: {}", missing.join(", ")));
        }
    }
    // Every value an enum allows is explained in the docs (as `value`).
    for (field, values) in enum_values(&schema) {
        let undocumented: Vec<&String> = values
            .iter()
            .filter(|v| !md.contains(&format!("`{v}`")))
            .collect();
        if !undocumented.is_empty() {
            problems.push(format!(
                "values of {field} allowed by the schema but never written as `value` in docs/events.md: {undocumented:?}"
            ));
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

/// The ```json blocks of docs/events.md (its real example events).
fn doc_examples(md: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in md.lines() {
        match (&mut block, line.trim()) {
            (None, "```json") => block = Some(String::new()),
            (Some(b), "```") => {
                out.push(
                    serde_json::from_str(b)
                        .with_context(|| format!("docs/events.md example is not JSON:\n{b}"))?,
                );
                block = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    Ok(out)
}

fn errors(validator: &jsonschema::Validator, ev: &Value) -> Vec<String> {
    validator
        .iter_errors(ev)
        .map(|e| format!("  at {:?}: {e}", e.instance_path().as_str()))
        .collect()
}

/// The examples in docs/events.md validate, and the schema rejects what it must reject.
#[test]
fn doc_examples_validate_and_broken_events_do_not() -> Result<()> {
    let validator = validator(&schema()?)?;
    let examples = doc_examples(&read("docs/events.md")?)?;
    ensure!(
        examples.len() >= 2,
        "docs/events.md has {} JSON examples, want a start and an end",
        examples.len()
    );
    for ev in &examples {
        let errs = errors(&validator, ev);
        ensure!(
            errs.is_empty(),
            "docs/events.md example does not match the schema:\n{ev}\n{}",
            errs.join("\n")
        );
    }
    let end = examples
        .iter()
        .find(|e| e["event_action"] == "end" && e["transport_protocol"] == "tcp")
        .context("docs/events.md has no TCP end example")?;
    type Mutation = fn(&mut serde_json::Map<String, Value>);
    let broken: [(&str, Mutation); 10] = [
        ("an undocumented field", |e| {
            e.insert("bogus".into(), 1.into());
        }),
        ("a missing required field", |e| {
            e.remove("flow_id");
        }),
        ("a null instead of an omitted field", |e| {
            e.insert("rtt_us".into(), Value::Null);
        }),
        ("a timestamp with milliseconds", |e| {
            e.insert("timestamp".into(), "2026-11-23T13:05:50.543Z".into());
        }),
        ("an IPv4-mapped IPv6 address", |e| {
            e.insert("src_ip".into(), "::ffff:127.0.0.1".into());
        }),
        ("an end without end_reason", |e| {
            e.remove("end_reason");
        }),
        (
            "a TCP end with IP byte counters but no other TCP detail field",
            |e| {
                for k in [
                    "tcp_flags",
                    "orig_tcp_flags",
                    "resp_tcp_flags",
                    "orig_first_byte_time",
                    "resp_first_byte_time",
                    "time_to_first_byte",
                ] {
                    e.remove(k);
                }
            },
        ),
        ("a time to first byte without the first byte times", |e| {
            e.remove("orig_first_byte_time");
        }),
        ("a TCP shutdown end with a conn_state", |e| {
            // Counters may come from the last snapshot; a state never does.
            e.insert("end_reason".into(), "agent_shutdown".into());
            e.remove("history");
            e.remove("rtt_us");
            e.remove("retransmits");
        }),
        ("inconsistent direction", |e| {
            e.insert("local_orig".into(), false.into());
        }),
    ];
    for (what, mutate) in broken {
        let mut ev = end.clone();
        mutate(ev.as_object_mut().context("example is not an object")?);
        ensure!(!validator.is_valid(&ev), "the schema accepts {what}: {ev}");
    }
    let summary = examples
        .iter()
        .find(|e| e["event_action"] == "rate_limited")
        .context("docs/events.md has no rate_limited example")?;
    let broken: [(&str, Mutation); 9] = [
        ("a summary with an undocumented field", |e| {
            e.insert("bogus".into(), 1.into());
        }),
        ("a summary with a flow field", |e| {
            e.insert("flow_id".into(), "1-2".into());
        }),
        ("a summary without suppressed_flows", |e| {
            e.remove("suppressed_flows");
        }),
        ("a summary without its limit", |e| {
            e.remove("burst");
        }),
        ("a summary with an unknown limiter", |e| {
            e.insert("limiter".into(), "host".into());
        }),
        ("a summary with a first time but no last", |e| {
            e.remove("last_suppressed_time");
        }),
        ("a summary of suppressed starts without their times", |e| {
            e.remove("first_suppressed_time");
            e.remove("last_suppressed_time");
        }),
        ("a summary with a port that is not a port", |e| {
            e.insert("dest_ports".into(), serde_json::json!([70000]));
        }),
        ("a summary with a pid but no user id", |e| {
            e.remove("uid");
            e.remove("user");
        }),
    ];
    for (what, mutate) in broken {
        let mut ev = summary.clone();
        mutate(ev.as_object_mut().context("example is not an object")?);
        ensure!(!validator.is_valid(&ev), "the schema accepts {what}: {ev}");
    }
    let process_end = examples
        .iter()
        .find(|e| e["event_action"] == "process_end")
        .context("docs/events.md has no process_end example")?;
    let broken: [(&str, Mutation); 4] = [
        ("a process event with a flow field", |e| {
            e.insert("flow_id".into(), "1-2".into());
        }),
        ("a process end without its exit code", |e| {
            e.remove("exit_code");
        }),
        ("a process event without its pid", |e| {
            e.remove("pid");
        }),
        ("a process event with an unknown action", |e| {
            e.insert("event_action".into(), "process_fork".into());
        }),
    ];
    for (what, mutate) in broken {
        let mut ev = process_end.clone();
        mutate(ev.as_object_mut().context("example is not an object")?);
        ensure!(!validator.is_valid(&ev), "the schema accepts {what}: {ev}");
    }
    let dns = examples
        .iter()
        .find(|e| e["event_action"] == "dns_query")
        .context("docs/events.md has no dns_query example")?;
    let broken: [(&str, Mutation); 9] = [
        ("a DNS event with an undocumented field", |e| {
            e.insert("bogus".into(), 1.into());
        }),
        ("a DNS event with a flow field", |e| {
            e.insert("dest_ip".into(), "10.0.0.1".into());
        }),
        ("a DNS event without its question", |e| {
            e.remove("query_name");
        }),
        ("a DNS event with a name that hides a space", |e| {
            e.insert("query_name".into(), "a b.example".into());
        }),
        ("a DNS event whose rcode id and name disagree", |e| {
            e.insert("response_code".into(), "NXDOMAIN".into());
        }),
        (
            "a DNS event with an address answer without its address",
            |e| {
                e.insert(
                    "answers".into(),
                    serde_json::json!([{"name": "a.example", "type": "A", "ttl": 1}]),
                );
            },
        ),
        ("a DNS event with more than 16 answers", |e| {
            let one =
                serde_json::json!({"name": "a.example", "type": "A", "ttl": 1, "data": "10.0.0.1"});
            e.insert("answers".into(), Value::Array(vec![one; 17]));
        }),
        ("a DNS event with a process but no flow", |e| {
            e.remove("flow_id");
        }),
        ("a DNS event with a port that is not a port", |e| {
            e.insert("resolver_port".into(), 70000.into());
        }),
    ];
    for (what, mutate) in broken {
        let mut ev = dns.clone();
        mutate(ev.as_object_mut().context("example is not an object")?);
        ensure!(!validator.is_valid(&ev), "the schema accepts {what}: {ev}");
    }
    Ok(())
}

/// The Python interpreter to exec: the system one when present (a `python3` in `$PATH` may be
/// a pyenv shim that execs something else).
fn python() -> Result<String> {
    let system = Path::new("/usr/bin/python3");
    if system.is_file() {
        return Ok(system.display().to_string());
    }
    Ok(find_tool("python3")?.display().to_string())
}

fn spawn_py(host: &TestHost, script: &str, args: &[String]) -> Result<Spawned> {
    host.cmd(&python()?)
        .arg("-c")
        .arg(script)
        .args(args)
        .spawn()
}

/// Waits until `proc` printed a line starting with `prefix` (within `EVENT_TIMEOUT` ×
/// `FLOW_TEST_SLOW`).
fn wait_for_line(proc: &Spawned, prefix: &str) -> Result<()> {
    let deadline = Instant::now() + slowed(EVENT_TIMEOUT);
    loop {
        if proc.stdout_so_far().lines().any(|l| l.starts_with(prefix)) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "pid {} printed no {prefix:?} line within {}\nstdout: {}\nstderr: {}",
            proc.pid(),
            describe_bound(EVENT_TIMEOUT),
            proc.stdout_so_far().trim(),
            proc.stderr_so_far().trim()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// UDP echo server on a dual-stack socket (IPv4 clients arrive as IPv4-mapped addresses).
const UDP_ECHO: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1])))
s.settimeout(1)
print("ready", flush=True)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    try:
        d, a = s.recvfrom(2048)
    except socket.timeout:
        continue
    s.sendto(d, a)
"#;

/// One request, one answer, exit: the client's flow ends with its socket.
const UDP_ONCE: &str = r#"
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
c = socket.socket(fam, socket.SOCK_DGRAM)
c.settimeout(5)
c.sendto(b"ping", (sys.argv[1], int(sys.argv[2])))
c.recvfrom(2048)
"#;

/// A datagram every 200 ms (bounded), still running when the agent stops.
const UDP_STREAM: &str = r#"
import socket, sys, time
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
c = socket.socket(fam, socket.SOCK_DGRAM)
c.settimeout(5)
end = time.time() + float(sys.argv[3])
first = True
while time.time() < end:
    c.sendto(b"tick", (sys.argv[1], int(sys.argv[2])))
    c.recvfrom(2048)
    if first:
        print("ready", flush=True)
        first = False
    time.sleep(0.2)
"#;

/// A TCP connection held open (bounded), still open when the agent stops.
const TCP_HOLD: &str = r#"
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print("connected", flush=True)
time.sleep(float(sys.argv[3]))
"#;

/// listen() without accept(): the kernel completes handshakes into the backlog.
const TCP_NO_ACCEPT: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1])))
s.listen(8)
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
"#;

fn curl(host: &TestHost, url: &str, extra: &[&str]) -> Result<Option<i32>> {
    let max_time = slowed(Duration::from_secs(10)).as_secs().to_string();
    let out = host
        .cmd("curl")
        .args(["-sS", "-g", "--noproxy", "*", "--max-time", &max_time])
        .args(extra)
        .arg(url)
        .output()?;
    Ok(out.status.code())
}

fn url(addr: IpAddr, port: u16) -> String {
    format!("http://{}/", std::net::SocketAddr::new(addr, port))
}

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

#[test]
fn every_event_of_a_real_agent_matches_the_schema() -> Result<()> {
    require_root_and_bpf()?;
    require_tools(&["ip", "ss", "python3", "curl"])?;
    let schema = schema()?;
    let validator = validator(&schema)?;

    let (client, server) = TestHost::pair()?;
    let ours: BTreeSet<String> = [
        IpAddr::V4(client.ns_addr_v4()),
        IpAddr::V6(client.ns_addr_v6()),
        IpAddr::V4(server.ns_addr_v4()),
        IpAddr::V6(server.ns_addr_v6()),
        IpAddr::V4(client.blackhole_addr_v4()),
    ]
    .iter()
    .map(IpAddr::to_string)
    .collect();
    let is_ours = |e: &Value| ours.contains(&s(e, "src_ip")) && ours.contains(&s(e, "dest_ip"));
    let srv4 = IpAddr::V4(server.ns_addr_v4());
    let srv6 = IpAddr::V6(server.ns_addr_v6());

    // Before the agent: an HTTP server and a connection to it, open when the agent starts.
    let dir = TempDir::new("fat-schema")?;
    dir.write("index.html", "hello\n")?;
    let _http = server
        .cmd(&python()?)
        .args(["-m", "http.server", &HTTP_PORT.to_string(), "--bind", "::"])
        .arg("--directory")
        .arg(dir.path())
        .spawn()?;
    server.wait_for_tcp_listen(HTTP_PORT)?;
    let before = spawn_py(
        &client,
        TCP_HOLD,
        &[
            srv4.to_string(),
            HTTP_PORT.to_string(),
            HELPER_LIFETIME_S.into(),
        ],
    )?;
    wait_for_line(&before, "connected")?;

    let agent = Agent::start(&["--udp-idle-timeout", "2", "--update-interval", "1"])
        .context("starting flow-agent")?;
    // Both ends of that connection are reported at start-up, then end when it closes.
    let unobserved = |e: &Value| is_ours(e) && e["start_observed"] == false;
    agent
        .wait_for_count(
            |e| unobserved(e) && s(e, "event_action") == "start",
            2,
            EVENT_TIMEOUT,
        )
        .context("waiting for the starts of the connection open before the agent")?;
    // Its owner comes from /proc, with the same fields as for a process the kernel saw.
    let connector = agent
        .events()
        .into_iter()
        .find(|e| unobserved(e) && e["attribution"] == "connector")
        .context("no connector start among the flows open before the agent")?;
    let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", before.pid()))?;
    let cgroup = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .context("no cgroup v2 line")?;
    ensure!(
        connector["pid"] == before.pid()
            && connector["gid"] == 0
            && connector["cgroup_path"] == cgroup
            && connector["cgroup_id"].as_u64().is_some(),
        "connection open before the agent: want pid {}, gid 0, cgroup_path {cgroup}: {connector}",
        before.pid()
    );
    before.signal(libc::SIGTERM)?;
    agent
        .wait_for_count(
            |e| unobserved(e) && s(e, "end_reason") == "fin",
            2,
            EVENT_TIMEOUT,
        )
        .context("waiting for the ends of the connection open before the agent")?;
    drop(before);

    // Servers started after the agent, so that it sees their listen().
    let no_accept = spawn_py(
        &server,
        TCP_NO_ACCEPT,
        &[NO_ACCEPT_PORT.to_string(), HELPER_LIFETIME_S.into()],
    )?;
    wait_for_line(&no_accept, "ready")?;
    let echo = spawn_py(
        &server,
        UDP_ECHO,
        &[UDP_PORT.to_string(), HELPER_LIFETIME_S.into()],
    )?;
    wait_for_line(&echo, "ready")?;

    // TCP: complete exchanges, a refused connect, a connect abandoned after 1 s.
    for addr in [srv4, srv6] {
        let code = curl(&client, &url(addr, HTTP_PORT), &["--fail"])?;
        ensure!(code == Some(0), "curl {addr}: exit {code:?}");
    }
    let code = curl(&client, &url(srv4, CLOSED_PORT), &[])?;
    ensure!(
        code == Some(7),
        "curl to a closed port: want exit 7, got {code:?}"
    );
    let blackhole = IpAddr::V4(client.blackhole_addr_v4());
    let code = curl(&client, &url(blackhole, 80), &["--connect-timeout", "1"])?;
    ensure!(
        code == Some(28),
        "curl to the blackhole: want exit 28, got {code:?}"
    );
    // Connections still open when the agent stops.
    let mut held = Vec::new();
    for port in [HTTP_PORT, NO_ACCEPT_PORT] {
        let p = spawn_py(
            &client,
            TCP_HOLD,
            &[srv4.to_string(), port.to_string(), HELPER_LIFETIME_S.into()],
        )?;
        wait_for_line(&p, "connected")?;
        held.push(p);
    }
    // UDP: one exchange per family, then a stream still running when the agent stops.
    for addr in [srv4, srv6] {
        client
            .cmd(&python()?)
            .arg("-c")
            .arg(UDP_ONCE)
            .args([addr.to_string(), UDP_PORT.to_string()])
            .run()?;
    }
    let stream = spawn_py(
        &client,
        UDP_STREAM,
        &[
            srv4.to_string(),
            UDP_PORT.to_string(),
            HELPER_LIFETIME_S.into(),
        ],
    )?;
    wait_for_line(&stream, "ready")?;

    // Wait for the events that prove each kind was seen before stopping the agent.
    type Pred = Box<dyn Fn(&Value) -> bool>;
    let want: [(&str, usize, Pred); 8] = [
        (
            "tcp end fin (both sides of the 2 HTTP exchanges)",
            4,
            Box::new(|e| s(e, "end_reason") == "fin" && s(e, "dest_port") == "8080"),
        ),
        (
            "tcp end refused",
            1,
            Box::new(|e| s(e, "end_reason") == "refused"),
        ),
        (
            "tcp end aborted",
            1,
            Box::new(|e| s(e, "end_reason") == "aborted"),
        ),
        (
            "tcp start attributed to the listener",
            1,
            Box::new(|e| s(e, "event_action") == "start" && s(e, "attribution") == "listener"),
        ),
        (
            "udp end socket_closed (the 2 one-shot clients)",
            2,
            Box::new(|e| s(e, "end_reason") == "socket_closed"),
        ),
        (
            "udp end idle (the server side of the one-shot exchanges)",
            2,
            Box::new(|e| s(e, "end_reason") == "idle"),
        ),
        (
            "udp update (the stream)",
            1,
            Box::new(|e| s(e, "event_action") == "update" && s(e, "transport_protocol") == "udp"),
        ),
        (
            "tcp update (the held connections)",
            1,
            Box::new(|e| s(e, "event_action") == "update" && s(e, "transport_protocol") == "tcp"),
        ),
    ];
    for (what, n, pred) in &want {
        agent
            .wait_for_count(|e| is_ours(e) && pred(e), *n, EVENT_TIMEOUT)
            .with_context(|| format!("waiting for {n} x {what}"))?;
    }
    let non_json = agent.non_json_lines();
    let events = agent.stop()?;
    drop(held);
    drop(stream);
    ensure!(
        non_json.is_empty(),
        "agent printed non-JSON lines on stdout:\n{}",
        non_json.join("\n")
    );

    if let Some(path) = std::env::var_os("FLOW_AGENT_SCHEMA_TEST_EVENTS") {
        // Debugging aid: every captured event as JSON lines.
        let lines: Vec<String> = events.iter().map(Value::to_string).collect();
        std::fs::write(&path, lines.join("\n") + "\n")
            .with_context(|| format!("writing {}", Path::new(&path).display()))?;
    }

    // 1. Every event, ours or not, matches the schema, the stats event the agent writes at
    // shutdown when kernel-side losses changed (other tests' load can cause it) too.
    let mut failures = Vec::new();
    for ev in &events {
        let errs = errors(&validator, ev);
        if !errs.is_empty() {
            failures.push(format!("{}\n  event: {ev}", errs.join("\n")));
        }
    }
    const SHOWN: usize = 20;
    ensure!(
        failures.is_empty(),
        "{} of {} events do not match docs/events.schema.json (first {} shown):\n{}",
        failures.len(),
        events.len(),
        failures.len().min(SHOWN),
        failures[..failures.len().min(SHOWN)].join("\n\n")
    );

    // 2. Lifecycle: per flow of this test exactly one start (first) and one end (last), updates
    // between. Not other tests' flows: a host busy with them may lose (and count) some of
    // their records, which is not this test's business.
    let mut flows: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for ev in events.iter().filter(|e| is_ours(e)) {
        flows.entry(s(ev, "flow_id")).or_default().push(ev);
    }
    for (id, evs) in &flows {
        let actions: Vec<String> = evs.iter().map(|e| s(e, "event_action")).collect();
        let n = actions.len();
        let ok = n >= 2
            && actions[0] == "start"
            && actions[n - 1] == "end"
            && actions[1..n - 1].iter().all(|a| a == "update");
        ensure!(
            ok,
            "flow {id}: want start, update*, end; got {actions:?}\n{}",
            evs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    // 3. Our traffic exercised every branch the test is meant to cover.
    let mine: Vec<&Value> = events.iter().filter(|e| is_ours(e)).collect();
    let seen = |key: &str, proto: &str| -> BTreeSet<String> {
        mine.iter()
            .filter(|e| s(e, "transport_protocol") == proto)
            .map(|e| s(e, key))
            .filter(|v| !v.is_empty())
            .collect()
    };
    let expect: [(&str, &str, &[&str]); 7] = [
        ("event_action", "tcp", &["start", "update", "end"]),
        ("start_observed", "tcp", &["true", "false"]),
        ("event_action", "udp", &["start", "update", "end"]),
        (
            "end_reason",
            "tcp",
            &["fin", "refused", "aborted", "agent_shutdown"],
        ),
        (
            "end_reason",
            "udp",
            &["socket_closed", "idle", "agent_shutdown"],
        ),
        ("conn_state", "tcp", &["SF", "REJ", "S0", "OTH"]),
        ("attribution", "tcp", &["connector", "acceptor", "listener"]),
    ];
    for (key, proto, values) in expect {
        let got = seen(key, proto);
        let missing: Vec<&&str> = values.iter().filter(|v| !got.contains(**v)).collect();
        ensure!(
            missing.is_empty(),
            "{proto} {key}: never saw {missing:?} among this test's {} events (saw {got:?})",
            mine.len()
        );
    }
    Ok(())
}

/// Every property of `$defs/stats`, nested ones as `parent.name` (array items under their
/// array's name).
fn stats_fields(def: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    let def = def.get("items").unwrap_or(def);
    let Some(props) = def["properties"].as_object() else {
        return;
    };
    for (name, sub) in props {
        let path = format!("{prefix}{name}");
        stats_fields(sub, &format!("{path}."), out);
        out.insert(path);
    }
}

/// Stats events: a real agent's validate against `$defs/stats` (the first with its
/// self-check, a later one without), with real values; every field of the schema is named
/// in docs/health.md's stats table (`name`, `parent.name` for nested ones, `name[]` for
/// arrays).
#[test]
fn stats_events_of_a_real_agent_match_the_schema_and_health_md() -> Result<()> {
    require_root_and_bpf()?;
    let schema = schema()?;
    let validator = validator(&schema)?;
    let mut fields = BTreeSet::new();
    stats_fields(&schema["$defs"]["stats"], "", &mut fields);
    let health = read("docs/health.md")?;
    let undocumented: Vec<&String> = fields
        .iter()
        .filter(|f| {
            let leaf = f.rsplit('.').next().unwrap_or(f);
            !health.contains(&format!("`{f}`"))
                && !health.contains(&format!("`{leaf}`"))
                && !health.contains(&format!("`{leaf}[]`"))
        })
        .collect();
    ensure!(
        undocumented.is_empty(),
        "stats fields of the schema not in docs/health.md: {undocumented:?}"
    );

    let dir = TempDir::new("schema-stats")?;
    let config = dir.write(
        "agent.toml",
        "[health]\nstats_interval = 1\nmetrics_listen = \"\"\n\n\
         [[outputs]]\nname = \"events\"\n[outputs.stdout]\n",
    )?;
    let agent = Agent::start(&["--config", &config.display().to_string()])?;
    let stats = agent.wait_for_count(|e| e["event_action"] == "stats", 2, EVENT_TIMEOUT)?;
    let pid = agent.pid();
    agent.stop()?;
    for ev in &stats {
        let errs = errors(&validator, ev);
        ensure!(errs.is_empty(), "{}\n  event: {ev}", errs.join("\n"));
    }
    let (first, second) = (&stats[0], &stats[1]);
    ensure!(
        first["self_check"]["ok"] == true && second.get("self_check").is_none(),
        "{first}\n{second}"
    );
    let checks = first["self_check"]["checks"].as_array().context("checks")?;
    let pid_text = pid.to_string();
    ensure!(
        checks
            .iter()
            .any(|c| c["name"] == "tcp4.client.pid" && c["got"].as_str() == Some(&pid_text)),
        "no tcp4.client.pid of {pid}: {first}"
    );
    ensure!(
        second["sinks"][0]["name"] == "events" && second["watchdog"]["tcp_silences"] == 0,
        "{second}"
    );
    // The schema refuses a stats event with a field it does not list.
    let mut extra = second.clone();
    extra["state_bounds"]["made_up"] = Value::from(1);
    ensure!(!validator.is_valid(&extra), "the schema accepts {extra}");
    Ok(())
}
