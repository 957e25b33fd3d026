//! The delivery layer against a transport that fails on demand.
use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use super::{spawn, start, DeliveryConfig, DropPolicy, SendFuture, Transport, TransportError};
use crate::sink::{Sink, SinkStats};

/// A scratch directory removed on drop.
pub(crate) struct TestDir(PathBuf);

impl TestDir {
    pub(crate) fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "flow-agent-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Up,
    Down,
    /// Refuses the first n records of the next batch for good, takes the rest.
    RejectFirst(usize),
    /// Never answers.
    Hang,
    /// Takes nothing and asks to be left alone for this long.
    Throttle(Duration),
    /// Takes the batch, except that every nth attempt panics half-way (a transport's bug)
    /// and takes nothing.
    PanicEvery(u64),
}

#[derive(Clone)]
struct Remote {
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    mode: Arc<Mutex<Mode>>,
    attempts: Arc<AtomicU64>,
    /// When each attempt began.
    attempted_at: Arc<Mutex<Vec<Instant>>>,
}

impl Remote {
    fn new(mode: Mode) -> Self {
        Self {
            received: Arc::default(),
            mode: Arc::new(Mutex::new(mode)),
            attempts: Arc::default(),
            attempted_at: Arc::default(),
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap().clone()
    }

    fn transport(&self) -> Box<dyn Transport> {
        Box::new(self.clone())
    }
}

impl Transport for Remote {
    fn send<'a>(&'a mut self, records: &'a [Vec<u8>]) -> SendFuture<'a> {
        Box::pin(async move {
            let attempt = self.attempts.fetch_add(1, Relaxed) + 1;
            self.attempted_at.lock().unwrap().push(Instant::now());
            let mode = *self.mode.lock().unwrap();
            match mode {
                Mode::Up => {
                    self.received.lock().unwrap().extend_from_slice(records);
                    Ok(())
                }
                Mode::Down => Err(TransportError::Retry("connection refused".into())),
                Mode::RejectFirst(n) => {
                    self.set(Mode::Up);
                    let n = n.min(records.len());
                    self.received
                        .lock()
                        .unwrap()
                        .extend_from_slice(&records[n..]);
                    Err(TransportError::Rejected {
                        count: n,
                        reason: "bad request".into(),
                    })
                }
                Mode::Hang => std::future::pending().await,
                Mode::PanicEvery(n) => {
                    if attempt.is_multiple_of(n) {
                        // Half-way: an await point passed, the batch not taken.
                        tokio::task::yield_now().await;
                        panic!("test transport bug at attempt {attempt}");
                    }
                    self.received.lock().unwrap().extend_from_slice(records);
                    Ok(())
                }
                Mode::Throttle(after) => Err(TransportError::Throttled {
                    reason: "HTTP 429 Too Many Requests".into(),
                    after,
                }),
            }
        })
    }

    fn max_batch(&self) -> usize {
        64
    }

