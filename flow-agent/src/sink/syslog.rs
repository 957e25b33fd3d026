//! syslog: messages over a unix socket (datagram or stream), UDP, TCP or TCP with TLS, with
//! RFC 6587 octet-counting or newline framing on streams. Unix sockets get the local form
//! syslog(3) writes (`<PRI>Mmm dd hh:mm:ss TAG[PID]: `, what journald and rsyslog parse on
//! /dev/log), network transports RFC 5424. Each record becomes the MSG of one message; the
//! header is written when the record is handed over, so a message that waited in the disk
//! buffer keeps its time. See docs/sink-syslog.md.
use std::{
    sync::{atomic::Ordering::Relaxed, Arc},
    time::SystemTime,
};

use super::{delivery, CloseFuture, Sink, SinkError, SinkStats};
use crate::encode::Format;

mod config;
mod conn;
mod message;
mod shorten;
mod tls;
mod transport;

pub(crate) use config::{Framing, Oversize, SyslogConfig, SyslogConfigError};
use delivery::LogLimiter;
use message::Header;

/// Starts a syslog output: checks the configuration (and reads TLS files) now, connects
/// lazily in the delivery worker.
pub(crate) fn open(
    config: &SyslogConfig,
    format: Format,
    stats: Arc<SinkStats>,
) -> Result<Box<dyn Sink>, SinkError> {
    let resolved = config.resolve()?;
    let tls = resolved.tls.as_ref().map(tls::configure).transpose()?;
    let hostname = match &config.hostname {
        Some(h) => h.clone(),
        None => message::sanitize_hostname(
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim(),
        ),
    };
    let header = if resolved.transport.is_local() {
        Header::local(resolved.pri, &config.app_name, std::process::id())
    } else {
        Header::rfc5424(
            resolved.pri,
            &hostname,
            &config.app_name,
            std::process::id(),
            &config.msgid,
        )
    };
    let newline_framing = resolved.framing == Some(Framing::Newline);
    let max_message_bytes = resolved.max_message_bytes;
    let transport = transport::SyslogTransport::new(resolved, tls);
    let inner = delivery::spawn(Box::new(transport), &config.delivery, stats.clone())?;
    Ok(Box::new(SyslogSink {
        inner,
        header,
        newline_framing,
        max_message_bytes,
        oversize: config.oversize,
        format,
        stats,
        message: Vec::with_capacity(4096),
        limiter: LogLimiter::default(),
        shortened: LogLimiter::default(),
    }))
}

struct SyslogSink {
    inner: Box<dyn Sink>,
    header: Header,
    newline_framing: bool,
    max_message_bytes: usize,
    oversize: Oversize,
    /// What the records are: `oversize = "truncate"` keeps them valid records of it.
    format: Format,
    stats: Arc<SinkStats>,
    message: Vec<u8>,
    limiter: LogLimiter,
    /// Warnings about records shortened to fit.
    shortened: LogLimiter,
}

impl SyslogSink {
    fn drop_record(&mut self, why: String) {
        self.stats.dropped.fetch_add(1, Relaxed);
        let name = &self.stats.name;
        self.limiter
            .warn(1, || format!("output {name}: record dropped: {why}"));
    }
}

impl Sink for SyslogSink {
    fn submit(&mut self, record: &[u8]) {
        if self.newline_framing && record.contains(&b'\n') {
            return self.drop_record(
                "it contains a line feed, which newline framing cannot carry (use octet-counting)"
                    .into(),
            );
        }
        self.message.clear();
        self.header.write(SystemTime::now(), &mut self.message);
        let header = self.message.len();
        self.message.extend_from_slice(record);
        if self.message.len() > self.max_message_bytes {
            let long = self.message.len();
            let max = self.max_message_bytes;
            let shortened = match self.oversize {
                Oversize::Drop => None,
                Oversize::Truncate => {
                    shorten::shorten(record, self.format, max.saturating_sub(header))
                }
            };
            let Some(shortened) = shortened else {
                let how = match self.oversize {
                    Oversize::Drop => "",
                    Oversize::Truncate => {
                        " and shortening its values cannot make it fit (too many fields)"
                    }
                };
                return self.drop_record(format!(
                    "message of {long} bytes is longer than max_message_bytes ({max}){how}"
                ));
            };
            self.message.truncate(header);
            self.message.extend_from_slice(&shortened);
            let (name, short) = (&self.stats.name, self.message.len());
            self.shortened.warn(1, || {
                format!("output {name}: a message of {long} bytes was shortened to {short} bytes (max_message_bytes {max}): its longest values end with \"…\", the record is marked record_truncated")
            });
        }
        self.inner.submit(&self.message);
    }

    fn flush(&mut self) {
        self.inner.flush();
    }

    fn close(self: Box<Self>) -> CloseFuture {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests;
