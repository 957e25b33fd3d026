//! Rotated files: `<path>.1` is the newest, `<path>.N` the oldest. Rotation renames, so a
//! tailer that follows the open file (by inode) reads the rest of it under its new name.
//! Every file is reached through the directory's descriptor ([`SafeDir`]): renaming and
//! deleting act on names, and a link among the rotated names is never followed.
use std::{
    ffi::{OsStr, OsString},
    io,
    path::{Path, PathBuf},
};

use crate::sink::safe_dir::SafeDir;

/// `<path>.<index>`.
pub(crate) fn rotated_name(path: &Path, index: u32) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

/// `<name>.<index>`, a name in the live file's directory.
fn rotated_file_name(name: &OsStr, index: u32) -> OsString {
    let mut n = name.to_os_string();
    n.push(format!(".{index}"));
    n
}

/// A rotated file found next to the live file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rotated {
    pub(crate) index: u32,
    /// Its name in the directory.
    pub(crate) name: OsString,
    pub(crate) size: u64,
}

/// The rotated files of `name` in `dir` (regular files named `<name>.<N>`, N ≥ 1), newest
/// first.
pub(crate) fn list(dir: &SafeDir, name: &OsStr) -> io::Result<Vec<Rotated>> {
    let prefix = format!("{}.", name.to_string_lossy());
    let mut found = Vec::new();
    for file_name in dir.names()? {
        let Some(index) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .filter(|n| !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Gone since the listing, or not a regular file: not ours to rotate.
        let Ok(Some(st)) = dir.stat(&file_name) else {
            continue;
        };
        if st.is_file() {
            found.push(Rotated {
                index,
                name: file_name,
                size: st.size(),
            });
        }
    }
    found.sort_by_key(|r| r.index);
    Ok(found)
}

/// Renames `name.N` → `name.N+1` (oldest first, so nothing is overwritten), then `name` →
/// `name.1`.
pub(crate) fn shift(dir: &SafeDir, name: &OsStr) -> io::Result<()> {
    for r in list(dir, name)?.iter().rev() {
        let Some(next) = r.index.checked_add(1) else {
            continue;
        };
        dir.rename(&r.name, &rotated_file_name(name, next))?;
    }
    dir.rename(name, &rotated_file_name(name, 1))
}

/// Why a rotated file is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cap {
    MaxFiles(u32),
    MaxTotalSize(u64),
}

/// The rotated files beyond the caps, oldest last: past the `max_files` newest (0: no limit),
/// or once the newest ones add up to more than `budget` bytes.
pub(crate) fn over_caps(
    rotated: &[Rotated],
    max_files: u32,
    budget: Option<u64>,
) -> Vec<(Rotated, Cap)> {
    let mut total = 0u64;
    let mut doomed = Vec::new();
    for (kept, r) in rotated.iter().enumerate() {
        total = total.saturating_add(r.size);
        if max_files != 0 && kept >= max_files as usize {
            doomed.push((r.clone(), Cap::MaxFiles(max_files)));
        } else if let Some(b) = budget.filter(|b| total > *b) {
            doomed.push((r.clone(), Cap::MaxTotalSize(b)));
        }
    }
    doomed
}

/// Deletes the rotated files of `name` beyond the caps, logging each.
pub(crate) fn enforce_caps(
    dir: &SafeDir,
    name: &OsStr,
    max_files: u32,
    budget: Option<u64>,
    max_total: u64,
) {
    let rotated = match list(dir, name) {
        Ok(r) => r,
        Err(e) => {
            log::error!(
                "file sink: listing the rotated files of {}: {e}",
                dir.join(name).display()
            );
            return;
        }
    };
    for (r, cap) in over_caps(&rotated, max_files, budget) {
        let why = match cap {
            Cap::MaxFiles(n) => format!("max_files = {n}"),
            Cap::MaxTotalSize(_) => format!("max_total_size = {max_total} bytes"),
        };
        let path = dir.join(&r.name);
        match dir.remove(&r.name) {
            Ok(()) => log::info!(
                "file sink: deleted the oldest rotated file {} ({} bytes) to honour {why}",
                path.display(),
                r.size
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::error!(
                "file sink: deleting {} to honour {why}: {e}",
                path.display()
            ),
        }
    }
}
