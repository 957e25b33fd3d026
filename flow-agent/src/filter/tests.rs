use std::sync::Arc;

use super::*;
use crate::event::{Direction, FlowIds, ProcessIdentity, Transport, WallTime};

fn filter(toml_text: &str) -> FilterConfig {
    toml::from_str(toml_text).unwrap()
}

fn event(action: &'static str, id: &str) -> FlowEvent {
    let action = match action {
        "start" => FlowAction::Start,
        "update" => FlowAction::Update,
        _ => FlowAction::End,
    };
    let mut ev = FlowEvent::new(
        action,
        WallTime(1),
        Transport::Tcp,
        ("10.1.2.3".parse().unwrap(), 40000),
        ("192.0.2.7".parse().unwrap(), 443),
        Direction::Outbound,
        Arc::default(),
    );
    ev.ids = Arc::new(FlowIds {
        flow_id: id.into(),
        community_id: None,
    });
    ev.process = Some(Arc::new(curl()));
    ev
}

fn curl() -> ProcessIdentity {
    ProcessIdentity {
        comm: "curl".into(),
        exe: Some("curl".into()),
        image_path: Some("/usr/bin/curl".into()),
        user: Some("alice".into()),
        uid: 1000,
        container_id: Some("3f4e1a2b9c0d".into()),
        cgroup_path: Some("/system.slice/docker-3f4e.scope".into()),
        ..ProcessIdentity::default()
    }
}

/// The same process without a known executable (it exited, or /proc could not be read).
fn without_exe() -> Option<Arc<ProcessIdentity>> {
    Some(Arc::new(ProcessIdentity {
        exe: None,
        image_path: None,
        ..curl()
    }))
}

#[test]
fn empty_filter_passes_everything() {
    assert!(filter("").matches_flow(&event("start", "a")));
}

#[test]
fn include_any_and_exclude_none() {
    let f = filter(
        r#"
        include = [{ remote_port = 443 }, { remote_port = 53 }]
        exclude = [{ user = "alice", transport = "udp" }]
        "#,
    );
    assert!(f.decide(&event("start", "a")));
    let mut udp = event("start", "b");
    udp.transport = Transport::Udp;
    assert!(!f.decide(&udp), "alice's UDP excluded");
    let mut other = event("start", "c");
    other.remote.1 = 80;
    assert!(!f.decide(&other), "port 80 is in no include rule");
}

