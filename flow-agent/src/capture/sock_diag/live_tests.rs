//! Tests against the running kernel (need root for setns/unshare and other processes' /proc).
use std::{
    fs,
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::{
        fd::{AsRawFd, FromRawFd},
        unix::fs::MetadataExt,
    },
    path::{Path, PathBuf},
    sync::mpsc,
    time::{Duration, Instant},
};

use super::{
    network_namespaces, socket_owners, tcp_sockets, tcp_sockets_in, tcp_sockets_with_states,
    tcp_state, DiagError, TcpSockInfo, ALL_STATES,
};

/// Client -> server and server -> client payloads: several segments each on loopback.
const N: usize = 100_000;
const M: usize = 30_000;

struct Pair {
    client: TcpStream,
    server: TcpStream,
}

impl Pair {
    fn connect(listener: TcpListener, connect_to: SocketAddr) -> Pair {
        let client = TcpStream::connect(connect_to).unwrap();
        let (server, _) = listener.accept().unwrap();
        Pair { client, server }
    }

    fn on(addr: &str) -> Pair {
        let listener = TcpListener::bind(addr).unwrap();
        let to = listener.local_addr().unwrap();
        Pair::connect(listener, to)
    }

    /// N bytes client -> server, then M back; the reads run beside the writes so neither side
    /// blocks on a full window.
    fn exchange(&self) {
        transfer(&self.client, &self.server, N);
        transfer(&self.server, &self.client, M);
    }

    /// The client's and the server's entries.
    fn find(&self, snap: &[TcpSockInfo]) -> (Option<TcpSockInfo>, Option<TcpSockInfo>) {
        let (local, peer) = (
            self.client.local_addr().unwrap(),
            self.client.peer_addr().unwrap(),
        );
        (find(snap, local, peer), find(snap, peer, local))
    }
}

fn transfer(from: &TcpStream, to: &TcpStream, n: usize) {
    let mut reader = to.try_clone().unwrap();
    std::thread::scope(|scope| {
        let read = scope.spawn(move || {
            let mut got = vec![0u8; n];
            reader.read_exact(&mut got).unwrap();
            got
        });
        (&*from).write_all(&vec![0x5a; n]).unwrap();
        assert!(read.join().unwrap().iter().all(|&b| b == 0x5a));
    });
}

fn find(snap: &[TcpSockInfo], local: SocketAddr, remote: SocketAddr) -> Option<TcpSockInfo> {
    // std reports a dual-stack socket's peers as ::ffff:a.b.c.d; sock_diag as a.b.c.d.
    let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (local, remote) = (canon(local), canon(remote));
    snap.iter()
        .find(|s| s.local == local && s.remote == remote)
        .copied()
}

fn inode(fd: &impl AsRawFd) -> u64 {
    let link = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    super::proc_scan::socket_inode(link.as_os_str().as_encoded_bytes()).unwrap()
}

fn cookie(fd: &impl AsRawFd) -> u64 {
    let mut v = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: the option value points to a live u64 of the length given.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&mut v as *mut u64).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "SO_COOKIE: {}", std::io::Error::last_os_error());
    v
}

fn ns_inode(path: impl AsRef<Path>) -> u64 {
    fs::metadata(path).unwrap().ino()
}

