//! `[outputs.syslog]`: every option, its default and its validation (docs/sink-syslog.md).
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::message::{check_field, FieldError};
use crate::sink::{delivery::DeliveryConfig, SinkError};

/// Where `unix` and `unix-stream` send when no address is set.
pub(crate) const DEFAULT_UNIX_ADDRESS: &str = "/dev/log";
pub(crate) const DEFAULT_APP_NAME: &str = "flow-agent";
pub(crate) const DEFAULT_MSGID: &str = "flow";
pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: usize = 65536;
/// Largest UDP payload over IPv4 (65535 - 8 UDP - 20 IP header bytes).
pub(crate) const UDP_MAX_PAYLOAD: usize = 65507;
/// The system's CA bundle (Debian's ca-certificates), used when `ca_file` is not set.
pub(crate) const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum TransportKind {
    /// Unix datagram socket, like /dev/log.
    Unix,
    UnixStream,
    Udp,
    Tcp,
    Tls,
}

impl TransportKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Unix => "unix",
            Self::UnixStream => "unix-stream",
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }

    pub(crate) fn is_stream(self) -> bool {
        matches!(self, Self::UnixStream | Self::Tcp | Self::Tls)
    }

    /// A unix socket: the local syslog form (RFC 3164 as syslog(3) writes it), not RFC 5424.
    pub(crate) fn is_local(self) -> bool {
        matches!(self, Self::Unix | Self::UnixStream)
    }
}

/// How messages are delimited on a stream (RFC 6587).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Framing {
    /// `LENGTH SP MESSAGE`.
    OctetCounting,
    /// `MESSAGE LF`; records with a line feed are refused.
    Newline,
}

/// What happens to a message longer than the limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Oversize {
    /// Not sent; counted as dropped and logged.
    #[default]
    Drop,
    /// Its longest values shortened (ending with `…`) until it fits, the record marked
    /// `record_truncated` and still valid JSON or XML (sink/syslog/shorten.rs); dropped like
    /// `Drop` when even that cannot make it fit.
    Truncate,
}

/// A facility or severity: a name or its number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Code {
    Number(u8),
    Name(String),
}

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

impl Code {
    fn resolve(
        &self,
        what: &'static str,
        names: &[&str],
        aliases: &[(&str, u8)],
    ) -> Result<u8, SyslogConfigError> {
        match self {
            Code::Number(n) if usize::from(*n) < names.len() => Ok(*n),
            Code::Number(n) => Err(SyslogConfigError::OutOfRange {
                what,
                code: *n,
                max: names.len() - 1,
            }),
            Code::Name(s) => {
                let lower = s.to_ascii_lowercase();
                names
                    .iter()
                    .position(|n| *n == lower)
                    .map(|i| i as u8)
                    .or_else(|| aliases.iter().find(|(a, _)| *a == lower).map(|(_, v)| *v))
                    .ok_or_else(|| SyslogConfigError::UnknownName {
                        what,
                        name: s.clone(),
                        names: names.join(", "),
                    })
            }
        }
    }

    pub(crate) fn facility(&self) -> Result<u8, SyslogConfigError> {
        self.resolve("facility", &FACILITIES, &[("security", 4)])
    }

    pub(crate) fn severity(&self) -> Result<u8, SyslogConfigError> {
        let aliases = [
            ("emergency", 0),
            ("panic", 0),
            ("critical", 2),
            ("error", 3),
            ("warn", 4),
            ("informational", 6),
        ];
        self.resolve("severity", &SEVERITIES, &aliases)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SyslogConfig {
    /// `unix` (datagram), `unix-stream`, `udp`, `tcp` or `tls`. Default: `unix` when the
    /// address is empty or a path, else `tcp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) transport: Option<TransportKind>,
    /// Socket path (unix) or `host:port`.
    pub(crate) address: String,
    /// Stream framing; default `octet-counting` for tcp and tls, `newline` for unix-stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) framing: Option<Framing>,
    pub(crate) facility: Code,
    pub(crate) severity: Code,
    pub(crate) app_name: String,
    /// Default: the host's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hostname: Option<String>,
    pub(crate) msgid: String,
    /// PEM CA certificates that verify the server (tls); default the system's bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Name the server certificate must carry (tls); default the host of `address`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_name: Option<String>,
    /// PEM client certificate chain and key, for servers that ask for one (tls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_key: Option<PathBuf>,
    /// Longest message (header and record, without framing); default 65536, for udp 65507
    /// (its most).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_message_bytes: Option<usize>,
    pub(crate) oversize: Oversize,
    pub(crate) delivery: DeliveryConfig,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        Self {
            transport: None,
            address: String::new(),
            framing: None,
            facility: Code::Name("local0".into()),
            severity: Code::Name("info".into()),
            app_name: DEFAULT_APP_NAME.into(),
            hostname: None,
            msgid: DEFAULT_MSGID.into(),
            ca_file: None,
            server_name: None,
            client_cert: None,
            client_key: None,
            max_message_bytes: None,
            oversize: Oversize::Drop,
            delivery: DeliveryConfig::default(),
        }
    }
}

/// A checked configuration with every default filled in.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub(crate) transport: TransportKind,
    pub(crate) address: String,
    /// None for datagram transports.
    pub(crate) framing: Option<Framing>,
    pub(crate) pri: u8,
    pub(crate) max_message_bytes: usize,
    pub(crate) tls: Option<TlsOptions>,
}

