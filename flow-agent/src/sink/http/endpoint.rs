//! The destination URL, split into what the connection and the request need.
use hyper::{http::uri::InvalidUri, Uri};

/// A `url` the sink cannot send to.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UrlError {
    #[error("url is required (http://HOST:PORT/PATH or https://...)")]
    Missing,
    #[error("url {url:?}: {source}")]
    Invalid {
        url: String,
        #[source]
        source: InvalidUri,
    },
    #[error("url {url:?}: scheme {scheme:?} is not supported, use http or https")]
    Scheme { url: String, scheme: String },
    #[error("url {0:?} needs a scheme: http:// or https://")]
    NoScheme(String),
    #[error("url {0:?} has no host")]
    NoHost(String),
    // A URL is logged; credentials belong in `user`/`password` or `headers`.
    #[error("the url must not carry credentials: use user and password")]
    Credentials,
}

/// Where requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) tls: bool,
    /// Host name or IP address (IPv6 without brackets): what is resolved and what the TLS
    /// certificate must name.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `Host` header value.
    pub(crate) authority: String,
    /// Request target: path and query.
    pub(crate) path: String,
}

impl Endpoint {
    pub(crate) fn parse(url: &str) -> Result<Self, UrlError> {
        if url.is_empty() {
            return Err(UrlError::Missing);
        }
        let uri: Uri = url.parse().map_err(|source| UrlError::Invalid {
            url: url.to_string(),
            source,
        })?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => {
                return Err(UrlError::Scheme {
                    url: url.to_string(),
                    scheme: other.to_string(),
                })
            }
            None => return Err(UrlError::NoScheme(url.to_string())),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| UrlError::NoHost(url.to_string()))?;
        if authority.as_str().contains('@') {
            return Err(UrlError::Credentials);
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(UrlError::NoHost(url.to_string()));
        }
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        Ok(Self {
            tls,
            host,
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            authority: authority.as_str().to_string(),
            path,
        })
    }

    /// The path alone, without the query.
    pub(crate) fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("/")
    }

    /// `scheme://authority/path?query` for logs: the URL carries no user or password, and
    /// the values of query parameters named like credentials (`api_key=`, `token=`) are
    /// `<redacted>`, as `flow-agent config` prints them.
    pub(crate) fn display(&self) -> String {
        crate::config::redact::redact_url(&format!(
            "{}://{}{}",
            if self.tls { "https" } else { "http" },
            self.authority,
            self.path
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        let e = Endpoint::parse("https://es.example:9200/flows/_bulk?pipeline=x").unwrap();
        assert!(e.tls);
        assert_eq!(e.host, "es.example");
        assert_eq!(e.port, 9200);
        assert_eq!(e.authority, "es.example:9200");
        assert_eq!(e.path, "/flows/_bulk?pipeline=x");
        assert_eq!(e.path_only(), "/flows/_bulk");

        let e = Endpoint::parse("http://[::1]/").unwrap();
        assert_eq!((e.tls, e.host.as_str(), e.port), (false, "::1", 80));
        let e = Endpoint::parse("https://127.0.0.1").unwrap();
        assert_eq!((e.port, e.path.as_str()), (443, "/"));
        // Logged without the token, sent with it.
        let e = Endpoint::parse("http://h:1/in?api_key=s3cret&tenant=a").unwrap();
        assert_eq!(e.display(), "http://h:1/in?api_key=<redacted>&tenant=a");
        assert_eq!(e.path, "/in?api_key=s3cret&tenant=a");
    }

    #[test]
    fn refuses_bad_urls() {
        for (url, want) in [
            ("", "url is required"),
            ("ftp://x/", "scheme \"ftp\""),
            ("localhost:8080", "scheme"),
            ("https://u:p@host/", "credentials"),
            ("/just/a/path", "scheme"),
        ] {
            let err = Endpoint::parse(url).unwrap_err().to_string();
            assert!(err.contains(want), "{url}: {err}");
        }
    }
}
