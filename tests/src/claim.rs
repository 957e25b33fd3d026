//! Machine-wide unique subnet indexes, so parallel test processes never share a subnet.
//!
//! Each index is a file in [`CLAIM_DIR`] held with `flock`. The kernel drops the lock when
//! the holder exits, however it exits (panic, abort, SIGKILL), so there is nothing stale
//! to clean up and no pid-reuse race.

use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// tmpfs: the claim files vanish on reboot.
const CLAIM_DIR: &str = "/run/flow-agent-tests";

/// Indexes 1..=254 map to 10.200.<idx>.0/24 and fd00:f10e:<idx>::/64.
const FIRST: u8 = 1;
const LAST: u8 = 254;

#[derive(Debug)]
pub(crate) struct IndexClaim {
    idx: u8,
    // Held only for its lock; closing it releases the claim.
    _file: File,
}

impl IndexClaim {
    /// Claims the lowest free index whose subnet the root namespace does not already use.
    pub(crate) fn acquire() -> Result<IndexClaim> {
        std::fs::create_dir_all(CLAIM_DIR).with_context(|| format!("creating {CLAIM_DIR}"))?;
        for idx in FIRST..=LAST {
            let path = PathBuf::from(CLAIM_DIR).join(idx.to_string());
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            // SAFETY: flock on a valid open fd; LOCK_NB makes it non-blocking.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                continue; // held by another live host
            }
            if subnet_in_use(idx) {
                continue; // something outside this harness uses it; never touch it
            }
            return Ok(IndexClaim { idx, _file: file });
        }
        bail!("all test subnet indexes {FIRST}..={LAST} in {CLAIM_DIR} are in use");
    }

    pub(crate) fn idx(&self) -> u8 {
        self.idx
    }
}

/// Whether the root namespace already has an address in 10.200.<idx>.0/24.
fn subnet_in_use(idx: u8) -> bool {
    let subnet = format!("10.200.{idx}.0/24");
    crate::tools::ip(&["-o", "-4", "addr", "show", "to", &subnet])
        .map_or(true, |out| !out.trim().is_empty())
}
