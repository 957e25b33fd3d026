//! uid and gid to names through NSS (`getpwuid_r`, `getgrgid_r`): /etc/passwd and /etc/group,
//! and whatever else nsswitch.conf names (systemd's DynamicUser and userdb accounts, SSSD,
//! LDAP). Names are cached: a lookup can go over the network.
use std::{
    collections::HashMap,
    ffi::CStr,
    time::{Duration, Instant},
};

/// How long a name found is reused before it is looked up again.
const NAMED_TTL: Duration = Duration::from_secs(60);
/// How long an id without a name stays unnamed (a user added a moment ago is named soon).
const UNNAMED_TTL: Duration = Duration::from_secs(5);
/// Ids remembered at most; beyond it the cache starts over.
const CAPACITY: usize = 65_536;
/// The first buffer for a lookup; doubled on ERANGE up to [`MAX_BUF`].
const FIRST_BUF: usize = 1024;
const MAX_BUF: usize = 1 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Db {
    Passwd,
    Group,
}

pub(crate) struct NameDb {
    db: Db,
    names: HashMap<u32, (Option<String>, Instant)>,
}

impl NameDb {
    pub(crate) fn passwd() -> Self {
        Self::new(Db::Passwd)
    }

    pub(crate) fn group() -> Self {
        Self::new(Db::Group)
    }

    fn new(db: Db) -> Self {
        Self {
            db,
            names: HashMap::new(),
        }
    }

    /// The name of `id`, from the cache while it is fresh.
    pub(crate) fn name(&mut self, id: u32) -> Option<String> {
        if let Some((name, at)) = self.names.get(&id) {
            let ttl = if name.is_some() {
                NAMED_TTL
            } else {
                UNNAMED_TTL
            };
            if at.elapsed() < ttl {
                return name.clone();
            }
        }
        let name = match self.db {
            Db::Passwd => lookup_user(id),
            Db::Group => lookup_group(id),
        };
        if self.names.len() >= CAPACITY {
            self.names.clear();
        }
        self.names.insert(id, (name.clone(), Instant::now()));
        name
    }
}

/// `getpwuid_r`.
fn lookup_user(uid: u32) -> Option<String> {
    // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids).
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: the pointers are valid for the call; `len` is the buffer's size.
    let name = with_growing_buffer(|buf, len| unsafe {
        let rc = libc::getpwuid_r(uid, &mut pwd, buf, len, &mut found);
        (
            rc,
            if found.is_null() {
                std::ptr::null()
            } else {
                pwd.pw_name
            },
        )
    })?;
    Some(name)
}

/// `getgrgid_r` (large groups list many members: the buffer grows).
fn lookup_group(gid: u32) -> Option<String> {
    // SAFETY: all-zero is a valid `group`.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `lookup_user`.
    let name = with_growing_buffer(|buf, len| unsafe {
        let rc = libc::getgrgid_r(gid, &mut grp, buf, len, &mut found);
        (
            rc,
            if found.is_null() {
                std::ptr::null()
            } else {
                grp.gr_name
            },
        )
    })?;
    Some(name)
}

/// Calls an NSS `*_r` lookup with a buffer it may fill, doubling it while NSS answers ERANGE;
/// `call` returns the status and the name it found (null for none), which points into the
/// buffer and is read before the buffer goes.
fn with_growing_buffer(
    mut call: impl FnMut(*mut libc::c_char, usize) -> (i32, *const libc::c_char),
) -> Option<String> {
    let mut buf = vec![0u8; FIRST_BUF];
    loop {
        let (rc, name) = call(buf.as_mut_ptr().cast(), buf.len());
        if rc == libc::ERANGE && buf.len() < MAX_BUF {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || name.is_null() {
            return None;
        }
        // SAFETY: NSS wrote a NUL-terminated name into `buf`, which is still alive.
        return Some(text(unsafe { CStr::from_ptr(name) }));
    }
}

/// A name that is not UTF-8 is shown with replacement characters rather than lost.
fn text(name: &CStr) -> String {
    name.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_nobody_are_named() {
        let mut users = NameDb::passwd();
        assert_eq!(users.name(0).as_deref(), Some("root"));
        assert_eq!(users.name(65534).as_deref(), Some("nobody"));
        let mut groups = NameDb::group();
        assert_eq!(groups.name(0).as_deref(), Some("root"));
    }

    #[test]
    fn an_unknown_id_is_unnamed_and_remembered() {
        let mut users = NameDb::passwd();
        // Not in /etc/passwd, nor in systemd's dynamic range.
        assert_eq!(users.name(3_999_999_999), None);
        assert!(users.names.contains_key(&3_999_999_999));
    }
}
