//! A minimal reader for the kernel's BTF type information (Documentation/bpf/btf.rst).
//!
//! It answers one question: at which byte offset does a (possibly nested) member sit inside a
//! kernel struct. The eBPF programs are built without CO-RE, so userspace computes these offsets
//! at start-up from `/sys/kernel/btf/vmlinux`. The input is a file, so every read is
//! bounds-checked and malformed data yields an error, never a panic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where the running kernel exposes its own BTF.
pub(crate) const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
/// `struct btf_type`: name_off, info, size_or_type.
const TYPE_LEN: usize = 12;
/// Bounds typedef chains and anonymous-member nesting, so that a cyclic file cannot hang us.
const MAX_DEPTH: usize = 64;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, thiserror::Error)]
pub(crate) enum BtfError {
    #[error("cannot read BTF from {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not BTF data: bad magic {0:#06x} (expected 0xeb9f)")]
    BadMagic(u16),
    #[error("BTF data truncated: {0}")]
    Truncated(String),
    #[error("BTF data malformed: {0}")]
    Malformed(String),
    #[error("BTF has no struct or union named `{0}`")]
    StructNotFound(String),
    #[error("struct `{struct_name}` has no member `{path}`")]
    MemberNotFound { struct_name: String, path: String },
    #[error("member `{path}` of struct `{struct_name}` is a bitfield and has no byte offset")]
    Bitfield { struct_name: String, path: String },
}

/// Parsed BTF: the raw bytes plus an index from type id to record position.
pub(crate) struct Btf {
    data: Vec<u8>,
    big_endian: bool,
    /// Byte range of the string section within `data`.
    strings: (usize, usize),
    /// `type_pos[id - 1]` is the position of type `id`'s record within `data`.
    type_pos: Vec<usize>,
    /// Named structs and unions, first definition wins.
    composites: HashMap<String, u32>,
}

/// One decoded `struct btf_type` header.
#[derive(Clone, Copy)]
struct Type {
    name_off: u32,
    kind: u32,
    vlen: u32,
    kind_flag: bool,
    size_or_type: u32,
    /// Position of the kind-specific data that follows the header.
    extra: usize,
}

impl Type {
    fn is_composite(&self) -> bool {
        self.kind == KIND_STRUCT || self.kind == KIND_UNION
    }
}

/// A member found inside a struct or union, its offset relative to that struct.
struct Found {
    bit_offset: u32,
    bitfield: bool,
    type_id: u32,
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub(crate) fn from_sys_fs() -> Result<Btf, BtfError> {
        Btf::from_file(Path::new(VMLINUX_BTF))
    }

