use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::{
    config::{ByteSize, FileMode},
    rotate::*,
    *,
};

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "flow-agent-filesink-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).unwrap();
        Scratch(dir)
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(path: &Path, rotate_size: u64) -> FileConfig {
    FileConfig {
        path: path.to_path_buf(),
        rotate_size: ByteSize(rotate_size),
        ..FileConfig::default()
    }
}

fn stats() -> Arc<SinkStats> {
    Arc::new(SinkStats::new("file-0".into(), "file", "native"))
}

/// A sink that rotates as soon as a file is full.
fn sink(cfg: &FileConfig) -> (FileSink, Arc<SinkStats>) {
    let s = stats();
    let mut sink = FileSink::open(cfg, s.clone()).unwrap();
    sink.min_rotation_gap = Duration::ZERO;
    (sink, s)
}

fn total_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// Record `i`: 9 bytes, 10 with its newline.
fn record(i: usize) -> Vec<u8> {
    format!("record{i:03}").into_bytes()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn lines(path: &Path) -> Vec<String> {
    read(path).lines().map(str::to_string).collect()
}

/// The rotated files of the live file `path`.
fn listed(path: &Path) -> Vec<Rotated> {
    let dir = crate::sink::safe_dir::SafeDir::open(path.parent().unwrap()).unwrap();
    list(&dir, path.file_name().unwrap()).unwrap()
}

/// The options in `toml_text`, or the deserializer's message.
fn parse(toml_text: &str) -> anyhow::Result<FileConfig> {
    Ok(toml::from_str::<FileConfig>(toml_text)?)
}

fn invalid(cfg: &FileConfig) -> String {
    cfg.validate().unwrap_err().to_string()
}

#[test]
fn defaults_are_the_documented_ones() {
    let cfg = parse(r#"path = "/var/log/flow-agent/events.log""#).unwrap();
    assert_eq!(cfg.rotate_size, ByteSize(100 * 1024 * 1024));
    assert_eq!(cfg.rotate_interval, 0);
    assert_eq!(cfg.max_files, 10);
    assert_eq!(cfg.max_total_size, ByteSize(0));
    assert_eq!(cfg.mode, FileMode(0o640));
    assert_eq!(cfg.group, None);
    cfg.validate().unwrap();
}

#[test]
fn sizes_and_modes_parse_in_every_documented_spelling() {
    let cfg = parse(
        r#"path = "/x/e.log"
rotate_size = "512KiB"
max_total_size = "2GiB"
mode = 0o600"#,
    )
    .unwrap();
    assert_eq!(cfg.rotate_size, ByteSize(512 * 1024));
    assert_eq!(cfg.max_total_size, ByteSize(2 << 30));
    assert_eq!(cfg.mode, FileMode(0o600));
    let cfg = parse("path = \"/x/e.log\"\nrotate_size = 1000000\nmode = \"0640\"").unwrap();
    assert_eq!(cfg.rotate_size, ByteSize(1_000_000));
    assert_eq!(cfg.mode, FileMode(0o640));
    assert_eq!(ByteSize::parse("10MB"), Ok(ByteSize(10_000_000)));
    assert_eq!(ByteSize::parse("7"), Ok(ByteSize(7)));
    let err = parse("path = \"/x/e.log\"\nrotate_size = \"10 furlongs\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown size unit"), "{err}");
    let err = parse("path = \"/x/e.log\"\nrotate_size = -1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be negative"), "{err}");
}

#[test]
fn unknown_and_missing_options_are_rejected() {
    let err = parse("path = \"/x/e.log\"\nrotate_sise = 5")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `rotate_sise`"), "{err}");
    let err = parse("rotate_size = 5").unwrap_err().to_string();
    assert!(err.contains("missing field `path`"), "{err}");
}