#[test]
fn every_condition_of_a_rule_must_match() {
    let ev = event("start", "a");
    let hit = |rule: &str| !filter(&format!("exclude = [{{ {rule} }}]")).decide(&ev);
    assert!(hit(r#"remote_cidr = "192.0.2.0/24""#));
    assert!(!hit(r#"remote_cidr = "10.0.0.0/8""#), "10.1.2.3 is local");
    assert!(hit(r#"local_cidr = ["10.0.0.0/8", "fd00::/8"]"#));
    assert!(hit(r#"local_port = "40000-40100""#));
    assert!(hit(r#"direction = "outbound""#));
    assert!(!hit(r#"direction = "inbound""#));
    assert!(hit(r#"exe = "/usr/bin/*""#));
    assert!(hit(r#"exe = "curl""#));
    assert!(!hit(r#"exe = "/bin/curl""#));
    assert!(hit(r#"process_name = "cu*""#));
    assert!(hit(r#"user = 1000"#));
    assert!(!hit(r#"user = "1000""#), "a string is a user name");
    assert!(hit(r#"container_id = "3f4e""#));
    assert!(hit(r#"cgroup = "/system.slice""#));
    assert!(hit(r#"remote_port = 443, process_name = "curl""#));
    assert!(!hit(r#"remote_port = 443, process_name = "wget""#));
}

#[test]
fn inbound_flows_swap_endpoints() {
    let mut ev = event("start", "a");
    // Inbound: 10.1.2.3 connected to this host's port 443.
    ev.direction = Direction::Inbound;
    ev.local = ("192.0.2.7".parse().unwrap(), 443);
    ev.remote = ("10.1.2.3".parse().unwrap(), 40000);
    let f = filter(r#"exclude = [{ remote_cidr = "10.0.0.0/8", local_port = 443 }]"#);
    assert!(!f.decide(&ev));
}

#[test]
fn missing_fields_do_not_match() {
    let mut ev = event("start", "a");
    ev.process = without_exe();
    let f = filter(r#"exclude = [{ exe = "*" }]"#);
    assert!(
        f.decide(&ev),
        "no executable known: an exe rule cannot match"
    );
}

#[test]
fn a_flow_keeps_its_first_decision_until_its_end() {
    let f = filter(r#"include = [{ exe = "/usr/bin/curl" }]"#);
    assert!(f.matches_flow(&event("start", "a")));
    // The process exited: later events no longer carry its executable.
    let mut later = event("update", "a");
    later.process = without_exe();
    assert!(f.matches_flow(&later));
    assert_eq!(f.remembered_flows(), 1);
    later.action = FlowAction::End;
    assert!(f.matches_flow(&later));
    assert_eq!(f.remembered_flows(), 0, "forgotten at the end");
    // Without memory the end alone would have been dropped.
    assert!(!f.matches_flow(&later));
}

#[test]
fn clones_share_decisions() {
    let f = filter(r#"exclude = [{ remote_port = 443 }]"#);
    let g = f.clone();
    assert!(!f.matches_flow(&event("start", "a")));
    assert_eq!(g.remembered_flows(), 1);
    assert_eq!(f, g);
}

/// A DNS answer is filtered as its flow (client to resolver, the asking process): with the
/// flow's id it shares the flow's decision; without one it is decided on its own, never
/// remembered (an empty id would have made every such answer share one decision).
#[test]
fn dns_events_share_their_flows_decision_and_are_not_remembered_without_one() {
    let f = filter(r#"exclude = [{ remote_port = 53, process_name = "curl" }]"#);
    let dns = |flow: Option<&str>, comm: &str| {
        let mut ev = crate::event::DnsEvent {
            client: ("10.1.2.3".parse().unwrap(), 40000),
            resolver: ("192.0.2.53".parse().unwrap(), 53),
            ..crate::event::DnsEvent::default()
        };
        ev.flow = flow.map(|id| {
            Arc::new(FlowIds {
                flow_id: id.into(),
                community_id: None,
            })
        });
        ev.process = Some(Arc::new(ProcessIdentity {
            comm: comm.into(),
            ..curl()
        }));
        Event::Dns(Box::new(ev))
    };
    assert!(
        !f.matches(&dns(None, "curl")),
        "curl's answers are excluded"
    );
    assert!(
        f.matches(&dns(None, "dig")),
        "dig's are not: decided on its own"
    );
    assert_eq!(
        f.remembered_flows(),
        0,
        "nothing remembered without a flow id"
    );
    assert!(!f.matches(&dns(Some("d-1"), "curl")));
    assert_eq!(
        f.remembered_flows(),
        1,
        "the DNS flow's decision, shared with it"
    );
    // Stats and summaries are not flows: filters never drop them.
    let stats = Event::Stats(Box::default());
    assert!(f.matches(&stats));
}

#[test]
fn errors_name_the_value_and_what_is_expected() {
    let err = |t: &str| {
        toml::from_str::<FilterConfig>(t)
            .unwrap_err()
            .message()
            .to_string()
    };
    assert!(
        err(r#"exclude = [{ remote_cidr = "10.0.0/8" }]"#)
            .starts_with("\"10.0.0/8\" is not a CIDR (expected e.g. 10.0.0.0/8"),
        "{}",
        err(r#"exclude = [{ remote_cidr = "10.0.0/8" }]"#)
    );
    assert!(err(r#"exclude = [{ transport = "icmp" }]"#).contains("expected \"tcp\" or \"udp\""));
    assert!(err(r#"exclude = [{ remote_port = 70000 }]"#).contains("out of range"));
    assert!(err(r#"exclude = [{ remote_port = [[1]] }]"#).contains("invalid type"));
    assert!(err(r#"exclude = [{ port = 1 }]"#).contains("unknown field `port`"));
    assert!(err(r#"exclude = [{ user = 1.5 }]"#).contains("a user name (string) or a uid"));
}

#[test]
fn rules_serialize_back_to_what_was_written() {
    let text =
        r#"include = [{ remote_port = [53, "8000-8100"], user = ["root", 0], exe = "/usr/*" }]"#;
    let f = filter(text);
    let back: FilterConfig = toml::from_str(&toml::to_string(&f).unwrap()).unwrap();
    assert_eq!(f, back);
}

#[test]
fn process_events_are_judged_by_the_process_only_rules() {
    let process = |p: ProcessIdentity| {
        Event::Process(Box::new(crate::event::ProcessEvent {
            time: WallTime(1),
            action: crate::event::ProcessAction::Start,
            process: Arc::new(p),
            exit: None,
            duration_ns: None,
            host: Arc::default(),
        }))
    };
    let bash = ProcessIdentity {
        comm: "bash".into(),
        exe: Some("bash".into()),
        ..curl()
    };
    // Network rules choose flows: they neither include nor exclude processes.
    let f = filter("include = [{ remote_port = 443 }]\nexclude = [{ remote_port = 80 }]");
    assert!(f.matches(&process(curl())) && f.matches(&process(bash.clone())));
    // A process-only include rule chooses processes; a mixed one does not apply.
    let f = filter("include = [{ exe = \"curl\" }, { exe = \"bash\", remote_port = 22 }]");
    assert!(f.matches(&process(curl())));
    assert!(!f.matches(&process(bash.clone())));
    let f = filter("exclude = [{ process_name = \"bash\" }]");
    assert!(f.matches(&process(curl())) && !f.matches(&process(bash)));
}
