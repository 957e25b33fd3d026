use std::{
    fs::OpenOptions,
    io::Write,
    os::unix::fs::{FileExt, PermissionsExt},
};

use super::{segment, Appended, DiskBuffer, OpenError, Recovered};
use crate::sink::delivery::{tests::TestDir, DropPolicy};

fn rec(i: usize) -> Vec<u8> {
    format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 37)).into_bytes()
}

/// Records of one size, for exact cap arithmetic.
fn fixed(i: usize) -> Vec<u8> {
    format!("record-{i:06}").into_bytes()
}

const FIXED: u64 = segment::HEADER + 13;

fn open(dir: &TestDir, max: u64) -> (DiskBuffer, Recovered) {
    DiskBuffer::open(dir.path(), max).expect("open disk buffer")
}

fn append_all(buf: &mut DiskBuffer, range: std::ops::Range<usize>, policy: DropPolicy) -> u64 {
    let mut dropped = 0;
    for i in range {
        match buf.append(&rec(i), policy).unwrap() {
            Appended::Stored { dropped_oldest } => dropped += dropped_oldest,
            Appended::Refused => dropped += 1,
        }
    }
    dropped
}

/// Reads and acknowledges everything, in batches of `batch`.
fn drain(buf: &mut DiskBuffer, batch: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let (records, lost) = buf.read_batch(batch).unwrap();
        assert_eq!(lost, 0);
        if records.is_empty() {
            return out;
        }
        out.extend(records);
        buf.ack().unwrap();
    }
}

fn expected(range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range.map(rec).collect()
}

fn size_of(i: usize) -> u64 {
    segment::HEADER + rec(i).len() as u64
}

#[test]
fn records_come_back_in_order_across_segments_and_files_go_away() {
    let dir = TestDir::new("disk-order");
    // 64 KiB cap: 8 KiB segments, so 3000 records span many files.
    let (mut buf, rec0) = open(&dir, 1 << 30);
    assert_eq!(rec0, Recovered::default());
    buf.segment_bytes = 8 << 10;
    assert_eq!(append_all(&mut buf, 0..3000, DropPolicy::Oldest), 0);
    assert_eq!(buf.unacked_records(), 3000);
    let files = segment::list_segments(dir.path()).unwrap();
    assert!(
        files.len() > 10,
        "expected many segments, got {}",
        files.len()
    );
    assert_eq!(drain(&mut buf, 77), expected(0..3000));
    assert_eq!(buf.unacked_records(), 0);
    assert_eq!(buf.unacked_bytes(), 0);
    assert!(segment::list_segments(dir.path()).unwrap().is_empty());
    // Appending after a full drain starts a fresh segment and still works.
    append_all(&mut buf, 3000..3010, DropPolicy::Oldest);
    assert_eq!(drain(&mut buf, 4), expected(3000..3010));
}

#[test]
fn reopen_replays_unacknowledged_records_including_the_batch_in_flight() {
    let dir = TestDir::new("disk-replay");
    let (mut buf, _) = open(&dir, 1 << 20);
    buf.segment_bytes = 1 << 10;
    append_all(&mut buf, 0..100, DropPolicy::Oldest);
    let (first, _) = buf.read_batch(40).unwrap();
    assert_eq!(first, expected(0..40));
    buf.ack().unwrap();
    let (inflight, _) = buf.read_batch(25).unwrap();
    assert_eq!(inflight, expected(40..65));
    assert_eq!(buf.unacked_records(), 60);
    drop(buf); // like SIGKILL: nothing else is written

    let (mut buf, recovered) = open(&dir, 1 << 20);
    assert_eq!(
        recovered,
        Recovered {
            records: 60,
            torn: 0,
            torn_bytes: 0
        }
    );
    append_all(&mut buf, 100..110, DropPolicy::Oldest);
    assert_eq!(drain(&mut buf, 16), expected(40..110));
}

#[test]
fn newest_policy_refuses_new_records_at_the_cap() {
    let dir = TestDir::new("disk-newest");
    let cap: u64 = (0..50).map(size_of).sum();
    let (mut buf, _) = open(&dir, cap);
    assert_eq!(append_all(&mut buf, 0..50, DropPolicy::Newest), 0);
    assert_eq!(append_all(&mut buf, 50..80, DropPolicy::Newest), 30);
    assert_eq!(buf.unacked_bytes(), cap);
    assert_eq!(drain(&mut buf, 1000), expected(0..50));
}