#[test]
fn validation_names_the_option() {
    let ok = config(Path::new("/var/log/e.log"), 1000);
    let with = |f: &dyn Fn(&mut FileConfig)| {
        let mut c = ok.clone();
        f(&mut c);
        invalid(&c)
    };
    assert_eq!(
        with(&|c| c.rotate_size = ByteSize(0)),
        "output configuration: outputs.file.rotate_size must be > 0"
    );
    assert!(with(&|c| c.path = PathBuf::from("events.log"))
        .contains("outputs.file.path must be absolute"));
    assert!(with(&|c| c.path = PathBuf::new()).contains("outputs.file.path is required"));
    assert!(with(&|c| c.path = PathBuf::from("/var/log/")).contains("must name a file"));
    assert!(with(&|c| c.max_total_size = ByteSize(999)).contains(
        "outputs.file.max_total_size (999 bytes) must be 0 (no cap) or at least rotate_size"
    ));
    assert!(with(&|c| c.mode = FileMode(0o660)).contains("outputs.file.mode 0o660 lets the group"));
    assert!(with(&|c| c.mode = FileMode(0o642)).contains("outputs.file.mode 0o642 lets the group"));
    assert!(with(&|c| c.mode = FileMode(0o440)).contains("must let the owner read and write"));
    // `mode = 640` written in decimal.
    assert!(with(&|c| c.mode = FileMode(640)).contains("write it in octal"));
}

#[test]
fn rotated_names_and_listing() {
    let dir = Scratch::new();
    let path = dir.file("events.log");
    assert_eq!(rotated_name(&path, 3), dir.file("events.log.3"));
    for name in [
        "events.log.2",
        "events.log.1",
        "events.log.10",
        "events.log.1.gz",
        "events.log.01",
        "events.log.x",
        "events.log.0",
        "other.log.1",
    ] {
        std::fs::write(dir.file(name), name).unwrap();
    }
    std::fs::create_dir(dir.file("events.log.4")).unwrap();
    let found: Vec<u32> = listed(&path).iter().map(|r| r.index).collect();
    assert_eq!(found, vec![1, 2, 10]);
}

#[test]
fn caps_keep_the_newest_files() {
    let r = |index, size| Rotated {
        index,
        name: format!("x.{index}").into(),
        size,
    };
    let rotated = [r(1, 100), r(2, 100), r(3, 100), r(5, 100)];
    let idx = |d: Vec<(Rotated, Cap)>| d.into_iter().map(|(r, _)| r.index).collect::<Vec<_>>();
    assert_eq!(idx(over_caps(&rotated, 2, None)), vec![3, 5]);
    assert_eq!(idx(over_caps(&rotated, 0, None)), Vec::<u32>::new());
    assert_eq!(idx(over_caps(&rotated, 0, Some(250))), vec![3, 5]);
    assert_eq!(idx(over_caps(&rotated, 10, Some(300))), vec![5]);
    assert_eq!(idx(over_caps(&rotated, 1, Some(0))), vec![1, 2, 3, 5]);
}

#[test]
fn size_rotation_renames_and_keeps_every_line_once_in_order() {
    let dir = Scratch::new();
    let path = dir.file("events.log");
    // 10-byte lines, 3 per file.
    let (mut s, stats) = sink(&config(&path, 35));
    for batch in 0..5 {
        for i in 0..4 {
            s.submit(&record(batch * 4 + i));
        }
        s.flush();
    }
    // 20 lines in files of 3: the live file holds the last 2, `.1` the 3 before, …
    let mut all = Vec::new();
    for i in (1..=6).rev() {
        let f = rotated_name(&path, i);
        let l = lines(&f);
        assert_eq!(l.len(), 3, "{}", f.display());
        assert!(std::fs::metadata(&f).unwrap().len() <= 35);
        all.extend(l);
    }
    assert!(!rotated_name(&path, 7).exists());
    all.extend(lines(&path));
    let want: Vec<String> = (0..20)
        .map(|i| String::from_utf8(record(i)).unwrap())
        .collect();
    assert_eq!(all, want);
    assert_eq!(stats.sent.load(Ordering::Relaxed), 20);
    assert_eq!(stats.errors.load(Ordering::Relaxed), 0);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
}

