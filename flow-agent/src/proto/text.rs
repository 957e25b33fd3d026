//! Line-based protocols recognised from their first line: HTTP/1.x requests and responses,
//! SSH banners, SMTP/FTP/POP3/IMAP greetings.

/// The longest first line looked at; a protocol line is far shorter.
const MAX_LINE: usize = 1024;

/// The first line, without its line ending, if one is complete within the bytes (or the
/// bytes hold no line break but fill the limit).
pub fn first_line(b: &[u8]) -> Option<&[u8]> {
    let window = &b[..b.len().min(MAX_LINE)];
    let end = window.iter().position(|c| *c == b'\n')?;
    let line = &window[..end];
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub target: String,
    pub version: String,
    pub host: Option<String>,
}

const METHODS: [&str; 9] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

/// An HTTP/1.x request line and its Host header.
pub fn http_request(b: &[u8]) -> Option<HttpRequest> {
    let line = std::str::from_utf8(first_line(b)?).ok()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    if parts.next().is_some() || !METHODS.contains(&method) || !version.starts_with("HTTP/1.") {
        return None;
    }
    let host = header(b, "host");
    Some(HttpRequest {
        method: method.into(),
        target: visible(target.as_bytes()),
        version: version.into(),
        host,
    })
}

/// An HTTP/1.x status line: (version, status code).
pub fn http_response(b: &[u8]) -> Option<(String, u16)> {
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
        let colon = line.iter().position(|c| *c == b':')?;
        if line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
            return Some(visible(line[colon + 1..].trim_ascii()));
        }
    }
    None
}

/// The SSH identification string ("SSH-2.0-OpenSSH_9.2p1 Debian-2"), RFC 4253 4.2.
pub fn ssh_banner(b: &[u8]) -> Option<String> {
    let line = first_line(b)?;
    line.starts_with(b"SSH-").then(|| visible(line))
}

/// A server greeting of a mail or file protocol: ("smtp" | "ftp" | "pop3" | "imap", line).
pub fn greeting(b: &[u8], port: u16) -> Option<(&'static str, String)> {
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

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Printable ASCII kept, anything else as `\xHH`, at most 256 characters: safe to put in any
/// output format.
pub fn visible(b: &[u8]) -> String {
    let mut out = String::new();
    for &c in b.iter().take(256) {
        if c == b' ' || c.is_ascii_graphic() {
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
        assert_eq!(r.version, "HTTP/1.1");
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
    fn hostile_bytes_are_made_visible() {
        let r = http_request(b"GET /\x1b[31m\xff HTTP/1.1\r\nHost: a\x00\"b\r\n\r\n");
        // Invalid UTF-8 in the request line: not taken for HTTP.
        assert!(r.is_none());
        let r = http_request(b"GET /\x1b[31m HTTP/1.1\r\nHost: a\x00\"b\r\n\r\n").unwrap();
        assert_eq!(r.target, "/\\x1b[31m");
        assert_eq!(r.host.as_deref(), Some("a\\x00\"b"));
    }
}
