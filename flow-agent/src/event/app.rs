//! What a flow's first payload bytes (or its server port) tell about its application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppProtocolSource {
    Payload,
    Port,
}

impl AppProtocolSource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Payload => "payload",
            Self::Port => "port",
        }
    }
}

/// Decided once per flow (again only when more first bytes arrive), shared by its events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppInfo {
    /// `http`, `tls`, `ssh`, `dns`... and how it was decided.
    pub protocol: Option<(&'static str, AppProtocolSource)>,
    /// A short decoded summary, at most 256 characters.
    pub info: Option<String>,
    pub tls: Option<TlsInfo>,
    /// The originator's and the responder's first bytes as printable ASCII, when configured.
    pub orig_content: Option<String>,
    pub resp_content: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// "TLS 1.3", "SSL 3.0".
    pub version: Option<String>,
    /// The negotiated cipher suite's number.
    pub cipher: Option<u16>,
    pub server_name: Option<String>,
    pub alpn: Option<String>,
    pub alpn_offered: Vec<String>,
    /// The cipher suites the client offered (IANA numbers, in its order, no GREASE).
    pub client_ciphers: Vec<u16>,
    pub ja3: Option<String>,
    pub ja3s: Option<String>,
    pub ja4: Option<String>,
    pub ja4s: Option<String>,
    /// Whether the ClientHello was longer than the captured bytes (None: no ClientHello seen).
    /// A truncated one still gives what its complete extensions hold (SNI, ALPN), never JA3 or
    /// JA4: they need the whole hello.
    pub client_hello_truncated: Option<bool>,
}

impl AppInfo {
    /// Nothing decided and nothing to show.
    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}
