//! Line-based protocols recognised from their first line: HTTP/1.x requests and responses,
//! SSH banners, SMTP/FTP/POP3/IMAP greetings.

/// The longest first line looked at; a protocol line is far shorter.
const MAX_LINE: usize = 1024;
/// The most bytes of an HTTP request head looked at (the request line, then the headers): a
/// request line may be long (a long URL), and the capture is shorter anyway.
const MAX_HEAD: usize = 8192;

/// The first line, without its line ending, if one is complete within the first 1 KiB of the
/// bytes.
pub(crate) fn first_line(b: &[u8]) -> Option<&[u8]> {
    let window = &b[..b.len().min(MAX_LINE)];
    let end = window.iter().position(|c| *c == b'\n')?;
    let line = &window[..end];
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HttpRequest {
    pub(crate) method: String,
    /// The request target made [`visible`] (at most its first 256 bytes).
    pub(crate) target: String,
    /// None when the request line is longer than the bytes (a long URL cut by the capture).
    pub(crate) version: Option<String>,
    pub(crate) host: Option<String>,
}

const METHODS: [&str; 9] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

/// An HTTP/1.x request line and its Host header. The request line may be of any length: one
/// that does not end within the bytes still gives the method and the start of the target when
/// the bytes are at least 1 KiB (a long URL cut by the capture, not a short fragment).
pub(crate) fn http_request(b: &[u8]) -> Option<HttpRequest> {
    let head = &b[..b.len().min(MAX_HEAD)];
    let (line, cut) = match head.iter().position(|c| *c == b'\n') {
        Some(end) => (
            head[..end].strip_suffix(b"\r").unwrap_or(&head[..end]),
            false,
        ),
        None if head.len() >= MAX_LINE => (head, true),
        None => return None,
    };
    let line = match std::str::from_utf8(line) {
        Ok(line) => line,
        // A cut may split a character: keep what comes before it.
        Err(e) if cut && e.error_len().is_none() => {
            std::str::from_utf8(&line[..e.valid_up_to()]).ok()?
        }
        Err(_) => return None,
    };
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next();
    if parts.next().is_some() || !METHODS.contains(&method) {
        return None;
    }
    let version = match (version, cut) {
        (Some(v), false) if v.starts_with("HTTP/1.") => Some(v.to_string()),
        // The cut fell in the target, in the version or right after it.
        (None, true) => None,
        (Some(v), true) if v.starts_with("HTTP/1.") || "HTTP/1.".starts_with(v) => None,
        _ => return None,
    };
    Some(HttpRequest {
        method: method.into(),
        target: visible(target.as_bytes()),
        version,
        host: if cut { None } else { header(head, "host") },
    })
}

/// An HTTP/1.x status line: (version, status code).
pub(crate) fn http_response(b: &[u8]) -> Option<(String, u16)> {
    let line = std::str::from_utf8(first_line(b)?).ok()?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    let code: u16 = parts.next()?.parse().ok()?;
    (version.starts_with("HTTP/1.") && (100..600).contains(&code)).then(|| (version.into(), code))
}

/// A header's value from the bytes after the first line (case-insensitive name).
fn header(b: &[u8], name: &str) -> Option<String> {
    let text = &b[..b.len().min(8192)];
    for line in text.split(|c| *c == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        // A line without a colon (malformed, or a folded continuation) names no header.
        let Some(colon) = line.iter().position(|c| *c == b':') else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
            return Some(visible(line[colon + 1..].trim_ascii()));
        }
    }
    None
}

/// The SSH identification string ("SSH-2.0-OpenSSH_9.2p1 Debian-2"), RFC 4253 4.2.
pub(crate) fn ssh_banner(b: &[u8]) -> Option<String> {
    let line = first_line(b)?;
    line.starts_with(b"SSH-").then(|| visible(line))
}

/// A server greeting of a mail or file protocol: ("smtp" | "ftp" | "pop3" | "imap", line).
pub(crate) fn greeting(b: &[u8], port: u16) -> Option<(&'static str, String)> {
    let line = first_line(b)?;
    let proto = if line.starts_with(b"+OK") {
        "pop3"
    } else if line.starts_with(b"* OK") {
        "imap"
    } else if line.starts_with(b"220") {
        // SMTP and FTP both greet with 220; the text or the port tells them apart.
        let upper = line.to_ascii_uppercase();
        if contains(&upper, b"SMTP") || contains(&upper, b"ESMTP") || matches!(port, 25 | 465 | 587)
        {
            "smtp"
        } else if contains(&upper, b"FTP") || port == 21 {
            "ftp"
        } else {
            return None;
        }
    } else {
        return None;
    };
    Some((proto, visible(line)))
}

