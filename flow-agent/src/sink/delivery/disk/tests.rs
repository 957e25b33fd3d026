use std::{
    fs::OpenOptions,
    io::Write,
    os::unix::fs::{FileExt, PermissionsExt},
};

use super::{segment, Appended, DiskBuffer, OpenError, Recovered};
use crate::sink::{
    delivery::{tests::TestDir, DropPolicy},
    safe_dir::SafeDir,
};

fn rec(i: usize) -> Vec<u8> {
    format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 37)).into_bytes()
}

/// Records of one size, for exact cap arithmetic.
fn fixed(i: usize) -> Vec<u8> {
    format!("record-{i:06}").into_bytes()
}

const FIXED: u64 = segment::HEADER + 13;

/// The segment numbers in the directory.
fn segments(dir: &TestDir) -> Vec<u64> {
    segment::list_segments(&SafeDir::open(dir.path()).unwrap()).unwrap()
}

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
    let files = segments(&dir);
    assert!(
        files.len() > 10,
        "expected many segments, got {}",
        files.len()
    );
    assert_eq!(drain(&mut buf, 77), expected(0..3000));
    assert_eq!(buf.unacked_records(), 0);
    assert_eq!(buf.unacked_bytes(), 0);
    assert!(segments(&dir).is_empty());
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
            ..Recovered::default()
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
    let last = *segments(&dir).last().unwrap();
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
            torn_bytes: 18,
            ..Recovered::default()
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
    let last = *segments(&dir).last().unwrap();
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

/// The payloads of the format 2 records in a segment file.
fn records_in(path: &std::path::Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let mut at = segment::FILE_HEADER as usize;
    let mut out = Vec::new();
    while at < bytes.len() {
        match segment::parse_record(&bytes[at..], (bytes.len() - at) as u64, Format::V2) {
            segment::Parsed::Record(p, total) => {
                out.push(p.to_vec());
                at += total as usize;
            }
            _ => panic!("{}: not a record at {at}", path.display()),
        }
    }
    out
}

/// A file outside the buffer that must come out of everything byte for byte as it was.
struct Precious {
    _dir: TestDir,
    path: std::path::PathBuf,
    bytes: Vec<u8>,
}

impl Precious {
    fn new(bytes: Vec<u8>) -> Precious {
        let dir = TestDir::new("disk-outside");
        std::fs::create_dir(dir.path()).unwrap();
        let path = dir.path().join("precious");
        std::fs::write(&path, &bytes).unwrap();
        Precious {
            _dir: dir,
            path,
            bytes,
        }
    }

    fn assert_untouched(&self, links: u64) {
        let meta = std::fs::metadata(&self.path).unwrap();
        assert_eq!(std::fs::read(&self.path).unwrap(), self.bytes);
        assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
        assert_eq!(meta.nlink(), links);
    }
}

use segment::Format;
use std::os::unix::fs::MetadataExt;

#[test]
fn symlinks_planted_in_the_directory_are_never_followed() {
    let dir = TestDir::new("disk-symlink");
    let (mut buf, _) = open(&dir, 1 << 20);
    append_all(&mut buf, 0..5, DropPolicy::Oldest);
    drop(buf);
    let ids = segments(&dir);
    // Not a segment: the recovery of old would have cut it to 0 bytes as a torn record.
    let target = Precious::new(b"root:x:0:0:root:/root:/bin/bash\n".repeat(50));
    let (before, after) = (ids[0] - 1, ids[ids.len() - 1] + 1);
    for name in [
        segment::segment_name(before),
        segment::segment_name(after),
        "ack.tmp".into(),
        "segment.tmp".into(),
    ] {
        std::os::unix::fs::symlink(&target.path, dir.path().join(name)).unwrap();
    }

    let (mut buf, recovered) = open(&dir, 1 << 20);
    assert_eq!(
        recovered,
        Recovered {
            records: 5,
            refused: 2,
            ..Recovered::default()
        }
    );
    // The links are moved aside as they are (still links), never read.
    for id in [before, after] {
        let aside = dir.path().join(format!("{id:016x}.seg.refused"));
        assert!(std::fs::symlink_metadata(&aside)
            .unwrap()
            .file_type()
            .is_symlink());
    }
    // Acknowledging writes ack.tmp, appending makes segment `after`, closing writes
    // segment.tmp: each is a new file, the links are replaced, not written through.
    assert_eq!(drain(&mut buf, 2), expected(0..5));
    append_all(&mut buf, 5..7, DropPolicy::Oldest);
    buf.close_with(expected(7..9), DropPolicy::Oldest).unwrap();
    target.assert_untouched(1);
    let (mut buf, recovered) = open(&dir, 1 << 20);
    assert_eq!(recovered.records, 4);
    assert_eq!(
        drain(&mut buf, 10),
        [expected(7..9), expected(5..7)].concat()
    );
    target.assert_untouched(1);
}

