//! The hub on a real socket: subscribe, filter, format, a slow subscriber dropped.
use std::sync::atomic::Ordering::Relaxed;

use super::{client, protocol::Request, Bound, LiveConfig};
use crate::{encode::Format, event::Event};

fn stats_event(n: u64) -> Event {
    Event::Stats(Box::new(crate::event::StatsEvent {
        event_action: "stats",
        flows_open: n,
        ..Default::default()
    }))
}

fn config(name: &str, queue_bytes: u64) -> (LiveConfig, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("flow-agent-live-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = LiveConfig {
        socket: dir.join("events.sock"),
        queue_bytes,
        ..LiveConfig::default()
    };
    (cfg, dir)
}

fn wait_for_subscribers(hub: &super::Hub, n: usize) {
    for _ in 0..500 {
        if hub.shared.count.load(Relaxed) == n {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("never {n} subscribers");
}

#[test]
fn a_subscriber_gets_records_and_the_end() {
    let (cfg, dir) = config("records", 1 << 20);
    let hub = Bound::bind(&cfg).unwrap().unwrap().start().unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&cfg.socket).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o660);
    hub.publish(&[stats_event(1)]);
    let mut sub = client::subscribe(&cfg.socket, &Request::default()).unwrap();
    wait_for_subscribers(&hub, 1);
    hub.publish(&[stats_event(7), stats_event(8)]);
    let mut line = String::new();
    for want in [7, 8] {
        assert!(sub.next_record(&mut line).unwrap());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["flows_open"], want, "{line}");
    }
    let stats = hub.stats();
    drop(hub);
    assert!(
        !sub.next_record(&mut line).unwrap(),
        "the end after the agent stops"
    );
    assert_eq!(stats.sent.load(Relaxed), 2);
    assert!(!cfg.socket.exists(), "the socket is removed");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_requests_and_missing_agents_are_named() {
    let (cfg, dir) = config("errors", 1 << 20);
    let err = client::subscribe(&cfg.socket, &Request::default()).unwrap_err();
    assert!(
        err.to_string().contains(&cfg.socket.display().to_string()),
        "{err}"
    );
    let _hub = Bound::bind(&cfg).unwrap().unwrap().start().unwrap();
    let bad = Request {
        include: vec![serde_json::json!({"remote_prot": 1})],
        ..Request::default()
    };
    let err = client::subscribe(&cfg.socket, &bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("remote_prot"), "{err}");
    // A second agent on the same path leaves the socket to the first.
    assert!(Bound::bind(&cfg).unwrap().is_none());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_subscriber_that_does_not_read_is_dropped_and_counted() {
    let (cfg, dir) = config("slow", 64 << 10);
    let hub = Bound::bind(&cfg).unwrap().unwrap().start().unwrap();
    let request = Request {
        format: Format::Native,
        ..Request::default()
    };
    let mut sub = client::subscribe(&cfg.socket, &request).unwrap();
    wait_for_subscribers(&hub, 1);
    // Far more than the socket's buffer and the queue hold, while nobody reads.
    let batch: Vec<Event> = (0..1000).map(stats_event).collect();
    for _ in 0..200 {
        hub.publish(&batch);
        if hub.shared.count.load(Relaxed) == 0 {
            break;
        }
    }
    assert_eq!(
        hub.shared.count.load(Relaxed),
        0,
        "the slow subscriber was dropped"
    );
    let stats = hub.stats();
    assert_eq!(stats.errors.load(Relaxed), 1);
    assert!(stats.dropped.load(Relaxed) >= 1000);
    // It reads what was written before, then learns why it was dropped.
    let mut line = String::new();
    let err = loop {
        match sub.next_record(&mut line) {
            Ok(true) => continue,
            Ok(false) => panic!("ended without saying why"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(err.contains("behind"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
