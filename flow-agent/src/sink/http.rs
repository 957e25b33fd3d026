//! http: NDJSON batches (Vector's and Fluent Bit's http sources, any collector taking JSON
//! lines) or the Elasticsearch `_bulk` API, over HTTP/1.1 or HTTPS, optionally gzipped. The
//! [`transport::HttpTransport`] sends; the delivery worker queues, buffers and retries.
use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use serde::{Deserialize, Serialize};

use super::{delivery, Sink, SinkError, SinkStats};
use crate::encode::Format;

mod auth;
mod body;
mod bulk;
mod client;
mod endpoint;
mod identity;
mod proxy;
mod secrets;
mod settled;
mod status;
#[cfg(test)]
mod tests;
mod tls;
pub(crate) mod transport;

pub(crate) use endpoint::Endpoint;
pub(crate) use proxy::Proxy;

/// How records are framed into a request body.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HttpMode {
    /// One JSON document per line, every line newline-terminated.
    #[default]
    Ndjson,
    /// Elasticsearch `_bulk`: a `create` action line before each document.
    ElasticsearchBulk,
}

/// `[outputs.http]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HttpConfig {
    /// `http://` or `https://` URL the batches are POSTed to.
    pub(crate) url: String,
    pub(crate) mode: HttpMode,
    /// Index or data stream named in each `_bulk` action line; without it the URL must name
    /// one (`/<index>/_bulk`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) index: Option<String>,
    /// Extra request headers (e.g. `Authorization`). Their values are never logged.
    pub(crate) headers: BTreeMap<String, String>,
    /// HTTP basic authentication; both or neither.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) password: Option<String>,
    /// Header values read from files (or systemd credentials: a name without `/`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) header_files: BTreeMap<String, PathBuf>,
    /// The password read from a file (or a systemd credential).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) password_file: Option<PathBuf>,
    /// Compress request bodies (`Content-Encoding: gzip`).
    pub(crate) gzip: bool,
    /// Seconds one request may take, connecting included.
    pub(crate) timeout: u64,
    /// PEM file of the CA certificates that verify an HTTPS server; default: the system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Verify the HTTPS server's certificate and name. Turning it off is for tests only.
    pub(crate) tls_verify: bool,
    /// PEM file of the client certificate (and its chain) shown to a server that asks for
    /// one (mutual TLS); with `client_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key, or a systemd credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_key: Option<PathBuf>,
    /// HTTP proxy (`http://[USER:PASSWORD@]HOST:PORT`) the requests go through; empty: none.
    /// Absent: `https_proxy`/`http_proxy` of the environment, with `no_proxy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) proxy: Option<String>,
    /// Most records in one request.
    pub(crate) max_batch_records: usize,
    /// Most bytes of one request body before compression; a single larger record still goes
    /// alone.
    pub(crate) max_batch_bytes: usize,
    pub(crate) delivery: delivery::DeliveryConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            mode: HttpMode::Ndjson,
            index: None,
            headers: BTreeMap::new(),
            user: None,
            password: None,
            header_files: BTreeMap::new(),
            password_file: None,
            gzip: false,
            timeout: 30,
            ca_file: None,
            tls_verify: true,
            client_cert: None,
            client_key: None,
            proxy: None,
            max_batch_records: 500,
            max_batch_bytes: 4 << 20,
            delivery: delivery::DeliveryConfig::default(),
        }
    }
}

impl HttpConfig {
    /// The credentials this output would send in clear text: on an `http://` URL, basic
    /// authentication, headers whose name says they carry a credential (`Authorization`,
    /// `Cookie`, `X-Api-Key`, ...) and query parameters named like one (`api_key=`). Empty for
    /// `https://` (and for a URL that does not parse: that is an error of its own).
    pub fn cleartext_credentials(&self) -> Vec<String> {
        use crate::config::redact::looks_secret;
        let Ok(endpoint) = Endpoint::parse(&self.url) else {
            return Vec::new();
        };
        if endpoint.tls {
            return Vec::new();
        }
        let mut found = Vec::new();
        if self.password.is_some() || self.password_file.is_some() {
            found.push("the basic authentication password".to_string());
        }
        found.extend(
            self.headers
                .keys()
                .chain(self.header_files.keys())
                .filter(|name| looks_secret(name))
                .map(|name| format!("header {name}")),
        );
        if let Some((_, query)) = endpoint.path.split_once('?') {
            found.extend(
                query
                    .split('&')
                    .map(|p| p.split('=').next().unwrap_or(p))
                    .filter(|name| looks_secret(name))
                    .map(|name| format!("query parameter {name}")),
            );
        }
        found
    }

    /// TLS options that cannot apply to `endpoint`: set on an `http://` URL, or a client
    /// certificate without its key (or the reverse). Checked by check-config and at start.
    pub(crate) fn tls_options_problem(&self, endpoint: &Endpoint) -> Option<String> {
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Some(identity::IdentityError::Half.to_string());
        }
        let tls_only = [
            ("ca_file", self.ca_file.is_some()),
            ("tls_verify", !self.tls_verify),
            ("client_cert", self.client_cert.is_some()),
        ];
        let (option, _) = tls_only.iter().find(|(_, set)| *set && !endpoint.tls)?;
        Some(format!("{option} applies to https urls only"))
    }

    /// The warning about [`HttpConfig::cleartext_credentials`]; None when there are none.
    /// Logged when the output starts, printed by `check-config`.
    pub(crate) fn cleartext_warning(&self) -> Option<String> {
        let found = self.cleartext_credentials();
        let endpoint = Endpoint::parse(&self.url).ok()?;
        (!found.is_empty()).then(|| {
            format!(
                "INSECURE: credentials in clear text: {} sent to http://{} unencrypted, readable and reusable by anyone on the network path; use an https:// url",
                found.join(", "),
                endpoint.authority
            )
        })
    }
}

/// Validates the configuration, builds the transport and starts its delivery worker.
pub(crate) fn open(
    config: &HttpConfig,
    format: Format,
    stats: Arc<SinkStats>,
) -> Result<Box<dyn Sink>, SinkError> {
    let transport = transport::HttpTransport::new(config, format)?;
    log::info!("http sink: {}", delivery::Transport::describe(&transport));
    if let Some(warning) = config.cleartext_warning() {
        log::warn!("http sink: {warning}");
    }
    delivery::spawn(Box::new(transport), &config.delivery, stats)
}

fn config_error(message: impl std::fmt::Display) -> SinkError {
    SinkError::Config(format!("http: {message}"))
}