    fn describe(&self) -> String {
        "test remote".into()
    }
}

fn config(dir: &TestDir) -> DeliveryConfig {
    DeliveryConfig {
        queue_records: 100,
        buffer_dir: Some(dir.path().to_path_buf()),
        buffer_max_bytes: 1 << 20,
        batch_records: 50,
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        send_timeout: Duration::from_secs(5),
        close_timeout: Duration::from_secs(2),
        ..DeliveryConfig::default()
    }
}

fn stats() -> Arc<SinkStats> {
    Arc::new(SinkStats::new("test".into(), "syslog", "native"))
}

/// Like [`spawn`], once the worker waits for records: until the next flush it takes none, so
/// what goes to memory and what to disk does not depend on timing.
fn spawn_idle(
    transport: Box<dyn Transport>,
    cfg: &DeliveryConfig,
    stats: Arc<SinkStats>,
) -> Box<dyn Sink> {
    let sink = start(transport, cfg, stats).unwrap();
    for _ in 0..2000 {
        if sink.shared.idle.load(Relaxed) {
            return Box::new(sink);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the worker did not become idle");
}

fn rec(i: usize) -> Vec<u8> {
    format!("record-{i:06}").into_bytes()
}

fn recs(range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range.map(rec).collect()
}

fn submit(sink: &mut Box<dyn Sink>, range: std::ops::Range<usize>) {
    for i in range {
        sink.submit(&rec(i));
    }
    sink.flush();
}

/// (sent, queued, buffered, dropped)
fn counts(s: &SinkStats) -> (u64, u64, u64, u64) {
    (
        s.sent.load(Relaxed),
        s.queued.load(Relaxed),
        s.buffered.load(Relaxed),
        s.dropped.load(Relaxed),
    )
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn delivers_everything_in_order_when_the_destination_is_up() {
    let dir = TestDir::new("dlv-up");
    let remote = Remote::new(Mode::Up);
    let st = stats();
    let mut sink = spawn(remote.transport(), &config(&dir), st.clone()).unwrap();
    submit(&mut sink, 0..1000);
    until("1000 sent", || st.sent.load(Relaxed) == 1000).await;
    assert_eq!(remote.received(), recs(0..1000));
    assert_eq!(counts(&st), (1000, 0, 0, 0));
    sink.close().await;
}

#[tokio::test]
async fn an_outage_spills_to_disk_and_everything_arrives_in_order_afterwards() {
    let dir = TestDir::new("dlv-outage");
    let remote = Remote::new(Mode::Down);
    let st = stats();
    let mut sink = spawn(remote.transport(), &config(&dir), st.clone()).unwrap();
    submit(&mut sink, 0..3000);
    // 100 in memory, the rest on disk, nothing lost.
    assert_eq!(counts(&st), (0, 100, 2900, 0));
    until("retries", || st.reconnects.load(Relaxed) >= 3).await;
    assert!(remote.received().is_empty());
    // More records during the outage keep their place behind the buffered ones.
    submit(&mut sink, 3000..3500);
    remote.set(Mode::Up);
    until("3500 sent", || st.sent.load(Relaxed) == 3500).await;
    assert_eq!(remote.received(), recs(0..3500));
    assert_eq!(counts(&st), (3500, 0, 0, 0));
    assert!(st.errors.load(Relaxed) >= 3);
    // Back to memory once the buffer is empty.
    submit(&mut sink, 3500..3600);
    until("3600 sent", || st.sent.load(Relaxed) == 3600).await;
    assert_eq!(remote.received(), recs(0..3600));
    sink.close().await;
    assert!(
        super::disk::DiskBuffer::open(dir.path(), 1 << 20)
            .unwrap()
            .1
            .records
            == 0
    );
}

#[tokio::test]
async fn close_persists_memory_and_disk_and_the_next_instance_replays_first() {
    let dir = TestDir::new("dlv-reload");
    let remote = Remote::new(Mode::Down);
    let st = stats();
    let mut sink = spawn(remote.transport(), &config(&dir), st.clone()).unwrap();
    submit(&mut sink, 0..300);
    until("a failed attempt", || remote.attempts.load(Relaxed) >= 1).await;
    sink.close().await;
    assert_eq!(counts(&st), (0, 0, 300, 0));

    // Reload: a new instance, same buffer; it finds everything (a batch it tries to send
    // stays counted as buffered until acknowledged), then the destination comes back.
    let st2 = stats();
    let mut sink = spawn(remote.transport(), &config(&dir), st2.clone()).unwrap();
    assert_eq!(st2.buffered.load(Relaxed), 300);
    submit(&mut sink, 300..350);
    remote.set(Mode::Up);
    until("350 sent", || st2.sent.load(Relaxed) == 350).await;
    assert_eq!(remote.received(), recs(0..350));
    assert_eq!(counts(&st2), (350, 0, 0, 0));
    sink.close().await;
}

#[tokio::test]
async fn close_sends_what_memory_holds_when_the_destination_is_up() {
    let dir = TestDir::new("dlv-close-up");
    let remote = Remote::new(Mode::Up);
    let st = stats();
    let mut sink = spawn_idle(remote.transport(), &config(&dir), st.clone());
    // Without a flush the worker does not take them: everything is in memory at close.
    for i in 0..90 {
        sink.submit(&rec(i));
    }
    sink.close().await;
    assert_eq!(remote.received(), recs(0..90));
    assert_eq!(counts(&st), (90, 0, 0, 0));
}

#[tokio::test]
async fn close_sends_what_the_disk_buffer_holds_when_the_destination_is_up() {
    let dir = TestDir::new("dlv-close-disk");
    let remote = Remote::new(Mode::Up);
    let st = stats();
    let mut sink = spawn_idle(remote.transport(), &config(&dir), st.clone());
    // Past the memory queue (100): the rest is in the disk buffer at close.
    for i in 0..250 {
        sink.submit(&rec(i));
    }
    assert_eq!(counts(&st), (0, 100, 150, 0));
    sink.close().await;
    assert_eq!(remote.received(), recs(0..250));
    assert_eq!(counts(&st), (250, 0, 0, 0));
}

#[tokio::test]
async fn a_hanging_destination_at_close_leaves_everything_in_the_buffer() {
    let dir = TestDir::new("dlv-hang-close");
    let remote = Remote::new(Mode::Hang);
    let st = stats();
    let mut cfg = config(&dir);
    cfg.close_timeout = Duration::from_millis(200);
    let mut sink = spawn(remote.transport(), &cfg, st.clone()).unwrap();
    submit(&mut sink, 0..150);
    until("the hanging send", || remote.attempts.load(Relaxed) == 1).await;
    sink.close().await;
    assert_eq!(counts(&st), (0, 0, 150, 0));
    remote.set(Mode::Up);
    let mut sink = spawn(remote.transport(), &cfg, stats()).unwrap();
    sink.flush();
    until("150 records", || remote.received().len() == 150).await;
    assert_eq!(remote.received(), recs(0..150));
    sink.close().await;
}

#[tokio::test]
async fn a_send_that_hangs_is_abandoned_after_send_timeout_and_retried() {
    let dir = TestDir::new("dlv-hang");
    let remote = Remote::new(Mode::Hang);
    let st = stats();
    let mut cfg = config(&dir);
    cfg.send_timeout = Duration::from_millis(100);
    let mut sink = spawn(remote.transport(), &cfg, st.clone()).unwrap();
    submit(&mut sink, 0..20);
    until("the hanging send", || remote.attempts.load(Relaxed) == 1).await;
    remote.set(Mode::Up);
    until("20 sent", || st.sent.load(Relaxed) == 20).await;
    assert_eq!(remote.received(), recs(0..20));
    assert_eq!(st.errors.load(Relaxed), 1);
    assert_eq!(counts(&st), (20, 0, 0, 0));
    sink.close().await;
}

#[tokio::test]
async fn a_worker_whose_transport_panics_is_restarted_and_every_record_arrives_once() {
    let dir = TestDir::new("dlv-panic");
    // Every 4th send panics: batches from memory and from the disk buffer alike.
    let remote = Remote::new(Mode::PanicEvery(4));
    let st = stats();
    let mut sink = spawn(remote.transport(), &config(&dir), st.clone()).unwrap();
    submit(&mut sink, 0..3000);
    until("3000 sent", || st.sent.load(Relaxed) == 3000).await;
    // Each panicked batch was the unacknowledged one: sent again, nothing lost, nothing twice.
    assert_eq!(remote.received(), recs(0..3000));
    assert_eq!(counts(&st), (3000, 0, 0, 0));
    let attempts = remote.attempts.load(Relaxed);
    let panics = st.worker_panics.load(Relaxed);
    assert_eq!(panics, attempts / 4, "{attempts} attempts");
    // 3000 records in batches of at most 50: at least 60 sends that took a batch, so at least
    // 79 attempts, 19 of them panics.
    assert!(
        attempts - panics >= 60 && panics >= 19,
        "{attempts} attempts, {panics} panics"
    );
    assert_eq!(st.report().worker_panics, panics);
    // The restarted worker goes on delivering what comes later.
    remote.set(Mode::Up);
    submit(&mut sink, 3000..3100);
    until("3100 sent", || st.sent.load(Relaxed) == 3100).await;
    assert_eq!(remote.received(), recs(0..3100));
    assert_eq!(st.worker_panics.load(Relaxed), panics);
    assert_eq!(st.dropped.load(Relaxed), 0);
    sink.close().await;
}

#[tokio::test]
async fn a_worker_panicking_at_every_send_keeps_its_records_for_the_next_instance() {
    let dir = TestDir::new("dlv-panic-close");
    let remote = Remote::new(Mode::PanicEvery(1));
    let st = stats();
    let mut sink = spawn(remote.transport(), &config(&dir), st.clone()).unwrap();
    submit(&mut sink, 0..300);
    until("3 panics", || st.worker_panics.load(Relaxed) >= 3).await;
    assert!(remote.received().is_empty());
    sink.close().await;
    // Nothing delivered, nothing dropped: all of it in the disk buffer.
    assert_eq!(counts(&st), (0, 0, 300, 0));
    let st2 = stats();
    remote.set(Mode::Up);
    let sink = spawn(remote.transport(), &config(&dir), st2.clone()).unwrap();
    until("300 sent", || st2.sent.load(Relaxed) == 300).await;
    assert_eq!(remote.received(), recs(0..300));
    assert_eq!(st2.worker_panics.load(Relaxed), 0);
    sink.close().await;
}

#[test]
fn panic_messages_are_read_from_str_and_string_payloads() {
    use super::worker::panic_message;
    let s: Box<dyn std::any::Any + Send> = Box::new("static");
    assert_eq!(panic_message(s.as_ref()), "static");
    let s: Box<dyn std::any::Any + Send> = Box::new(format!("formatted {}", 42));
    assert_eq!(panic_message(s.as_ref()), "formatted 42");
    let s: Box<dyn std::any::Any + Send> = Box::new(42u8);
    assert_eq!(panic_message(s.as_ref()), "(no message)");
}

#[tokio::test]
async fn records_refused_for_good_are_dropped_and_counted() {
    let dir = TestDir::new("dlv-reject");
    let remote = Remote::new(Mode::RejectFirst(3));
    let st = stats();
    let mut sink = spawn(remote.transport(), &config(&dir), st.clone()).unwrap();
    submit(&mut sink, 0..10);
    until("7 records", || st.sent.load(Relaxed) == 7).await;
    assert_eq!(remote.received(), recs(3..10));
    assert_eq!(counts(&st), (7, 0, 0, 3));
    assert_eq!(st.errors.load(Relaxed), 1);
    sink.close().await;
}

#[tokio::test]
async fn a_throttled_destination_is_left_alone_as_asked_but_no_longer_than_backoff_max() {
    let dir = TestDir::new("dlv-throttle");
    let asked = Duration::from_millis(300);
    let remote = Remote::new(Mode::Throttle(asked));
    let st = stats();
    let mut cfg = config(&dir);
    cfg.backoff_max = Duration::from_millis(600);
    let mut sink = spawn(remote.transport(), &cfg, st.clone()).unwrap();
    submit(&mut sink, 0..10);
    until("3 attempts", || remote.attempts.load(Relaxed) >= 3).await;
    // Far more than backoff_max: capped at it.
    remote.set(Mode::Throttle(Duration::from_secs(3600)));
    let before = remote.attempts.load(Relaxed);
    until("2 more attempts", || {
        remote.attempts.load(Relaxed) >= before + 2
    })
    .await;
    remote.set(Mode::Up);
    until("10 sent", || st.sent.load(Relaxed) == 10).await;
    assert_eq!(remote.received(), recs(0..10));
    assert_eq!(counts(&st), (10, 0, 0, 0));

    let at = remote.attempted_at.lock().unwrap().clone();
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    // The back-off alone would wait 5 to 20 ms; every gap is at least what was asked.
    assert!(gaps.iter().all(|g| *g >= asked), "{gaps:?}");
    // Waits after the 3600 s request: backoff_max, not an hour.
    let capped = &gaps[before as usize - 1..];
    assert!(
        capped.iter().all(|g| *g < Duration::from_secs(3)),
        "{gaps:?}"
    );
    // Every throttled attempt is an error and a retry; nothing was dropped.
    let failed = at.len() as u64 - 1;
    assert_eq!(st.errors.load(Relaxed), failed);
    assert_eq!(st.reconnects.load(Relaxed), failed);
    sink.close().await;
}

/// Exactly how many records of `record-NNNNNN` fit in a cap of `n` of them.
fn cap_for(n: u64) -> u64 {
    n * (8 + rec(0).len() as u64)
}

#[tokio::test]
async fn a_full_disk_buffer_drops_the_newest_and_counts_exactly() {
    let dir = TestDir::new("dlv-cap-newest");
    let remote = Remote::new(Mode::Down);
    let st = stats();
    let mut cfg = config(&dir);
    cfg.buffer_max_bytes = cap_for(400);
    cfg.drop_policy = DropPolicy::Newest;
    let mut sink = spawn(remote.transport(), &cfg, st.clone()).unwrap();
    submit(&mut sink, 0..1000);
    assert_eq!(counts(&st), (0, 100, 400, 500));
    remote.set(Mode::Up);
    until("500 sent", || st.sent.load(Relaxed) == 500).await;
    assert_eq!(remote.received(), recs(0..500));
    assert_eq!(counts(&st), (500, 0, 0, 500));
    sink.close().await;
}

#[tokio::test]
async fn a_full_disk_buffer_drops_the_oldest_and_counts_exactly() {
    let dir = TestDir::new("dlv-cap-oldest");
    let remote = Remote::new(Mode::Down);
    let st = stats();
    let mut cfg = config(&dir);
    cfg.buffer_max_bytes = cap_for(400);
    cfg.drop_policy = DropPolicy::Oldest;
    let mut sink = spawn(remote.transport(), &cfg, st.clone()).unwrap();
    submit(&mut sink, 0..1000);
    assert_eq!(counts(&st), (0, 100, 400, 500));
    remote.set(Mode::Up);
    until("500 sent", || st.sent.load(Relaxed) == 500).await;
    // Memory holds the first 100; of the disk's, the newest 400 survived.
    let mut want = recs(0..100);
    want.extend(recs(600..1000));
    assert_eq!(remote.received(), want);
    assert_eq!(counts(&st), (500, 0, 0, 500));
    sink.close().await;
}

#[tokio::test]
async fn without_a_disk_buffer_the_memory_cap_drops_and_close_counts_the_rest() {
    let remote = Remote::new(Mode::Down);
    let st = stats();
    let dir = TestDir::new("dlv-nodisk");
    let cfg = DeliveryConfig {
        queue_records: 10,
        buffer_max_bytes: 0,
        ..config(&dir)
    };
    let mut sink = spawn_idle(remote.transport(), &cfg, st.clone());
    submit(&mut sink, 0..25);
    assert_eq!(counts(&st), (0, 10, 0, 15));
    remote.set(Mode::Up);
    until("10 sent", || st.sent.load(Relaxed) == 10).await;
    assert_eq!(remote.received(), recs(15..25));
    remote.set(Mode::Down);
    submit(&mut sink, 25..30);
    sink.close().await;
    assert_eq!(counts(&st), (10, 0, 0, 20));
    assert!(!dir.path().exists(), "no disk buffer was asked for");
}

#[tokio::test]
async fn dropping_the_sink_without_close_still_persists_memory() {
    let dir = TestDir::new("dlv-drop");
    let remote = Remote::new(Mode::Down);
    let mut sink = spawn(remote.transport(), &config(&dir), stats()).unwrap();
    submit(&mut sink, 0..150);
    drop(sink);
    remote.set(Mode::Up);
    let mut sink = spawn(remote.transport(), &config(&dir), stats()).unwrap();
    sink.flush();
    until("150 records", || remote.received().len() == 150).await;
    assert_eq!(remote.received(), recs(0..150));
    sink.close().await;
}

#[test]
fn config_defaults_parse_and_validation() {
    let cfg: DeliveryConfig = toml::from_str("").unwrap();
    assert_eq!(cfg, DeliveryConfig::default());
    assert_eq!(
        cfg.buffer_dir_for("siem/../x"),
        PathBuf::from("/var/lib/flow-agent/buffer/siem_.._x")
    );
    assert_eq!(
        cfg.buffer_dir_for(".."),
        PathBuf::from("/var/lib/flow-agent/buffer/_..")
    );
    let cfg: DeliveryConfig = toml::from_str(
        "backoff_initial = 0.25\nbackoff_max = 10\ndrop_policy = \"newest\"\nbuffer_dir = \"/b\"",
    )
    .unwrap();
    assert_eq!(cfg.backoff_initial, Duration::from_millis(250));
    assert_eq!(cfg.backoff_max, Duration::from_secs(10));
    assert_eq!(cfg.drop_policy, DropPolicy::Newest);
    cfg.validate().unwrap();
    let bad = |t: &str| {
        let c: DeliveryConfig = toml::from_str(t).unwrap();
        c.validate().unwrap_err().to_string()
    };
    assert!(bad("backoff_initial = 60").contains("backoff_max"));
    assert!(bad("queue_records = 0").contains("queue_records"));
    assert!(bad("buffer_dir = \"rel\"").contains("absolute"));
    assert!(toml::from_str::<DeliveryConfig>("backoff_max = -1").is_err());
    assert!(toml::from_str::<DeliveryConfig>("drop_policy = \"random\"").is_err());
    assert!(toml::from_str::<DeliveryConfig>("queue = 5").is_err());
}