#[test]
fn oldest_policy_drops_exactly_as_many_old_records_as_needed() {
    let dir = TestDir::new("disk-oldest");
    let cap = 40 * FIXED;
    let (mut buf, _) = open(&dir, cap);
    buf.segment_bytes = 4 << 10;
    let mut dropped = 0;
    for i in 0..1000 {
        match buf.append(&fixed(i), DropPolicy::Oldest).unwrap() {
            Appended::Stored { dropped_oldest } => dropped += dropped_oldest,
            Appended::Refused => panic!("oldest policy refused record {i}"),
        }
    }
    assert_eq!(dropped, 960);
    assert_eq!(buf.unacked_records(), 40);
    let want: Vec<Vec<u8>> = (960..1000).map(fixed).collect();
    drop(buf);
    // The drops were persisted: a reopen does not bring the dropped records back.
    let (mut buf, recovered) = open(&dir, cap);
    assert_eq!(recovered.records, 40);
    assert_eq!(drain(&mut buf, 7), want);
}

#[test]
fn oldest_policy_never_drops_the_batch_in_flight() {
    let dir = TestDir::new("disk-inflight");
    let cap = 10 * FIXED;
    let (mut buf, _) = open(&dir, cap);
    for i in 0..10 {
        buf.append(&fixed(i), DropPolicy::Oldest).unwrap();
    }
    let (inflight, _) = buf.read_batch(10).unwrap();
    assert_eq!(inflight.len(), 10);
    // Nothing is waiting, the batch in flight fills the cap: the new record is refused.
    assert_eq!(
        buf.append(&fixed(10), DropPolicy::Oldest).unwrap(),
        Appended::Refused
    );
    buf.ack().unwrap();
    assert_eq!(
        buf.append(&fixed(11), DropPolicy::Oldest).unwrap(),
        Appended::Stored { dropped_oldest: 0 }
    );
    assert_eq!(buf.unacked_records(), 1);
}

#[test]
fn a_record_larger_than_the_cap_is_refused() {
    let dir = TestDir::new("disk-large");
    let (mut buf, _) = open(&dir, 100);
    let big = vec![b'a'; 93];
    assert_eq!(
        buf.append(&big, DropPolicy::Oldest).unwrap(),
        Appended::Refused
    );
    let fits = vec![b'a'; 92];
    assert_eq!(
        buf.append(&fits, DropPolicy::Oldest).unwrap(),
        Appended::Stored { dropped_oldest: 0 }
    );
}

#[test]
fn a_torn_tail_record_is_cut_off_and_the_rest_replayed() {
    let dir = TestDir::new("disk-torn");
    let (mut buf, _) = open(&dir, 1 << 20);
    append_all(&mut buf, 0..5, DropPolicy::Oldest);
    drop(buf);
    let last = *segment::list_segments(dir.path()).unwrap().last().unwrap();
    let path = segment::segment_path(dir.path(), last);
    let good_len = std::fs::metadata(&path).unwrap().len();
    // A crash in the middle of an append: header promises 100 bytes, 10 made it.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&100u32.to_le_bytes()).unwrap();
    f.write_all(&[0u8; 4]).unwrap();
    f.write_all(&[b'z'; 10]).unwrap();
    drop(f);

    let (mut buf, recovered) = open(&dir, 1 << 20);
    assert_eq!(
        recovered,
        Recovered {
            records: 5,
            torn: 1,
            torn_bytes: 18
        }
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
    append_all(&mut buf, 5..8, DropPolicy::Oldest);
    assert_eq!(drain(&mut buf, 3), expected(0..8));
}

#[test]
fn a_half_written_header_and_a_bad_checksum_are_torn_too() {
    let dir = TestDir::new("disk-torn2");
    let (mut buf, _) = open(&dir, 1 << 20);
    append_all(&mut buf, 0..4, DropPolicy::Oldest);
    drop(buf);
    let last = *segment::list_segments(dir.path()).unwrap().last().unwrap();
    let path = segment::segment_path(dir.path(), last);
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    // Damage the last record's payload: its checksum no longer matches.
    let len = f.metadata().unwrap().len();
    f.write_all_at(b"#", len - 1).unwrap();
    drop(f);
    let (buf, recovered) = open(&dir, 1 << 20);
    assert_eq!((recovered.records, recovered.torn), (3, 1));
    assert_eq!(recovered.torn_bytes, size_of(3));
    drop(buf);

    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[7u8, 0, 0]).unwrap();
    drop(f);
    let (mut buf, recovered) = open(&dir, 1 << 20);
    assert_eq!(
        (recovered.records, recovered.torn, recovered.torn_bytes),
        (3, 1, 3)
    );
    assert_eq!(drain(&mut buf, 10), expected(0..3));
}