#[test]
fn a_record_larger_than_rotate_size_gets_a_file_of_its_own() {
    let dir = Scratch::new();
    let path = dir.file("events.log");
    let (mut s, _) = sink(&config(&path, 15));
    s.submit(b"short");
    s.submit(&[b'x'; 40]);
    s.submit(b"after");
    s.flush();
    assert_eq!(read(&rotated_name(&path, 2)), "short\n");
    assert_eq!(
        read(&rotated_name(&path, 1)),
        format!("{}\n", "x".repeat(40))
    );
    assert_eq!(read(&path), "after\n");
}

#[test]
fn rotation_honours_max_files_and_max_total_size() {
    let dir = Scratch::new();
    let path = dir.file("events.log");
    let mut cfg = config(&path, 30);
    cfg.max_files = 2;
    let (mut s, _) = sink(&cfg);
    for i in 0..30 {
        s.submit(&record(i));
        s.flush();
    }
    let names = |dir: &Scratch| {
        let mut n: Vec<String> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&dir), ["events.log", "events.log.1", "events.log.2"]);
    // The newest: records 21..=29 in .2, .1 and the live file.
    assert_eq!(lines(&rotated_name(&path, 2))[0], "record021");
    assert_eq!(lines(&path).last().unwrap(), "record029");

    let dir = Scratch::new();
    let path = dir.file("events.log");
    let mut cfg = config(&path, 30);
    cfg.max_files = 0;
    cfg.max_total_size = ByteSize(100);
    let (mut s, _) = sink(&cfg);
    for i in 0..30 {
        s.submit(&record(i));
        s.flush();
        let total = total_bytes(&dir.0);
        assert!(total <= 100, "{total} bytes after record {i}");
    }
    // 100 - 30 bytes of budget for rotated files: two full ones.
    assert_eq!(names(&dir), ["events.log", "events.log.1", "events.log.2"]);
}

#[test]
fn caps_apply_at_start_to_files_left_by_an_earlier_run() {
    let dir = Scratch::new();
    let path = dir.file("events.log");
    for i in 1..=5 {
        std::fs::write(rotated_name(&path, i), "old\n").unwrap();
    }
    let mut cfg = config(&path, 1000);
    cfg.max_files = 3;
    let _ = sink(&cfg);
    let left: Vec<u32> = listed(&path).iter().map(|r| r.index).collect();
    assert_eq!(left, vec![1, 2, 3]);
}

#[test]
fn files_get_the_configured_mode_and_group() {
    let dir = Scratch::new();
    let path = dir.file("events.log");
    // An existing file with a looser mode is tightened.
    std::fs::write(&path, "").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut cfg = config(&path, 15);
    cfg.group = Some("4".into());
    let (mut s, _) = sink(&cfg);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&path), 0o640);
    for i in 0..4 {
        s.submit(&record(i));
        s.flush();
    }
    assert_eq!(mode(&rotated_name(&path, 1)), 0o640);
    assert_eq!(mode(&path), 0o640);
    assert_eq!(std::fs::metadata(&path).unwrap().gid(), 4);
    assert_eq!(std::fs::metadata(rotated_name(&path, 1)).unwrap().gid(), 4);
    assert_eq!(resolve_group("root").unwrap(), 0);

    let other = dir.file("private.log");
    let mut cfg = config(&other, 100);
    cfg.mode = FileMode(0o600);
    let _ = sink(&cfg);
    assert_eq!(mode(&other), 0o600);
}

#[test]
fn an_unknown_group_is_refused() {
    let dir = Scratch::new();
    let mut cfg = config(&dir.file("e.log"), 100);
    cfg.group = Some("no-such-group-flow-agent".into());
    let err = FileSink::open(&cfg, stats()).err().unwrap().to_string();
    assert!(
        err.contains("outputs.file.group: no group named \"no-such-group-flow-agent\""),
        "{err}"
    );
}

