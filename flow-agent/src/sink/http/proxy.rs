//! Reaching the collector through an HTTP proxy: the `proxy` option, or else the
//! environment's `https_proxy`/`HTTPS_PROXY` (for https URLs) or `http_proxy`/`HTTP_PROXY`
//! (for http URLs); `no_proxy`/`NO_PROXY` names the hosts reached directly. Plain HTTP goes to
//! the proxy as absolute-form requests, HTTPS through a CONNECT tunnel with TLS inside it.
use std::{io, net::IpAddr};

use base64::Engine;
use hyper::{header::HeaderValue, http::uri::InvalidUri, Uri};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::Endpoint;
use crate::config::redact::redact_url;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("{from}: {url:?} is not a URL: {source}")]
    Invalid {
        from: String,
        url: String,
        #[source]
        source: InvalidUri,
    },
    #[error("{from}: scheme {scheme:?} is not supported, the proxy is reached over plain HTTP (http://HOST:PORT)")]
    Scheme { from: String, scheme: String },
    #[error("{from}: {url:?} has no host")]
    NoHost { from: String, url: String },
    #[error("{from}: the proxy's user and password cannot be sent as a header")]
    BadCredentials { from: String },
}

/// An HTTP proxy.
#[derive(Clone, Debug)]
pub(crate) struct Proxy {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `Proxy-Authorization` (basic), from the URL's user and password.
    pub(crate) authorization: Option<HeaderValue>,
    /// The URL, its password redacted, and where it was set: for logs and errors.
    pub(crate) display: String,
}

/// Port of a proxy URL without one, as curl assumes.
const DEFAULT_PORT: u16 = 1080;

impl Proxy {
    /// `url` (`http://[USER:PASSWORD@]HOST[:PORT]`, the scheme may be left out) set by
    /// `from` (an option or a variable, named in errors).
    pub(crate) fn parse(url: &str, from: &str) -> Result<Self, ProxyError> {
        let full = if url.contains("://") {
            url.to_string()
        } else {
            format!("http://{url}")
        };
        let shown = redact_url(&full);
        let uri: Uri = full.parse().map_err(|source| ProxyError::Invalid {
            from: from.to_string(),
            url: shown.clone(),
            source,
        })?;
        if let Some(scheme) = uri.scheme_str().filter(|s| *s != "http") {
            return Err(ProxyError::Scheme {
                from: from.to_string(),
                scheme: scheme.to_string(),
            });
        }
        let no_host = || ProxyError::NoHost {
            from: from.to_string(),
            url: shown.clone(),
        };
        let authority = uri.authority().ok_or_else(no_host)?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(no_host());
        }
        let authorization = match authority.as_str().rsplit_once('@') {
            Some((userinfo, _)) => {
                Some(basic(userinfo).ok_or_else(|| ProxyError::BadCredentials {
                    from: from.to_string(),
                })?)
            }
            None => None,
        };
        Ok(Self {
            host: host.to_string(),
            port: authority.port_u16().unwrap_or(DEFAULT_PORT),
            authorization,
            display: format!("{shown} (from {from})"),
        })
    }
}

/// Longest answer head taken from a proxy to CONNECT.
const MAX_TUNNEL_HEAD: usize = 8192;

/// Why a proxy gave no tunnel.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TunnelError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the proxy closed the connection")]
    Closed,
    #[error("the proxy's answer has a head above {MAX_TUNNEL_HEAD} bytes")]
    TooLong,
    #[error("the proxy answered {0:?}")]
    Refused(String),
}