#[test]
fn a_hard_linked_segment_is_refused_and_left_untouched() {
    let dir = TestDir::new("disk-hardlink");
    let (mut buf, _) = open(&dir, 1 << 20);
    append_all(&mut buf, 0..3, DropPolicy::Oldest);
    drop(buf);
    let id = segments(&dir)[0];
    // A valid segment with a torn tail: a recovery through the link would cut it.
    let mut bytes = std::fs::read(segment::segment_path(dir.path(), id)).unwrap();
    bytes.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
    let target = Precious::new(bytes);
    std::fs::hard_link(&target.path, segment::segment_path(dir.path(), id + 1)).unwrap();

    let (mut buf, recovered) = open(&dir, 1 << 20);
    assert_eq!((recovered.records, recovered.refused), (3, 1));
    assert_eq!(recovered.torn, 0);
    // Its records are not replayed (they could be anyone's), the file is not cut.
    assert_eq!(drain(&mut buf, 10), expected(0..3));
    target.assert_untouched(2);
    let aside = dir.path().join(format!("{:016x}.seg.refused", id + 1));
    assert_eq!(
        std::fs::metadata(&aside).unwrap().ino(),
        std::fs::metadata(&target.path).unwrap().ino()
    );
}

#[test]
fn a_corrupt_segment_is_moved_aside_and_the_valid_ones_replayed() {
    let dir = TestDir::new("disk-corrupt");
    let (mut buf, _) = open(&dir, 1 << 30);
    buf.segment_bytes = 4 << 10;
    append_all(&mut buf, 0..400, DropPolicy::Oldest);
    drop(buf);
    let ids = segments(&dir);
    assert!(ids.len() >= 3, "{ids:?}");
    let middle = segment::segment_path(dir.path(), ids[1]);
    let lost = records_in(&middle);
    // A flipped byte in the third record, with records after it: damage, not a torn tail.
    let offset = segment::FILE_HEADER
        + (0..2)
            .map(|i| segment::HEADER + lost[i].len() as u64)
            .sum::<u64>()
        + segment::HEADER
        + 1;
    let f = OpenOptions::new().write(true).open(&middle).unwrap();
    f.write_all_at(b"#", offset).unwrap();
    drop(f);
    let damaged = std::fs::read(&middle).unwrap();

    let (mut buf, recovered) = open(&dir, 1 << 30);
    assert_eq!(
        recovered,
        Recovered {
            records: 400 - lost.len() as u64,
            corrupt: 1,
            corrupt_records: 2,
            ..Recovered::default()
        }
    );
    assert!(!middle.exists());
    let aside = dir.path().join(format!("{:016x}.seg.corrupt", ids[1]));
    assert_eq!(std::fs::read(&aside).unwrap(), damaged);
    let want: Vec<Vec<u8>> = expected(0..400)
        .into_iter()
        .filter(|r| !lost.contains(r))
        .collect();
    assert_eq!(drain(&mut buf, 64), want);
    // Moved aside, it stays aside: the next start neither sees nor counts it.
    drop(buf);
    assert_eq!(open(&dir, 1 << 30).1, Recovered::default());
    assert!(aside.exists());
}

#[test]
fn empty_and_all_zero_records_are_rejected_and_the_checksum_covers_the_length() {
    let dir = TestDir::new("disk-zero");
    let (mut buf, _) = open(&dir, 1 << 20);
    for bad in [&b""[..], &[0u8; 10][..]] {
        assert_eq!(
            buf.append(bad, DropPolicy::Oldest).unwrap(),
            Appended::Refused
        );
    }
    append_all(&mut buf, 0..3, DropPolicy::Oldest);
    drop(buf);
    // An empty record and an all-zero one, each with a checksum that matches: not records.
    let v2 = |len: u32, payload: &[u8]| {
        let mut h = crc32fast::Hasher::new();
        h.update(&len.to_le_bytes());
        h.update(payload);
        [&len.to_le_bytes()[..], &h.finalize().to_le_bytes(), payload].concat()
    };
    for bad in [v2(0, b""), v2(4, &[0; 4])] {
        assert!(matches!(
            segment::parse_record(&bad, bad.len() as u64, Format::V2),
            segment::Parsed::Invalid
        ));
    }
    // The checksum of format 1 covered the payload only: a header of zeros was a valid empty
    // record. Format 2's covers the length, so it is not.
    assert_eq!(crc32fast::hash(b""), 0);
    assert!(matches!(
        segment::parse_record(&[0; 8], 8, Format::V2),
        segment::Parsed::Invalid
    ));
    // A tail of zeros (a power loss after the file grew): torn, cut, the rest replayed.
    let path = segment::segment_path(dir.path(), segments(&dir)[0]);
    let good_len = std::fs::metadata(&path).unwrap().len();
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[0u8; 4096]).unwrap();
    drop(f);
    let (mut buf, recovered) = open(&dir, 1 << 20);
    assert_eq!(
        (recovered.records, recovered.torn, recovered.torn_bytes),
        (3, 1, 4096)
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
    assert_eq!(drain(&mut buf, 10), expected(0..3));
}

