//! Event latency: from a flow's end in the kernel (the event's own end time) to the moment its
//! line is seen appended to the output file, read by polling the file every millisecond.
use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, SystemTime},
};

use serde::Serialize;

use super::events::{agent_flow_end, parse_utc};

const POLL: Duration = Duration::from_millis(1);

/// Follows an agent's output file from its current end.
pub struct Tailer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Duration>>,
}

impl Tailer {
    /// Starts following `path`; end events of flows on `port` are timed.
    pub fn start(path: PathBuf, port: u16) -> Tailer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || follow(&path, port, &flag));
        Tailer { stop, thread }
    }

    /// Stops following (after one last read) and returns the latency of every timed event.
    pub fn finish(self) -> Vec<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

fn follow(path: &std::path::Path, port: u16, stop: &AtomicBool) -> Vec<Duration> {
    let mut samples = Vec::new();
    let Ok(mut file) = File::open(path) else {
        return samples;
    };
    if file.seek(SeekFrom::End(0)).is_err() {
        return samples;
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let last_round = stop.load(Ordering::Relaxed);
        loop {
            let n = match file.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let seen = SystemTime::now();
            pending.extend_from_slice(&chunk[..n]);
            let complete = match pending.iter().rposition(|b| *b == b'\n') {
                Some(i) => i + 1,
                None => continue,
            };
            for line in pending[..complete].split(|b| *b == b'\n') {
                if let Some(latency) = line_latency(line, port, seen) {
                    samples.push(latency);
                }
            }
            pending.drain(..complete);
        }
        if last_round {
            return samples;
        }
        std::thread::sleep(POLL);
    }
}

fn line_latency(line: &[u8], port: u16, seen: SystemTime) -> Option<Duration> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let end = agent_flow_end(&v)?;
    if !end.has_port(port) {
        return None;
    }
    let ended = parse_utc(end.end_time.as_deref()?)?;
    // An end written "before" it happened is a clock conversion error of a few µs: count 0.
    Some(seen.duration_since(ended).unwrap_or_default())
}

/// Percentiles of the event latency, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub fn summarize(samples: &[Duration]) -> Option<LatencySummary> {
    if samples.is_empty() {
        return None;
    }
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    Some(LatencySummary {
        samples: ms.len(),
        p50_ms: percentile(&ms, 50.0),
        p99_ms: percentile(&ms, 99.0),
        max_ms: *ms.last().unwrap_or(&0.0),
    })
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }

    #[test]
    fn latency_of_a_line_on_the_port() {
        let line = br#"{"event_action":"end","src_port":40000,"dest_port":21003,"end_time":"2026-11-23T12:00:00.000000Z"}"#;
        let seen = parse_utc("2026-11-23T12:00:00.004500Z").unwrap();
        assert_eq!(
            line_latency(line, 21003, seen),
            Some(Duration::from_micros(4500))
        );
        assert_eq!(line_latency(line, 21001, seen), None);
    }

    #[test]
    fn follows_appended_lines() {
        let path = std::env::temp_dir().join(format!("bench-tail-{}", std::process::id()));
        std::fs::write(&path, b"old line before the start\n").unwrap();
        let tailer = Tailer::start(path.clone(), 21003);
        std::thread::sleep(Duration::from_millis(20));
        let line = "{\"event_action\":\"end\",\"src_port\":1,\"dest_port\":21003,\"end_time\":\"2020-01-01T00:00:00Z\"}\n";
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(line.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let samples = tailer.finish();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(samples.len(), 1);
        assert!(samples[0] > Duration::from_secs(86_400));
    }
}