#[derive(Clone, Debug)]
pub(crate) struct TlsOptions {
    pub(crate) ca_file: PathBuf,
    pub(crate) server_name: String,
    pub(crate) client_cert: Option<(PathBuf, PathBuf)>,
}

impl SyslogConfig {
    pub(crate) fn transport_kind(&self) -> TransportKind {
        self.transport.unwrap_or(
            if self.address.is_empty() || self.address.starts_with('/') {
                TransportKind::Unix
            } else {
                TransportKind::Tcp
            },
        )
    }

    pub(crate) fn resolve(&self) -> Result<Resolved, SinkError> {
        let bad = |m: String| SinkError::Config(format!("syslog: {m}"));
        let transport = self.transport_kind();
        let unix = matches!(transport, TransportKind::Unix | TransportKind::UnixStream);
        let address = match (unix, self.address.is_empty()) {
            (true, true) => DEFAULT_UNIX_ADDRESS.to_string(),
            (true, false) if !self.address.starts_with('/') => {
                return Err(bad(format!(
                    "transport {} needs an absolute socket path as address, not {:?}",
                    transport.name(),
                    self.address
                )))
            }
            (false, true) => {
                return Err(bad(format!(
                    "transport {} needs an address (host:port)",
                    transport.name()
                )))
            }
            _ => self.address.clone(),
        };
        if !unix {
            host_port(&address)?;
        }
        let framing = if transport.is_stream() {
            Some(
                self.framing
                    .unwrap_or(if transport == TransportKind::UnixStream {
                        Framing::Newline
                    } else {
                        Framing::OctetCounting
                    }),
            )
        } else if let Some(f) = self.framing {
            return Err(bad(format!(
                "framing {f:?} applies to stream transports (unix-stream, tcp, tls), not {}: each datagram is one message",
                transport.name()
            )));
        } else {
            None
        };
        let facility = self.facility.facility()?;
        let severity = self.severity.severity()?;
        check_field("app_name", &self.app_name, 48).map_err(SyslogConfigError::from)?;
        if let Some(c) = self.app_name.chars().find(|c| matches!(c, '[' | ']' | ':')) {
            if transport.is_local() {
                return Err(bad(format!(
                    "app_name {:?} has {c:?}, which ends the tag in the local syslog form that transport {} writes (TAG[PID]: MSG)",
                    self.app_name,
                    transport.name()
                )));
            }
        }
        check_field("msgid", &self.msgid, 32).map_err(SyslogConfigError::from)?;
        if let Some(h) = &self.hostname {
            check_field("hostname", h, 255).map_err(SyslogConfigError::from)?;
        }
        let limit = if transport == TransportKind::Udp {
            UDP_MAX_PAYLOAD
        } else {
            usize::MAX
        };
        let max_message_bytes = self
            .max_message_bytes
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES.min(limit));
        if !(480..=limit).contains(&max_message_bytes) {
            return Err(bad(format!(
                "max_message_bytes {max_message_bytes} must be between 480 and {}",
                if limit == usize::MAX {
                    "any size".to_string()
                } else {
                    limit.to_string()
                }
            )));
        }
        let tls = if transport == TransportKind::Tls {
            let host = host_port(&address)?.0;
            let client_cert = match (&self.client_cert, &self.client_key) {
                (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                (None, None) => None,
                _ => return Err(bad("client_cert and client_key go together".into())),
            };
            Some(TlsOptions {
                ca_file: self
                    .ca_file
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_FILE)),
                server_name: self.server_name.clone().unwrap_or(host),
                client_cert,
            })
        } else {
            let tls_only = [
                ("ca_file", self.ca_file.is_some()),
                ("server_name", self.server_name.is_some()),
                ("client_cert", self.client_cert.is_some()),
                ("client_key", self.client_key.is_some()),
            ];
            if let Some((name, _)) = tls_only.iter().find(|(_, set)| *set) {
                return Err(bad(format!(
                    "{name} applies to transport tls only, this output uses {}",
                    transport.name()
                )));
            }
            None
        };
        Ok(Resolved {
            transport,
            address,
            framing,
            pri: facility * 8 + severity,
            max_message_bytes,
            tls,
        })
    }
}

/// Why a syslog option's value is not one (a [`SinkError::Syslog`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SyslogConfigError {
    #[error("{what} {code} is out of range 0-{max}")]
    OutOfRange {
        what: &'static str,
        code: u8,
        max: usize,
    },
    #[error("unknown {what} {name:?}; one of: {names}")]
    UnknownName {
        what: &'static str,
        name: String,
        names: String,
    },
    #[error("address {0:?} is not host:port (IPv6: [addr]:port)")]
    NotHostPort(String),
    #[error(transparent)]
    Field(#[from] FieldError),
}

/// Splits `host:port` (`[v6]:port` for IPv6 literals).
pub(crate) fn host_port(address: &str) -> Result<(String, u16), SyslogConfigError> {
    let err = || SyslogConfigError::NotHostPort(address.into());
    let (host, port) = address.rsplit_once(':').ok_or_else(err)?;
    let port: u16 = port.parse().map_err(|_| err())?;
    let host = match host.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']').ok_or_else(err)?,
        None if host.contains(':') => return Err(err()),
        None => host,
    };
    if host.is_empty() || port == 0 {
        return Err(err());
    }
    Ok((host.to_string(), port))
}
