//! Rotated files: `<path>.1` is the newest, `<path>.N` the oldest. Rotation renames, so a
//! tailer that follows the open file (by inode) reads the rest of it under its new name.
use std::{
    ffi::OsString,
    io,
    path::{Path, PathBuf},
};

/// `<path>.<index>`.
pub fn rotated_name(path: &Path, index: u32) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

/// A rotated file found next to the live file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotated {
    pub index: u32,
    pub path: PathBuf,
    pub size: u64,
}

/// The rotated files of `path` (regular files named `<name>.<N>`, N ≥ 1), newest first.
pub fn list(path: &Path) -> io::Result<Vec<Rotated>> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(index) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .filter(|n| !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_file() {
            found.push(Rotated {
                index,
                path: entry.path(),
                size: meta.len(),
            });
        }
    }
    found.sort_by_key(|r| r.index);
    Ok(found)
}

/// Renames `path.N` → `path.N+1` (oldest first, so nothing is overwritten), then `path` →
/// `path.1`.
pub fn shift(path: &Path) -> io::Result<()> {
    for r in list(path)?.iter().rev() {
        let Some(next) = r.index.checked_add(1) else {
            continue;
        };
        std::fs::rename(&r.path, rotated_name(path, next))?;
    }
    std::fs::rename(path, rotated_name(path, 1))
}

/// Why a rotated file is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    MaxFiles(u32),
    MaxTotalSize(u64),
}

/// The rotated files beyond the caps, oldest last: past the `max_files` newest (0: no limit),
/// or once the newest ones add up to more than `budget` bytes.
pub fn over_caps(rotated: &[Rotated], max_files: u32, budget: Option<u64>) -> Vec<(Rotated, Cap)> {
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

/// Deletes the rotated files beyond the caps, logging each.
pub fn enforce_caps(path: &Path, max_files: u32, budget: Option<u64>, max_total: u64) {
    let rotated = match list(path) {
        Ok(r) => r,
        Err(e) => {
            log::error!(
                "file sink: listing the rotated files of {}: {e}",
                path.display()
            );
            return;
        }
    };
    for (r, cap) in over_caps(&rotated, max_files, budget) {
        let why = match cap {
            Cap::MaxFiles(n) => format!("max_files = {n}"),
            Cap::MaxTotalSize(_) => format!("max_total_size = {max_total} bytes"),
        };
        match std::fs::remove_file(&r.path) {
            Ok(()) => log::info!(
                "file sink: deleted the oldest rotated file {} ({} bytes) to honour {why}",
                r.path.display(),
                r.size
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::error!(
                "file sink: deleting {} to honour {why}: {e}",
                r.path.display()
            ),
        }
    }
}
