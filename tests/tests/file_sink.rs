//! The file sink under a real tailer: the agent writes JSON lines to a file with small
//! rotation sizes while real flows run on a namespace's loopback; a private rsyslogd tails the
//! file with imfile (inotify mode) and must read every event exactly once across rotations.
//! Also: the file removed by an administrator, and a full disk.
//!
//! Every agent here has a second output, native JSON on stdout, as the reference of what the
//! agent wrote: the same records reach both outputs in the same batches.
//!
//! Needs root, kernel BTF, iproute2, python3 and rsyslog (`cargo xtask setup`).

mod common;

use anyhow::{bail, ensure, Context, Result};
use common::*;
use flow_agent_tests::{
    describe_bound, require_tools, slowed, Agent, Cmd, Spawned, TempDir, TestHost,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The port of the traffic's server; the full-disk test uses its own, to filter on.
const PORT: u16 = 9300;
const FULL_DISK_PORT: u16 = 9301;
/// Bound for the agent to report a wave's flows, and for a tailer or the sink to catch up
/// with the stdout reference. Generous: on a loaded host the agent drains other tests' flows
/// in large batches first.
const CATCH_UP: Duration = Duration::from_secs(120);

/// Opens `count` TCP connections to itself on 127.0.0.1:PORT, one after the other: the client
/// sends 100 bytes and half-closes, the server reads to EOF and closes. Prints `done`.
const TRAFFIC: &str = r#"
import socket, sys, threading
port, count = int(sys.argv[1]), int(sys.argv[2])
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(128)
def serve():
    for _ in range(count):
        c, _ = ls.accept()
        while c.recv(65536):
            pass
        c.close()
t = threading.Thread(target=serve)
t.start()
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"q" * 100)
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
    s.close()
t.join()
ls.close()
print("done", flush=True)
"#;

/// Flows on this test's loopback.
struct Traffic {
    host: TestHost,
    netns: u64,
    script: PathBuf,
    port: u16,
    connections: usize,
}

impl Traffic {
    fn new(dir: &TempDir) -> Result<Traffic> {
        Traffic::on_port(dir, PORT)
    }

    fn on_port(dir: &TempDir, port: u16) -> Result<Traffic> {
        let host = TestHost::new()?;
        let netns = host.netns_inode()?;
        // A file keeps the command line (in every event) short.
        let script = dir.write("traffic.py", TRAFFIC)?;
        Ok(Traffic {
            host,
            netns,
            script,
            port,
            connections: 0,
        })
    }

    /// Runs `count` connections and waits until the agent reported the end of all of them
    /// (two flows each: the client's and the server's) on its stdout.
    fn wave(&mut self, agent: &Agent, count: usize) -> Result<()> {
        let proc = self
            .host
            .cmd(&python()?.display().to_string())
            .arg(&self.script)
            .args([self.port.to_string(), count.to_string()])
            .spawn()?;
        finish(proc, Duration::from_secs(60))?;
        self.connections += count;
        agent.wait_for_count(|e| self.is_end(e), 2 * self.connections, CATCH_UP)?;
        Ok(())
    }

    /// An end event of one of our flows.
    fn is_end(&self, e: &Value) -> bool {
        is_end(e) && self.is_ours(e)
    }

    fn is_ours(&self, e: &Value) -> bool {
        get(e, "netns").as_u64() == Some(self.netns)
            && get(e, "transport_protocol") == "tcp"
            && get(e, "dest_port").as_u64() == Some(u64::from(self.port))
    }
}

/// `[outputs.file]` named `events`, plus the stdout reference, without stats events unless
/// `stats_interval` says so.
fn agent_config(dir: &TempDir, file_table: &str, stats_interval: u64) -> Result<PathBuf> {
    dir.write(
        "agent.toml",
        format!(
            "[health]\nstats_interval = {stats_interval}\n\n\
             [[outputs]]\nname = \"events\"\n[outputs.file]\n{file_table}\n\n\
             [[outputs]]\nname = \"reference\"\n[outputs.stdout]\n"
        ),
    )
}

fn start_agent(config: &Path) -> Result<Agent> {
    agent(&["--config", &config.display().to_string()])
}

