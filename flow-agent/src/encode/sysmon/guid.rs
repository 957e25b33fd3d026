//! `ProcessGuid` in Sysmon's `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}` form, derived from the
//! native `process_entity_id` so that every record of one process carries the same GUID and
//! the GUID can be traced back to the entity id.

/// What Sysmon writes when there is no process.
pub const NO_PROCESS: &str = "{00000000-0000-0000-0000-000000000000}";

/// The GUID of a `process_entity_id` (`<8 hex machine id>-<12 hex start ticks>-<8 hex pid>`):
/// those 28 hex digits in order, padded with four zeros, as Sysmon's own GUIDs end in zeros:
/// `3d1219c7-0000000340ab-000017fc` → `{3d1219c7-0000-0003-40ab-000017fc0000}`. An id of
/// another shape (not produced by this agent) is hashed (FNV-1a, 128 bits) into the same form.
pub fn process_guid(entity_id: Option<&str>) -> String {
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
}