#[test]
fn a_missing_directory_or_a_symlink_is_a_clear_error() {
    let dir = Scratch::new();
    let cfg = config(&dir.file("missing/events.log"), 100);
    let err = FileSink::open(&cfg, stats()).err().unwrap().to_string();
    assert!(err.contains("outputs.file.path: cannot open"), "{err}");
    assert!(err.contains("missing does not exist"), "{err}");
    std::os::unix::fs::symlink(dir.file("target"), dir.file("link")).unwrap();
    let err = FileSink::open(&config(&dir.file("link"), 100), stats())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("is a symbolic link"), "{err}");
}

#[test]
fn a_deleted_file_is_recreated_at_the_next_write() {
    let dir = Scratch::new();
    let path = dir.file("events.log");
    let (mut s, stats) = sink(&config(&path, 1000));
    s.submit(b"before");
    s.flush();
    std::fs::remove_file(&path).unwrap();
    s.submit(b"after");
    s.flush();
    assert_eq!(read(&path), "after\n");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640);
    assert_eq!(stats.sent.load(Ordering::Relaxed), 2);
}

#[test]
fn a_moved_file_keeps_its_lines_and_a_new_one_takes_the_path() {
    let dir = Scratch::new();
    let path = dir.file("events.log");
    let (mut s, _) = sink(&config(&path, 1000));
    s.submit(b"before");
    s.flush();
    std::fs::rename(&path, dir.file("moved.log")).unwrap();
    s.submit(b"after");
    s.flush();
    assert_eq!(read(&dir.file("moved.log")), "before\n");
    assert_eq!(read(&path), "after\n");
    // Replaced by another file: the sink appends to that one.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, "admin\n").unwrap();
    s.submit(b"later");
    s.flush();
    assert_eq!(read(&path), "admin\nlater\n");
}

#[test]
fn a_lost_directory_drops_and_counts_batches_until_it_is_back() {
    let dir = Scratch::new();
    let sub = dir.file("sub");
    std::fs::create_dir(&sub).unwrap();
    let path = sub.join("events.log");
    let (mut s, stats) = sink(&config(&path, 1000));
    s.submit(b"one");
    s.flush();
    std::fs::remove_dir_all(&sub).unwrap();
    for _ in 0..3 {
        s.submit(b"lost");
        s.submit(b"lost");
        s.flush();
    }
    let counter = |c: &AtomicU64| c.load(Ordering::Relaxed);
    assert_eq!(counter(&stats.dropped), 6);
    assert_eq!(counter(&stats.errors), 3);
    assert_eq!(counter(&stats.sent), 1);
    // One episode (logged once), holding all the dropped records.
    assert_eq!(s.failing.as_ref().map(|f| f.dropped), Some(6));
    std::fs::create_dir(&sub).unwrap();
    s.submit(b"back");
    s.flush();
    assert!(s.failing.is_none());
    assert_eq!(read(&path), "back\n");
    assert_eq!(counter(&stats.sent), 2);
    assert_eq!(counter(&stats.dropped), 6);
}

#[test]
fn appending_to_an_existing_file_counts_its_size() {
    let dir = Scratch::new();
    let path = dir.file("events.log");
    std::fs::write(&path, "record-old\n").unwrap();
    let (mut s, _) = sink(&config(&path, 25));
    s.submit(&record(1));
    s.flush();
    assert_eq!(read(&path), "record-old\nrecord001\n");
    s.submit(&record(2));
    s.flush();
    assert_eq!(read(&rotated_name(&path, 1)), "record-old\nrecord001\n");
    assert_eq!(read(&path), "record002\n");
}

