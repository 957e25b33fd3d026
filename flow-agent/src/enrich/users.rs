//! uid and gid to names through NSS (`getpwuid_r`, `getgrgid_r`): /etc/passwd and /etc/group,
//! and whatever else nsswitch.conf names (systemd's DynamicUser and userdb accounts, SSSD,
//! LDAP). Names are cached: a lookup can go over the network.
use std::{
    collections::HashMap,
    ffi::CStr,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc, Condvar, Mutex,
    },
    time::{Duration, Instant},
};

/// How long a name found is reused before it is looked up again.
const NAMED_TTL: Duration = Duration::from_secs(60);
/// How long an id without a name stays unnamed (a user added a moment ago is named soon).
const UNNAMED_TTL: Duration = Duration::from_secs(5);
/// How long the pipeline waits for the first lookup of an id. A slow NSS source (LDAP, SSSD
/// over a dead link) then costs it this once per new id; the answer, when it comes, names the
/// process's later events. Refreshes never wait: the old name serves meanwhile.
const FIRST_WAIT: Duration = Duration::from_millis(100);
/// Ids remembered at most; beyond it the cache starts over.
const CAPACITY: usize = 65_536;
/// The first buffer for a lookup; doubled on ERANGE up to [`MAX_BUF`].
const FIRST_BUF: usize = 1024;
const MAX_BUF: usize = 1 << 20;

struct Cached {
    name: Option<String>,
    at: Instant,
    /// A lookup was asked for and has not answered yet.
    pending: bool,
    /// Never answered: events wait for the first answer until then (set by the first event
    /// that asks), so the wait is paid once per id, not once per event.
    first_wait: Option<Option<Instant>>,
}

/// Answers of the lookup thread, for the pipeline to take.
#[derive(Default)]
struct Answers {
    ready: Mutex<Vec<(u32, Option<String>)>>,
    arrived: Condvar,
    /// Answers given since start: read without the lock, once per event.
    count: AtomicU64,
}

/// Names of one database, looked up by a thread of its own so that NSS never holds up the
/// pipeline for long.
pub(crate) struct NameDb {
    names: HashMap<u32, Cached>,
    ask: mpsc::Sender<u32>,
    answers: Arc<Answers>,
}

impl NameDb {
    pub(crate) fn passwd() -> Self {
        Self::new(lookup_user)
    }

    pub(crate) fn group() -> Self {
        Self::new(lookup_group)
    }

    /// Names looked up by `lookup` (tests give a slow one).
    pub(super) fn new(lookup: fn(u32) -> Option<String>) -> Self {
        let (ask, asked) = mpsc::channel::<u32>();
        let answers = Arc::new(Answers::default());
        let out = answers.clone();
        // The thread ends with the sender (the NameDb).
        let spawned = std::thread::Builder::new()
            .name("nss-lookup".into())
            .spawn(move || {
                for id in asked {
                    let name = lookup(id);
                    out.ready
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((id, name));
                    out.count.fetch_add(1, Ordering::Release);
                    out.arrived.notify_all();
                }
            });
        if let Err(e) = spawned {
            log::warn!("no thread for user and group names ({e}): events carry ids only");
        }
        let mut db = Self {
            names: HashMap::new(),
            ask,
            answers,
        };
        // NSS reads nsswitch.conf and loads its modules on the first lookup, which can take
        // longer than FIRST_WAIT on a slow host: done now, not on the first event's account.
        db.ask_first(0);
        db
    }

    /// How many answers the lookup thread has given: when it changes, an identity built while
    /// a name was pending can be named now.
    pub(crate) fn answered(&self) -> u64 {
        self.answers.count.load(Ordering::Acquire)
    }

