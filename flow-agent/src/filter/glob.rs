//! Shell-style patterns: `*` matches any run of characters (slashes included), `?` one
//! character; everything else matches itself. No character classes: executable paths and
//! process names rarely need them, and a literal `[` stays literal.

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Glob {
    text: String,
    /// No wildcard: a plain comparison.
    literal: bool,
}

impl Glob {
    pub(crate) fn new(text: &str) -> Self {
        Self {
            literal: !text.contains(['*', '?']),
            text: text.to_string(),
        }
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn matches(&self, s: &str) -> bool {
        if self.literal {
            return self.text == s;
        }
        let p: Vec<char> = self.text.chars().collect();
        let s: Vec<char> = s.chars().collect();
        // Greedy match with one backtrack point (the last `*`): linear in practice.
        let (mut pi, mut si) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            match p.get(pi) {
                Some('*') => {
                    star = Some((pi, si));
                    pi += 1;
                }
                Some('?') => {
                    pi += 1;
                    si += 1;
                }
                Some(c) if *c == s[si] => {
                    pi += 1;
                    si += 1;
                }
                _ => match star {
                    Some((sp, ss)) => {
                        pi = sp + 1;
                        si = ss + 1;
                        star = Some((sp, ss + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn wildcards() {
        let g = Glob::new("/usr/bin/*");
        assert!(g.matches("/usr/bin/curl"));
        assert!(g.matches("/usr/bin/sub/dir"));
        assert!(!g.matches("/usr/sbin/sshd"));
        assert!(Glob::new("python3.?").matches("python3.9"));
        assert!(!Glob::new("python3.?").matches("python3.11"));
        assert!(Glob::new("*sh").matches("bash"));
        assert!(Glob::new("a*b*c").matches("aXbYbZc"));
        assert!(!Glob::new("a*b*c").matches("aXbYbZ"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("curl").matches("curl"));
        assert!(!Glob::new("curl").matches("curl2"));
    }
}
