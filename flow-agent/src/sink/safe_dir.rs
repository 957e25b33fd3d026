//! Directories the agent writes files in, as root or as its own user: the disk buffers of
//! network outputs and the file sink's directory.
//!
//! A path is resolved again at every use, and a symbolic link or a second hard link planted in
//! one of these directories would make the agent truncate, chmod or chown a file elsewhere
//! with its privileges. So a directory is opened once (`O_DIRECTORY | O_NOFOLLOW`), checked
//! on that descriptor (owner, write permission), and every file in it is reached through the
//! descriptor (`openat`, `renameat`, `unlinkat`) with `O_NOFOLLOW`; a file is written only
//! when it is a regular file with one link that belongs to the agent's user or root.
use std::{
    ffi::{CStr, CString, OsStr, OsString},
    fs::File,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::{OsStrExt, OsStringExt},
    },
    path::{Path, PathBuf},
};

const GROUP_WRITE: u32 = 0o020;
const OTHER_WRITE: u32 = 0o002;

/// Why a directory is not used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DirError {
    #[error("directory {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("directory {path} is refused: {reason}")]
    Unsafe { path: PathBuf, reason: String },
}

/// Why a file in a [`SafeDir`] is not opened, changed or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("is a symbolic link")]
    Symlink,
    #[error("is not a regular file")]
    NotRegular,
    #[error("has {0} hard links: writing it would change the file under its other names")]
    HardLinks(u64),
    #[error("belongs to uid {0}, neither the agent's user nor root")]
    Owner(u32),
}

/// A file could not be opened: refused, or the system said no.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FileError {
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<FileError> for io::Error {
    /// For callers that only report: the refusal keeps its words.
    fn from(e: FileError) -> io::Error {
        match e {
            FileError::Io(e) => e,
            FileError::Refused(r) => io::Error::new(io::ErrorKind::PermissionDenied, r),
        }
    }
}

/// What `fstatat` without following links says about a name.
#[derive(Clone, Copy)]
pub(crate) struct Stat(libc::stat);

impl Stat {
    pub(crate) fn is_file(&self) -> bool {
        self.0.st_mode & libc::S_IFMT == libc::S_IFREG
    }
    pub(crate) fn is_symlink(&self) -> bool {
        self.0.st_mode & libc::S_IFMT == libc::S_IFLNK
    }
    pub(crate) fn size(&self) -> u64 {
        self.0.st_size as u64
    }
}

