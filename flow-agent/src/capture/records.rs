//! Decoding ring buffer bytes into typed records. The kernel side writes the `flow_common`
//! structs; a record of the wrong size is an error, never read past its end.
use std::mem::size_of;

use flow_common::{
    AcceptRecord, CredsRecord, DnsRecord, ExecRecord, ExitRecord, ForkRecord, PayloadRecord,
    RecordKind, TcpRecord, UdpOpenRecord, UdpReleaseRecord, PATH_MAX_DEPTH, PATH_SLOT_LEN,
};

#[derive(Clone)]
pub enum Record {
    Exec(Box<ExecRecord>),
    Fork(ForkRecord),
    Exit(ExitRecord),
    Creds(CredsRecord),
    TcpOpen(TcpRecord),
    TcpAccept(AcceptRecord),
    TcpClose(TcpRecord),
    UdpOpen(UdpOpenRecord),
    UdpRelease(UdpReleaseRecord),
    Dns(Box<DnsRecord>),
    Payload(Box<PayloadRecord>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is too short for a header")]
    Short(usize),
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("record kind {kind:?} has {got} bytes, expected {want}")]
    WrongSize {
        kind: RecordKind,
        got: usize,
        want: usize,
    },
}

fn read<T: Copy>(kind: RecordKind, bytes: &[u8]) -> Result<T, DecodeError> {
    // The ring buffer may round sizes up to 8 bytes; never accept fewer bytes than the struct.
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::WrongSize {
            kind,
            got: bytes.len(),
            want: size_of::<T>(),
        });
    }
    // SAFETY: length checked; every flow_common record is plain old data.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// A record written only as long as the bytes it carries: its `head` bytes, then the `used`
/// bytes of its trailing buffer. The rest of that buffer stays zero here.
fn read_tail<T: Copy>(
    kind: RecordKind,
    bytes: &[u8],
    head: usize,
    used: impl Fn(&T) -> u32,
) -> Result<Box<T>, DecodeError> {
    let short = |want| DecodeError::WrongSize {
        kind,
        got: bytes.len(),
        want,
    };
    if bytes.len() < head {
        return Err(short(head));
    }
    let mut full = vec![0u8; size_of::<T>()];
    let n = bytes.len().min(full.len());
    full[..n].copy_from_slice(&bytes[..n]);
    // SAFETY: `full` has the struct's size; every flow_common record is plain old data.
    let r: T = unsafe { std::ptr::read_unaligned(full.as_ptr().cast()) };
    let used = used(&r) as usize;
    if used > n - head {
        return Err(short(head + used));
    }
    Ok(Box::new(r))
}

impl Record {
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < 16 {
            return Err(DecodeError::Short(bytes.len()));
        }
        let raw = u32::from_ne_bytes(bytes[..4].try_into().expect("4 bytes"));
        let kind = RecordKind::from_u32(raw).ok_or(DecodeError::UnknownKind(raw))?;
        Ok(match kind {
            RecordKind::Exec => Record::Exec(read_tail(
                kind,
                bytes,
                std::mem::offset_of!(ExecRecord, args),
                |r: &ExecRecord| r.args_len,
            )?),
            RecordKind::Fork => Record::Fork(read(kind, bytes)?),
            RecordKind::Exit => Record::Exit(read(kind, bytes)?),
            RecordKind::Creds => Record::Creds(read(kind, bytes)?),
            RecordKind::TcpOpen => Record::TcpOpen(read(kind, bytes)?),
            RecordKind::TcpAccept => Record::TcpAccept(read(kind, bytes)?),
            RecordKind::TcpClose => Record::TcpClose(read(kind, bytes)?),
            RecordKind::UdpOpen => Record::UdpOpen(read(kind, bytes)?),
            RecordKind::UdpRelease => Record::UdpRelease(read(kind, bytes)?),
            RecordKind::Dns => Record::Dns(read_tail(
                kind,
                bytes,
                std::mem::offset_of!(DnsRecord, data),
                |r: &DnsRecord| r.len,
            )?),
            RecordKind::Payload => Record::Payload(read_tail(
                kind,
                bytes,
                std::mem::offset_of!(PayloadRecord, data),
                |r: &PayloadRecord| r.len,
            )?),
        })
    }
}

/// The executable path from an exec record's leaf-first component slots.
pub fn exec_path(rec: &ExecRecord) -> Vec<u8> {
    let used = (rec.path_len as usize).min(PATH_MAX_DEPTH);
    let mut parts: Vec<&[u8]> = rec.path[..used * PATH_SLOT_LEN]
        .chunks(PATH_SLOT_LEN)
        .map(|slot| &slot[..slot.iter().position(|b| *b == 0).unwrap_or(slot.len())])
        .filter(|p| !p.is_empty())
        .collect();
    parts.reverse();
    let mut path = Vec::with_capacity(used + 1);
    for p in parts {
        path.push(b'/');
        path.extend_from_slice(p);
    }
    if path.is_empty() {
        path.push(b'/');
    }
    path
}