    pub(crate) fn from_file(path: &Path) -> Result<Btf, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        Btf::from_vec(data)
    }

    #[cfg(test)]
    pub(crate) fn from_bytes(data: &[u8]) -> Result<Btf, BtfError> {
        Btf::from_vec(data.to_vec())
    }

    fn from_vec(data: Vec<u8>) -> Result<Btf, BtfError> {
        if data.len() < HEADER_LEN {
            return Err(BtfError::Truncated(format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                data.len()
            )));
        }
        // BTF is written in the producer's byte order; the magic tells which.
        let big_endian = match [data[0], data[1]] {
            m if u16::from_le_bytes(m) == MAGIC => false,
            m if u16::from_be_bytes(m) == MAGIC => true,
            m => return Err(BtfError::BadMagic(u16::from_le_bytes(m))),
        };
        let mut btf = Btf {
            data,
            big_endian,
            strings: (0, 0),
            type_pos: Vec::new(),
            composites: HashMap::new(),
        };
        let version = btf.data[2];
        if version != 1 {
            return Err(BtfError::Malformed(format!(
                "unsupported version {version}"
            )));
        }
        let hdr_len = btf.u32_at(4)? as usize;
        if hdr_len < HEADER_LEN {
            return Err(BtfError::Malformed(format!("header length {hdr_len}")));
        }
        let types = btf.section(hdr_len, 8, "type")?;
        btf.strings = btf.section(hdr_len, 16, "string")?;
        btf.index_types(types)?;
        btf.index_composites()?;
        Ok(btf)
    }

    /// Resolves the (offset, length) pair at `field` of the header into an absolute byte range.
    fn section(
        &self,
        hdr_len: usize,
        field: usize,
        what: &str,
    ) -> Result<(usize, usize), BtfError> {
        let off = self.u32_at(field)? as usize;
        let len = self.u32_at(field + 4)? as usize;
        let start = hdr_len.checked_add(off);
        let end = start.and_then(|s| s.checked_add(len));
        match (start, end) {
            (Some(start), Some(end)) if end <= self.data.len() => Ok((start, end)),
            _ => Err(BtfError::Truncated(format!(
                "{what} section ({len} bytes at {off}) runs past the end of {} bytes",
                self.data.len()
            ))),
        }
    }

    /// Walks the type section once, recording where each record starts and checking that the
    /// kind-specific data of every record fits.
    fn index_types(&mut self, (start, end): (usize, usize)) -> Result<(), BtfError> {
        let mut pos = start;
        while pos < end {
            let id = self.type_pos.len() + 1;
            if end - pos < TYPE_LEN {
                return Err(BtfError::Truncated(format!("type {id} header")));
            }
            let info = self.u32_at(pos + 4)?;
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            let extra = match kind {
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                other => {
                    return Err(BtfError::Malformed(format!(
                        "type {id} has unknown kind {other}"
                    )))
                }
            };
            let next = pos + TYPE_LEN + extra;
            if next > end {
                return Err(BtfError::Truncated(format!("type {id} data")));
            }
            self.type_pos.push(pos);
            pos = next;
        }
        Ok(())
    }

    fn index_composites(&mut self) -> Result<(), BtfError> {
        for id in 1..=self.type_pos.len() as u32 {
            let t = self.ty(id)?;
            if !t.is_composite() || t.name_off == 0 {
                continue;
            }
            if let Ok(name) = std::str::from_utf8(self.str_at(t.name_off)?) {
                self.composites.entry(name.to_owned()).or_insert(id);
            }
        }
        Ok(())
    }

    /// Whether the kernel has a struct or union (or a typedef of one) called `name`.
    #[cfg(test)]
    pub(crate) fn has_struct(&self, name: &str) -> bool {
        matches!(self.find_composite(name), Ok(Some(_)))
    }

    /// Size in bytes of struct or union `name`.
    #[cfg(test)]
    pub(crate) fn struct_size(&self, name: &str) -> Result<u32, BtfError> {
        let (_, t) = self
            .find_composite(name)?
            .ok_or_else(|| BtfError::StructNotFound(name.to_owned()))?;
        Ok(t.size_or_type)
    }

    /// Byte offset of `path` (dotted, like `d_name.name`) inside struct or union `struct_name`.
    /// Each step descends into a named member; anonymous structs and unions on the way are
    /// searched transparently, as C does.
    pub(crate) fn member_offset(&self, struct_name: &str, path: &str) -> Result<u32, BtfError> {
        let (bits, bitfield) = self.member_bits(struct_name, path)?;
        if bitfield {
            return Err(BtfError::Bitfield {
                struct_name: struct_name.to_owned(),
                path: path.to_owned(),
            });
        }
        Ok(bits / 8)
    }

    /// Bit offset of `path` inside `struct_name`, bitfields included (as `member_offset`).
    pub(crate) fn member_bit_offset(&self, struct_name: &str, path: &str) -> Result<u32, BtfError> {
        Ok(self.member_bits(struct_name, path)?.0)
    }

    /// Bit offset of `path` and whether its last member is a bitfield.
    fn member_bits(&self, struct_name: &str, path: &str) -> Result<(u32, bool), BtfError> {
        let (_, mut current) = self
            .find_composite(struct_name)?
            .ok_or_else(|| BtfError::StructNotFound(struct_name.to_owned()))?;
        let not_found = || BtfError::MemberNotFound {
            struct_name: struct_name.to_owned(),
            path: path.to_owned(),
        };
        let mut bits: u32 = 0;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let found = self.find_member(&current, part, 0)?.ok_or_else(not_found)?;
            bits = bits.checked_add(found.bit_offset).ok_or_else(|| {
                BtfError::Malformed(format!("offset of {struct_name}.{path} overflows"))
            })?;
            if parts.peek().is_none() {
                return Ok((bits, found.bitfield));
            }
            current = match self.skip_modifiers(found.type_id)? {
                Some((_, t)) if t.is_composite() && !found.bitfield => t,
                _ => return Err(not_found()),
            };
        }
        Err(not_found())
    }

    /// Looks a struct or union up by tag name, then by typedef name (`possible_net_t`).
    fn find_composite(&self, name: &str) -> Result<Option<(u32, Type)>, BtfError> {
        if let Some(&id) = self.composites.get(name) {
            return Ok(Some((id, self.ty(id)?)));
        }
        for id in 1..=self.type_pos.len() as u32 {
            let t = self.ty(id)?;
            if t.kind == KIND_TYPEDEF && self.str_at(t.name_off)? == name.as_bytes() {
                if let Some((id, t)) = self.skip_modifiers(id)? {
                    if t.is_composite() {
                        return Ok(Some((id, t)));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Finds member `name` in a struct or union, descending into anonymous members.
    fn find_member(
        &self,
        parent: &Type,
        name: &str,
        depth: usize,
    ) -> Result<Option<Found>, BtfError> {
        if depth > MAX_DEPTH || name.is_empty() {
            return Ok(None);
        }
        for i in 0..parent.vlen as usize {
            let pos = parent.extra + i * 12;
            let (name_off, type_id, raw) = (
                self.u32_at(pos)?,
                self.u32_at(pos + 4)?,
                self.u32_at(pos + 8)?,
            );
            // With kind_flag the offset word packs the bitfield size above a 24-bit bit offset.
            let (bit_offset, bitfield_size) = if parent.kind_flag {
                (raw & 0x00ff_ffff, raw >> 24)
            } else {
                (raw, 0)
            };
            let member_name = self.str_at(name_off)?;
            if member_name.is_empty() {
                let Some((_, inner)) = self.skip_modifiers(type_id)? else {
                    continue;
                };
                if !inner.is_composite() {
                    continue;
                }
                if let Some(found) = self.find_member(&inner, name, depth + 1)? {
                    let bit_offset = bit_offset.checked_add(found.bit_offset).ok_or_else(|| {
                        BtfError::Malformed(format!("offset of member `{name}` overflows"))
                    })?;
                    return Ok(Some(Found {
                        bit_offset,
                        ..found
                    }));
                }
            } else if member_name == name.as_bytes() {
                let bitfield =
                    bitfield_size != 0 || bit_offset % 8 != 0 || self.is_int_bitfield(type_id)?;
                return Ok(Some(Found {
                    bit_offset,
                    bitfield,
                    type_id,
                }));
            }
        }
        Ok(None)
    }

    /// Old encoders (no kind_flag) mark bitfields with an INT narrower than its storage.
    fn is_int_bitfield(&self, type_id: u32) -> Result<bool, BtfError> {
        match self.skip_modifiers(type_id)? {
            Some((_, t)) if t.kind == KIND_INT => {
                let encoding = self.u32_at(t.extra)?;
                let (bits, offset) = (encoding & 0xff, (encoding >> 16) & 0xff);
                Ok(offset != 0 || u64::from(bits) != u64::from(t.size_or_type) * 8)
            }
            _ => Ok(false),
        }
    }

    /// Follows typedef/const/volatile/restrict/type-tag links; `None` means void.
    fn skip_modifiers(&self, mut id: u32) -> Result<Option<(u32, Type)>, BtfError> {
        for _ in 0..MAX_DEPTH {
            if id == 0 {
                return Ok(None);
            }
            let t = self.ty(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Ok(Some((id, t))),
            }
        }
        Err(BtfError::Malformed(format!(
            "type chain through {id} is too long or cyclic"
        )))
    }

    fn ty(&self, id: u32) -> Result<Type, BtfError> {
        let pos = id
            .checked_sub(1)
            .and_then(|i| self.type_pos.get(i as usize))
            .copied()
            .ok_or_else(|| BtfError::Malformed(format!("reference to missing type {id}")))?;
        let info = self.u32_at(pos + 4)?;
        Ok(Type {
            name_off: self.u32_at(pos)?,
            kind: (info >> 24) & 0x1f,
            vlen: info & 0xffff,
            kind_flag: info >> 31 == 1,
            size_or_type: self.u32_at(pos + 8)?,
            extra: pos + TYPE_LEN,
        })
    }

    /// The NUL-terminated string at `off` in the string section (without the NUL).
    fn str_at(&self, off: u32) -> Result<&[u8], BtfError> {
        let (start, end) = self.strings;
        let bytes = start
            .checked_add(off as usize)
            .filter(|&s| s < end)
            .and_then(|s| self.data.get(s..end))
            .ok_or_else(|| BtfError::Malformed(format!("string offset {off} out of range")))?;
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        Ok(&bytes[..len])
    }

    fn u32_at(&self, pos: usize) -> Result<u32, BtfError> {
        let bytes: [u8; 4] = pos
            .checked_add(4)
            .and_then(|end| self.data.get(pos..end))
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| BtfError::Truncated(format!("read of 4 bytes at {pos}")))?;
        Ok(if self.big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds little-endian BTF blobs type by type; ids are assigned from 1 in call order.
    #[derive(Default)]
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        fn new() -> Builder {
            Builder {
                strings: vec![0],
                next_id: 1,
                ..Default::default()
            }
        }

        fn name(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            off
        }

        fn header(
            &mut self,
            name: &str,
            kind: u32,
            vlen: u32,
            kind_flag: bool,
            size_or_type: u32,
        ) -> u32 {
            let name_off = self.name(name);
            let info = (u32::from(kind_flag) << 31) | (kind << 24) | vlen;
            for word in [name_off, info, size_or_type] {
                self.types.extend_from_slice(&word.to_le_bytes());
            }
            self.next_id += 1;
            self.next_id - 1
        }

        fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.header(name, KIND_INT, 0, false, size);
            self.types.extend_from_slice(&(size * 8).to_le_bytes());
            id
        }

        fn ptr(&mut self, target: u32) -> u32 {
            self.header("", KIND_PTR, 0, false, target)
        }

        fn modifier(&mut self, kind: u32, name: &str, target: u32) -> u32 {
            self.header(name, kind, 0, false, target)
        }

        /// Members are (name, type, bit offset, bitfield size); a bitfield sets kind_flag.
        fn composite(
            &mut self,
            kind: u32,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32, u32)],
        ) -> u32 {
            let kind_flag = members.iter().any(|m| m.3 != 0);
            let id = self.header(name, kind, members.len() as u32, kind_flag, size);
            for &(member, ty, bits, bitfield) in members {
                let name_off = self.name(member);
                let offset = if kind_flag {
                    (bitfield << 24) | bits
                } else {
                    bits
                };
                for word in [name_off, ty, offset] {
                    self.types.extend_from_slice(&word.to_le_bytes());
                }
            }
            id
        }

        fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            let type_len = self.types.len() as u32;
            for word in [
                HEADER_LEN as u32,
                0,
                type_len,
                type_len,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&word.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    /// A miniature `sock_common`/`dentry` world exercising every lookup path.
    fn sample() -> Vec<u8> {
        let mut b = Builder::new();
        let u32_t = b.int("unsigned int", 4);
        let u16_t = b.int("u16", 2);
        let void_ptr = b.ptr(0);
        // typedef struct { void *net; } possible_net_t;
        let anon_net = b.composite(KIND_STRUCT, "", 8, &[("net", void_ptr, 0, 0)]);
        let possible_net = b.modifier(KIND_TYPEDEF, "possible_net_t", anon_net);
        // const volatile typedef chain to a plain int
        let td = b.modifier(KIND_TYPEDEF, "my_u32", u32_t);
        let cv = b.modifier(KIND_VOLATILE, "", td);
        let cst = b.modifier(KIND_CONST, "", cv);
        // struct qstr { union { struct { u32 hash; u32 len; }; u64 hash_len; }; void *name; }
        let hash_struct = b.composite(
            KIND_STRUCT,
            "",
            8,
            &[("hash", u32_t, 0, 0), ("len", u32_t, 32, 0)],
        );
        let hash_union = b.composite(
            KIND_UNION,
            "",
            8,
            &[("", hash_struct, 0, 0), ("hash_len", void_ptr, 0, 0)],
        );
        let qstr = b.composite(
            KIND_STRUCT,
            "qstr",
            16,
            &[("", hash_union, 0, 0), ("name", void_ptr, 64, 0)],
        );
        let const_qstr = b.modifier(KIND_CONST, "", qstr);
        // struct sock_common with a union of i_nlink/__i_nlink, a nested typedef'd struct and
        // a bitfield.
        let nlink = b.composite(
            KIND_UNION,
            "",
            4,
            &[("i_nlink", cst, 0, 0), ("__i_nlink", u32_t, 0, 0)],
        );
        b.composite(
            KIND_STRUCT,
            "sock_common",
            64,
            &[
                ("skc_family", u16_t, 0, 0),
                ("", nlink, 32, 0),
                ("skc_net", possible_net, 64, 0),
                ("d_name", const_qstr, 128, 0),
                ("sk_protocol", u32_t, 264, 8),
                ("after", u32_t, 288, 0),
            ],
        );
        b.build()
    }

    #[test]
    fn finds_members_through_anonymous_and_typedef_layers() {
        let btf = Btf::from_bytes(&sample()).unwrap();
        assert!(btf.has_struct("sock_common"));
        assert!(btf.has_struct("qstr"));
        assert!(
            btf.has_struct("possible_net_t"),
            "typedef of an anonymous struct"
        );
        assert!(!btf.has_struct("task_struct"));
        assert_eq!(btf.struct_size("sock_common").unwrap(), 64);

        assert_eq!(btf.member_offset("sock_common", "skc_family").unwrap(), 0);
        assert_eq!(btf.member_offset("sock_common", "i_nlink").unwrap(), 4);
        assert_eq!(btf.member_offset("sock_common", "__i_nlink").unwrap(), 4);
        assert_eq!(btf.member_offset("sock_common", "skc_net").unwrap(), 8);
        assert_eq!(btf.member_offset("sock_common", "skc_net.net").unwrap(), 8);
        assert_eq!(btf.member_offset("sock_common", "d_name").unwrap(), 16);
        assert_eq!(btf.member_offset("sock_common", "d_name.name").unwrap(), 24);
        assert_eq!(btf.member_offset("sock_common", "d_name.len").unwrap(), 20);
        assert_eq!(btf.member_offset("sock_common", "after").unwrap(), 36);
        assert_eq!(btf.member_offset("qstr", "len").unwrap(), 4);
        assert_eq!(btf.member_offset("possible_net_t", "net").unwrap(), 0);
    }

    #[test]
    fn reports_what_is_missing() {
        let btf = Btf::from_bytes(&sample()).unwrap();
        assert!(matches!(
            btf.member_offset("task_struct", "pid"),
            Err(BtfError::StructNotFound(s)) if s == "task_struct"
        ));
        for path in [
            "nope",
            "d_name.nope",
            "skc_family.x",
            "",
            "d_name.",
            "skc_net..net",
        ] {
            match btf.member_offset("sock_common", path) {
                Err(BtfError::MemberNotFound {
                    struct_name,
                    path: p,
                }) => {
                    assert_eq!((struct_name.as_str(), p.as_str()), ("sock_common", path))
                }
                other => panic!("{path}: {:?}", other.map_err(|e| e.to_string())),
            }
        }
        assert!(matches!(
            btf.member_offset("sock_common", "sk_protocol"),
            Err(BtfError::Bitfield { .. })
        ));
        assert_eq!(
            btf.member_bit_offset("sock_common", "sk_protocol").unwrap(),
            264
        );
    }

    #[test]
    fn old_style_int_bitfields_are_rejected() {
        let mut b = Builder::new();
        let id = b.header("u8_3bits", KIND_INT, 0, false, 1);
        b.types.extend_from_slice(&3u32.to_le_bytes());
        b.composite(KIND_STRUCT, "s", 4, &[("a", id, 0, 0), ("b", id, 3, 0)]);
        let btf = Btf::from_bytes(&b.build()).unwrap();
        assert!(matches!(
            btf.member_offset("s", "a"),
            Err(BtfError::Bitfield { .. })
        ));
        assert!(matches!(
            btf.member_offset("s", "b"),
            Err(BtfError::Bitfield { .. })
        ));
        // Their bit offsets are known all the same.
        assert_eq!(btf.member_bit_offset("s", "a").unwrap(), 0);
        assert_eq!(btf.member_bit_offset("s", "b").unwrap(), 3);
    }

    #[test]
    fn cyclic_typedefs_are_an_error_not_a_hang() {
        let mut b = Builder::new();
        // Type 1 is a typedef of type 2, which is a typedef of type 1.
        b.modifier(KIND_TYPEDEF, "a", 2);
        b.modifier(KIND_TYPEDEF, "b", 1);
        b.composite(KIND_STRUCT, "s", 8, &[("", 1, 0, 0), ("x", 1, 0, 0)]);
        let btf = Btf::from_bytes(&b.build()).unwrap();
        assert!(matches!(
            btf.member_offset("s", "x.y"),
            Err(BtfError::Malformed(_))
        ));
        assert!(!btf.has_struct("a"));
    }

    #[test]
    fn dangling_type_references_are_errors() {
        let mut b = Builder::new();
        b.composite(KIND_STRUCT, "s", 8, &[("", 99, 0, 0), ("x", 42, 0, 0)]);
        let btf = Btf::from_bytes(&b.build()).unwrap();
        assert!(matches!(
            btf.member_offset("s", "x"),
            Err(BtfError::Malformed(_))
        ));
    }

    #[test]
    fn bad_headers_are_errors() {
        let good = sample();
        assert!(matches!(Btf::from_bytes(&[]), Err(BtfError::Truncated(_))));
        assert!(matches!(
            Btf::from_bytes(&good[..10]),
            Err(BtfError::Truncated(_))
        ));
        let mut bad_magic = good.clone();
        bad_magic[0] = 0;
        assert!(matches!(
            Btf::from_bytes(&bad_magic),
            Err(BtfError::BadMagic(_))
        ));
        let mut bad_version = good.clone();
        bad_version[2] = 7;
        assert!(matches!(
            Btf::from_bytes(&bad_version),
            Err(BtfError::Malformed(_))
        ));
        let mut huge_section = good.clone();
        huge_section[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Btf::from_bytes(&huge_section),
            Err(BtfError::Truncated(_))
        ));
        let mut unknown_kind = good.clone();
        unknown_kind[HEADER_LEN + 7] = 30;
        assert!(matches!(
            Btf::from_bytes(&unknown_kind),
            Err(BtfError::Malformed(_))
        ));
    }

    #[test]
    fn big_endian_blobs_parse() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        b.composite(KIND_STRUCT, "s", 8, &[("a", int, 0, 0), ("b", int, 32, 0)]);
        let mut blob = b.build();
        // Every header field and type record word is a u32 except the magic/version/flags.
        blob.swap(0, 1);
        let strings_at = blob.len() - b.strings.len();
        for word in blob[4..strings_at].chunks_exact_mut(4) {
            word.reverse();
        }
        let btf = Btf::from_bytes(&blob).unwrap();
        assert_eq!(btf.member_offset("s", "b").unwrap(), 4);
    }

    /// Every truncation and a sweep of single-byte corruptions must fail cleanly or parse.
    #[test]
    fn garbage_never_panics() {
        let good = sample();
        for len in 0..good.len() {
            let _ = Btf::from_bytes(&good[..len]);
        }
        for i in 0..good.len() {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut blob = good.clone();
                blob[i] = value;
                if let Ok(btf) = Btf::from_bytes(&blob) {
                    for path in ["d_name.name", "skc_net.net", "__i_nlink", "sk_protocol"] {
                        let _ = btf.member_offset("sock_common", path);
                    }
                    let _ = btf.has_struct("possible_net_t");
                    let _ = btf.struct_size("qstr");
                }
            }
        }
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let err = Btf::from_file(Path::new("/nonexistent/btf")).err().unwrap();
        assert!(err.to_string().contains("/nonexistent/btf"), "{err}");
    }

    #[test]
    fn parses_the_running_kernel() {
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipped: {VMLINUX_BTF} absent");
            return;
        }
        let btf = Btf::from_sys_fs().unwrap();
        assert!(btf.has_struct("task_struct"));
        assert!(btf.has_struct("possible_net_t"));
        // `struct list_head { next; prev; }` is the same on every kernel.
        assert_eq!(btf.member_offset("list_head", "prev").unwrap(), 8);
        assert_eq!(btf.member_offset("qstr", "name").unwrap(), 8);
        assert_eq!(btf.member_offset("sock", "__sk_common").unwrap(), 0);
        assert!(btf.member_offset("task_struct", "pid").unwrap() > 0);
    }
}