/// Snapshots until `done` holds for (client, server) or 5 s have passed; returns the last pair.
fn wait_for(
    pair: &Pair,
    states: u32,
    done: impl Fn(&TcpSockInfo, &TcpSockInfo) -> bool,
) -> (TcpSockInfo, TcpSockInfo) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let snap = tcp_sockets_with_states(states).unwrap();
        let (c, s) = pair.find(&snap);
        let (c, s) = (
            c.expect("client socket in snapshot"),
            s.expect("server socket"),
        );
        if done(&c, &s) || Instant::now() > deadline {
            return (c, s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Exercises one connection through data, half-close and close, asserting exact counters.
fn check_connection(pair: Pair, family: i32) {
    // The client's endpoints, while it is connected.
    let (local, remote) = (
        pair.client.local_addr().unwrap(),
        pair.client.peer_addr().unwrap(),
    );
    pair.exchange();
    // The last ACKs may be delayed a little: wait for them.
    let (c, s) = wait_for(&pair, super::DEFAULT_STATES, |c, s| {
        c.bytes_acked == N as u64 + 1 && s.bytes_acked == M as u64
    });
    for (info, sock) in [(&c, &pair.client), (&s, &pair.server)] {
        assert_eq!(info.family, family as u16);
        assert_eq!(info.state, tcp_state::ESTABLISHED);
        assert_eq!(info.inode, inode(sock));
        assert_eq!(info.cookie, cookie(sock));
        // SAFETY: plain getter.
        assert_eq!(info.uid, unsafe { libc::geteuid() });
        // Zero on an idle machine; a loaded one can retransmit even on loopback: the socket's
        // own TCP_INFO is the oracle.
        assert_eq!(info.total_retrans, tcp_info_total_retrans(sock));
        assert!(info.rtt_us > 0, "{info:?}");
        assert!(
            info.data_segs_out >= 1 && info.segs_out > info.data_segs_out,
            "{info:?}"
        );
        assert!(
            info.data_segs_in >= 1 && info.segs_in > info.data_segs_in,
            "{info:?}"
        );
    }
    // The connecting side's bytes_acked includes its SYN; the SYN-ACK is not counted on the
    // accepting side, and neither side counts the peer's SYN as received.
    assert_eq!(
        (c.bytes_acked, c.bytes_received, c.bytes_sent),
        (N as u64 + 1, M as u64, N as u64)
    );
    assert_eq!(
        (s.bytes_acked, s.bytes_received, s.bytes_sent),
        (M as u64, N as u64, M as u64)
    );

    // Half-close: the client's FIN is acked (+1) and received (+1), but never counted as sent.
    pair.client.shutdown(Shutdown::Write).unwrap();
    assert_eq!((&pair.server).read(&mut [0u8; 16]).unwrap(), 0);
    let (c, s) = wait_for(&pair, super::DEFAULT_STATES, |c, s| {
        c.state == tcp_state::FIN_WAIT2
            && c.bytes_acked == N as u64 + 2
            && s.state == tcp_state::CLOSE_WAIT
    });
    assert_eq!(
        (c.state, s.state),
        (tcp_state::FIN_WAIT2, tcp_state::CLOSE_WAIT)
    );
    assert_eq!(
        (c.bytes_acked, c.bytes_received, c.bytes_sent),
        (N as u64 + 2, M as u64, N as u64)
    );
    assert_eq!(
        (s.bytes_acked, s.bytes_received, s.bytes_sent),
        (M as u64, N as u64 + 1, M as u64)
    );

    // Full close: the client's side becomes a TIME_WAIT mini-socket, left out by default and
    // carrying no counters or inode when asked for.
    pair.server.shutdown(Shutdown::Write).unwrap();
    assert_eq!((&pair.client).read(&mut [0u8; 16]).unwrap(), 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    let tw = loop {
        let all = tcp_sockets_with_states(ALL_STATES).unwrap();
        match find(&all, local, remote) {
            Some(tw) if tw.state == tcp_state::TIME_WAIT => break tw,
            _ if Instant::now() > deadline => panic!("no TIME_WAIT entry for {local} -> {remote}"),
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    assert_eq!((tw.inode, tw.bytes_acked, tw.bytes_received), (0, 0, 0));
    assert!(find(&tcp_sockets().unwrap(), local, remote).is_none());
}

#[test]
fn ipv4_loopback_connection() {
    check_connection(Pair::on("127.0.0.1:0"), libc::AF_INET);
}

#[test]
fn ipv6_loopback_connection() {
    check_connection(Pair::on("[::1]:0"), libc::AF_INET6);
}

#[test]
fn ipv4_mapped_connection_reported_as_ipv4() {
    // A dual-stack listener whatever net.ipv6.bindv6only says.
    // SAFETY: plain syscalls on a descriptor owned right after.
    let listener = unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let listener = TcpListener::from_raw_fd(fd);
        let off: libc::c_int = 0;
        let rc = libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&off as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(rc, 0);
        let mut any: libc::sockaddr_in6 = std::mem::zeroed();
        any.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        let len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        assert_eq!(
            libc::bind(fd, (&any as *const libc::sockaddr_in6).cast(), len),
            0
        );
        assert_eq!(libc::listen(fd, 8), 0);
        listener
    };
    let port = listener.local_addr().unwrap().port();
    let pair = Pair::connect(listener, SocketAddr::from(([127, 0, 0, 1], port)));
    pair.exchange();
    let (c, s) = pair.find(&tcp_sockets().unwrap());
    let (c, s) = (c.unwrap(), s.unwrap());
    assert_eq!(c.family, libc::AF_INET as u16);
    // The accepted socket is AF_INET6 but talks IPv4: addresses come out as IPv4.
    assert_eq!(s.family, libc::AF_INET6 as u16);
    assert!(s.local.is_ipv4() && s.remote.is_ipv4(), "{s:?}");
    assert_eq!((s.local, s.remote), (c.remote, c.local));
    assert_eq!(s.inode, inode(&pair.server));
    assert_eq!(s.bytes_received, N as u64);
}

/// Brings up `lo` in the calling thread's (fresh) network namespace.
fn loopback_up() {
    // SAFETY: plain syscalls on a descriptor owned right after; ifreq is plain data.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let _owned = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut ifr), 0);
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &ifr), 0);
    }
}

#[test]
fn sockets_in_another_network_namespace() {
    let root = Pair::on("127.0.0.1:0");
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    // A thread of our own moves into a fresh namespace and keeps a connection open there; its
    // /proc/<pid>/task/<tid>/ns/net names the namespace while it lives.
    let holder = std::thread::spawn(move || {
        // SAFETY: moves only this test thread, which never returns to the pool of test threads.
        assert_eq!(
            unsafe { libc::unshare(libc::CLONE_NEWNET) },
            0,
            "unshare(CLONE_NEWNET)"
        );
        loopback_up();
        let pair = Pair::on("127.0.0.1:0");
        pair.exchange();
        // SAFETY: plain getter.
        let tid = unsafe { libc::gettid() };
        ready_tx
            .send((tid, inode(&pair.client), inode(&pair.server)))
            .unwrap();
        let _ = done_rx.recv();
    });
    let (tid, client_ino, server_ino) = ready_rx.recv().unwrap();
    let path = PathBuf::from(format!("/proc/{}/task/{tid}/ns/net", std::process::id()));
    let own_ns = ns_inode("/proc/thread-self/ns/net");

    let inside = tcp_sockets_in(&path).unwrap();
    let mut inodes: Vec<u64> = inside.iter().map(|s| s.inode).collect();
    inodes.sort_unstable();
    let mut expected = vec![client_ino, server_ino];
    expected.sort_unstable();
    assert_eq!(
        inodes, expected,
        "only the namespace's own connection: {inside:?}"
    );
    assert!(inside.iter().all(|s| s.bytes_received > 0));
    // The calling thread never moved.
    assert_eq!(ns_inode("/proc/thread-self/ns/net"), own_ns);
    // And the root namespace's snapshot does not see it, but sees its own connection.
    let here = tcp_sockets().unwrap();
    assert!(here
        .iter()
        .all(|s| s.inode != client_ino && s.inode != server_ino));
    assert!(here.iter().any(|s| s.inode == inode(&root.client)));
    // Our own namespace by path (no helper thread needed).
    let own = tcp_sockets_in(Path::new("/proc/self/ns/net")).unwrap();
    assert!(own.iter().any(|s| s.inode == inode(&root.server)));

    done_tx.send(()).unwrap();
    holder.join().unwrap();
}

#[test]
fn namespace_path_errors_are_named() {
    let missing = Path::new("/proc/self/ns/no-such-namespace");
    match tcp_sockets_in(missing) {
        Err(e @ DiagError::NetnsOpen { .. }) => {
            assert!(e.to_string().contains("no-such-namespace"))
        }
        other => panic!("{other:?}"),
    }
    // Not a network namespace: setns refuses it.
    let uts = Path::new("/proc/self/ns/uts");
    assert!(matches!(tcp_sockets_in(uts), Err(DiagError::Setns { .. })));
}

#[test]
fn network_namespaces_include_our_own() {
    let own = ns_inode("/proc/self/ns/net");
    let all = network_namespaces();
    let path = all.get(&own).expect("own namespace listed");
    assert_eq!(ns_inode(path), own);
    for (ino, path) in &all {
        // Processes may exit meanwhile; those that remain must match.
        if let Ok(md) = fs::metadata(path) {
            assert_eq!(md.ino(), *ino, "{}", path.display());
        }
    }
}

#[test]
fn socket_owners_finds_our_sockets() {
    let pair = Pair::on("127.0.0.1:0");
    let owners = socket_owners();
    assert_eq!(owners.get(&inode(&pair.client)), Some(&std::process::id()));
    assert_eq!(owners.get(&inode(&pair.server)), Some(&std::process::id()));
    // A budget of zero descriptors finds nothing.
    assert!(super::proc_scan::socket_owners(Path::new("/proc"), 0).is_empty());
}

#[test]
fn multi_datagram_dump() {
    // ~300 sockets with tcp_info take several 32 KiB dump datagrams.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = listener.local_addr().unwrap();
    let pairs: Vec<(TcpStream, TcpStream)> = (0..150)
        .map(|_| {
            let c = TcpStream::connect(to).unwrap();
            (c, listener.accept().unwrap().0)
        })
        .collect();
    let snap = tcp_sockets().unwrap();
    for (c, s) in &pairs {
        for sock in [c, s] {
            let ino = inode(sock);
            assert!(snap.iter().any(|i| i.inode == ino), "socket {ino} missing");
        }
    }
}

/// `tcpi_total_retrans` of the socket, from getsockopt(TCP_INFO).
fn tcp_info_total_retrans(sock: &impl AsRawFd) -> u32 {
    // SAFETY: tcp_info is plain data, sized by the kernel's answer.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        assert_eq!(rc, 0);
        info.tcpi_total_retrans
    }
}
