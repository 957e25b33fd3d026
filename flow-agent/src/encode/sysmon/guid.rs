//! `ProcessGuid` in Sysmon's `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}` form, derived from the
//! process's entity id so that every record of one process carries the same GUID and the GUID
//! can be traced back to the entity id.
use std::{fmt, ops::Deref};

/// What Sysmon writes when there is no process.
pub(crate) const NO_PROCESS: &str = "{00000000-0000-0000-0000-000000000000}";

/// A GUID as Sysmon writes it, braces included, in a stack buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Guid {
    buf: [u8; 38],
}

impl Guid {
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII hex digits, dashes and braces were written.
        std::str::from_utf8(&self.buf).unwrap_or_default()
    }

    /// The GUID of 32 lower-case hex digits.
    fn from_hex(hex: &[u8; 32]) -> Self {
        let mut buf = [b'-'; 38];
        buf[0] = b'{';
        buf[37] = b'}';
        buf[1..9].copy_from_slice(&hex[0..8]);
        buf[10..14].copy_from_slice(&hex[8..12]);
        buf[15..19].copy_from_slice(&hex[12..16]);
        buf[20..24].copy_from_slice(&hex[16..20]);
        buf[25..37].copy_from_slice(&hex[20..32]);
        Self { buf }
    }
}

impl Deref for Guid {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<str> for Guid {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Guid {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The GUID of a process entity id (`<8 hex machine id>-<12 hex start ticks>-<8 hex pid>`):
/// those 28 hex digits in order, padded with four zeros, as Sysmon's own GUIDs end in zeros:
/// `3d1219c7-0000000340ab-000017fc` → `{3d1219c7-0000-0003-40ab-000017fc0000}`. An id of
/// another shape (not produced by this agent) is hashed (FNV-1a, 128 bits) into the same form.
pub(crate) fn process_guid(entity_id: Option<&str>) -> Guid {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let Some(id) = entity_id else {
        let mut buf = [0; 38];
        buf.copy_from_slice(NO_PROCESS.as_bytes());
        return Guid { buf };
    };
    let b = id.as_bytes();
    let mut hex = [b'0'; 32];
    let entity_shaped = b.len() == 30
        && b.iter().enumerate().all(|(i, c)| {
            matches!(i, 8 | 21) == (*c == b'-') && (*c == b'-' || c.is_ascii_hexdigit())
        });
    if entity_shaped {
        for (dst, src) in hex[..28].iter_mut().zip(b.iter().filter(|c| **c != b'-')) {
            *dst = src.to_ascii_lowercase();
        }
    } else {
        let h = fnv1a_128(b);
        for (i, dst) in hex.iter_mut().enumerate() {
            *dst = HEX[((h >> (124 - 4 * i)) & 0xf) as usize];
        }
    }
    Guid::from_hex(&hex)
}

fn fnv1a_128(data: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    data.iter()
        .fold(OFFSET, |h, b| (h ^ u128::from(*b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_ids_map_digit_for_digit() {
        assert_eq!(
            process_guid(Some("3d1219c7-0000000340ab-000017fc")),
            "{3d1219c7-0000-0003-40ab-000017fc0000}"
        );
        assert_eq!(
            process_guid(Some("ABCDEF01-0123456789ab-ffffffff")),
            "{abcdef01-0123-4567-89ab-ffffffff0000}"
        );
        assert_eq!(process_guid(None), NO_PROCESS);
    }

    #[test]
    fn other_ids_hash_stably_into_the_same_form() {
        let a = process_guid(Some("not-an-entity-id"));
        assert_eq!(a, process_guid(Some("not-an-entity-id")));
        assert_ne!(a, process_guid(Some("not-an-entity-iD")));
        let b = a.as_bytes();
        assert_eq!((b[0], b[37], a.len()), (b'{', b'}', 38));
        assert!(a[1..37].split('-').map(str::len).eq([8, 4, 4, 4, 12]));
        // FNV-1a 128 reference value for the empty input is its offset basis.
        assert_eq!(fnv1a_128(b""), 0x6c62272e07bb014262b821756295c58d);
        assert_eq!(fnv1a_128(b"a"), 0xd228cb696f1a8caf78912b704e4a8964);
    }

    /// The GUID as the string-built version computed it, for comparison.
    fn reference(entity_id: Option<&str>) -> String {
        let Some(id) = entity_id else {
            return NO_PROCESS.to_string();
        };
        let hex = match id.split('-').collect::<Vec<_>>().as_slice() {
            [m, t, p]
                if m.len() == 8
                    && t.len() == 12
                    && p.len() == 8
                    && id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()) =>
            {
                format!("{m}{t}{p}0000").to_ascii_lowercase()
            }
            _ => format!("{:032x}", fnv1a_128(id.as_bytes())),
        };
        format!(
            "{{{}-{}-{}-{}-{}}}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    #[test]
    fn same_guids_as_formatting_them() {
        for id in [
            None,
            Some(""),
            Some("-"),
            Some("abc-4242"),
            Some("3d1219c7-0000000340ab-000017fc"),
            Some("3D1219C7-0000000340AB-000017FC"),
            Some("3d1219c7-0000000340ab-000017f-"),
            Some("3d1219c7-0000000340ab0000017fc"),
            Some("3d1219c70-000000340ab-000017fc"),
            Some("3d1219c7--000000340ab-000017fc"),
            Some("3d1219cg-0000000340ab-000017fc"),
            Some("3d1219c7-0000000340ab-000017fc0"),
            Some("é"),
        ] {
            assert_eq!(process_guid(id).as_str(), reference(id), "{id:?}");
        }
    }
}