impl Proxy {
    /// Asks the proxy at the other end of `tcp` for a tunnel to `endpoint` (CONNECT); on
    /// success `tcp` carries the endpoint's bytes.
    pub(crate) async fn tunnel(
        &self,
        tcp: &mut TcpStream,
        endpoint: &Endpoint,
    ) -> Result<(), TunnelError> {
        let target = if endpoint.host.contains(':') {
            format!("[{}]:{}", endpoint.host, endpoint.port)
        } else {
            format!("{}:{}", endpoint.host, endpoint.port)
        };
        let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n").into_bytes();
        if let Some(auth) = &self.authorization {
            head.extend_from_slice(b"Proxy-Authorization: ");
            head.extend_from_slice(auth.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        tcp.write_all(&head).await?;
        // Byte by byte: what follows the head is the server's, for TLS to read.
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\n") {
            if answer.len() >= MAX_TUNNEL_HEAD {
                return Err(TunnelError::TooLong);
            }
            match tcp.read_u8().await {
                Ok(b) => answer.push(b),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(TunnelError::Closed)
                }
                Err(e) => return Err(e.into()),
            }
        }
        let status = String::from_utf8_lossy(&answer);
        let status = status.lines().next().unwrap_or_default();
        let mut words = status.split(' ');
        match (words.next(), words.next()) {
            (Some(v), Some(code)) if v.starts_with("HTTP/1.") && code.starts_with('2') => Ok(()),
            _ => Err(TunnelError::Refused(status.to_string())),
        }
    }
}

