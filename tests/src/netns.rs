//! Disposable network namespaces joined by veth pairs.
//!
//! Addressing for claimed index `i` (unique machine-wide, see `claim.rs`):
//!
//! | what                   | IPv4            | IPv6               |
//! |------------------------|-----------------|--------------------|
//! | root end / client end  | 10.200.i.1/24   | fd00:f10e:i::1/64  |
//! | namespace / server end | 10.200.i.2/24   | fd00:f10e:i::2/64  |
//! | blackhole              | 10.200.i.254    | fd00:f10e:i::fe    |
//!
//! No default routes are added anywhere: only the connected /24 and /64 are reachable.
//!
//! Blackhole design: nothing owns the blackhole address, and both veth ends carry a
//! permanent neighbour entry mapping it to an unused MAC (02:00:00:00:00:01). A SYN to it
//! leaves the sender's veth without ARP/ND, the peer drops the frame as not addressed to
//! it (PACKET_OTHERHOST), so nobody answers and connect() times out — no firewall needed,
//! and the packet never leaves the test's veth.
//!
//! Names embed the pid (`flowtest-<pid>-<n>`, interfaces `ft<pid>-<n><side>`), so
//! [`TestHost::reap_stale`] can remove what a dead test process left behind.
//!
//! Set-up runs `ip -batch` (one process per namespace, not one per command): in an emulated
//! VM every process start costs hundreds of milliseconds.

use crate::claim::IndexClaim;
use crate::process::Cmd;
use crate::speed::{describe_bound, slowed};
use crate::tools::{ip, ip_batch, ip_quiet};
use anyhow::{bail, Context, Result};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NS_PREFIX: &str = "flowtest-";
const IF_PREFIX: &str = "ft";
const NETNS_DIR: &str = "/run/netns";
const BLACKHOLE_MAC: &str = "02:00:00:00:00:01";
/// Linux IFNAMSIZ minus the NUL.
const IFNAME_MAX: usize = 15;
const READY_TIMEOUT: Duration = Duration::from_secs(10);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace with one veth into either the root namespace ([`TestHost::new`])
/// or a sibling namespace ([`TestHost::pair`]). Everything is deleted on drop.
#[derive(Debug)]
pub struct TestHost {
    name: String,
    /// This host's interface, inside `name`.
    veth: String,
    /// The other end of the veth.
    peer_veth: String,
    /// Namespace of the other end; `None` means the root namespace.
    peer_ns: Option<String>,
    ns_v4: Ipv4Addr,
    host_v4: Ipv4Addr,
    ns_v6: Ipv6Addr,
    host_v6: Ipv6Addr,
    claim: Arc<IndexClaim>,
}