    /// The name of `id`: from the cache while it is fresh, the old one while a new lookup
    /// runs, and for an id not seen before what the lookup answers within [`FIRST_WAIT`].
    pub(crate) fn name(&mut self, id: u32) -> Option<String> {
        self.take_answers();
        let now = Instant::now();
        match self.names.get_mut(&id) {
            Some(Cached {
                first_wait: Some(_),
                ..
            }) => self.wait_first(id, now),
            Some(c) => {
                let ttl = if c.name.is_some() {
                    NAMED_TTL
                } else {
                    UNNAMED_TTL
                };
                if now.duration_since(c.at) >= ttl && !c.pending {
                    c.pending = self.ask.send(id).is_ok();
                }
                c.name.clone()
            }
            None => {
                self.ask_first(id);
                self.wait_first(id, now)
            }
        }
    }

    /// Waits for an id's first answer until [`FIRST_WAIT`] after the first event asked.
    fn wait_first(&mut self, id: u32, now: Instant) -> Option<String> {
        let until = match self.names.get_mut(&id).and_then(|c| c.first_wait.as_mut()) {
            Some(until) => *until.get_or_insert(now + FIRST_WAIT),
            None => now,
        };
        self.wait_for(id, until);
        self.names.get(&id).and_then(|c| c.name.clone())
    }

    /// Asks for an id not in the cache.
    fn ask_first(&mut self, id: u32) {
        if self.names.len() >= CAPACITY {
            self.names.clear();
        }
        let pending = self.ask.send(id).is_ok();
        self.names.insert(
            id,
            Cached {
                name: None,
                at: Instant::now(),
                pending,
                first_wait: pending.then_some(None),
            },
        );
    }

    /// Files what the lookup thread answered.
    fn take_answers(&mut self) {
        let ready =
            std::mem::take(&mut *self.answers.ready.lock().unwrap_or_else(|p| p.into_inner()));
        self.file(ready);
    }

    fn file(&mut self, ready: Vec<(u32, Option<String>)>) {
        let at = Instant::now();
        for (id, name) in ready {
            self.names.insert(
                id,
                Cached {
                    name,
                    at,
                    pending: false,
                    first_wait: None,
                },
            );
        }
    }

    /// Waits until the thread answered for `id`, or `deadline`.
    fn wait_for(&mut self, id: u32, deadline: Instant) {
        let mut ready = self.answers.ready.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if ready.iter().any(|(i, _)| *i == id) {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            ready = match self.answers.arrived.wait_timeout(ready, left) {
                Ok((r, _)) => r,
                Err(p) => p.into_inner().0,
            };
        }
        let answered = std::mem::take(&mut *ready);
        drop(ready);
        self.file(answered);
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

    /// An NSS source that is down: every lookup takes seconds.
    fn stuck(_: u32) -> Option<String> {
        std::thread::sleep(Duration::from_secs(5));
        Some("late".into())
    }

    #[test]
    fn a_first_lookup_is_asked_at_start_and_waited_for_once_per_id() {
        let mut users = NameDb::new(stuck);
        // NSS is warmed up with root before any event asks.
        assert!(users.names[&0].pending);
        assert_eq!(users.names[&0].first_wait, Some(None));
        assert_eq!(users.name(7), None);
        let until = users.names[&7].first_wait.flatten().expect("a deadline");
        // A second event for the same id does not wait anew.
        assert_eq!(users.name(7), None);
        assert_eq!(users.names[&7].first_wait.flatten(), Some(until));
    }

    #[test]
    fn a_stale_name_serves_while_it_is_looked_up_again() {
        let mut users = NameDb::passwd();
        users.names.insert(
            0,
            Cached {
                name: Some("old-root".into()),
                at: Instant::now() - NAMED_TTL,
                pending: false,
                first_wait: None,
            },
        );
        assert_eq!(users.name(0).as_deref(), Some("old-root"));
        assert!(users.names[&0].pending, "a refresh was asked for");
        let deadline = Instant::now() + Duration::from_secs(10);
        while users.names[&0].pending && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            users.take_answers();
        }
        assert_eq!(users.name(0).as_deref(), Some("root"));
    }
}
