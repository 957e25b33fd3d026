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

/// `getpwuid_r`, growing the buffer while NSS says it is too small.
fn lookup_user(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; FIRST_BUF];
    loop {
        // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids).
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: the pointers are valid for the call; `buf.len()` is its size.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buf.len() < MAX_BUF {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: NSS wrote a NUL-terminated name into `buf`, which outlives this read.
        return Some(text(unsafe { CStr::from_ptr(pwd.pw_name) }));
    }
}

/// `getgrgid_r`, growing the buffer while NSS says it is too small (large groups list many
/// members).
fn lookup_group(gid: u32) -> Option<String> {
    let mut buf = vec![0u8; FIRST_BUF];
    loop {
        // SAFETY: all-zero is a valid `group`.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in `lookup_user`.
        let rc = unsafe {
            libc::getgrgid_r(
                gid,
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buf.len() < MAX_BUF {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || found.is_null() || grp.gr_name.is_null() {
            return None;
        }
        // SAFETY: as in `lookup_user`.
        return Some(text(unsafe { CStr::from_ptr(grp.gr_name) }));
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
