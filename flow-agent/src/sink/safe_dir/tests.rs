//! Real directories and files; the ownership cases need root (as the agent's tests run).
use std::{
    ffi::OsStr,
    fs::Permissions,
    os::unix::fs::{MetadataExt, PermissionsExt},
};

use super::*;
use crate::sink::delivery::tests::TestDir;

const RW_CREATE: i32 = libc::O_RDWR | libc::O_CREAT;

fn made(name: &str, mode: u32) -> TestDir {
    let dir = TestDir::new(name);
    std::fs::create_dir(dir.path()).unwrap();
    std::fs::set_permissions(dir.path(), Permissions::from_mode(mode)).unwrap();
    dir
}

fn refused(path: &Path) -> String {
    match SafeDir::open(path) {
        Err(e @ DirError::Unsafe { .. }) => e.to_string(),
        Err(e) => panic!("{}: expected a refusal, got {e}", path.display()),
        Ok(_) => panic!("{} was accepted", path.display()),
    }
}

#[test]
fn group_or_other_writable_directories_are_refused_sticky_or_not() {
    for (mode, who) in [
        (0o770, "its group"),
        (0o707, "all users"),
        (0o777, "its group and all users"),
        (0o1777, "its group and all users"),
        (0o1730, "its group"),
    ] {
        let dir = made("safedir-mode", mode);
        let err = refused(dir.path());
        let want = format!(
            "directory {} is refused: mode {mode:04o} lets {who} create files in it",
            dir.path().display()
        );
        assert!(err.starts_with(&want), "{err}\nwant {want}");
        assert!(err.contains("chmod go-w"), "{err}");
    }
    for mode in [0o700, 0o750, 0o755, 0o1755] {
        let dir = made("safedir-ok", mode);
        assert!(SafeDir::open(dir.path()).is_ok(), "mode {mode:o}");
    }
}

#[test]
fn a_directory_of_another_user_is_refused_root_and_ours_are_not() {
    let dir = made("safedir-owner", 0o755);
    std::os::unix::fs::chown(dir.path(), Some(65534), None).unwrap();
    let err = refused(dir.path());
    assert!(
        err.contains("it belongs to uid 65534, another user, who could replace the files in it"),
        "{err}"
    );
    assert_eq!(owner_problem(0, 1000), None);
    assert_eq!(owner_problem(1000, 1000), None);
    assert_eq!(
        owner_problem(1001, 1000).unwrap(),
        "it belongs to uid 1001, another user, who could replace the files in it (expected root or uid 1000, the agent's user)"
    );
}

#[test]
fn a_symlink_to_a_directory_is_refused() {
    let dir = made("safedir-link", 0o700);
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = refused(&link);
    assert!(err.contains("it is a symbolic link"), "{err}");
    assert!(err.contains(&link.display().to_string()), "{err}");
}

#[test]
fn links_fifos_and_files_of_others_are_refused_and_left_alone() {
    let dir = made("safedir-files", 0o700);
    let outside = made("safedir-outside", 0o755);
    let target = outside.path().join("precious");
    std::fs::write(&target, b"do not touch").unwrap();
    let sd = SafeDir::open(dir.path()).unwrap();

    std::os::unix::fs::symlink(&target, dir.path().join("sym")).unwrap();
    let e = sd.open_file(OsStr::new("sym"), RW_CREATE | libc::O_TRUNC, 0o600);
    assert!(matches!(e, Err(FileError::Refused(Refusal::Symlink))));

    std::fs::hard_link(&target, dir.path().join("hard")).unwrap();
    let e = sd.open_file(OsStr::new("hard"), RW_CREATE | libc::O_APPEND, 0o600);
    assert!(matches!(e, Err(FileError::Refused(Refusal::HardLinks(2)))));

    let fifo = CString::new(dir.path().join("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let e = sd.open_file(OsStr::new("fifo"), libc::O_RDONLY, 0);
    assert!(matches!(e, Err(FileError::Refused(Refusal::NotRegular))));

    std::fs::write(dir.path().join("theirs"), b"x").unwrap();
    std::os::unix::fs::chown(dir.path().join("theirs"), Some(65534), None).unwrap();
    let e = sd.open_file(OsStr::new("theirs"), libc::O_RDWR, 0);
    assert!(matches!(e, Err(FileError::Refused(Refusal::Owner(65534)))));

    // Renaming and removing act on the names, never on what a link points at.
    sd.rename(OsStr::new("sym"), OsStr::new("sym.aside"))
        .unwrap();
    sd.remove(OsStr::new("hard")).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"do not touch");
    assert_eq!(std::fs::metadata(&target).unwrap().nlink(), 1);
    assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o644);

    let mut names = sd.names().unwrap();
    names.sort();
    assert_eq!(names, ["fifo", "sym.aside", "theirs"]);
    // A fresh file of ours is fine, created with the mode asked.
    let f = sd
        .open_file(OsStr::new("new"), RW_CREATE | libc::O_EXCL, 0o600)
        .unwrap();
    assert_eq!(f.metadata().unwrap().mode() & 0o777, 0o600);
    assert!(sd
        .open_file(OsStr::new("../escape"), RW_CREATE, 0o600)
        .is_err());
    assert!(!dir.path().parent().unwrap().join("escape").exists());
}