/// Shortens text made of [`visible`] output (and other `\`-escapes of 4 characters) to at most
/// `max` characters, never inside an escape.
pub(crate) fn clip(s: &mut String, max: usize) {
    let Some((i, _)) = s.char_indices().nth(max) else {
        return;
    };
    s.truncate(i);
    // An escape the cut split: the backslash is within its last 3 characters.
    let tail_start = s.char_indices().rev().nth(2).map_or(0, |(i, _)| i);
    if let Some(j) = s[tail_start..].rfind('\\') {
        s.truncate(tail_start + j);
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Printable ASCII kept, anything else as `\xHH`, of at most the first 256 bytes: safe to put
/// in any output format. The backslash is escaped too (`\x5c`), so every backslash starts an
/// escape and the text reads back one way only.
pub(crate) fn visible(b: &[u8]) -> String {
    let mut out = String::new();
    for &c in b.iter().take(256) {
        if (c == b' ' || c.is_ascii_graphic()) && c != b'\\' {
            out.push(c as char);
        } else {
            out.push_str(&format!("\\x{c:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_request_and_host() {
        let r = http_request(
            b"GET /a?b=1 HTTP/1.1\r\nUser-Agent: x\r\nHOST: example.test:8080\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/a?b=1");
        assert_eq!(r.version.as_deref(), Some("HTTP/1.1"));
        assert_eq!(r.host.as_deref(), Some("example.test:8080"));
        assert!(http_request(b"FOO / HTTP/1.1\r\n\r\n").is_none());
        assert!(
            http_request(b"GET / HTTP/1.1").is_none(),
            "no complete line"
        );
    }

    #[test]
    fn http_status_line() {
        assert_eq!(
            http_response(b"HTTP/1.0 200 OK\r\nServer: x\r\n"),
            Some(("HTTP/1.0".into(), 200))
        );
        assert_eq!(http_response(b"HTTP/1.1 999 X\r\n"), None);
    }

    #[test]
    fn ssh_and_greetings() {
        assert_eq!(
            ssh_banner(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n").as_deref(),
            Some("SSH-2.0-OpenSSH_9.2p1 Debian-2")
        );
        assert_eq!(
            greeting(b"220 mx.example ESMTP Postfix\r\n", 2525)
                .unwrap()
                .0,
            "smtp"
        );
        assert_eq!(greeting(b"220 (vsFTPd 3.0.3)\r\n", 2121).unwrap().0, "ftp");
        assert_eq!(greeting(b"+OK ready\r\n", 110).unwrap().0, "pop3");
        assert_eq!(greeting(b"* OK IMAP4rev1\r\n", 143).unwrap().0, "imap");
        assert!(greeting(b"220 hello\r\n", 9999).is_none());
    }

    #[test]
    fn a_request_line_over_1_kib_still_gives_method_target_and_host() {
        let path = format!("/{}", "a".repeat(1499));
        let req = format!("GET {path} HTTP/1.1\r\nHost: long.test\r\nAccept: */*\r\n\r\n");
        let r = http_request(req.as_bytes()).unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, path[..256]);
        assert_eq!(r.version.as_deref(), Some("HTTP/1.1"));
        assert_eq!(r.host.as_deref(), Some("long.test"));
    }

    #[test]
    fn a_request_line_longer_than_the_capture_gives_the_method() {
        let req = format!(
            "POST /{} HTTP/1.1\r\nHost: long.test\r\n\r\n",
            "b".repeat(3000)
        );
        let r = http_request(&req.as_bytes()[..2048]).unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, format!("/{}", "b".repeat(255)));
        assert_eq!((r.version, r.host), (None, None));
        // Cut inside the version.
        let req = format!("GET /{} HTTP/1.1\r\n", "c".repeat(1100));
        let r = http_request(&req.as_bytes()[..1110]).unwrap();
        assert_eq!((r.method.as_str(), r.version), ("GET", None));
        // A short fragment without a line end is not taken for a request, nor is a long line
        // whose third word is no version.
        assert!(http_request(b"GET /short").is_none());
        let junk = format!("GET /{} junk", "d".repeat(1100));
        assert!(http_request(junk.as_bytes()).is_none());
    }

    #[test]
    fn a_header_line_without_a_colon_is_skipped() {
        let r = http_request(
            b"GET /x HTTP/1.1\r\nX-Broken-Header\r\n folded\r\nHost: after.test\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.host.as_deref(), Some("after.test"));
        // The blank line still ends the head.
        let r = http_request(b"GET /x HTTP/1.1\r\nNoColon\r\n\r\nHost: body.test\r\n").unwrap();
        assert_eq!(r.host, None);
    }

    #[test]
    fn a_backslash_is_escaped_so_escapes_read_back_one_way() {
        let r = http_request(b"GET /a\\b HTTP/1.1\r\nHost: h\\x41.test\r\n\r\n").unwrap();
        assert_eq!(r.target, "/a\\x5cb");
        assert_eq!(r.host.as_deref(), Some("h\\x5cx41.test"));
        assert_eq!(visible(b"A"), "A");
        assert_eq!(visible(b"\\x41"), "\\x5cx41");
    }

    #[test]
    fn clip_never_splits_a_character_or_an_escape() {
        let clipped = |s: &str, n| {
            let mut s = s.to_string();
            clip(&mut s, n);
            s
        };
        assert_eq!(clipped("ab€d", 3), "ab€");
        assert_eq!(clipped("ab€d", 9), "ab€d");
        let s = visible(b"abc\x00d");
        assert_eq!(s, "abc\\x00d");
        assert_eq!(clipped(&s, 3), "abc");
        assert_eq!(clipped(&s, 4), "abc");
        assert_eq!(clipped(&s, 6), "abc");
        assert_eq!(clipped(&s, 7), "abc\\x00");
        assert_eq!(clipped("query a\\046b type 1", 9), "query a");
    }

    #[test]
    fn hostile_bytes_are_made_visible() {
        let r = http_request(b"GET /\x1b[31m\xff HTTP/1.1\r\nHost: a\x00\"b\r\n\r\n");
        // Invalid UTF-8 in the request line: not taken for HTTP.
        assert!(r.is_none());
        let r = http_request(b"GET /\x1b[31m HTTP/1.1\r\nHost: a\x00\"b\r\n\r\n").unwrap();
        assert_eq!(r.target, "/\\x1b[31m");
        assert_eq!(r.host.as_deref(), Some("a\\x00\"b"));
    }
}
