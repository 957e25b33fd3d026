//! The subscriber's side, for `flow-agent tail` and `top`: connect, send the request, read
//! one record a line.
use std::{
    io::{BufRead, BufReader, ErrorKind, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
};

use super::protocol::{Request, DROPPED_PREFIX, ERROR_PREFIX, OK};

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("no agent listens on {0}: is flow-agent running (and [live] socket this path)?")]
    NoAgent(PathBuf),
    #[error(
        "permission denied on {0}: run as root or as a member of the socket's group (ls -l {0})"
    )]
    Denied(PathBuf),
    #[error("the agent at {path} refused the subscription: {why}")]
    Refused { path: PathBuf, why: String },
    #[error("the agent dropped this subscriber: it {0}")]
    Dropped(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A live subscription: records until the agent stops.
#[derive(Debug)]
pub struct Subscription {
    reader: BufReader<UnixStream>,
    path: PathBuf,
}

/// Connects to the agent's socket at `path` and subscribes.
pub fn subscribe(path: &Path, request: &Request) -> Result<Subscription, SubscribeError> {
    let io = |source: std::io::Error| match source.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
            SubscribeError::NoAgent(path.to_path_buf())
        }
        ErrorKind::PermissionDenied => SubscribeError::Denied(path.to_path_buf()),
        _ => SubscribeError::Io {
            path: path.to_path_buf(),
            source,
        },
    };
    let mut stream = UnixStream::connect(path).map_err(io)?;
    let mut line = serde_json::to_string(request).expect("a request serializes");
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut sub = Subscription {
        reader: BufReader::new(stream),
        path: path.to_path_buf(),
    };
    let mut answer = String::new();
    sub.reader.read_line(&mut answer).map_err(io)?;
    let answer = answer.trim_end();
    if answer == OK {
        return Ok(sub);
    }
    let why = answer
        .strip_prefix(ERROR_PREFIX)
        .unwrap_or(if answer.is_empty() {
            "it closed the connection"
        } else {
            answer
        });
    Err(SubscribeError::Refused {
        path: path.to_path_buf(),
        why: why.to_string(),
    })
}

impl Subscription {
    /// The next record (without its newline) into `line`; false when the agent stopped.
    pub fn next_record(&mut self, line: &mut String) -> Result<bool, SubscribeError> {
        line.clear();
        let n = self
            .reader
            .read_line(line)
            .map_err(|source| SubscribeError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 || !line.ends_with('\n') {
            return Ok(false);
        }
        line.pop();
        if let Some(why) = line.strip_prefix(DROPPED_PREFIX) {
            return Err(SubscribeError::Dropped(why.to_string()));
        }
        Ok(true)
    }
}