impl TestHost {
    /// Creates a namespace linked to the root namespace by a veth pair.
    pub fn new() -> Result<TestHost> {
        prepare()?;
        let claim = Arc::new(IndexClaim::acquire()?);
        let (pid, n) = (std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let (a, b) = (v4(&claim, 1), v4(&claim, 2));
        let (a6, b6) = (v6(&claim, 1), v6(&claim, 2));
        let host = TestHost {
            name: format!("{NS_PREFIX}{pid}-{n}"),
            veth: ifname(pid, n, 'n')?,
            peer_veth: ifname(pid, n, 'h')?,
            peer_ns: None,
            ns_v4: b,
            host_v4: a,
            ns_v6: b6,
            host_v6: a6,
            claim,
        };
        // On error `host` drops here and removes whatever was already created.
        host.setup_single()
            .with_context(|| format!("setting up test namespace {}", host.name))?;
        Ok(host)
    }

    /// Creates two namespaces, `(client, server)`, joined directly by one veth pair.
    /// The root namespace is not involved, so no forwarding is needed. For each host,
    /// `ns_addr_*` is its own address and `host_addr_*` the other one's.
    pub fn pair() -> Result<(TestHost, TestHost)> {
        prepare()?;
        let claim = Arc::new(IndexClaim::acquire()?);
        let (pid, n) = (std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let (c_ns, s_ns) = (
            format!("{NS_PREFIX}{pid}-{n}c"),
            format!("{NS_PREFIX}{pid}-{n}s"),
        );
        let (c_if, s_if) = (ifname(pid, n, 'c')?, ifname(pid, n, 's')?);
        let (c4, s4, c6, s6) = (v4(&claim, 1), v4(&claim, 2), v6(&claim, 1), v6(&claim, 2));
        let client = TestHost {
            name: c_ns.clone(),
            veth: c_if.clone(),
            peer_veth: s_if.clone(),
            peer_ns: Some(s_ns.clone()),
            ns_v4: c4,
            host_v4: s4,
            ns_v6: c6,
            host_v6: s6,
            claim: claim.clone(),
        };
        let server = TestHost {
            name: s_ns,
            veth: s_if,
            peer_veth: c_if,
            peer_ns: Some(c_ns),
            ns_v4: s4,
            host_v4: c4,
            ns_v6: s6,
            host_v6: c6,
            claim,
        };
        setup_pair(&client, &server).with_context(|| {
            format!(
                "setting up test namespaces {} and {}",
                client.name, server.name
            )
        })?;
        Ok((client, server))
    }

    /// Deletes namespaces and root-namespace veths left by test processes that no longer
    /// exist (e.g. killed mid-test). Returns the names removed. Called by the constructors.
    pub fn reap_stale() -> Result<Vec<String>> {
        let mut reaped = Vec::new();
        if let Ok(entries) = std::fs::read_dir(NETNS_DIR) {
            for name in entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
            {
                if owner_is_dead(&name, NS_PREFIX) {
                    kill_ns_processes(&name);
                    ip(&["netns", "del", &name])?;
                    reaped.push(name);
                }
            }
        }
        // Deleting a namespace normally destroys its veth pair, but a process still holding
        // the namespace keeps it alive; delete stray root-side ends explicitly.
        let links = std::fs::read_dir("/sys/class/net").context("listing /sys/class/net")?;
        for name in links
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
        {
            if owner_is_dead(&name, IF_PREFIX) && ip_quiet(&["link", "del", &name]) {
                reaped.push(name);
            }
        }
        Ok(reaped)
    }

    /// Namespace name, for `ip netns exec` / `ip -n`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This host's interface (inside its namespace).
    pub fn veth(&self) -> &str {
        &self.veth
    }

    /// The other end of the veth (in the root namespace, or the sibling for a pair).
    pub fn peer_veth(&self) -> &str {
        &self.peer_veth
    }

    /// The subnet index: addresses are 10.200.<index>.0/24 and fd00:f10e:<index>::/64.
    pub fn index(&self) -> u8 {
        self.claim.idx()
    }

    /// Address of the other end: the root namespace, or the sibling for a pair.
    pub fn host_addr_v4(&self) -> Ipv4Addr {
        self.host_v4
    }

    /// This namespace's own address.
    pub fn ns_addr_v4(&self) -> Ipv4Addr {
        self.ns_v4
    }

    /// IPv6 address of the other end (see [`TestHost::host_addr_v4`]).
    pub fn host_addr_v6(&self) -> Ipv6Addr {
        self.host_v6
    }

    /// This namespace's own IPv6 address.
    pub fn ns_addr_v6(&self) -> Ipv6Addr {
        self.ns_v6
    }

    /// An address in the subnet that never answers: connects to it from either end time out.
    pub fn blackhole_addr_v4(&self) -> Ipv4Addr {
        v4(&self.claim, 254)
    }

    /// IPv6 counterpart of [`TestHost::blackhole_addr_v4`].
    pub fn blackhole_addr_v6(&self) -> Ipv6Addr {
        v6(&self.claim, 0xfe)
    }

    /// Inode of the namespace (the number in `/proc/<pid>/ns/net` → `net:[N]`).
    pub fn netns_inode(&self) -> Result<u64> {
        let p = Path::new(NETNS_DIR).join(&self.name);
        Ok(std::fs::metadata(&p)
            .with_context(|| format!("stat {}", p.display()))?
            .ino())
    }

    /// A command that runs `prog` inside this namespace.
    pub fn cmd(&self, prog: &str) -> Cmd {
        Cmd::in_ns(&self.name, prog)
    }

    /// Waits (10 s at most) until a TCP socket listens on `port` inside this namespace.
    pub fn wait_for_tcp_listen(&self, port: u16) -> Result<()> {
        crate::process::wait_for_tcp_listen(&self.name, port)
    }

    fn setup_single(&self) -> Result<()> {
        let (ns, h, n) = (
            self.name.as_str(),
            self.peer_veth.as_str(),
            self.veth.as_str(),
        );
        let mut root = vec![
            format!("netns add {ns}"),
            format!("link add {h} type veth peer name {n} netns {ns}"),
        ];
        root.extend(configure_end(h, self.host_v4, self.host_v6, self));
        ip_batch(None, &[], &root)?;
        let mut inside = vec!["link set lo up".to_string()];
        inside.extend(configure_end(n, self.ns_v4, self.ns_v6, self));
        ip_batch(Some(ns), &[], &inside)?;
        wait_ready(&[(None, h), (Some(ns), n)])
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        kill_ns_processes(&self.name);
        // Deleting the veth first destroys both ends synchronously, even if something
        // still pins the namespace; for a pair the sibling may have done it already.
        let del_ns = format!("netns del {}", self.name);
        let deleted = match &self.peer_ns {
            // -force: the namespace goes even if the veth already went.
            None => ip_batch(
                None,
                &["-force"],
                &[format!("link del {}", self.peer_veth), del_ns],
            ),
            Some(_) => {
                ip_quiet(&["-n", &self.name, "link", "del", &self.veth]);
                ip_batch(None, &[], &[del_ns])
            }
        };
        if let Err(e) = deleted {
            if Path::new(NETNS_DIR).join(&self.name).exists() {
                eprintln!(
                    "flow-agent-tests: could not delete namespace {}: {e:#}",
                    self.name
                );
            }
        }
    }
}

/// Common checks before creating anything.
fn prepare() -> Result<()> {
    crate::require_root()?;
    crate::tools::ip_path()?;
    if let Err(e) = TestHost::reap_stale() {
        eprintln!("flow-agent-tests: reaping stale test namespaces failed: {e:#}");
    }
    Ok(())
}

fn setup_pair(client: &TestHost, server: &TestHost) -> Result<()> {
    let (c, s) = (client.name.as_str(), server.name.as_str());
    ip_batch(
        None,
        &[],
        &[format!("netns add {c}"), format!("netns add {s}")],
    )?;
    for host in [client, server] {
        let mut lines = Vec::new();
        if host.name == c {
            // Created directly inside the namespaces: never visible in the root namespace.
            lines.push(format!(
                "link add {} type veth peer name {} netns {s}",
                client.veth, server.veth
            ));
        }
        lines.push("link set lo up".to_string());
        lines.extend(configure_end(&host.veth, host.ns_v4, host.ns_v6, host));
        ip_batch(Some(&host.name), &[], &lines)?;
    }
    wait_ready(&[(Some(c), &client.veth), (Some(s), &server.veth)])
}

/// `ip` commands (batch lines) for one veth end: addresses, link up, blackhole neighbours.
fn configure_end(dev: &str, a4: Ipv4Addr, a6: Ipv6Addr, host: &TestHost) -> Vec<String> {
    let mut lines = vec![
        format!("addr add {a4}/24 dev {dev}"),
        // nodad: the address is usable at once instead of "tentative" for ~1-2 s.
        format!("addr add {a6}/64 dev {dev} nodad"),
        format!("link set {dev} up"),
    ];
    for bh in [
        host.blackhole_addr_v4().to_string(),
        host.blackhole_addr_v6().to_string(),
    ] {
        lines.push(format!(
            "neigh add {bh} lladdr {BLACKHOLE_MAC} dev {dev} nud permanent"
        ));
    }
    lines
}

/// Waits until each veth end has carrier and no tentative IPv6 address.
fn wait_ready(ends: &[(Option<&str>, &str)]) -> Result<()> {
    let deadline = Instant::now() + slowed(READY_TIMEOUT);
    loop {
        let mut pending = Vec::new();
        for &(ns, dev) in ends {
            // One line for the link, then one per tentative global address (IPv6 only).
            let out = ip_batch(
                ns,
                &["-o"],
                &[
                    format!("link show dev {dev}"),
                    format!("addr show dev {dev} scope global tentative"),
                ],
            )?;
            let tentative = out.lines().any(|l| l.contains("tentative"));
            if !out.contains("LOWER_UP") || tentative {
                pending.push(format!("{dev}: {}", out.trim()));
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "veth not ready after {}: {}",
                describe_bound(READY_TIMEOUT),
                pending.join("; ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn v4(claim: &IndexClaim, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, claim.idx(), host)
}

fn v6(claim: &IndexClaim, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0xf10e, claim.idx().into(), 0, 0, 0, 0, host)
}

fn ifname(pid: u32, n: u32, side: char) -> Result<String> {
    let name = format!("{IF_PREFIX}{pid}-{n}{side}");
    if name.len() > IFNAME_MAX {
        bail!("interface name {name} exceeds {IFNAME_MAX} bytes (too many hosts in one process?)");
    }
    Ok(name)
}

/// Whether `name` is `<prefix><pid>-...` for a pid that is not running.
fn owner_is_dead(name: &str, prefix: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix) else {
        return false;
    };
    let Some((pid, _)) = rest.split_once('-') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// SIGKILLs every process inside namespace `ns` (left-over servers would pin it): those whose
/// /proc/PID/ns/net is the namespace's file, as `ip netns pids` finds them, without starting
/// `ip`.
fn kill_ns_processes(ns: &str) {
    let Ok(target) = std::fs::metadata(Path::new(NETNS_DIR).join(ns)) else {
        return;
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    let me = std::process::id();
    for pid in procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
    {
        let Ok(net) = std::fs::metadata(format!("/proc/{pid}/ns/net")) else {
            continue;
        };
        if (net.dev(), net.ino()) == (target.dev(), target.ino()) {
            // SAFETY: kill(2) with a concrete pid; errors (already gone) are irrelevant.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// A namespace's resolver (`/etc/netns/NAME/resolv.conf`, which `ip netns exec` binds over
/// /etc/resolv.conf), removed when dropped.
pub struct ResolvConf(std::path::PathBuf);

impl ResolvConf {
    /// Points `host`'s processes at the name server `server`.
    pub fn point(host: &TestHost, server: &str) -> Result<Self> {
        let dir = std::path::PathBuf::from("/etc/netns").join(host.name());
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("resolv.conf"), format!("nameserver {server}\n"))?;
        Ok(Self(dir))
    }
}

impl Drop for ResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