#[test]
fn size_rotations_wait_for_the_gap_and_the_caps_make_room() {
    let dir = Scratch::new();
    let path = dir.file("events.log");
    let mut cfg = config(&path, 30);
    cfg.max_files = 0;
    cfg.max_total_size = ByteSize(100);
    let (mut s, _) = sink(&cfg);
    s.min_rotation_gap = Duration::from_secs(3600);
    for i in 0..3 {
        std::fs::write(rotated_name(&path, i + 1), "old-line\n").unwrap();
    }
    // The live file may grow past rotate_size, but the total stays under max_total_size:
    // rotated files go, newest last.
    for i in 0..7 {
        s.submit(&record(i));
        s.flush();
        assert!(total_bytes(&dir.0) <= 100, "after record {i}");
    }
    assert_eq!(lines(&path).len(), 7);
    let left: Vec<u32> = listed(&path).iter().map(|r| r.index).collect();
    assert_eq!(left, vec![1, 2, 3]);
    for i in 7..9 {
        s.submit(&record(i));
        s.flush();
        assert!(total_bytes(&dir.0) <= 100, "after record {i}");
    }
    assert_eq!(lines(&path).len(), 9);
    let left: Vec<u32> = listed(&path).iter().map(|r| r.index).collect();
    assert_eq!(left, vec![1]);
    // Once the gap has passed, the next write rotates; the 90-byte file just rotated does not
    // fit in the 70 bytes left next to a live file of rotate_size, so it goes too (a tailer
    // that has it open still reads it to the end).
    s.min_rotation_gap = Duration::ZERO;
    s.submit(&record(9));
    s.flush();
    assert_eq!(listed(&path), vec![]);
    assert_eq!(read(&path), "record009\n");
}

/// A clock the time-rotation test moves by hand.
static NOW: AtomicU64 = AtomicU64::new(0);

fn test_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW.load(Ordering::Relaxed))
}

#[test]
fn time_rotation_follows_utc_aligned_periods() {
    let dir = Scratch::new();
    let path = dir.file("events.log");
    let mut cfg = config(&path, 1 << 20);
    cfg.rotate_interval = 3600;
    NOW.store(1_700_000_000 / 3600 * 3600 + 10, Ordering::Relaxed);
    let mut s = FileSink::with_clock(&cfg, stats(), test_clock).unwrap();
    s.min_rotation_gap = Duration::ZERO;
    s.submit(b"first hour");
    s.flush();
    NOW.fetch_add(3500, Ordering::Relaxed);
    s.submit(b"still first hour");
    s.flush();
    assert!(!rotated_name(&path, 1).exists());
    NOW.fetch_add(100, Ordering::Relaxed);
    // No write, no rotation: an idle period leaves no empty file behind.
    NOW.fetch_add(7200, Ordering::Relaxed);
    s.submit(b"fourth hour");
    s.flush();
    assert_eq!(
        read(&rotated_name(&path, 1)),
        "first hour\nstill first hour\n"
    );
    assert_eq!(read(&path), "fourth hour\n");
    assert!(!rotated_name(&path, 2).exists());
}

