//! The headers every request carries: user-configured ones and basic authentication.
use base64::Engine;
use std::collections::BTreeMap;

use hyper::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};

/// A configured header or basic authentication that cannot be sent. Names the header, never
/// its value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeaderError {
    #[error("headers: {0:?} is not a valid header name")]
    BadName(String),
    #[error("headers: {0} is set by the sink itself and cannot be configured")]
    Reserved(String),
    #[error("headers: the value of {0} has characters a header cannot carry")]
    BadValue(String),
    #[error("user/password and an Authorization header are both set: keep one")]
    AuthorizationTwice,
    #[error("user: basic authentication user names cannot contain ':'")]
    ColonInUser,
    #[error("user/password cannot be sent as a header")]
    BadCredentials,
    #[error("user and password go together: set both or neither")]
    HalfCredentials,
}

/// Headers the sink sets itself from the body and connection.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
];

/// Builds the fixed headers of every request. Configured values are marked sensitive so that
/// no debug output shows them, and errors name the header, never its value.
pub(crate) fn fixed_headers(
    headers: &BTreeMap<String, String>,
    user: Option<&str>,
    password: Option<&str>,
) -> Result<HeaderMap, HeaderError> {
    let mut map = HeaderMap::new();
    map.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    map.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("flow-agent/", env!("CARGO_PKG_VERSION"))),
    );
    for (name, value) in headers {
        let key = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HeaderError::BadName(name.clone()))?;
        if RESERVED.contains(&key.as_str()) {
            return Err(HeaderError::Reserved(name.clone()));
        }
        let mut v =
            HeaderValue::from_str(value).map_err(|_| HeaderError::BadValue(name.clone()))?;
        v.set_sensitive(true);
        map.insert(key, v);
    }
    match (user, password) {
        (None, None) => {}
        (Some(user), Some(password)) => {
            if map.contains_key(AUTHORIZATION) {
                return Err(HeaderError::AuthorizationTwice);
            }
            if user.contains(':') {
                return Err(HeaderError::ColonInUser);
            }
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{user}:{password}").as_bytes());
            let mut v = HeaderValue::from_str(&format!("Basic {token}"))
                .map_err(|_| HeaderError::BadCredentials)?;
            v.set_sensitive(true);
            map.insert(AUTHORIZATION, v);
        }
        _ => return Err(HeaderError::HalfCredentials),
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_and_custom_headers() {
        let mut h = BTreeMap::new();
        h.insert("X-Api-Key".to_string(), "s3cret".to_string());
        let map = fixed_headers(&h, Some("elastic"), Some("changeme")).unwrap();
        assert_eq!(map["authorization"], "Basic ZWxhc3RpYzpjaGFuZ2VtZQ==");
        assert_eq!(map["x-api-key"], "s3cret");
        assert!(map["x-api-key"].is_sensitive());
        assert_eq!(map["content-type"], "application/x-ndjson");
    }

    #[test]
    fn refuses_bad_headers_without_showing_values() {
        let one = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        let err = fixed_headers(&one("Content-Length", "1"), None, None).unwrap_err();
        assert!(matches!(err, HeaderError::Reserved(_)), "{err}");
        assert!(err.to_string().contains("set by the sink"), "{err}");
        let err = fixed_headers(&one("X-Token", "sec\nret"), None, None).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("X-Token") && !text.contains("sec"), "{err}");
        let err = fixed_headers(&one("Authorization", "Bearer x"), Some("u"), Some("p"));
        assert!(matches!(err, Err(HeaderError::AuthorizationTwice)));
        let err = fixed_headers(&BTreeMap::new(), Some("u"), None);
        assert!(matches!(err, Err(HeaderError::HalfCredentials)));
        let err = fixed_headers(&BTreeMap::new(), Some("a:b"), Some("p"));
        assert!(matches!(err, Err(HeaderError::ColonInUser)));
    }
}