/// An open directory, checked when opened; files in it are reached through it only.
pub(crate) struct SafeDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl SafeDir {
    /// Opens `path` (not following a symbolic link at its last component) and refuses it if
    /// it is writable by its group or others, or belongs to another user than root and the
    /// agent's.
    pub(crate) fn open(path: &Path) -> Result<SafeDir, DirError> {
        let open_err = |source| DirError::Open {
            path: path.to_path_buf(),
            source,
        };
        let c = cstring(path.as_os_str()).map_err(open_err)?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: a valid NUL-terminated path; the descriptor is owned below.
        let fd = unsafe { libc::open(c.as_ptr(), flags) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                // O_NOFOLLOW | O_DIRECTORY on a symlink: ELOOP (ENOTDIR on older kernels).
                Some(libc::ELOOP) => unsafe_dir(path, "it is a symbolic link; give the real path"),
                Some(libc::ENOTDIR) if is_symlink(path) => {
                    unsafe_dir(path, "it is a symbolic link; give the real path")
                }
                _ => open_err(e),
            });
        }
        // SAFETY: `fd` was just opened and is ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let st = fstat(fd.as_raw_fd()).map_err(open_err)?;
        if let Some(reason) = owner_problem(st.st_uid, euid()) {
            return Err(unsafe_dir(path, &reason));
        }
        if let Some(reason) = mode_problem(path, st.st_mode) {
            return Err(unsafe_dir(path, &reason));
        }
        Ok(SafeDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Permission bits of the directory.
    pub(crate) fn mode(&self) -> io::Result<u32> {
        Ok(fstat(self.fd.as_raw_fd())?.st_mode & 0o7777)
    }

    /// The path of `name` in this directory, for messages.
    pub(crate) fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// `name` as the directory has it, without following a symbolic link; None if absent.
    pub(crate) fn stat(&self, name: &OsStr) -> io::Result<Option<Stat>> {
        let c = cname(name)?;
        // SAFETY: fstatat fills `st`, a plain struct; fd and name are valid.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc == 0 {
            return Ok(Some(Stat(st)));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::NotFound => Ok(None),
            _ => Err(e),
        }
    }

    /// Opens `name` with `flags` (plus `O_NOFOLLOW | O_CLOEXEC`; `mode` if it is created) and
    /// refuses it unless it is a regular file with one link, of the agent's user or root.
    /// Anything but a regular file is refused before it is opened (a FIFO would block).
    pub(crate) fn open_file(&self, name: &OsStr, flags: i32, mode: u32) -> Result<File, FileError> {
        if let Some(st) = self.stat(name)? {
            if st.is_symlink() {
                return Err(Refusal::Symlink.into());
            }
            if !st.is_file() {
                return Err(Refusal::NotRegular.into());
            }
        }
        let c = cname(name)?;
        let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: valid fd and name; the descriptor is owned below.
        let fd = unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags, mode) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            // A symlink put there since the fstatat.
            if e.raw_os_error() == Some(libc::ELOOP) {
                return Err(Refusal::Symlink.into());
            }
            return Err(e.into());
        }
        // SAFETY: `fd` was just opened and is ours.
        let file = unsafe { File::from_raw_fd(fd) };
        check_file(&file)?;
        Ok(file)
    }

    /// Renames `from` to `to` within this directory (a link is renamed, not followed).
    pub(crate) fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        let (f, t) = (cname(from)?, cname(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: valid fds and names.
        if unsafe { libc::renameat(fd, f.as_ptr(), fd, t.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Removes the name `name` (a link is removed, its target left alone).
    pub(crate) fn remove(&self, name: &OsStr) -> io::Result<()> {
        let c = cname(name)?;
        // SAFETY: valid fd and name.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Removes `name` if it is there.
    pub(crate) fn remove_if_present(&self, name: &OsStr) -> io::Result<()> {
        match self.remove(name) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The names in the directory, without `.` and `..`.
    pub(crate) fn names(&self) -> io::Result<Vec<OsString>> {
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
        // A descriptor of its own: closedir closes it, and its reading position is fresh.
        // SAFETY: valid fd and a NUL-terminated ".".
        let fd = unsafe { libc::openat(self.fd.as_raw_fd(), c".".as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fdopendir takes over `fd`; on failure it stays ours to close.
        let dir = unsafe { libc::fdopendir(fd) };
        if dir.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: still ours.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        let result = read_names(dir);
        // SAFETY: `dir` from fdopendir, closed once.
        unsafe { libc::closedir(dir) };
        result
    }
}

/// Reads every entry of an open directory stream.
fn read_names(dir: *mut libc::DIR) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    loop {
        // readdir reports errors only through errno, so it is cleared first.
        // SAFETY: errno is thread-local; `dir` is a valid stream.
        unsafe { *libc::__errno_location() = 0 };
        let entry = unsafe { libc::readdir(dir) };
        if entry.is_null() {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(0) | None => Ok(names),
                _ => Err(e),
            };
        }
        // SAFETY: d_name is NUL-terminated and lives until the next readdir.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        let bytes = name.to_bytes();
        if bytes != b"." && bytes != b".." {
            names.push(OsString::from_vec(bytes.to_vec()));
        }
    }
}

/// Refuses an open file the agent would write: see [`Refusal`].
pub(crate) fn check_file(file: &File) -> Result<(), Refusal> {
    let st = fstat(file.as_raw_fd()).map_err(|_| Refusal::NotRegular)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Refusal::NotRegular);
    }
    if st.st_nlink > 1 {
        return Err(Refusal::HardLinks(st.st_nlink));
    }
    if st.st_uid != 0 && st.st_uid != euid() {
        return Err(Refusal::Owner(st.st_uid));
    }
    Ok(())
}

/// Why a directory owned by `owner` is refused to an agent running as `euid`, if it is.
pub(crate) fn owner_problem(owner: u32, euid: u32) -> Option<String> {
    if owner == 0 || owner == euid {
        return None;
    }
    Some(format!(
        "it belongs to uid {owner}, another user, who could replace the files in it (expected root{})",
        if euid == 0 {
            String::new()
        } else {
            format!(" or uid {euid}, the agent's user")
        }
    ))
}

/// Why a directory of `mode` at `path` is refused, if it is: others could put links or files
/// of their own in it (the sticky bit does not stop that).
pub(crate) fn mode_problem(path: &Path, mode: u32) -> Option<String> {
    let writers = match (mode & GROUP_WRITE != 0, mode & OTHER_WRITE != 0) {
        (true, true) => "its group and all users",
        (true, false) => "its group",
        (false, true) => "all users",
        (false, false) => return None,
    };
    Some(format!(
        "mode {:04o} lets {writers} create files in it (expected no write permission for group and others; chmod go-w {})",
        mode & 0o7777,
        path.display()
    ))
}

fn unsafe_dir(path: &Path, reason: &str) -> DirError {
    DirError::Unsafe {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn fstat(fd: i32) -> io::Result<libc::stat> {
    // SAFETY: fstat fills `st`, a plain struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// A name in the directory: one component, never a path that would leave it.
fn cname(name: &OsStr) -> io::Result<CString> {
    let b = name.as_bytes();
    if b.is_empty() || b.contains(&b'/') || b == b"." || b == b".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a file name"),
        ));
    }
    cstring(name)
}

#[cfg(test)]
mod tests;
