//! Reading what a sensor wrote: end events per workload port, kernel-side loss counters, the
//! kernel's end time of a flow.
use std::{
    collections::{BTreeMap, HashMap},
    io::{BufRead, BufReader},
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use serde_json::Value;

/// How a sensor's output file is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// flow-agent: one JSON record per line, native or ECS.
    AgentJson,
    /// tcplife (libbpf-tools and bpftrace): a header, then one text line per ended connection.
    TcplifeText,
}

/// One ended flow as far as the bench cares.
#[derive(Debug, PartialEq, Eq)]
pub struct FlowEnd {
    pub src_port: u16,
    pub dest_port: u16,
    /// The kernel's time of the end (`end_time` native, `event.end` ECS), as written.
    pub end_time: Option<String>,
}

impl FlowEnd {
    pub fn has_port(&self, port: u16) -> bool {
        self.src_port == port || self.dest_port == port
    }
}

fn port(v: &Value) -> Option<u16> {
    v.as_u64().and_then(|p| u16::try_from(p).ok())
}

/// The end of a flow in an agent record: native (`event_action: "end"`) or ECS
/// (`event.action` / `event.type` naming the end, ports under `source` and `destination`).
pub fn agent_flow_end(v: &Value) -> Option<FlowEnd> {
    if v.get("event_action").and_then(Value::as_str) == Some("end") {
        return Some(FlowEnd {
            src_port: port(v.get("src_port")?)?,
            dest_port: port(v.get("dest_port")?)?,
            end_time: v.get("end_time").and_then(Value::as_str).map(String::from),
        });
    }
    let event = v.get("event")?;
    let action_ends = event
        .get("action")
        .and_then(Value::as_str)
        .is_some_and(|a| a == "end" || a.ends_with("-end") || a.ends_with("_end"));
    let type_ends = event
        .get("type")
        .and_then(Value::as_array)
        .is_some_and(|t| t.iter().any(|x| x.as_str() == Some("end")));
    if !(action_ends || type_ends) {
        return None;
    }
    Some(FlowEnd {
        src_port: port(v.get("source")?.get("port")?)?,
        dest_port: port(v.get("destination")?.get("port")?)?,
        end_time: event.get("end").and_then(Value::as_str).map(String::from),
    })
}

/// The `kernel_losses` object of a stats record, wherever the format nests it.
pub fn agent_kernel_losses(v: &Value) -> Option<BTreeMap<String, u64>> {
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(losses)) = map.get("kernel_losses") {
                return Some(
                    losses
                        .iter()
                        .filter_map(|(k, n)| Some((k.clone(), n.as_u64()?)))
                        .collect(),
                );
            }
            map.values().find_map(agent_kernel_losses)
        }
        _ => None,
    }
}

/// Local and remote port of a tcplife line: the last seven columns are LADDR LPORT RADDR
/// RPORT TX_KB RX_KB MS in both tools (the command name before them may hold spaces).
pub fn tcplife_ports(line: &str) -> Option<(u16, u16)> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    if cols.len() < 8 {
        return None;
    }
    let n = cols.len();
    Some((cols[n - 6].parse().ok()?, cols[n - 4].parse().ok()?))
}

