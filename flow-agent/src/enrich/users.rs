//! uid and gid to names, from /etc/passwd and /etc/group (re-read when they change).
use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

/// How long a known id's name is trusted without looking at the file again: a stat per event
/// was a fifth of the agent's CPU under a connection storm.
const RECHECK: Duration = Duration::from_secs(1);

pub(crate) struct NameDb {
    path: PathBuf,
    names: HashMap<u32, String>,
    mtime: Option<SystemTime>,
    checked: Option<Instant>,
}

impl NameDb {
    pub(crate) fn passwd() -> Self {
        Self::new("/etc/passwd")
    }

    pub(crate) fn group() -> Self {
        Self::new("/etc/group")
    }

    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            names: HashMap::new(),
            mtime: None,
            checked: None,
        }
    }

    /// The name of `id`. The file is looked at again when the last look is older than a second,
    /// or at once for an id it did not name (a user added a moment ago).
    pub(crate) fn name(&mut self, id: u32) -> Option<String> {
        let fresh = self.checked.is_some_and(|t| t.elapsed() < RECHECK);
        if fresh {
            if let Some(n) = self.names.get(&id) {
                return Some(n.clone());
            }
        }
        self.checked = Some(Instant::now());
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if mtime != self.mtime {
            self.mtime = mtime;
            // One line that is not UTF-8 must not cost every other name.
            self.names = std::fs::read(&self.path)
                .map(|bytes| parse(&String::from_utf8_lossy(&bytes)))
                .unwrap_or_default();
        }
        self.names.get(&id).cloned()
    }
}

/// name:x:id:... lines; the first name for an id wins, as getpwuid does.
pub fn parse(text: &str) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut f = line.split(':');
        let (Some(name), Some(_), Some(id)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if let Ok(id) = id.parse() {
            out.entry(id).or_insert_with(|| name.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_lines() {
        let m = parse("root:x:0:0:root:/root:/bin/bash\nbad line\nnobody:x:65534:65534::/:/x\n");
        assert_eq!(m.get(&0).map(String::as_str), Some("root"));
        assert_eq!(m.get(&65534).map(String::as_str), Some("nobody"));
        assert_eq!(m.len(), 2);
    }
}