#[test]
fn a_file_from_an_earlier_period_is_rotated_at_the_first_write() {
    let dir = Scratch::new();
    let path = dir.file("events.log");
    std::fs::write(&path, "yesterday\n").unwrap();
    let old = SystemTime::now() - Duration::from_secs(86400);
    std::fs::File::options()
        .append(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let mut cfg = config(&path, 1 << 20);
    cfg.rotate_interval = 86400;
    let (mut s, _) = sink(&cfg);
    s.submit(b"today");
    s.flush();
    assert_eq!(read(&rotated_name(&path, 1)), "yesterday\n");
    assert_eq!(read(&path), "today\n");
}

#[test]
fn a_newline_inside_a_record_does_not_split_it() {
    let dir = Scratch::new();
    let path = dir.file("events.log");
    let (mut s, _) = sink(&config(&path, 1000));
    s.submit(b"<Event>\n  <Data>x</Data>\n</Event>");
    s.flush();
    assert_eq!(read(&path), "<Event>   <Data>x</Data> </Event>\n");
}

#[test]
fn close_writes_what_is_pending() {
    let dir = Scratch::new();
    let path = dir.file("events.log");
    let (mut s, _) = sink(&config(&path, 1000));
    s.submit(b"pending");
    let fut = Box::new(s).close();
    drop(fut);
    assert_eq!(read(&path), "pending\n");
}

/// A file outside the sink's directory that must come out of everything as it was: bytes,
/// mode, group, links.
struct Outside {
    _dir: Scratch,
    path: PathBuf,
}

impl Outside {
    fn new() -> Outside {
        let dir = Scratch::new();
        let path = dir.file("precious");
        std::fs::write(&path, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        Outside { _dir: dir, path }
    }

    fn assert_untouched(&self, links: u64) {
        let meta = std::fs::metadata(&self.path).unwrap();
        assert_eq!(read(&self.path), "root:x:0:0:root:/root:/bin/bash\n");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
        assert_eq!((meta.gid(), meta.nlink()), (0, links));
    }
}

#[test]
fn a_linked_live_file_is_refused_and_its_target_left_untouched() {
    let dir = Scratch::new();
    let target = Outside::new();
    let path = dir.file("events.log");
    let mut cfg = config(&path, 1000);
    cfg.group = Some("4".into());
    std::fs::hard_link(&target.path, &path).unwrap();
    let err = FileSink::open(&cfg, stats()).err().unwrap().to_string();
    assert_eq!(
        err,
        format!(
            "output configuration: outputs.file.path: cannot open {}: has 2 hard links: writing it would change the file under its other names",
            path.display()
        )
    );
    target.assert_untouched(2);
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&target.path, &path).unwrap();
    let err = FileSink::open(&cfg, stats()).err().unwrap().to_string();
    assert!(
        err.ends_with("is a symbolic link; give the real path"),
        "{err}"
    );
    target.assert_untouched(1);

    // Planted while the sink runs: the batch is dropped and counted, nothing written.
    std::fs::remove_file(&path).unwrap();
    let (mut s, stats) = sink(&cfg);
    s.submit(b"one");
    s.flush();
    std::fs::remove_file(&path).unwrap();
    std::fs::hard_link(&target.path, &path).unwrap();
    s.submit(b"two");
    s.flush();
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
    assert_eq!(stats.errors.load(Ordering::Relaxed), 1);
    target.assert_untouched(2);
}

#[test]
fn links_among_the_rotated_names_are_renamed_over_never_written_through() {
    let dir = Scratch::new();
    let target = Outside::new();
    let path = dir.file("events.log");
    std::os::unix::fs::symlink(&target.path, rotated_name(&path, 1)).unwrap();
    std::fs::hard_link(&target.path, rotated_name(&path, 2)).unwrap();
    let mut cfg = config(&path, 15);
    cfg.max_files = 1;
    cfg.group = Some("4".into());
    let (mut s, stats) = sink(&cfg);
    for i in 0..4 {
        s.submit(&record(i));
        s.flush();
    }
    assert_eq!(stats.errors.load(Ordering::Relaxed), 0);
    assert_eq!(read(&rotated_name(&path, 1)), "record002\n");
    assert_eq!(read(&path), "record003\n");
    // The hard link was a rotated file beyond max_files: its name was removed, nothing more.
    target.assert_untouched(1);
}

#[test]
fn a_directory_others_can_write_or_of_another_user_is_refused_naming_it() {
    let dir = Scratch::new();
    let path = dir.file("events.log");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let err = FileSink::open(&config(&path, 100), stats())
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        format!(
            "output configuration: outputs.file.path: cannot open {1}: directory {0} is refused: mode 1777 lets its group and all users create files in it (expected no write permission for group and others; chmod go-w {0})",
            dir.0.display(),
            path.display()
        )
    );
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&dir.0, Some(65534), None).unwrap();
    let err = FileSink::open(&config(&path, 100), stats())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!(
            "directory {} is refused: it belongs to uid 65534, another user",
            dir.0.display()
        )),
        "{err}"
    );
    assert!(!path.exists());
}

