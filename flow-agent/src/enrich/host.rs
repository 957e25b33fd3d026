//! Facts about this host that every event carries ([`HostInfo`], read here) or that identify
//! it.
use std::net::IpAddr;

use crate::event::HostInfo;

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

impl HostInfo {
    pub fn read() -> Self {
        let hostname = read_trim("/proc/sys/kernel/hostname");
        let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        Self {
            fqdn: fqdn_from_hosts(
                &std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
                &hostname,
            ),
            hostname,
            machine_id: read_trim("/etc/machine-id"),
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
            os_name: os_release_field(&os, "NAME"),
            os_version: os_release_field(&os, "VERSION_ID"),
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            agent_version: env!("CARGO_PKG_VERSION"),
        }
    }
}

fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k == key).then(|| v.trim_matches('"').to_string())
    })
}

/// The first name on an /etc/hosts line that lists `hostname`, if it contains a dot.
fn fqdn_from_hosts(hosts: &str, hostname: &str) -> Option<String> {
    hosts.lines().find_map(|line| {
        let line = line.split('#').next()?;
        let mut fields = line.split_whitespace();
        fields.next()?.parse::<IpAddr>().ok()?;
        let names: Vec<&str> = fields.collect();
        let listed = names
            .iter()
            .any(|n| *n == hostname || n.split('.').next() == Some(hostname));
        let fq = names.iter().find(|n| n.contains('.'))?;
        (listed && !hostname.is_empty()).then(|| fq.to_string())
    })
}

/// Stable id of one process across events (like Sysmon's ProcessGuid): machine id, start time
/// and pid, so a reused pid or another host never collides. The start time counts clock ticks
/// (10 ms), the precision /proc gives, so a process seen first through /proc and later through
/// the kernel keeps one id.
pub(crate) fn process_entity_id(machine_id: &str, start_ns: u64, pid: u32) -> String {
    let machine: String = machine_id.chars().take(8).collect();
    let ticks = start_ns / 10_000_000;
    format!("{machine:0>8}-{ticks:012x}-{pid:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fqdn_in_hosts() {
        let hosts = "127.0.0.1 localhost\n10.0.0.5 web1.example.org web1 # comment\n";
        assert_eq!(
            fqdn_from_hosts(hosts, "web1").as_deref(),
            Some("web1.example.org")
        );
        assert_eq!(fqdn_from_hosts(hosts, "db1"), None);
        assert_eq!(fqdn_from_hosts("127.0.1.1 web2\n", "web2"), None);
    }

    #[test]
    fn reads_os_release() {
        let os = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n";
        assert_eq!(
            os_release_field(os, "NAME").as_deref(),
            Some("Debian GNU/Linux")
        );
        assert_eq!(os_release_field(os, "VERSION_ID").as_deref(), Some("12"));
    }

    #[test]
    fn entity_id_is_stable_and_distinct() {
        let a = process_entity_id("0123456789abcdef", 5_000_000_000, 42);
        assert_eq!(a, "01234567-0000000001f4-0000002a");
        // The same tick (a /proc start time vs the kernel's exact one): the same process.
        assert_eq!(a, process_entity_id("0123456789abcdef", 5_009_999_999, 42));
        assert_ne!(a, process_entity_id("0123456789abcdef", 5_010_000_000, 42));
        assert_ne!(a, process_entity_id("0123456789abcdef", 5_000_000_000, 43));
    }
}