/// `Basic base64(user:password)` of a URL's percent-encoded user part.
fn basic(userinfo: &str) -> Option<HeaderValue> {
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let plain = format!("{}:{}", percent_decode(user)?, percent_decode(password)?);
    let token = base64::engine::general_purpose::STANDARD.encode(plain);
    let mut value = HeaderValue::from_str(&format!("Basic {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn percent_decode(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// The proxy for `endpoint`: the `proxy` option when set (empty: none, whatever the
/// environment says), else the environment's; none for a host that NO_PROXY names.
pub(crate) fn select(
    option: Option<&str>,
    endpoint: &Endpoint,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Proxy>, ProxyError> {
    let names: [&str; 2] = if endpoint.tls {
        ["https_proxy", "HTTPS_PROXY"]
    } else {
        ["http_proxy", "HTTP_PROXY"]
    };
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let (url, from) = match option {
        Some(url) => (url.to_string(), "proxy".to_string()),
        None => match names
            .iter()
            .find_map(|n| set(n).map(|v| (v, format!("${n}"))))
        {
            Some(found) => found,
            None => return Ok(None),
        },
    };
    if url.is_empty() {
        return Ok(None);
    }
    let proxy = Proxy::parse(url.trim(), &from)?;
    let no_proxy = set("no_proxy")
        .or_else(|| set("NO_PROXY"))
        .unwrap_or_default();
    Ok((!bypassed(&no_proxy, &endpoint.host, endpoint.port)).then_some(proxy))
}

/// Whether a NO_PROXY list names `host` (and `port`): `*`; a domain, which also covers its
/// subdomains (a leading `.` or `*.` is the same); an IP address or CIDR block; any of
/// them followed by `:PORT` (IPv6 in brackets) to cover that port only.
fn bypassed(no_proxy: &str, host: &str, port: u16) -> bool {
    no_proxy
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
        .any(|entry| names(entry, host, port))
}

fn names(entry: &str, host: &str, port: u16) -> bool {
    if entry == "*" {
        return true;
    }
    let (name, only_port) = split_port(entry);
    if only_port.is_some_and(|p| p != port) {
        return false;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return match name.split_once('/') {
            Some((net, bits)) => in_block(ip, net, bits),
            None => name.parse::<IpAddr>().is_ok_and(|n| n == ip),
        };
    }
    let name = name.trim_start_matches('*').trim_start_matches('.');
    let host = host.trim_end_matches('.');
    !name.is_empty()
        && (host.eq_ignore_ascii_case(name)
            || host.len().checked_sub(name.len() + 1).is_some_and(|cut| {
                host.as_bytes()[cut] == b'.' && host[cut + 1..].eq_ignore_ascii_case(name)
            }))
}

/// `name:port`, `[v6]:port`, or a name (or bare IPv6 address) alone.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((v6, after)) = rest.split_once(']') {
            return (v6, after.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match entry.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => match port.parse() {
            Ok(port) => (name, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

fn in_block(ip: IpAddr, net: &str, bits: &str) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Endpoint {
        Endpoint::parse(url).unwrap()
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_option_wins_over_the_environment_and_each_scheme_has_its_variable() {
        let vars = [
            ("HTTPS_PROXY", "http://tls-proxy:3128"),
            ("http_proxy", "plain-proxy:8080"),
            ("HTTP_PROXY", "http://ignored:1"),
        ];
        let tls = select(None, &endpoint("https://es:9200/"), env(&vars))
            .unwrap()
            .unwrap();
        assert_eq!((tls.host.as_str(), tls.port), ("tls-proxy", 3128));
        assert!(tls.display.contains("$HTTPS_PROXY"), "{}", tls.display);
        let plain = select(None, &endpoint("http://es/"), env(&vars))
            .unwrap()
            .unwrap();
        assert_eq!((plain.host.as_str(), plain.port), ("plain-proxy", 8080));
        let own = select(Some("http://mine"), &endpoint("http://es/"), env(&vars));
        assert_eq!(own.unwrap().unwrap().port, DEFAULT_PORT);
        assert!(select(Some(""), &endpoint("http://es/"), env(&vars))
            .unwrap()
            .is_none());
        assert!(select(None, &endpoint("http://es/"), env(&[]))
            .unwrap()
            .is_none());
    }

    #[test]
    fn credentials_become_proxy_authorization_and_stay_out_of_logs() {
        let p = Proxy::parse("http://flow%40agent:p%3Ass@proxy:3128", "proxy").unwrap();
        // base64("flow@agent:p:ss")
        assert_eq!(p.authorization.unwrap(), "Basic Zmxvd0BhZ2VudDpwOnNz");
        assert!(!p.display.contains("p%3Ass"), "{}", p.display);
        let err = Proxy::parse("https://u:secret@proxy:3128", "$HTTPS_PROXY").unwrap_err();
        assert!(matches!(err, ProxyError::Scheme { .. }), "{err}");
        let err = Proxy::parse("http://u:s%zz@proxy", "proxy").unwrap_err();
        assert!(matches!(err, ProxyError::BadCredentials { .. }), "{err}");
        let err = Proxy::parse("http://u:secret@ bad", "proxy").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn no_proxy_names_domains_addresses_blocks_and_ports() {
        let cases = [
            ("*", "es.example", 443, true),
            ("example.com", "example.com", 80, true),
            ("example.com", "es.EXAMPLE.com", 80, true),
            (".example.com", "es.example.com", 80, true),
            ("*.example.com", "es.example.com", 80, true),
            ("example.com", "badexample.com", 80, false),
            ("10.0.0.0/8, 192.0.2.1", "10.1.2.3", 80, true),
            ("10.0.0.0/8,192.0.2.1", "192.0.2.1", 80, true),
            ("10.0.0.0/8", "192.0.2.1", 80, false),
            ("fd00::/8", "fd12::1", 80, true),
            ("[::1]:9200", "::1", 9200, true),
            ("[::1]:9200", "::1", 9201, false),
            ("es.example:9200", "es.example", 9200, true),
            ("es.example:9200", "es.example", 443, false),
            ("localhost", "127.0.0.1", 80, false),
            ("", "es.example", 80, false),
        ];
        for (list, host, port, want) in cases {
            assert_eq!(bypassed(list, host, port), want, "{list:?} {host} {port}");
        }
        let vars = [("HTTPS_PROXY", "proxy:3128"), ("NO_PROXY", ".internal")];
        let e = endpoint("https://es.internal/");
        assert!(select(None, &e, env(&vars)).unwrap().is_none());
    }
}
