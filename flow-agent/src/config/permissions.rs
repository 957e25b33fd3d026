//! The agent runs with the privileges to load kernel programs and to read every process's
//! details: whoever can change its configuration can point its output anywhere. So it takes a
//! configuration only from a file that no one else can change: owned by root or by the user
//! the agent runs as, not writable by group or others, in directories that others cannot
//! replace it in (a sticky directory such as /tmp protects the files of its owners).
use std::{
    fs::Metadata,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use super::error::ConfigError;

const GROUP_WRITE: u32 = 0o020;
const OTHER_WRITE: u32 = 0o002;
const STICKY: u32 = 0o1000;

/// Refuses `path` unless it and every directory above it are safe; see the module docs.
pub(crate) fn check(path: &Path) -> Result<(), ConfigError> {
    let read_err = |p: &Path, source| ConfigError::Read {
        path: p.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(|e| read_err(path, e))?;
    if !meta.is_file() {
        return Err(ConfigError::Unsafe {
            path: path.to_path_buf(),
            reason: "not a regular file (expected a TOML file)".into(),
        });
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    check_one(path, &meta, false, euid)?;
    let real = std::fs::canonicalize(path).map_err(|e| read_err(path, e))?;
    let literal = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut dirs: Vec<PathBuf> = Vec::new();
    for p in [&real, &literal] {
        for dir in p.ancestors().skip(1) {
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_path_buf());
            }
        }
    }
    for dir in dirs {
        // A directory we cannot stat (a component of the literal path that is a symlink to
        // a missing place) cannot hold the file: the canonical path covers the real ones.
        if let Ok(m) = std::fs::metadata(&dir) {
            check_one(&dir, &m, true, euid).map_err(|e| match e {
                ConfigError::Unsafe { path: dir, reason } => ConfigError::Unsafe {
                    path: path.to_path_buf(),
                    reason: format!("its directory {}: {reason}", dir.display()),
                },
                other => other,
            })?;
        }
    }
    Ok(())
}

fn check_one(path: &Path, meta: &Metadata, is_dir: bool, euid: u32) -> Result<(), ConfigError> {
    let unsafe_because = |reason: String| ConfigError::Unsafe {
        path: path.to_path_buf(),
        reason,
    };
    let owner = meta.uid();
    if owner != 0 && owner != euid {
        return Err(unsafe_because(format!(
            "owned by uid {owner}, who could change the agent's configuration (expected owner root{}; chown root {})",
            if euid == 0 { String::new() } else { format!(" or uid {euid}, the agent's user") },
            path.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    let writers = match (mode & GROUP_WRITE != 0, mode & OTHER_WRITE != 0) {
        (true, true) => "its group and all users",
        (true, false) => "its group",
        (false, true) => "all users",
        (false, false) => return Ok(()),
    };
    if is_dir && mode & STICKY != 0 {
        // Others may add files here but not replace or remove ours.
        return Ok(());
    }
    Err(unsafe_because(format!(
        "mode {mode:04o} lets {writers} write {} (expected no write permission for group and others; chmod go-w {})",
        if is_dir { "in it" } else { "it" },
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("flow-agent-perm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn modes() {
        let dir = scratch("modes");
        let file = dir.join("c.toml");
        std::fs::write(&file, "").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        check(&file).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = check(&file).unwrap_err().to_string();
        assert!(
            e.contains("mode 0666 lets its group and all users write it"),
            "{e}"
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check(&file).unwrap_err().to_string();
        assert!(
            e.contains(&format!("its directory {}: mode 0777", dir.display())),
            "{e}"
        );
        // Sticky, like /tmp: fine.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        check(&file).unwrap();
        let e = check(&dir.join("missing.toml")).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
