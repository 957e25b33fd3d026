//! One connection to the syslog server, of any transport, and what the kernel can tell about
//! bytes that may not have reached the receiving program.
use std::{
    io,
    os::fd::{AsRawFd, RawFd},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket, UnixDatagram, UnixStream},
};
use tokio_rustls::client::TlsStream;

use super::{
    config::{Resolved, TransportKind},
    tls::Tls,
};

/// Kept for TCP when the kernel does not report the peer's window (before Linux 5.4): a
/// generous guess at what a receiver can hold unread.
const UNKNOWN_PEER_WINDOW: u64 = 4 << 20;

/// What a server may have read from its socket but not yet stored when it stops: servers
/// read in chunks (rsyslog's imtcp up to 128 KiB at a time) and drop the unparsed rest on
/// SIGTERM. Seen in tests: 15 messages (37 KB) lost beyond the kernel's unread bytes.
const SERVER_READ_AHEAD: u64 = 256 << 10;

enum Socket {
    UnixDgram(UnixDatagram),
    Udp(UdpSocket),
    UnixStream(UnixStream),
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

pub(crate) struct Connection {
    socket: Socket,
    /// Largest receive window the TCP peer advertised: a bound on what it may hold unread.
    peer_window_max: u64,
}

fn dgram_sndbuf(fd: RawFd, want: usize) {
    let v = want.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt with a valid int option value on a socket we own. Failure only
    // leaves the default size; EMSGSIZE then says which messages do not fit.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

impl Connection {
    pub(crate) async fn connect(cfg: &Resolved, tls: Option<&Tls>) -> io::Result<Self> {
        // Room for the longest message plus the kernel's per-datagram overhead.
        let dgram_buf = cfg.max_message_bytes * 2 + 4096;
        let socket = match cfg.transport {
            TransportKind::Unix => {
                let s = UnixDatagram::unbound()?;
                dgram_sndbuf(s.as_raw_fd(), dgram_buf);
                s.connect(&cfg.address)?;
                Socket::UnixDgram(s)
            }
            TransportKind::UnixStream => {
                Socket::UnixStream(UnixStream::connect(&cfg.address).await?)
            }
            TransportKind::Udp => {
                let target = tokio::net::lookup_host(&cfg.address)
                    .await?
                    .next()
                    .ok_or_else(|| io::Error::other("the name resolved to no address"))?;
                let bind = if target.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let s = UdpSocket::bind(bind).await?;
                dgram_sndbuf(s.as_raw_fd(), dgram_buf);
                s.connect(target).await?;
                Socket::Udp(s)
            }
            TransportKind::Tcp => {
                let s = TcpStream::connect(&cfg.address).await?;
                s.set_nodelay(true)?;
                Socket::Tcp(s)
            }
            TransportKind::Tls => {
                let tls = tls.ok_or_else(|| io::Error::other("TLS is not configured"))?;
                let s = TcpStream::connect(&cfg.address).await?;
                s.set_nodelay(true)?;
                let stream = tls.connector.connect(tls.server_name.clone(), s).await?;
                Socket::Tls(Box::new(stream))
            }
        };
        Ok(Self {
            socket,
            peer_window_max: 0,
        })
    }

    fn fd(&self) -> RawFd {
        match &self.socket {
            Socket::UnixDgram(s) => s.as_raw_fd(),
            Socket::Udp(s) => s.as_raw_fd(),
            Socket::UnixStream(s) => s.as_raw_fd(),
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Tls(s) => s.get_ref().0.as_raw_fd(),
        }
    }

    /// Writes bytes to a stream (and flushes TLS).
    pub(crate) async fn write_stream(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.socket {
            Socket::UnixStream(s) => s.write_all(bytes).await,
            Socket::Tcp(s) => s.write_all(bytes).await,
            Socket::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Socket::UnixDgram(_) | Socket::Udp(_) => Err(io::Error::other("not a stream")),
        }
    }

    /// Sends one datagram.
    pub(crate) async fn send_datagram(&mut self, message: &[u8]) -> io::Result<()> {
        let sent = match &mut self.socket {
            Socket::UnixDgram(s) => s.send(message).await?,
            Socket::Udp(s) => s.send(message).await?,
            _ => return Err(io::Error::other("not a datagram socket")),
        };
        if sent != message.len() {
            return Err(io::Error::other(format!(
                "datagram cut to {sent} of {} bytes",
                message.len()
            )));
        }
        Ok(())
    }

    /// Whether the connection still works, without waiting: a stream the server closed or
    /// reset, or a datagram socket with a pending error (ICMP port unreachable), does not.
    pub(crate) async fn check_alive(&mut self) -> Result<(), ConnectionLost> {
        let mut buf = [0u8; 512];
        let read = match &mut self.socket {
            Socket::UnixDgram(s) => return pending_error(s.take_error()),
            Socket::Udp(s) => return pending_error(s.take_error()),
            Socket::UnixStream(s) => poll_read_once(s.read(&mut buf)).await,
            Socket::Tcp(s) => poll_read_once(s.read(&mut buf)).await,
            Socket::Tls(s) => poll_read_once(s.read(&mut buf)).await,
        };
        match read {
            // Nothing to read: the normal state of a syslog connection.
            None => Ok(()),
            Some(Ok(0)) => Err(ConnectionLost::Closed),
            // A syslog server sends nothing; whatever it is, it does not matter.
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(ConnectionLost::Broke(e)),
        }
    }

    /// Bytes already written that may not have reached the receiving program's storage:
    /// those its kernel has not acknowledged plus what it may hold unread (TCP: up to the
    /// largest window it advertised; unix sockets: what it has not read, exactly), and for
    /// streams what it may have read ahead ([`SERVER_READ_AHEAD`]). 0 for UDP, where nothing
    /// can be known.
    pub(crate) fn unconfirmed_bytes(&mut self) -> u64 {
        let fd = self.fd();
        match &self.socket {
            Socket::Udp(_) => 0,
            Socket::UnixDgram(_) => outq(fd),
            Socket::UnixStream(_) => outq(fd) + SERVER_READ_AHEAD,
            Socket::Tcp(_) | Socket::Tls(_) => {
                let window = peer_window(fd).unwrap_or(UNKNOWN_PEER_WINDOW);
                self.peer_window_max = self.peer_window_max.max(window);
                outq(fd) + self.peer_window_max + SERVER_READ_AHEAD
            }
        }
    }
}

/// Polls a read once: None when it would wait.
async fn poll_read_once<F: std::future::Future<Output = io::Result<usize>>>(
    read: F,
) -> Option<io::Result<usize>> {
    tokio::select! {
        biased;
        r = read => Some(r),
        _ = std::future::ready(()) => None,
    }
}

fn pending_error(e: io::Result<Option<io::Error>>) -> Result<(), ConnectionLost> {
    match e {
        Ok(None) => Ok(()),
        Ok(Some(e)) | Err(e) => Err(ConnectionLost::Reported(e)),
    }
}

/// Why a connection no longer works.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectionLost {
    #[error("the server closed the connection")]
    Closed,
    #[error("the connection broke: {0}")]
    Broke(#[source] io::Error),
    #[error("the socket reported: {0}")]
    Reported(#[source] io::Error),
}

/// Bytes in the socket's send queue: TCP, not yet acknowledged by the peer; unix sockets,
/// not yet read by the peer.
fn outq(fd: RawFd) -> u64 {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (= SIOCOUTQ) writes one int.
    let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
    if r == 0 {
        n.max(0) as u64
    } else {
        0
    }
}

/// The receive window the TCP peer advertised last (tcpi_snd_wnd, Linux 5.4+).
fn peer_window(fd: RawFd) -> Option<u64> {
    // SAFETY: all-zero is a valid tcp_info; getsockopt fills at most `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_snd_wnd) + 4;
    (r == 0 && len as usize >= needed).then_some(u64::from(info.tcpi_snd_wnd))
}