/// Runs `f` on a thread of its own, a member of `groups` only and without CAP_CHOWN, as the
/// agent is after the drop. Credentials are per thread in the kernel; the raw setgroups
/// system call (not glibc's, which changes every thread) keeps the other tests as they are.
fn as_after_the_drop<T: Send>(groups: &[u32], f: impl FnOnce() -> T + Send) -> T {
    use crate::service::caps::{self, CapSet};
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: a valid array of groups.len() gids, for this thread only.
                let rc =
                    unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
                assert_eq!(rc, 0, "setgroups: {}", std::io::Error::last_os_error());
                let mut c = caps::get().unwrap();
                let chown = CapSet::of(&[0]);
                c.effective = c.effective.minus(chown);
                c.permitted = c.permitted.minus(chown);
                caps::set(c).unwrap();
                f()
            })
            .join()
            .unwrap()
    })
}

const GROUP: u32 = 64123;

/// Rotates `cfg`'s file twice and returns the groups of the live file and `.1`, `.2`.
fn rotated_groups(cfg: &FileConfig) -> Result<Vec<u32>, SinkError> {
    let mut s = FileSink::open(cfg, stats())?;
    s.min_rotation_gap = Duration::ZERO;
    for i in 0..3 {
        s.submit(&record(i));
        s.flush();
    }
    assert_eq!(s.stats.errors.load(Ordering::Relaxed), 0);
    let gid = |p: &Path| std::fs::metadata(p).unwrap().gid();
    let p = &cfg.path;
    Ok(vec![
        gid(p),
        gid(&rotated_name(p, 1)),
        gid(&rotated_name(p, 2)),
    ])
}

#[test]
fn the_group_is_given_after_the_drop_to_a_member_or_by_a_set_group_id_directory() {
    let dir = Scratch::new();
    let mut cfg = config(&dir.file("events.log"), 15);
    cfg.group = Some(GROUP.to_string());
    // Not a member, no CAP_CHOWN: refused, saying why and what to do.
    let err = as_after_the_drop(&[0], || rotated_groups(&cfg))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "outputs.file.group {GROUP}: {}: cannot give it group {GROUP}: Operation not permitted",
            cfg.path.display()
        )),
        "{err}"
    );
    assert!(err.contains("set-group-ID"), "{err}");
    // A member (the agent joins the groups of its file outputs at start-up).
    std::fs::remove_file(&cfg.path).unwrap();
    let groups = as_after_the_drop(&[0, GROUP], || rotated_groups(&cfg)).unwrap();
    assert_eq!(groups, [GROUP; 3]);

    // Not a member, but the directory is set-group-ID with that group: new files get it.
    let dir = Scratch::new();
    std::os::unix::fs::chown(&dir.0, None, Some(GROUP)).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o2750)).unwrap();
    cfg.path = dir.file("events.log");
    let groups = as_after_the_drop(&[0], || rotated_groups(&cfg)).unwrap();
    assert_eq!(groups, [GROUP; 3]);
}

#[test]
fn the_groups_the_file_outputs_name_are_resolved_once_each() {
    let out = |group: Option<&str>| OutputConfig {
        file: Some(FileConfig {
            group: group.map(str::to_string),
            ..config(Path::new("/x/e.log"), 10)
        }),
        ..OutputConfig::default()
    };
    let outputs = [
        out(Some("root")),
        out(Some("4")),
        out(None),
        out(Some("0")),
        OutputConfig::stdout(),
    ];
    assert_eq!(output_groups(&outputs).unwrap(), [0, 4]);
    let err = output_groups(&[out(Some("no-such-group-flow-agent"))]).unwrap_err();
    assert!(err.to_string().contains("no group named"), "{err}");
}
