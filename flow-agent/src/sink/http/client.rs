//! A minimal HTTP/1.1 client for one destination: one keep-alive connection (plain TCP or
//! TLS), opened lazily and dropped on any failure so that the next request reconnects.
use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    client::conn::http1::{self, SendRequest},
    header::{HeaderMap, HeaderValue, CONTENT_ENCODING, HOST, PROXY_AUTHORIZATION, RETRY_AFTER},
    Method, Request, StatusCode,
};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    task::JoinHandle,
};
use tokio_rustls::{
    rustls::{pki_types::ServerName, ClientConfig},
    TlsConnector,
};

use super::{
    proxy::{Proxy, TunnelError},
    Endpoint,
};

/// Largest response body read (a `_bulk` response has one item per document).
const MAX_RESPONSE: usize = 16 << 20;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Why a request got no answer. Names the server, never a header value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("url host {host:?}: {source}")]
    ServerName {
        host: String,
        #[source]
        source: tokio_rustls::rustls::pki_types::InvalidDnsNameError,
    },
    #[error("connecting to {host} port {port}: {source}")]
    Connect {
        host: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to proxy {proxy}: {source}")]
    ProxyConnect {
        proxy: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tunnel to {host} port {port} through proxy {proxy}: {source}")]
    Tunnel {
        host: String,
        port: u16,
        proxy: String,
        #[source]
        source: TunnelError,
    },
    #[error("TLS with {host} port {port}: {source}")]
    Tls {
        host: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP with {host} port {port}: {source}")]
    Handshake {
        host: String,
        port: u16,
        #[source]
        source: hyper::Error,
    },
    #[error("building the request: {0}")]
    Build(#[source] hyper::http::Error),
    #[error("Host header: {0}")]
    HostHeader(#[source] hyper::header::InvalidHeaderValue),
    #[error("request failed: {0}")]
    Request(#[source] hyper::Error),
    #[error("reading the response: {0}")]
    Response(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("no answer within {} s (timeout)", .0.as_secs_f64())]
    Timeout(Duration),
}

/// The answer to one request.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    /// `Retry-After` (seconds or a date), when the server sent one.
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: Bytes,
}

struct Connection {
    sender: SendRequest<Full<Bytes>>,
    task: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) struct HttpClient {
    endpoint: Endpoint,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// The HTTP proxy requests go through, if any.
    proxy: Option<Proxy>,
    timeout: Duration,
    conn: Option<Connection>,
    /// A request was started and its answer not read: its caller gave up on it (the future
    /// was dropped), so the connection is in an unknown state.
    in_flight: bool,
    /// Connections opened so far.
    pub(crate) connects: u64,
}

impl HttpClient {
    pub(crate) fn new(
        endpoint: Endpoint,
        tls: Option<Arc<ClientConfig>>,
        proxy: Option<Proxy>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let tls = match tls {
            Some(config) => {
                let name = ServerName::try_from(endpoint.host.clone()).map_err(|source| {
                    ClientError::ServerName {
                        host: endpoint.host.clone(),
                        source,
                    }
                })?;
                Some((TlsConnector::from(config), name))
            }
            None => None,
        };
        Ok(Self {
            endpoint,
            tls,
            proxy,
            timeout,
            conn: None,
            in_flight: false,
            connects: 0,
        })
    }

    /// POSTs `body` to the endpoint; any error (connect, TLS, I/O, timeout) closes the
    /// connection. `encoding` is the Content-Encoding of the body, if any.
    pub(crate) async fn post(
        &mut self,
        headers: &HeaderMap,
        body: Vec<u8>,
        encoding: Option<&'static str>,
    ) -> Result<Response, ClientError> {
        if std::mem::replace(&mut self.in_flight, true) {
            self.conn = None;
        }
        let timeout = self.timeout;
        let result = tokio::time::timeout(timeout, self.exchange(headers, body, encoding)).await;
        self.in_flight = false;
        match result {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(ClientError::Timeout(timeout))
            }
        }
    }

    async fn exchange(
        &mut self,
        headers: &HeaderMap,
        body: Vec<u8>,
        encoding: Option<&'static str>,
    ) -> Result<Response, ClientError> {
        let reusable = match self.conn.as_mut() {
            Some(c) => c.sender.ready().await.is_ok(),
            None => false,
        };
        if !reusable {
            self.conn = None;
            self.conn = Some(self.connect().await?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        // Plain HTTP through a proxy: the whole URL in the request line, for the proxy.
        let proxied = self.proxy.as_ref().filter(|_| self.tls.is_none());
        let target = match proxied {
            Some(_) => format!("http://{}{}", self.endpoint.authority, self.endpoint.path),
            None => self.endpoint.path.clone(),
        };
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(target)
            .body(Full::new(Bytes::from(body)))
            .map_err(ClientError::Build)?;
        let h = req.headers_mut();
        h.extend(headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(auth) = proxied.and_then(|p| p.authorization.clone()) {
            h.insert(PROXY_AUTHORIZATION, auth);
        }
        h.insert(
            HOST,
            HeaderValue::from_str(&self.endpoint.authority).map_err(ClientError::HostHeader)?,
        );
        if let Some(enc) = encoding {
            h.insert(CONTENT_ENCODING, HeaderValue::from_static(enc));
        }
        let resp = conn
            .sender
            .send_request(req)
            .await
            .map_err(ClientError::Request)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| super::status::parse_retry_after(v, std::time::SystemTime::now()));
        let body = Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(ClientError::Response)?
            .to_bytes();
        Ok(Response {
            status,
            retry_after,
            body,
        })
    }

    async fn connect(&mut self) -> Result<Connection, ClientError> {
        let (host, port) = (self.endpoint.host.as_str(), self.endpoint.port);
        let mut tcp =
            match &self.proxy {
                Some(proxy) => TcpStream::connect((proxy.host.as_str(), proxy.port))
                    .await
                    .map_err(|source| ClientError::ProxyConnect {
                        proxy: proxy.display.clone(),
                        source,
                    })?,
                None => TcpStream::connect((host, port)).await.map_err(|source| {
                    ClientError::Connect {
                        host: host.to_string(),
                        port,
                        source,
                    }
                })?,
            };
        let _ = tcp.set_nodelay(true);
        if let (Some(proxy), Some(_)) = (&self.proxy, &self.tls) {
            proxy
                .tunnel(&mut tcp, &self.endpoint)
                .await
                .map_err(|source| ClientError::Tunnel {
                    host: host.to_string(),
                    port,
                    proxy: proxy.display.clone(),
                    source,
                })?;
        }
        let io: Box<dyn Io> = match &self.tls {
            Some((connector, name)) => Box::new(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|source| ClientError::Tls {
                        host: host.to_string(),
                        port,
                        source,
                    })?,
            ),
            None => Box::new(tcp),
        };
        let (sender, conn) =
            http1::handshake(TokioIo::new(io))
                .await
                .map_err(|source| ClientError::Handshake {
                    host: host.to_string(),
                    port,
                    source,
                })?;
        let task = tokio::spawn(async move {
            if let Err(e) = conn.await {
                log::debug!("http sink connection ended: {e}");
            }
        });
        self.connects += 1;
        Ok(Connection { sender, task })
    }
}
