//! Global exclude rules on remote address, remote port and transport, decided here so that an
//! excluded flow costs no record, no table entry and no userspace work. Userspace fills the
//! maps (and applies the same rules again, with the rest of the filter): the kernel only ever
//! skips flows userspace would drop.
use aya_ebpf::{
    macros::map,
    maps::{lpm_trie::Key, Array, LpmTrie, LruHashMap, PerCpuArray},
};
use flow_common::{
    FilterSkip, KernelFilterMasks, AF_INET, FILTER_MAX_NETWORKS, FILTER_SKIP_KINDS, IPPROTO_TCP,
};

#[map]
pub static FILTER_MASKS: Array<KernelFilterMasks> = Array::with_max_entries(1, 0);

/// Rules (bits) whose networks contain the address: the longest match carries the rules of
/// every shorter network containing it too.
#[map]
pub static FILTER_V4: LpmTrie<[u8; 4], u64> = LpmTrie::with_max_entries(FILTER_MAX_NETWORKS, 0);

#[map]
pub static FILTER_V6: LpmTrie<[u8; 16], u64> = LpmTrie::with_max_entries(FILTER_MAX_NETWORKS, 0);

/// Rules (bits) whose port ranges contain the port, by port.
#[map]
pub static FILTER_PORTS: Array<u64> = Array::with_max_entries(65536, 0);

#[map]
pub static FILTER_SKIPPED: PerCpuArray<u64> = PerCpuArray::with_max_entries(FILTER_SKIP_KINDS, 0);

/// TCP sockets the filter skipped, until their close: their later state changes are ignored.
#[map]
pub static FILTERED_SOCKS: LruHashMap<u64, u8> = LruHashMap::with_max_entries(131072, 0);

#[inline(always)]
pub fn count_skip(kind: FilterSkip) {
    if let Some(slot) = FILTER_SKIPPED.get_ptr_mut(kind as u32) {
        // Per-CPU slot: no other CPU writes it.
        unsafe { *slot += 1 };
    }
}

/// Whether any rule is in force (checked before reading what the rules look at).
#[inline(always)]
pub fn active() -> bool {
    FILTER_MASKS.get(0).is_some_and(|m| m.active != 0)
}

/// Whether a flow to `addr`:`port` (IPv4 in the first 4 bytes when `family` is AF_INET) is
/// excluded. IPv4-mapped IPv6 addresses are looked up as IPv4, as userspace reports them.
#[inline(always)]
pub fn excluded(protocol: u8, family: u16, addr: &[u8; 16], port: u16) -> bool {
    let Some(m) = FILTER_MASKS.get(0) else {
        return false;
    };
    if m.active == 0 {
        return false;
    }
    let mut rules = m.active
        & if protocol == IPPROTO_TCP {
            m.tcp
        } else {
            m.udp
        };
    if rules == 0 {
        return false;
    }
    let ports = m.any_port | FILTER_PORTS.get(port as u32).copied().unwrap_or(0);
    rules &= ports;
    if rules == 0 {
        return false;
    }
    let mapped = addr[..10].iter().all(|b| *b == 0) && addr[10] == 0xff && addr[11] == 0xff;
    let nets = if family == AF_INET || mapped {
        let off = if family == AF_INET { 0 } else { 12 };
        let v4 = [addr[off], addr[off + 1], addr[off + 2], addr[off + 3]];
        FILTER_V4.get(Key::new(32, v4)).copied()
    } else {
        FILTER_V6.get(Key::new(128, *addr)).copied()
    };
    rules & (m.any_addr | nets.unwrap_or(0)) != 0
}
