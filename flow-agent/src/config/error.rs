//! Configuration errors: each names the file, the line and column, the key and what was
//! expected, as `config.toml:12:5: outputs[1].filter.exclude[0].remote_cidr: "10.0.0/8" is
//! not a CIDR (expected e.g. 10.0.0.0/8 ...)`.
use std::{fmt, path::PathBuf};

use super::locate::{line_col, KeyPath, SpanIndex};

/// A problem found after parsing, at a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub path: KeyPath,
    pub message: String,
}

impl Issue {
    pub(crate) fn new(path: KeyPath, message: impl Into<String>) -> Self {
        Self {
            path,
            message: message.into(),
        }
    }
}

/// One problem with its place in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line and column; None when the problem has no place (a file-wide one).
    pub(crate) position: Option<(usize, usize)>,
    /// The key path; None when the text is not even TOML.
    pub(crate) key: Option<String>,
    pub(crate) message: String,
}

impl Problem {
    /// A serde or syntax error of the `toml` parser.
    pub(crate) fn from_toml(text: &str, index: Option<&SpanIndex>, e: &toml::de::Error) -> Self {
        let span = e.span();
        let key = match (index, &span) {
            (Some(idx), Some(r)) => idx.path_at(r.start).filter(|p| !p.is_root()),
            _ => None,
        };
        Self {
            position: span.map(|r| line_col(text, r.start)),
            key: key.map(|k| k.to_string()),
            // Syntax errors come on several lines ("invalid table header\nexpected `.`, `]`").
            message: e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(": "),
        }
    }

    /// A problem found after parsing, placed by its key path.
    pub(crate) fn from_issue(index: Option<&SpanIndex>, issue: Issue) -> Self {
        let position =
            index.and_then(|idx| idx.span_of(&issue.path).map(|r| idx.line_col(r.start)));
        Self {
            position,
            key: (!issue.path.is_root()).then(|| issue.path.to_string()),
            message: issue.message,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the configuration file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file (or a directory above it) could be changed by someone the agent should not
    /// take orders from.
    #[error("{}: {reason}", path.display())]
    Unsafe { path: PathBuf, reason: String },
    #[error("{}", Rendered(file, problems))]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// One line per problem, each naming the file (and line, column and key when known).
    pub fn lines(&self) -> Vec<String> {
        self.to_string().lines().map(str::to_string).collect()
    }
}

struct Rendered<'a>(&'a PathBuf, &'a Vec<Problem>);

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, p) in self.1.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}", self.0.display())?;
            if let Some((line, col)) = p.position {
                write!(f, ":{line}:{col}")?;
            }
            f.write_str(": ")?;
            if let Some(key) = &p.key {
                write!(f, "{key}: ")?;
            }
            f.write_str(&p.message)?;
        }
        Ok(())
    }
}