#[test]
fn close_with_puts_memory_records_in_front_of_a_partly_acknowledged_buffer() {
    let dir = TestDir::new("disk-close");
    let (mut buf, _) = open(&dir, 1 << 20);
    append_all(&mut buf, 10..20, DropPolicy::Oldest);
    let (acked, _) = buf.read_batch(3).unwrap();
    assert_eq!(acked, expected(10..13));
    buf.ack().unwrap();
    let (inflight, _) = buf.read_batch(2).unwrap();
    assert_eq!(inflight, expected(13..15));
    // Memory held records 0..10 (older than the disk's): they go first, the batch in flight
    // is replayed, the acknowledged ones are not.
    assert_eq!(
        buf.close_with(expected(0..10), DropPolicy::Oldest).unwrap(),
        0
    );
    let (mut buf, recovered) = open(&dir, 1 << 20);
    assert_eq!(recovered.records, 17);
    let mut want = expected(0..10);
    want.extend(expected(13..20));
    assert_eq!(drain(&mut buf, 4), want);
}

#[test]
fn close_with_on_an_empty_buffer_and_its_cap() {
    let dir = TestDir::new("disk-close-cap");
    let (buf, _) = open(&dir, 5 * FIXED);
    let memory: Vec<Vec<u8>> = (0..8).map(fixed).collect();
    // Oldest policy: the oldest of the memory records give way.
    assert_eq!(
        buf.close_with(memory.clone(), DropPolicy::Oldest).unwrap(),
        3
    );
    let (mut buf, recovered) = open(&dir, 5 * FIXED);
    assert_eq!(recovered.records, 5);
    assert_eq!(drain(&mut buf, 10), memory[3..8].to_vec());
    // Newest policy: the records that would be added last give way.
    let dir2 = TestDir::new("disk-close-cap2");
    let (buf, _) = open(&dir2, 3 * FIXED);
    assert_eq!(
        buf.close_with(memory.clone(), DropPolicy::Newest).unwrap(),
        5
    );
    let (mut buf, _) = open(&dir2, 3 * FIXED);
    assert_eq!(drain(&mut buf, 10), memory[0..3].to_vec());
}

#[test]
fn one_buffer_directory_has_one_owner() {
    let dir = TestDir::new("disk-lock");
    let (buf, _) = open(&dir, 1 << 20);
    match DiskBuffer::open(dir.path(), 1 << 20) {
        Err(OpenError::Locked(p)) => assert_eq!(p, dir.path()),
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("a second owner opened the buffer"),
    }
    drop(buf);
    assert!(DiskBuffer::open(dir.path(), 1 << 20).is_ok());
}

#[test]
fn directory_and_files_are_private() {
    let parent = TestDir::new("disk-perm");
    let dir = parent.path().join("a/b");
    let (mut buf, _) = DiskBuffer::open(&dir, 1 << 20).unwrap();
    buf.append(b"secret", DropPolicy::Oldest).unwrap();
    buf.read_batch(1).unwrap();
    buf.ack().unwrap();
    buf.append(b"more", DropPolicy::Oldest).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
}

#[test]
fn a_damaged_ack_file_replays_from_the_oldest_segment() {
    let dir = TestDir::new("disk-ack");
    let (mut buf, _) = open(&dir, 1 << 20);
    append_all(&mut buf, 0..6, DropPolicy::Oldest);
    buf.read_batch(4).unwrap();
    buf.ack().unwrap();
    drop(buf);
    std::fs::write(dir.path().join("ack"), b"garbage").unwrap();
    let (mut buf, recovered) = open(&dir, 1 << 20);
    assert_eq!(recovered.records, 6);
    assert_eq!(drain(&mut buf, 10), expected(0..6));
}