/// argv from an exec record: NUL-separated arguments, possibly cut at the buffer's end.
pub(crate) fn exec_args(rec: &ExecRecord) -> Vec<Vec<u8>> {
    let used = (rec.args_len as usize).min(rec.args.len());
    let mut raw = &rec.args[..used];
    if raw.last() == Some(&0) {
        raw = &raw[..raw.len() - 1];
    }
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|b| *b == 0).map(<[u8]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec_with(path: &[&[u8]], args: &[u8]) -> Box<ExecRecord> {
        // SAFETY: ExecRecord is plain old data; all-zero is valid.
        let mut r: Box<ExecRecord> = Box::new(unsafe { std::mem::zeroed() });
        for (i, c) in path.iter().enumerate() {
            r.path[i * PATH_SLOT_LEN..i * PATH_SLOT_LEN + c.len()].copy_from_slice(c);
        }
        r.path_len = path.len() as u32;
        r.args[..args.len()].copy_from_slice(args);
        r.args_len = args.len() as u32;
        r
    }

    #[test]
    fn path_components_are_reversed() {
        // An empty slot is a mount crossing.
        let r = exec_with(&[b"curl", b"bin", b"", b"usr"], b"");
        assert_eq!(exec_path(&r), b"/usr/bin/curl");
    }

    #[test]
    fn args_split_on_nul() {
        let r = exec_with(&[], b"curl\0-s\0http://x\0");
        assert_eq!(
            exec_args(&r),
            vec![b"curl".to_vec(), b"-s".to_vec(), b"http://x".to_vec()]
        );
    }

    #[test]
    fn short_and_unknown_records_are_errors() {
        assert_eq!(Record::decode(&[0; 8]).err(), Some(DecodeError::Short(8)));
        let mut b = [0u8; 32];
        b[0] = 99;
        assert_eq!(Record::decode(&b).err(), Some(DecodeError::UnknownKind(99)));
        b[0] = RecordKind::TcpClose as u8;
        assert!(matches!(
            Record::decode(&b),
            Err(DecodeError::WrongSize { .. })
        ));
    }

    #[test]
    fn exec_records_carry_only_their_command_line() {
        let head = std::mem::offset_of!(ExecRecord, args);
        let mut b = vec![0u8; head + 8];
        b[0] = RecordKind::Exec as u8;
        let len_at = std::mem::offset_of!(ExecRecord, args_len);
        b[len_at..len_at + 4].copy_from_slice(&8u32.to_ne_bytes());
        b[head..].copy_from_slice(b"true\0-x\0");
        let Ok(Record::Exec(r)) = Record::decode(&b) else {
            panic!("an exec record with an 8-byte command line should decode");
        };
        assert_eq!(exec_args(&r), vec![b"true".to_vec(), b"-x".to_vec()]);
        // A command line longer than the bytes that came is an error, not garbage.
        b[len_at..len_at + 4].copy_from_slice(&9u32.to_ne_bytes());
        assert!(matches!(
            Record::decode(&b),
            Err(DecodeError::WrongSize { want, .. }) if want == head + 9
        ));
    }

    /// A record of `kind` carrying `data` after its `head` bytes, its length field at `len_at`
    /// saying `len`.
    fn with_tail(kind: RecordKind, head: usize, len_at: usize, data: &[u8], len: u32) -> Vec<u8> {
        let mut b = vec![0u8; head + data.len()];
        b[0] = kind as u8;
        b[len_at..len_at + 4].copy_from_slice(&len.to_ne_bytes());
        b[head..].copy_from_slice(data);
        b
    }

    #[test]
    fn payload_and_dns_records_carry_only_their_bytes() {
        let payload = (
            RecordKind::Payload,
            std::mem::offset_of!(PayloadRecord, data),
            std::mem::offset_of!(PayloadRecord, len),
        );
        let dns = (
            RecordKind::Dns,
            std::mem::offset_of!(DnsRecord, data),
            std::mem::offset_of!(DnsRecord, len),
        );
        for (kind, head, len_at) in [payload, dns] {
            let data: &[u8] = b"hello, twelve+";
            let n = data.len() as u32;
            let carried = match Record::decode(&with_tail(kind, head, len_at, data, n)) {
                Ok(Record::Payload(r)) => r.data.to_vec(),
                Ok(Record::Dns(r)) => r.data.to_vec(),
                Ok(_) => panic!("{kind:?} decoded as another kind"),
                Err(e) => panic!("{kind:?}: {e:?}"),
            };
            assert_eq!(&carried[..data.len()], data, "{kind:?}");
            assert!(carried[data.len()..].iter().all(|&x| x == 0), "{kind:?}");
            // A length larger than the bytes carried is an error, never a read past the end.
            assert!(
                matches!(
                    Record::decode(&with_tail(kind, head, len_at, data, n + 1)),
                    Err(DecodeError::WrongSize { want, .. }) if want == head + data.len() + 1
                ),
                "{kind:?}"
            );
        }
    }
}