/// Events a peer reported losing on its stderr: libbpf-tools' "lost N events on CPU #k",
/// bpftrace's "Lost N events".
pub fn peer_lost_events(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter_map(|l| {
            let l = l.trim().to_ascii_lowercase();
            let rest = l.strip_prefix("lost ")?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// What a whole output file held.
#[derive(Debug, Default)]
pub struct OutputSummary {
    pub lines: u64,
    /// End events (TCP flows ended) per bench port.
    pub ends_by_port: HashMap<u16, u64>,
    /// End events on none of the ports asked for: other activity on the host.
    pub other_ends: u64,
    /// The last kernel loss counters the agent reported (agent formats only).
    pub kernel_losses: Option<BTreeMap<String, u64>>,
    /// Agent records by schema (`native`: top-level `event_action`; `ecs`: an `event`
    /// object), to tell which encoder actually wrote the file.
    pub schemas: BTreeMap<&'static str, u64>,
}

pub fn summarize(path: &Path, format: OutputFormat, ports: &[u16]) -> Result<OutputSummary> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut summary = OutputSummary::default();
    let count = |a: u16, b: u16, summary: &mut OutputSummary| {
        let mut matched = false;
        for p in ports {
            if a == *p || b == *p {
                *summary.ends_by_port.entry(*p).or_default() += 1;
                matched = true;
            }
        }
        if !matched {
            summary.other_ends += 1;
        }
    };
    for line in BufReader::with_capacity(1 << 20, file).split(b'\n') {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        summary.lines += 1;
        match format {
            OutputFormat::AgentJson => {
                let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let schema = if v.get("event_action").is_some() {
                    "native"
                } else if v.get("event").is_some_and(Value::is_object) {
                    "ecs"
                } else {
                    "other"
                };
                *summary.schemas.entry(schema).or_default() += 1;
                if let Some(end) = agent_flow_end(&v) {
                    count(end.src_port, end.dest_port, &mut summary);
                } else if let Some(losses) = agent_kernel_losses(&v) {
                    summary.kernel_losses = Some(losses);
                }
            }
            OutputFormat::TcplifeText => {
                if let Some((l, r)) = tcplife_ports(&String::from_utf8_lossy(&line)) {
                    count(l, r, &mut summary);
                }
            }
        }
    }
    Ok(summary)
}

/// An RFC 3339 UTC time as the agent writes it (`2026-11-23T12:59:59.585730Z`; `+00:00`
/// accepted too).
pub fn parse_utc(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let nanos: u32 = if frac.is_empty() {
        0
    } else if frac.len() <= 9 && frac.bytes().all(|b| b.is_ascii_digit()) {
        format!("{frac:0<9}").parse().ok()?
    } else {
        return None;
    };
    let secs = days_from_civil(y, m, day) * 86_400 + hh * 3600 + mm * 60 + ss;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_end_event() {
        let v: Value = serde_json::from_str(
            r#"{"event_action":"end","src_port":40000,"dest_port":21001,"end_time":"2026-11-23T12:59:59.585730Z"}"#,
        )
        .unwrap();
        let end = agent_flow_end(&v).unwrap();
        assert_eq!((end.src_port, end.dest_port), (40000, 21001));
        assert_eq!(end.end_time.as_deref(), Some("2026-11-23T12:59:59.585730Z"));
        let start: Value =
            serde_json::from_str(r#"{"event_action":"start","src_port":1,"dest_port":2}"#).unwrap();
        assert_eq!(agent_flow_end(&start), None);
    }

    #[test]
    fn ecs_end_event() {
        let v: Value = serde_json::from_str(
            r#"{"event":{"action":"network-flow-end","type":["connection","end"],"end":"2026-11-23T12:59:59.5Z"},"source":{"port":40000},"destination":{"port":21001}}"#,
        )
        .unwrap();
        let end = agent_flow_end(&v).unwrap();
        assert_eq!((end.src_port, end.dest_port), (40000, 21001));
        assert_eq!(end.end_time.as_deref(), Some("2026-11-23T12:59:59.5Z"));
    }

    #[test]
    fn kernel_losses_found_nested() {
        let v: Value = serde_json::from_str(
            r#"{"event_action":"stats","flow_agent":{"kernel_losses":{"ring_full":3,"tcp_table_full":0}}}"#,
        )
        .unwrap();
        let l = agent_kernel_losses(&v).unwrap();
        assert_eq!(l["ring_full"], 3);
        assert_eq!(l["tcp_table_full"], 0);
    }

    #[test]
    fn tcplife_lines_of_both_tools() {
        assert_eq!(
            tcplife_ports("2194    python3          127.0.0.1       38854 127.0.0.1       57271 0.10   0.10   0.18"),
            Some((38854, 57271))
        );
        // A command name with a space.
        assert_eq!(
            tcplife_ports("77 Web Content 127.0.0.2 21001 127.0.0.1 40000 0 0 1"),
            Some((21001, 40000))
        );
        assert_eq!(
            tcplife_ports("PID     COMM             LADDR           LPORT RADDR           RPORT TX_KB  RX_KB  MS"),
            None
        );
    }

    #[test]
    fn summary_of_an_agent_file() {
        let path = std::env::temp_dir().join(format!("bench-summary-{}", std::process::id()));
        std::fs::write(
            &path,
            concat!(
                r#"{"event_action":"start","src_port":40000,"dest_port":21001}"#,
                "\n",
                r#"{"event_action":"end","src_port":40000,"dest_port":21001}"#,
                "\n",
                r#"{"event_action":"end","src_port":21002,"dest_port":40001}"#,
                "\n",
                r#"{"event":{"type":["end"]},"source":{"port":1},"destination":{"port":21001}}"#,
                "\n",
                r#"{"event_action":"stats","kernel_losses":{"ring_full":0}}"#,
                "\n",
                r#"{"event_action":"stats","kernel_losses":{"ring_full":5}}"#,
                "\n",
                "not json\n",
            ),
        )
        .unwrap();
        let s = summarize(&path, OutputFormat::AgentJson, &[21001, 21003]).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(s.lines, 7);
        assert_eq!(s.ends_by_port.get(&21001), Some(&2));
        assert_eq!(s.ends_by_port.get(&21003), None);
        assert_eq!(s.other_ends, 1);
        assert_eq!(s.kernel_losses.unwrap()["ring_full"], 5);
        assert_eq!(s.schemas["native"], 5);
        assert_eq!(s.schemas["ecs"], 1);
    }

    #[test]
    fn lost_event_lines() {
        let err = "lost 12 events on CPU #0\nsomething else\nLost 3 events\n";
        assert_eq!(peer_lost_events(err), 15);
    }

    #[test]
    fn utc_times() {
        let t = parse_utc("2026-11-23T12:59:59.585730Z").unwrap();
        let d = t.duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(d.as_secs(), 1_795_438_799);
        assert_eq!(d.subsec_micros(), 585_730);
        assert_eq!(parse_utc("1970-01-01T00:00:00Z").unwrap(), UNIX_EPOCH);
        assert_eq!(parse_utc("2026-11-23 12:59:59Z"), None);
    }
}
