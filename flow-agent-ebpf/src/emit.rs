//! Ring buffer output and loss accounting. Each record class has its own ring, so a flood of
//! one (execs, DNS answers) cannot take the room of another (flows): see `Ring`.
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::bpf_ktime_get_boot_ns,
    maps::{ring_buf::RingBufEntry, RingBuf},
};
use aya_log_ebpf::debug;
use flow_common::{Loss, RecordHeader, RecordKind};

use crate::{
    kernel::config,
    maps::{DNS_EVENTS, EVENTS, LOSSES, PROCESS_EVENTS},
};

/// The record classes, one ring each.
#[derive(Clone, Copy)]
pub enum Ring {
    /// TCP and UDP flow records and first payloads.
    Flows,
    /// Exec, fork and exit.
    Process,
    /// DNS messages.
    Dns,
}

impl Ring {
    #[inline(always)]
    fn map(self) -> &'static RingBuf {
        match self {
            Ring::Flows => &EVENTS,
            Ring::Process => &PROCESS_EVENTS,
            Ring::Dns => &DNS_EVENTS,
        }
    }

    /// The loss counted when this ring is full.
    #[inline(always)]
    fn full(self) -> Loss {
        match self {
            Ring::Flows => Loss::RingBufferFull,
            Ring::Process => Loss::ProcessRingFull,
            Ring::Dns => Loss::DnsRingFull,
        }
    }
}

#[inline(always)]
pub fn count_loss(loss: Loss) {
    if let Some(slot) = LOSSES.get_ptr_mut(loss as u32) {
        // Per-CPU slot: no other CPU writes it.
        unsafe { *slot += 1 };
    }
    // Each loss as it happens, with `--log-level trace` only. The level is a constant of the
    // loaded object (aya-log's AYA_LOG_LEVEL, 0 unless tracing): with logging off the verifier
    // drops this branch and it costs nothing.
    debug!(&(), "kernel-side loss: kind {}", loss as u32);
}

#[inline(always)]
pub fn now_ns() -> u64 {
    unsafe { bpf_ktime_get_boot_ns() }
}

#[inline(always)]
pub fn header(kind: RecordKind) -> RecordHeader {
    RecordHeader {
        kind: kind as u32,
        _pad: 0,
        ts_ns: now_ns(),
    }
}

/// Wake-up policy: the consumer polls on a timer, so a record wakes it only once enough bytes
/// wait. That batches wake-ups, which is where a per-event consumer spends the host's time.
#[inline(always)]
pub fn submit_flags(ring: Ring) -> u64 {
    let threshold = config().wakeup_bytes as u64;
    if threshold == 0 {
        return 0;
    }
    if ring.map().query(BPF_RB_AVAIL_DATA as u64) >= threshold {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Reserves room for a record, counting a loss when the ring buffer is full. Records are filled
/// in place: the larger ones do not fit on the 512-byte eBPF stack.
#[inline(always)]
pub fn reserve<T: 'static>(ring: Ring) -> Option<RingBufEntry<T>> {
    let entry = ring.map().reserve::<T>(0);
    if entry.is_none() {
        count_loss(ring.full());
    }
    entry
}

#[inline(always)]
pub fn submit<T: 'static>(entry: RingBufEntry<T>, ring: Ring) {
    entry.submit(submit_flags(ring));
}

/// Copies `bytes` (a record filled elsewhere, as long as what it carries) into the ring.
#[inline(always)]
pub fn output(bytes: &[u8], ring: Ring) {
    if ring
        .map()
        .output::<[u8]>(bytes, submit_flags(ring))
        .is_err()
    {
        count_loss(ring.full());
    }
}
