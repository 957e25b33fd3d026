//! The syslog [`Transport`]: frames finished messages and writes them to the connection,
//! reconnecting after errors.
//!
//! Plain syslog has no acknowledgements: a write that succeeded may still be lost when the
//! server stops with bytes unread. So the transport keeps the messages written last that may
//! not have reached the server program yet (as far as the kernel can tell, see
//! [`Connection::unconfirmed_bytes`]) and writes them again, first, on the next connection.
use std::collections::VecDeque;

use super::{config::Resolved, conn::Connection, message::frame, tls::Tls};
use crate::sink::delivery::{SendFuture, Transport, TransportError};

/// Upper bound on what is kept for resending, whatever the kernel reports.
const MAX_UNCONFIRMED_BYTES: u64 = 64 << 20;

pub(crate) struct SyslogTransport {
    cfg: Resolved,
    tls: Option<Tls>,
    conn: Option<Connection>,
    /// A send was abandoned half-way (timeout, close): its connection must not be reused.
    in_send: bool,
    /// Framed messages that may not have reached the server program, oldest first.
    unconfirmed: VecDeque<Vec<u8>>,
    unconfirmed_bytes: u64,
    /// The connection they were written on was lost: write them again first.
    resend: bool,
    buf: Vec<u8>,
}

impl SyslogTransport {
    pub(crate) fn new(cfg: Resolved, tls: Option<Tls>) -> Self {
        Self {
            cfg,
            tls,
            conn: None,
            in_send: false,
            unconfirmed: VecDeque::new(),
            unconfirmed_bytes: 0,
            resend: false,
            buf: Vec::new(),
        }
    }

    fn lost_connection(&mut self) {
        self.conn = None;
        self.resend = !self.unconfirmed.is_empty();
    }

    fn remember(&mut self, framed: Vec<u8>) {
        self.unconfirmed_bytes += framed.len() as u64;
        self.unconfirmed.push_back(framed);
    }

    /// Keeps only the newest messages that cover `keep` bytes.
    fn trim(&mut self, keep: u64) {
        let keep = keep.min(MAX_UNCONFIRMED_BYTES);
        while let Some(front) = self.unconfirmed.front() {
            let rest = self.unconfirmed_bytes - front.len() as u64;
            if rest < keep {
                break;
            }
            self.unconfirmed_bytes = rest;
            self.unconfirmed.pop_front();
        }
    }

    /// Makes sure there is a working connection; afterwards `resend` says whether the
    /// unconfirmed messages must go first.
    async fn connect(&mut self) -> Result<(), TransportError> {
        if std::mem::replace(&mut self.in_send, true) {
            self.lost_connection();
        }
        if let Some(conn) = self.conn.as_mut() {
            if let Err(why) = conn.check_alive().await {
                log::info!("syslog {}: {why}; reconnecting", self.describe());
                self.lost_connection();
            }
        }
        if self.conn.is_none() {
            let conn = Connection::connect(&self.cfg, self.tls.as_ref())
                .await
                .map_err(|e| TransportError::Retry(format!("connecting: {e}")))?;
            if self.resend {
                log::info!(
                    "syslog {}: connected; first resending {} messages that may not have reached the server before the connection was lost",
                    self.describe(),
                    self.unconfirmed.len()
                );
            }
            self.conn = Some(conn);
        }
        Ok(())
    }

    async fn send_datagrams(&mut self, records: &[Vec<u8>]) -> Result<usize, TransportError> {
        self.connect().await?;
        let resend: Vec<Vec<u8>> = if self.resend {
            self.unconfirmed.iter().cloned().collect()
        } else {
            Vec::new()
        };
        let conn = self.conn.as_mut().expect("connected above");
        let mut failed = None;
        for m in &resend {
            if let Err(e) = conn.send_datagram(m).await {
                failed = Some(e);
                break;
            }
        }
        let mut too_long = 0;
        let mut sent = Vec::new();
        if failed.is_none() {
            for r in records {
                match conn.send_datagram(r).await {
                    Ok(()) => sent.push(r.clone()),
                    Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => too_long += 1,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        let keep = conn.unconfirmed_bytes();
        if let Some(e) = failed {
            self.lost_connection();
            return Err(TransportError::Retry(format!("sending: {e}")));
        }
        self.resend = false;
        for m in sent {
            self.remember(m);
        }
        self.trim(keep);
        Ok(too_long)
    }

    async fn send_stream(&mut self, records: &[Vec<u8>]) -> Result<(), TransportError> {
        self.connect().await?;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        if self.resend {
            for m in &self.unconfirmed {
                buf.extend_from_slice(m);
            }
        }
        let resent = buf.len();
        let mut ends = Vec::with_capacity(records.len());
        for r in records {
            frame(self.cfg.framing, r, &mut buf);
            ends.push(buf.len());
        }
        let conn = self.conn.as_mut().expect("connected above");
        let written = conn
            .write_stream(&buf)
            .await
            .map(|()| conn.unconfirmed_bytes());
        let result = match written {
            Ok(keep) => {
                self.resend = false;
                let mut start = resent;
                for end in ends {
                    self.remember(buf[start..end].to_vec());
                    start = end;
                }
                self.trim(keep);
                Ok(())
            }
            Err(e) => {
                self.lost_connection();
                Err(TransportError::Retry(format!("writing: {e}")))
            }
        };
        self.buf = buf;
        result
    }
}

impl Transport for SyslogTransport {
    fn send<'a>(&'a mut self, records: &'a [Vec<u8>]) -> SendFuture<'a> {
        Box::pin(async move {
            let datagram = !self.cfg.transport.is_stream();
            let result = if datagram {
                self.send_datagrams(records).await.and_then(|too_long| {
                    if too_long == 0 {
                        Ok(())
                    } else {
                        Err(TransportError::Rejected {
                            count: too_long,
                            reason: "datagram longer than the socket allows (EMSGSIZE)".into(),
                        })
                    }
                })
            } else {
                self.send_stream(records).await
            };
            self.in_send = false;
            result
        })
    }

    fn max_batch(&self) -> usize {
        1000
    }

    fn describe(&self) -> String {
        format!("{} {}", self.cfg.transport.name(), self.cfg.address)
    }
}