/// Writes `records` as a format 1 segment (no file header, checksum of the payload only), as
/// earlier versions did.
fn write_v1_segment(dir: &TestDir, id: u64, records: &[Vec<u8>]) {
    let mut bytes = Vec::new();
    for r in records {
        bytes.extend_from_slice(&(r.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(r).to_le_bytes());
        bytes.extend_from_slice(r);
    }
    std::fs::create_dir_all(dir.path()).unwrap();
    let path = segment::segment_path(dir.path(), id);
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn segments_of_the_earlier_format_are_replayed_and_never_appended_to() {
    let dir = TestDir::new("disk-v1");
    write_v1_segment(&dir, segment::FIRST_ID, &expected(0..5));
    let v1 = segment::segment_path(dir.path(), segment::FIRST_ID);
    let v1_bytes = std::fs::read(&v1).unwrap();
    let (mut buf, recovered) = open(&dir, 1 << 20);
    assert_eq!(
        recovered,
        Recovered {
            records: 5,
            ..Recovered::default()
        }
    );
    append_all(&mut buf, 5..8, DropPolicy::Oldest);
    assert_eq!(std::fs::read(&v1).unwrap(), v1_bytes);
    let new = segment::segment_path(dir.path(), segment::FIRST_ID + 1);
    assert_eq!(&std::fs::read(&new).unwrap()[..8], b"FLOWSG\x02\x00");
    assert_eq!(records_in(&new), expected(5..8));
    assert_eq!(drain(&mut buf, 3), expected(0..8));
    assert!(segments(&dir).is_empty());

    // Closing with records in memory in front of a partly acknowledged format 1 segment: its
    // rest is written again in format 2 behind them.
    let dir = TestDir::new("disk-v1-close");
    write_v1_segment(&dir, segment::FIRST_ID, &expected(10..15));
    let (mut buf, _) = open(&dir, 1 << 20);
    assert_eq!(buf.read_batch(2).unwrap().0, expected(10..12));
    buf.ack().unwrap();
    buf.close_with(expected(0..3), DropPolicy::Oldest).unwrap();
    assert_eq!(segments(&dir), [segment::FIRST_ID - 1]);
    let (mut buf, recovered) = open(&dir, 1 << 20);
    assert_eq!(recovered.records, 6);
    assert_eq!(
        drain(&mut buf, 4),
        [expected(0..3), expected(12..15)].concat()
    );
}

#[test]
fn a_segment_of_an_unknown_format_version_is_moved_aside() {
    let dir = TestDir::new("disk-version");
    std::fs::create_dir(dir.path()).unwrap();
    let path = segment::segment_path(dir.path(), segment::FIRST_ID);
    std::fs::write(&path, b"FLOWSG\x03\x00whatever comes next").unwrap();
    let (mut buf, recovered) = open(&dir, 1 << 20);
    assert_eq!((recovered.corrupt, recovered.records), (1, 0));
    assert!(dir
        .path()
        .join(format!("{:016x}.seg.corrupt", segment::FIRST_ID))
        .exists());
    // Its number is not reused while it is aside under another name: a new one is made.
    append_all(&mut buf, 0..2, DropPolicy::Oldest);
    assert_eq!(drain(&mut buf, 5), expected(0..2));
}

#[test]
fn an_unsafe_directory_or_lock_file_stops_the_buffer_naming_it() {
    let parent = TestDir::new("disk-unsafe");
    std::fs::create_dir(parent.path()).unwrap();
    let open_err = |p: &std::path::Path| match DiskBuffer::open(p, 1 << 20) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{} was accepted", p.display()),
    };
    let shared = parent.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let err = open_err(&shared);
    assert_eq!(
        err,
        format!(
            "disk buffer: directory {0} is refused: mode 1777 lets its group and all users create files in it (expected no write permission for group and others; chmod go-w {0})",
            shared.display()
        )
    );
    let link = parent.path().join("link");
    let real = parent.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    assert!(
        open_err(&link).contains("is a symbolic link"),
        "{}",
        open_err(&link)
    );

    let target = Precious::new(b"keep".to_vec());
    std::os::unix::fs::symlink(&target.path, real.join("lock")).unwrap();
    assert_eq!(
        open_err(&real),
        format!(
            "disk buffer: {} is a symbolic link (remove it)",
            real.join("lock").display()
        )
    );
    target.assert_untouched(1);
}