/// Each line as canonical JSON; an error names any line that is not JSON (a partial line).
fn json_lines(text: &str, what: &str) -> Result<Vec<String>> {
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str::<Value>(l)
                .map(|v| v.to_string())
                .with_context(|| format!("{what} line {} is not a JSON record: {l:?}", i + 1))
        })
        .collect()
}

fn read_json_lines(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    json_lines(&text, &path.display().to_string())
}

fn counts(lines: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in lines {
        *m.entry(l).or_insert(0) += 1;
    }
    m
}

/// Records of `a` not in `b` as often (a multiset difference), for failure messages.
fn missing(a: &BTreeMap<String, usize>, b: &BTreeMap<String, usize>) -> Vec<String> {
    a.iter()
        .filter(|(k, n)| b.get(*k).copied().unwrap_or(0) < **n)
        .map(|(k, n)| format!("{n}× {k}"))
        .collect()
}

fn count_lines(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// Polls `check` until it returns `Some`, for `bound` × FLOW_TEST_SLOW.
fn wait_until<T>(
    what: &str,
    bound: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + slowed(bound);
    loop {
        if let Some(v) = check()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {}", describe_bound(bound));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A private rsyslogd: its own configuration, work directory and pid file, no system
/// inputs (no imuxsock, no imklog); imfile tails `watched` and every line it reads goes to
/// `received` unchanged.
struct Rsyslog {
    proc: Option<Spawned>,
    received: PathBuf,
}

impl Rsyslog {
    fn start(dir: &TempDir, watched: &Path) -> Result<Rsyslog> {
        let work = dir.path().join("rsyslog-work");
        std::fs::create_dir(&work)?;
        let received = dir.path().join("received.log");
        let conf = dir.write(
            "rsyslog.conf",
            format!(
                r#"global(workDirectory="{work}" maxMessageSize="64k")
module(load="imfile" mode="inotify")
template(name="line" type="string" string="%msg%\n")
ruleset(name="tail") {{
  action(type="omfile" file="{received}" template="line")
}}
input(type="imfile" file="{watched}" tag="flow-agent:" ruleset="tail")
"#,
                work = work.display(),
                received = received.display(),
                watched = watched.display(),
            ),
        )?;
        let pid_file = dir.path().join("rsyslogd.pid");
        let bin = flow_agent_tests::find_tool("rsyslogd")?;
        let proc = Cmd::host(&bin.display().to_string())
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(&pid_file)
            .spawn()?;
        Ok(Rsyslog {
            proc: Some(proc),
            received,
        })
    }

    /// What imfile read so far, one canonical JSON record per line.
    fn lines(&self) -> Result<Vec<String>> {
        match std::fs::read_to_string(&self.received) {
            Ok(text) => json_lines(&text, "rsyslog output"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until rsyslog has written at least `n` lines.
    fn wait_for(&mut self, n: usize) -> Result<Vec<String>> {
        let deadline = Instant::now() + slowed(CATCH_UP);
        loop {
            let lines = self.lines()?;
            if lines.len() >= n {
                return Ok(lines);
            }
            let proc = self.proc.as_mut().expect("running");
            if let Some(status) = proc.try_status()? {
                bail!(
                    "rsyslogd exited ({status}): {}",
                    proc.stderr_so_far().trim()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "rsyslog read {}/{n} lines within {}; rsyslogd stderr: {}",
                    lines.len(),
                    describe_bound(CATCH_UP),
                    proc.stderr_so_far().trim()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops rsyslogd (SIGTERM: it writes out what it holds) and returns everything it read.
    fn stop(mut self) -> Result<Vec<String>> {
        let proc = self.proc.take().expect("running");
        proc.signal(libc::SIGTERM)?;
        let out = proc.wait(Duration::from_secs(20))?;
        ensure!(
            out.status.success(),
            "rsyslogd exited with {}: {}",
            out.status,
            out.stderr_str().trim()
        );
        self.lines()
    }
}

/// The sink's files: the live one and `<path>.N`.
fn sink_files(path: &Path) -> Result<Vec<PathBuf>> {
    let dir = path.parent().context("no parent")?;
    let name = path
        .file_name()
        .context("no file name")?
        .to_string_lossy()
        .into_owned();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| {
        let n = p.file_name().unwrap_or_default().to_string_lossy();
        n == name
            || n.strip_prefix(&format!("{name}."))
                .is_some_and(|i| i.bytes().all(|b| b.is_ascii_digit()))
    });
    files.sort();
    Ok(files)
}

fn mode_of(p: &Path) -> Result<u32> {
    Ok(std::fs::metadata(p)?.permissions().mode() & 0o7777)
}

const ROTATE_SIZE: u64 = 32 * 1024;
const MAX_FILES: usize = 3;
/// Far above what this test writes on a quiet host, so that max_files decides which files go,
/// but not above what a busy host (other tests' traffic) may bring while the sink puts 1 s
/// between rotations: the cap must hold all the same.
const MAX_TOTAL: u64 = 64 * 1024 * 1024;

#[test]
fn rsyslog_imfile_reads_every_event_once_across_rotations() -> Result<()> {
    setup()?;
    require_tools(&["rsyslogd"])?;
    let dir = TempDir::new("flow-file-sink")?;
    let out = dir.path().join("out");
    std::fs::create_dir(&out)?;
    let path = out.join("events.log");
    // rsyslog must watch before the first rotation: it proves it does by reading a marker.
    std::fs::write(&path, "{\"marker\":\"rsyslog is reading\"}\n")?;
    let mut rsyslog = Rsyslog::start(&dir, &path)?;
    rsyslog.wait_for(1)?;

    let config = agent_config(
        &dir,
        &format!(
            "path = \"{}\"\nrotate_size = {ROTATE_SIZE}\nmax_files = {MAX_FILES}\nmax_total_size = {MAX_TOTAL}",
            path.display()
        ),
        0,
    )?;
    let agent = start_agent(&config)?;
    let mut traffic = Traffic::new(&dir)?;
    // Waves of ~50 events (more than a file holds) until the sink rotated several times;
    // rsyslog catches up after each, as a tailer does between rotations that are seconds
    // apart in production (the sink puts at least 1 s between them).
    let mut waves = 0;
    while count_lines(&agent.stderr(), "file sink: rotated") < 6 {
        ensure!(
            waves < 200,
            "{waves} waves and still not 6 rotations:\n{}",
            agent.stderr()
        );
        traffic.wave(&agent, 12)?;
        let written = agent.events().len();
        rsyslog.wait_for(1 + written)?;
        waves += 1;
    }
    let log = agent.stderr();
    let reference: Vec<String> = agent.stop()?.iter().map(Value::to_string).collect();
    let ends = reference
        .iter()
        .filter(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_default();
            traffic.is_end(&v)
        })
        .count();
    ensure!(
        ends == 2 * traffic.connections,
        "{ends} end events of our flows for {} connections",
        traffic.connections
    );
    rsyslog.wait_for(1 + reference.len())?;
    let mut received = rsyslog.stop()?;
    ensure!(
        received.first().is_some_and(|l| l.contains("marker")),
        "rsyslog's first line is not the marker: {:?}",
        received.first()
    );
    received.remove(0);

    // Every record exactly once, whichever file it was in when rsyslog read it.
    let (want, got) = (counts(reference.clone()), counts(received.clone()));
    if want != got {
        bail!(
            "rsyslog read {} records, the agent wrote {}\nnot read (or read too few times):\n{}\nread but not written (or too often):\n{}",
            received.len(),
            reference.len(),
            missing(&want, &got).join("\n"),
            missing(&got, &want).join("\n")
        );
    }
    // By flow and action too, as a SIEM would count them.
    let by_action = |lines: &[String]| -> BTreeMap<(String, String), usize> {
        let mut m = BTreeMap::new();
        for l in lines {
            let v: Value = serde_json::from_str(l).unwrap_or_default();
            if traffic.is_ours(&v) {
                let key = (
                    get(&v, "flow_id").as_str().unwrap_or_default().to_string(),
                    get(&v, "event_action")
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
                *m.entry(key).or_insert(0) += 1;
            }
        }
        m
    };
    let ours = by_action(&received);
    ensure!(
        ours == by_action(&reference),
        "our flows' events differ by flow and action"
    );
    ensure!(
        ours.values().all(|n| *n == 1),
        "a flow event was read more than once"
    );
    ensure!(ours.keys().filter(|(_, a)| a == "end").count() == 2 * traffic.connections);

    // Rotations (at least 6, see above) made max_files delete files; the caps and the mode
    // hold.
    ensure!(
        count_lines(&log, "deleted the oldest rotated file") >= 1,
        "no rotated file deleted:\n{log}"
    );
    let files = sink_files(&path)?;
    ensure!(
        files.len() <= 1 + MAX_FILES,
        "more than {MAX_FILES} rotated files: {files:?}"
    );
    let mut total = 0;
    for f in &files {
        ensure!(
            mode_of(f)? == 0o640,
            "{} has mode {:o}",
            f.display(),
            mode_of(f)?
        );
        total += std::fs::metadata(f)?.len();
        // The files hold whole records the agent wrote.
        for l in read_json_lines(f)? {
            ensure!(
                l.contains("marker") || want.contains_key(&l),
                "{}: unknown record {l}",
                f.display()
            );
        }
    }
    ensure!(
        total <= MAX_TOTAL,
        "the sink's files take {total} bytes, over {MAX_TOTAL}"
    );
    ensure!(
        files.iter().any(|f| f.ends_with("events.log.1")),
        "no rotated file left: {files:?}"
    );
    Ok(())
}

#[test]
fn a_file_removed_by_an_administrator_is_recreated_with_the_next_events() -> Result<()> {
    setup()?;
    let dir = TempDir::new("flow-file-sink")?;
    let path = dir.path().join("events.log");
    let config = agent_config(&dir, &format!("path = \"{}\"", path.display()), 0)?;
    let agent = start_agent(&config)?;
    let mut traffic = Traffic::new(&dir)?;

    traffic.wave(&agent, 5)?;
    let before: Vec<String> = ours_ended(&agent, &traffic);
    wait_for_records(&path, &before)?;
    std::fs::remove_file(&path)?;

    traffic.wave(&agent, 5)?;
    let after: Vec<String> = ours_ended(&agent, &traffic)
        .into_iter()
        .filter(|e| !before.contains(e))
        .collect();
    ensure!(after.len() == 10, "{} new end events", after.len());
    let lines = wait_for_records(&path, &after)?;
    for e in &before {
        ensure!(
            !lines.contains(e),
            "an event written before the removal is in the new file: {e}"
        );
    }
    ensure!(
        mode_of(&path)? == 0o640,
        "new file has mode {:o}",
        mode_of(&path)?
    );
    // Logged before the new file was written, but it may reach stderr's reader after that.
    let reopened = "was removed or moved away while open; writing to a new file";
    let log = agent.stderr_once_it_has(reopened, CATCH_UP);
    ensure!(
        count_lines(&log, reopened) == 1,
        "the reopening is not logged once:\n{log}"
    );
    let reference: Vec<String> = agent.stop()?.iter().map(Value::to_string).collect();
    // The new file holds only records the agent wrote, whole.
    let reference = counts(reference);
    for l in read_json_lines(&path)? {
        ensure!(reference.contains_key(&l), "unknown record {l}");
    }
    Ok(())
}

/// End events of our flows printed on stdout so far, canonical.
fn ours_ended(agent: &Agent, traffic: &Traffic) -> Vec<String> {
    agent
        .events()
        .iter()
        .filter(|e| traffic.is_end(e))
        .map(Value::to_string)
        .collect()
}

/// Waits until every record of `want` is in the file; returns the file's records.
fn wait_for_records(path: &Path, want: &[String]) -> Result<Vec<String>> {
    let mut last = 0;
    wait_until(
        &format!("{} records in {}", want.len(), path.display()),
        CATCH_UP,
        || {
            let lines = match read_json_lines(path) {
                Ok(l) => l,
                Err(_) if !path.exists() => return Ok(None),
                Err(e) => return Err(e),
            };
            let have = counts(lines.clone());
            last = want.iter().filter(|w| have.contains_key(*w)).count();
            Ok((last == want.len()).then_some(lines))
        },
    )
    .with_context(|| format!("{last} of them arrived"))
}

/// A size-limited tmpfs mounted on a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs> {
        use std::ffi::CString;
        std::fs::create_dir(dir)?;
        let target = CString::new(dir.as_os_str().as_encoded_bytes())?;
        let opts = CString::new(format!("size={size},mode=0755"))?;
        // SAFETY: valid NUL-terminated strings; mount(2) copies them.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        ensure!(
            rc == 0,
            "mounting a tmpfs on {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Ok(target) = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()) {
            // SAFETY: a valid path; MNT_DETACH even if a process still has a file open there.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Fills the file system of `path` until a write fails with ENOSPC.
fn fill(path: &Path) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    let chunk = [0u8; 4096];
    loop {
        match f.write(&chunk) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The counters of the sink `name` in a stats event.
fn sink_report<'a>(stats: &'a Value, name: &str) -> Result<&'a Value> {
    get(stats, "sinks")
        .as_array()
        .and_then(|s| s.iter().find(|r| get(r, "name") == name))
        .with_context(|| format!("no sink {name} in {stats}"))
}

fn counter(report: &Value, key: &str) -> u64 {
    get(report, key).as_u64().unwrap_or(0)
}

fn is_stats(e: &Value) -> bool {
    get(e, "event_action") == "stats"
}

#[test]
fn a_full_disk_drops_and_counts_whole_batches_and_writing_resumes_when_space_frees() -> Result<()> {
    setup()?;
    let dir = TempDir::new("flow-file-sink")?;
    let mnt = dir.path().join("small");
    // Room for every record of the test once the filler is gone, whatever else the host does:
    // the global filter keeps other tests' flows (which the agent sees too) out of the file.
    let tmpfs = Tmpfs::mount(&mnt, "4m")?;
    let path = mnt.join("events.log");
    let config = agent_config(
        &dir,
        &format!("path = \"{}\"\nrotate_size = \"16MiB\"", path.display()),
        1,
    )?;
    let mut toml = std::fs::read_to_string(&config)?;
    toml.push_str(&format!(
        "\n[filter]\ninclude = [{{ local_port = {FULL_DISK_PORT} }}, {{ remote_port = {FULL_DISK_PORT} }}]\n"
    ));
    std::fs::write(&config, toml)?;
    let agent = start_agent(&config)?;
    let mut traffic = Traffic::on_port(&dir, FULL_DISK_PORT)?;

    traffic.wave(&agent, 5)?;
    wait_for_records(&path, &ours_ended(&agent, &traffic))?;

    let filler = mnt.join("filler");
    fill(&filler)?;
    traffic.wave(&agent, 5)?;
    agent.wait_for(
        |e| is_stats(e) && sink_report(e, "events").is_ok_and(|r| counter(r, "dropped") > 0),
        CATCH_UP,
    )?;
    let log = agent.stderr_once_it_has("No space left on device", CATCH_UP);
    ensure!(
        count_lines(&log, "No space left on device") >= 1,
        "the full disk is not logged:\n{log}"
    );

    std::fs::remove_file(&filler)?;
    traffic.wave(&agent, 5)?;
    let ended = ours_ended(&agent, &traffic);
    wait_for_records(&path, &ended[ended.len() - 10..])?;
    // Each episode is logged once at its start and once at its end, not per failed batch. (A
    // small batch may still fit in the last page of the file while the disk is full, which
    // splits an episode in two.) The end is logged after the write that put the records in
    // the file, and may reach stderr's reader later still: polled for.
    let deadline = Instant::now() + slowed(CATCH_UP);
    let (failures, recoveries, log) = loop {
        let log = agent.stderr();
        let (failures, recoveries) = (
            count_lines(&log, "No space left on device"),
            count_lines(&log, "works again;"),
        );
        if failures == recoveries || Instant::now() > deadline {
            break (failures, recoveries, log);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    ensure!(
        failures == recoveries,
        "{failures} failure and {recoveries} recovery messages:\n{log}"
    );

    // The next stats event: every record the file sink took is in the file before it, or
    // was counted as dropped.
    let stats_so_far = agent.events().iter().filter(|e| is_stats(e)).count();
    let stats = agent
        .wait_for_count(is_stats, stats_so_far + 1, CATCH_UP)?
        .pop()
        .context("no stats event")?;
    let stats_line = stats.to_string();
    let lines = wait_for_records(&path, std::slice::from_ref(&stats_line))?;
    let at = lines
        .iter()
        .position(|l| *l == stats_line)
        .context("stats event not in the file")?;
    let (file, stdout) = (
        sink_report(&stats, "events")?,
        sink_report(&stats, "reference")?,
    );
    ensure!(
        counter(file, "sent") == at as u64,
        "{at} lines before {stats}"
    );
    ensure!(
        counter(file, "errors") >= failures as u64 && counter(file, "dropped") >= 1,
        "{stats}"
    );
    ensure!(
        counter(file, "sent") + counter(file, "dropped") == counter(stdout, "sent"),
        "the file sink lost track of records: {stats}"
    );
    ensure!(
        counter(file, "accepted") == counter(stdout, "accepted"),
        "{stats}"
    );
    agent.stop()?;
    drop(tmpfs);
    Ok(())
}

/// The gid of `name` in /etc/group.
fn group_id(name: &str) -> Result<u32> {
    let groups = std::fs::read_to_string("/etc/group")?;
    groups
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| f.get(2)?.parse().ok())?
        })
        .with_context(|| format!("no group {name} in /etc/group"))
}

/// A line of `/proc/PID/status`, e.g. `CapEff`, without its label.
fn proc_status(pid: u32, key: &str) -> Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .with_context(|| format!("no {key} in /proc/{pid}/status"))
}

/// The agent as root (`user` None) or as `user`, writing small files with `group = "adm"`:
/// files created by rotations after the capability drop (no CAP_CHOWN left) still get the
/// group, because the agent joined it at start-up.
fn rotate_with_group_after_the_drop(user: Option<(&str, u32)>) -> Result<()> {
    let adm = group_id("adm")?;
    let dir = TempDir::new("flow-file-group")?;
    let out = dir.path().join("out");
    std::fs::create_dir(&out)?;
    let owner = user.map_or(0, |(_, uid)| uid);
    std::os::unix::fs::chown(&out, Some(owner), None)?;
    let path = out.join("events.log");
    let agent_table = user.map_or(String::new(), |(name, _)| {
        format!("[agent]\nuser = \"{name}\"\n")
    });
    let config = dir.write(
        "agent.toml",
        format!(
            "{agent_table}[health]\nstats_interval = 0\nmetrics_listen = \"\"\n\n\
             [[outputs]]\nname = \"events\"\n[outputs.file]\npath = \"{}\"\n\
             rotate_size = 4096\ngroup = \"adm\"\n\n\
             [[outputs]]\nname = \"reference\"\n[outputs.stdout]\n",
            path.display()
        ),
    )?;
    let agent = start_agent(&config)?;
    // Ready means dropped: only CAP_SYS_PTRACE and CAP_SYS_ADMIN are left, and adm is one
    // of the agent's groups.
    let pid = agent.pid();
    ensure!(
        proc_status(pid, "CapEff")? == "0000000000280000",
        "CapEff {}",
        proc_status(pid, "CapEff")?
    );
    let groups = proc_status(pid, "Groups")?;
    ensure!(
        groups.split_whitespace().any(|g| g == adm.to_string()),
        "groups {groups}"
    );
    let mut traffic = Traffic::new(&dir)?;
    // Size rotations are at least a second apart (MIN_ROTATION_GAP): waves until two came,
    // bounded in time, not in count (an agent that drains every 20 ms makes waves fast).
    let started = std::time::Instant::now();
    let mut waves = 0;
    while count_lines(&agent.stderr(), "file sink: rotated") < 2 {
        ensure!(
            started.elapsed() < flow_agent_tests::slowed(Duration::from_secs(30)),
            "no 2 rotations after {waves} waves:\n{}",
            agent.stderr()
        );
        traffic.wave(&agent, 5)?;
        waves += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = agent.stderr();
    agent.stop()?;
    // Every rotation and write worked, and the group was joined.
    let failures = log
        .lines()
        .filter(|l| (l.contains("file sink:") && l.contains("failed")) || l.contains("cannot join"))
        .count();
    ensure!(failures == 0, "failures in the agent's log:\n{log}");
    let files = sink_files(&path)?;
    ensure!(files.len() >= 3, "files {files:?}");
    for f in &files {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(f)?;
        ensure!(
            (meta.uid(), meta.gid(), mode_of(f)?) == (owner, adm, 0o640),
            "{}: uid {} gid {} mode {:o}, expected {owner} {adm} 640",
            f.display(),
            meta.uid(),
            meta.gid(),
            mode_of(f)?
        );
    }
    Ok(())
}

#[test]
fn rotation_after_the_capability_drop_gives_new_files_the_configured_group() -> Result<()> {
    setup()?;
    rotate_with_group_after_the_drop(None)?;
    rotate_with_group_after_the_drop(Some(("nobody", 65534)))
}

/// Runs the agent with a configuration it must refuse; returns its stderr.
fn refused(config: &Path) -> Result<String> {
    let out = Cmd::host(&Agent::binary()?.display().to_string())
        .args(["run", "--config", &config.display().to_string()])
        .timeout(Duration::from_secs(60))
        .output()?;
    ensure!(
        !out.status.success(),
        "the agent accepted the configuration: {}",
        out.stderr_str()
    );
    Ok(out.stderr_str())
}

#[test]
fn an_output_directory_others_could_write_in_or_a_linked_file_is_refused_naming_it() -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    setup()?;
    let dir = TempDir::new("flow-file-refused")?;
    let make = |name: &str, mode: u32| -> Result<PathBuf> {
        let p = dir.path().join(name);
        std::fs::create_dir(&p)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        Ok(p)
    };
    let config = |path: &Path| agent_config(&dir, &format!("path = \"{}\"", path.display()), 0);
    // Others may write in it: a configuration error, before anything starts.
    let shared = make("shared", 0o777)?;
    let err = refused(&config(&shared.join("events.log"))?)?;
    ensure!(
        err.contains(&format!(
            "outputs[0].file.path: directory {0}: mode 0777 lets its group and all users create files in it (expected no write permission for group and others; chmod go-w {0})",
            shared.display()
        )),
        "{err}"
    );
    // Another user's: refused when the sink opens.
    let theirs = make("theirs", 0o755)?;
    std::os::unix::fs::chown(&theirs, Some(65534), None)?;
    let err = refused(&config(&theirs.join("events.log"))?)?;
    ensure!(
        err.contains(&format!(
            "outputs.file.path: cannot open {}: directory {} is refused: it belongs to uid 65534, another user",
            theirs.join("events.log").display(),
            theirs.display()
        )),
        "{err}"
    );
    // The live file planted as a hard link to a file elsewhere: refused, left as it was (the
    // sink would have set its mode and group and appended to it).
    let ours = make("ours", 0o755)?;
    let outside = TempDir::new("flow-file-outside")?;
    let target = outside.write("precious", "root:x:0:0::/root:/bin/sh\n")?;
    let live = ours.join("events.log");
    std::fs::hard_link(&target, &live)?;
    let err = refused(&agent_config(
        &dir,
        &format!(
            "path = \"{}\"\nmode = 0o600\ngroup = \"adm\"",
            live.display()
        ),
        0,
    )?)?;
    ensure!(
        err.contains(&format!(
            "outputs.file.path: cannot open {}: has 2 hard links",
            live.display()
        )),
        "{err}"
    );
    let meta = std::fs::metadata(&target)?;
    ensure!(
        std::fs::read_to_string(&target)? == "root:x:0:0::/root:/bin/sh\n"
            && (meta.mode() & 0o7777, meta.gid(), meta.nlink()) == (0o644, 0, 2),
        "the target was changed: mode {:o} gid {}",
        meta.mode() & 0o7777,
        meta.gid()
    );
    Ok(())
}
